package dev.advantageservice.client;

import dev.advantageservice.v1.ComputeAdvantageRequest;

/**
 * A ComputeAdvantage call:
 * {@code new AdvantageRequest(trajectory).estimator(Estimator.gae().gamma(0.99))}.
 */
public final class AdvantageRequest {
  private final Trajectory trajectory;
  private String model = "";
  private Estimator estimator;
  private Long minParameterVersion;

  public AdvantageRequest(Trajectory trajectory) {
    this.trajectory = trajectory;
  }

  /** Model name; "" (the default) = the server's default model. */
  public AdvantageRequest model(String name) {
    model = name;
    return this;
  }

  /** The estimator; unset = GAE with the model's defaults. */
  public AdvantageRequest estimator(Estimator e) {
    estimator = e;
    return this;
  }

  /** Read-your-writes: answer with this parameter version or a later one. */
  public AdvantageRequest minParameterVersion(long version) {
    minParameterVersion = version;
    return this;
  }

  /** The wire request; IllegalArgumentException names the first malformed field. */
  public ComputeAdvantageRequest toProto() {
    ComputeAdvantageRequest.Builder w =
        ComputeAdvantageRequest.newBuilder().setModelName(model).setTrajectory(trajectory.toProto());
    if (estimator != null) estimator.applyTo(w);
    if (minParameterVersion != null) w.setMinParameterVersion(minParameterVersion);
    return w.build();
  }
}
