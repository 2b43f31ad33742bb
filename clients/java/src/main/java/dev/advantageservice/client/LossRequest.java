package dev.advantageservice.client;

import dev.advantageservice.v1.ComputeLossRequest;
import java.util.Map;
import java.util.TreeMap;

/**
 * A ComputeLoss call: {@code new LossRequest(trajectory).loss(Loss.clipPpo().clipEpsilon(0.1))}.
 * The trajectory needs observation, action and sampleLogProb.
 */
public final class LossRequest {
  private final Trajectory trajectory;
  private String model = "";
  private Estimator estimator;
  private Loss loss;
  private Tensor advantage;
  private Tensor valueTarget;
  private final Map<String, Tensor> behaviourDistribution = new TreeMap<>();
  private boolean applyUpdate;
  private Long expectedParameterVersion;
  private Long minParameterVersion;

  public LossRequest(Trajectory trajectory) {
    this.trajectory = trajectory;
  }

  public LossRequest model(String name) {
    model = name;
    return this;
  }

  /** Estimator of the advantage; unset = GAE with the model's γ, λ (unless advantage is sent). */
  public LossRequest estimator(Estimator e) {
    estimator = e;
    return this;
  }

  /** The loss; unset = ClipPPO with TorchRL's defaults. */
  public LossRequest loss(Loss l) {
    loss = l;
    return this;
  }

  /** Precomputed advantage and value target, [*B, T] (skips the estimator). */
  public LossRequest advantage(Tensor advantage, Tensor valueTarget) {
    this.advantage = advantage;
    this.valueTarget = valueTarget;
    return this;
  }

  /** KLPenPPO: a behaviour policy's distribution parameter ("logits", or "loc" and "scale"). */
  public LossRequest behaviourDistribution(String name, Tensor t) {
    behaviourDistribution.put(name, t);
    return this;
  }

  /** Take one optimizer step on the server's networks. */
  public LossRequest applyUpdate(boolean value) {
    applyUpdate = value;
    return this;
  }

  /** With applyUpdate: FAILED_PRECONDITION unless the model is at this version. */
  public LossRequest expectedParameterVersion(long version) {
    expectedParameterVersion = version;
    return this;
  }

  public LossRequest minParameterVersion(long version) {
    minParameterVersion = version;
    return this;
  }

  /** The wire request; IllegalArgumentException names the first malformed field. */
  public ComputeLossRequest toProto() {
    ComputeLossRequest.Builder w = ComputeLossRequest.newBuilder()
        .setModelName(model)
        .setTrajectory(trajectory.toProto())
        .setApplyUpdate(applyUpdate);
    if (estimator != null) estimator.applyTo(w);
    if (loss != null) loss.applyTo(w);
    if (advantage != null) {
      w.setAdvantage(advantage.toProto("advantage"));
      w.setValueTarget(valueTarget.toProto("value_target"));
    }
    for (Map.Entry<String, Tensor> e : behaviourDistribution.entrySet()) {
      w.putBehaviourDistribution(
          e.getKey(), e.getValue().toProto("behaviour_distribution['" + e.getKey() + "']"));
    }
    if (expectedParameterVersion != null) w.setExpectedParameterVersion(expectedParameterVersion);
    if (minParameterVersion != null) w.setMinParameterVersion(minParameterVersion);
    return w.build();
  }
}
