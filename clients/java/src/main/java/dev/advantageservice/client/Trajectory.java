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
  /** Observation layout (see proto/README.md, "the two forms"). */
  public enum Form {
    /** observation and next_observation both [*B, T, *obs] (the default). */
    FULL,
    /** observation [*B, T + 1, *obs]; next_observation [K, *obs] at the K truncated steps. */
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
    private Form form = Form.FULL;

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

    public Builder form(Form f) {
      form = f;
      return this;
    }

    public Trajectory build() {
      return new Trajectory(this);
    }
  }

  /** The wire message; IllegalArgumentException names the first malformed tensor. */
  public dev.advantageservice.v1.Trajectory toProto() {
    if (b.reward == null || b.done == null) {
      throw new IllegalArgumentException("trajectory: reward and done are required");
    }
    dev.advantageservice.v1.Trajectory.Builder w = dev.advantageservice.v1.Trajectory.newBuilder()
        .setForm(b.form == Form.COMPACT
            ? TrajectoryForm.TRAJECTORY_FORM_COMPACT
            : TrajectoryForm.TRAJECTORY_FORM_FULL);
    for (Map.Entry<String, Tensor> e : b.observation.entrySet()) {
      w.putObservation(e.getKey(), e.getValue().toProto("trajectory.observation['" + e.getKey() + "']"));
    }
    for (Map.Entry<String, Tensor> e : b.nextObservation.entrySet()) {
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
