package dev.advantageservice.client;

import dev.advantageservice.v1.TrajectoryForm;
import java.util.Map;
import java.util.TreeMap;

/**
 * A batch of trajectory segments, per-step tensors [*B, T] (time last). Send stateValue and
 * nextStateValue (the reward's dtype) to skip the value network, else observation and
 * nextObservation keyed by the model's input keys.
 *
 * <pre>{@code
 * Trajectory t = Trajectory.builder()
 *     .reward(Tensor.float32(rewards, B, T)).done(Tensor.bools(dones, B, T))
 *     .observation("observation", Tensor.float32(obs, B, T, 4))
 *     .nextObservation("observation", Tensor.float32(nextObs, B, T, 4))
 *     .build();
 * }</pre>
 */
public final class Trajectory {
  /** The observation layout a trajectory is sent in (see proto/README.md, "the two forms"). */
  public enum Form {
    /**
     * The default: the compact form when the data allows it, else the full form. Allowed when
     * there is no agent layout (nAgents 0) and every observation key is full-form [*B, T, *obs]
     * with a next observation of the same key, shape and dtype that chains: next_observation[t]
     * == observation[t + 1], bit for bit, wherever step t is not done. The server gives the same
     * numbers for both forms; the compact one is about half the observation bytes. The request
     * carries the form chosen.
     */
    AUTO,
    /** observation and next_observation both [*B, T, *obs], sent as given. */
    FULL,
    /**
     * observation [*B, T + 1, *obs]; next_observation [K, *obs] at the K truncated steps (done and
     * not terminated). Full-form observations [*B, T, *obs] are converted (IllegalArgumentException
     * names the first step that is not done whose next observation differs from the following
     * observation); compact ones, and any with an agent layout, are sent as given.
     */
    COMPACT
  }

  private final Builder b;

  private Trajectory(Builder builder) {
    this.b = builder;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Collects a Trajectory's tensors; build() does not validate (the request's toProto does). */
  public static final class Builder {
    private final Map<String, Tensor> observation = new TreeMap<>();
    private final Map<String, Tensor> nextObservation = new TreeMap<>();
    private Tensor reward;
    private Tensor done;
    private Tensor terminated;
    private Tensor stateValue;
    private Tensor nextStateValue;
    private Tensor action;
    private Tensor sampleLogProb;
    private Tensor logProb;
    private Form form = Form.AUTO;
    private int nAgents;

    private Builder() {}

    public Builder observation(String key, Tensor t) {
      observation.put(key, t);
      return this;
    }

    public Builder nextObservation(String key, Tensor t) {
      nextObservation.put(key, t);
      return this;
    }

    /** float32 or float64: the computation's dtype. */
    public Builder reward(Tensor t) {
      reward = t;
      return this;
    }

    /** bool: the episode ended (terminated or truncated) after the step. */
    public Builder done(Tensor t) {
      done = t;
      return this;
    }

    /** bool; absent = equal to done. */
    public Builder terminated(Tensor t) {
      terminated = t;
      return this;
    }

    public Builder stateValue(Tensor t) {
      stateValue = t;
      return this;
    }

    public Builder nextStateValue(Tensor t) {
      nextStateValue = t;
      return this;
    }

    public Builder action(Tensor t) {
      action = t;
      return this;
    }

    /** The behaviour policy's log-probability of action (V-trace, losses). */
    public Builder sampleLogProb(Tensor t) {
      sampleLogProb = t;
      return this;
    }

    /** The current policy's (V-trace without an actor network). */
    public Builder logProb(Tensor t) {
      logProb = t;
      return this;
    }

    /** The form to send (default AUTO: compact when the observations chain, else full). */
    public Builder form(Form f) {
      form = java.util.Objects.requireNonNull(f, "form");
      return this;
    }

    /**
     * Agents per step (0, the default, = none): per-agent tensors are [*B, T, n, ...], time
     * before agents; done and terminated [*B, T] (shared) or [*B, T, n] (see proto/README.md).
     */
    public Builder nAgents(int n) {
      if (n < 0) {
        throw new IllegalArgumentException("trajectory.n_agents: expected >= 0, got " + n);
      }
      nAgents = n;
      return this;
    }

    public Trajectory build() {
      return new Trajectory(this);
    }
  }

  /**
   * The wire message, in the form the builder's form chooses (AUTO: compact when the observations
   * chain, else full); IllegalArgumentException names the first malformed tensor or, for COMPACT,
   * the first step whose observations do not chain.
   */
  public dev.advantageservice.v1.Trajectory toProto() {
    if (b.reward == null || b.done == null) {
      throw new IllegalArgumentException("trajectory: reward and done are required");
    }
    CompactForm.Observations sent = CompactForm.resolve(
        b.form, b.observation, b.nextObservation, b.done, b.terminated, b.nAgents);
    dev.advantageservice.v1.Trajectory.Builder w = dev.advantageservice.v1.Trajectory.newBuilder()
        .setForm(sent.form() == Form.COMPACT
            ? TrajectoryForm.TRAJECTORY_FORM_COMPACT
            : TrajectoryForm.TRAJECTORY_FORM_FULL)
        .setNAgents(b.nAgents);
    for (Map.Entry<String, Tensor> e : sent.observation().entrySet()) {
      w.putObservation(e.getKey(), e.getValue().toProto("trajectory.observation['" + e.getKey() + "']"));
    }
    for (Map.Entry<String, Tensor> e : sent.next().entrySet()) {
      w.putNextObservation(
          e.getKey(), e.getValue().toProto("trajectory.next_observation['" + e.getKey() + "']"));
    }
    w.setReward(b.reward.toProto("trajectory.reward"));
    w.setDone(b.done.toProto("trajectory.done"));
    if (b.terminated != null) w.setTerminated(b.terminated.toProto("trajectory.terminated"));
    if (b.stateValue != null) w.setStateValue(b.stateValue.toProto("trajectory.state_value"));
    if (b.nextStateValue != null) {
      w.setNextStateValue(b.nextStateValue.toProto("trajectory.next_state_value"));
    }
    if (b.action != null) w.setAction(b.action.toProto("trajectory.action"));
    if (b.sampleLogProb != null) {
      w.setSampleLogProb(b.sampleLogProb.toProto("trajectory.sample_log_prob"));
    }
    if (b.logProb != null) w.setLogProb(b.logProb.toProto("trajectory.log_prob"));
    return w.build();
  }
}
