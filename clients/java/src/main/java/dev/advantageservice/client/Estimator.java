package dev.advantageservice.client;

import dev.advantageservice.v1.Coefficient;
import dev.advantageservice.v1.ComputeAdvantageRequest;
import dev.advantageservice.v1.ComputeLossRequest;

/**
 * The estimator of a request: {@code Estimator.gae().gamma(0.99).lmbda(0.95)},
 * {@code Estimator.td0()}, {@code Estimator.td1()}, {@code Estimator.tdLambda()},
 * {@code Estimator.vtrace().rhoThresh(1.0)}. Knobs left unset take the model's defaults
 * (ModelInfo.gamma(), lmbda()); no estimator at all = GAE with the model's defaults.
 * γ and λ are a number in [0, 1] or a per-step tensor [*B, T] in the reward's dtype.
 */
public abstract class Estimator {
  Estimator() {}

  public static TD0 td0() {
    return new TD0();
  }

  public static TD1 td1() {
    return new TD1();
  }

  public static TDLambda tdLambda() {
    return new TDLambda();
  }

  public static GAE gae() {
    return new GAE();
  }

  public static VTrace vtrace() {
    return new VTrace();
  }

  abstract void applyTo(ComputeAdvantageRequest.Builder request);

  abstract void applyTo(ComputeLossRequest.Builder request);

  static Coefficient scalar(double value) {
    return Coefficient.newBuilder().setScalar(value).build();
  }

  static Coefficient perStep(Tensor value, String field) {
    return Coefficient.newBuilder().setPerStep(value.toProto(field + ".per_step")).build();
  }

  /** TorchRL's TD0Estimator. */
  public static final class TD0 extends Estimator {
    private final dev.advantageservice.v1.TD0.Builder w = dev.advantageservice.v1.TD0.newBuilder();

    public TD0 gamma(double value) {
      w.setGamma(scalar(value));
      return this;
    }

    public TD0 gamma(Tensor perStep) {
      w.setGamma(perStep(perStep, "td0.gamma"));
      return this;
    }

    public TD0 averageRewards(boolean value) {
      w.setAverageRewards(value);
      return this;
    }

    @Override
    void applyTo(ComputeAdvantageRequest.Builder request) {
      request.setTd0(w.build());
    }

    @Override
    void applyTo(ComputeLossRequest.Builder request) {
      request.setTd0(w.build());
    }
  }

  /** TorchRL's TD1Estimator. */
  public static final class TD1 extends Estimator {
    private final dev.advantageservice.v1.TD1.Builder w = dev.advantageservice.v1.TD1.newBuilder();

    public TD1 gamma(double value) {
      w.setGamma(scalar(value));
      return this;
    }

    public TD1 gamma(Tensor perStep) {
      w.setGamma(perStep(perStep, "td1.gamma"));
      return this;
    }

    public TD1 averageRewards(boolean value) {
      w.setAverageRewards(value);
      return this;
    }

    @Override
    void applyTo(ComputeAdvantageRequest.Builder request) {
      request.setTd1(w.build());
    }

    @Override
    void applyTo(ComputeLossRequest.Builder request) {
      request.setTd1(w.build());
    }
  }

  /** TorchRL's TDLambdaEstimator. */
  public static final class TDLambda extends Estimator {
    private final dev.advantageservice.v1.TDLambda.Builder w =
        dev.advantageservice.v1.TDLambda.newBuilder();

    public TDLambda gamma(double value) {
      w.setGamma(scalar(value));
      return this;
    }

    public TDLambda gamma(Tensor perStep) {
      w.setGamma(perStep(perStep, "td_lambda.gamma"));
      return this;
    }

    public TDLambda lmbda(double value) {
      w.setLmbda(scalar(value));
      return this;
    }

    public TDLambda lmbda(Tensor perStep) {
      w.setLmbda(perStep(perStep, "td_lambda.lmbda"));
      return this;
    }

    public TDLambda averageRewards(boolean value) {
      w.setAverageRewards(value);
      return this;
    }

    @Override
    void applyTo(ComputeAdvantageRequest.Builder request) {
      request.setTdLambda(w.build());
    }

    @Override
    void applyTo(ComputeLossRequest.Builder request) {
      request.setTdLambda(w.build());
    }
  }

  /** TorchRL's GAE. */
  public static final class GAE extends Estimator {
    private final dev.advantageservice.v1.GAE.Builder w = dev.advantageservice.v1.GAE.newBuilder();

    public GAE gamma(double value) {
      w.setGamma(scalar(value));
      return this;
    }

    public GAE gamma(Tensor perStep) {
      w.setGamma(perStep(perStep, "gae.gamma"));
      return this;
    }

    public GAE lmbda(double value) {
      w.setLmbda(scalar(value));
      return this;
    }

    public GAE lmbda(Tensor perStep) {
      w.setLmbda(perStep(perStep, "gae.lmbda"));
      return this;
    }

    /** Standardise the advantage (TorchRL's average_gae). */
    public GAE averageGae(boolean value) {
      w.setAverageGae(value);
      return this;
    }

    @Override
    void applyTo(ComputeAdvantageRequest.Builder request) {
      request.setGae(w.build());
    }

    @Override
    void applyTo(ComputeLossRequest.Builder request) {
      request.setGae(w.build());
    }
  }

  /**
   * TorchRL's VTrace plus rlax/DI-engine's λ and ρ̄_pg. Needs the trajectory's sampleLogProb, and
   * logProb or a model with an actor network (plus action).
   */
  public static final class VTrace extends Estimator {
    private final dev.advantageservice.v1.VTrace.Builder w =
        dev.advantageservice.v1.VTrace.newBuilder();

    public VTrace gamma(double value) {
      w.setGamma(scalar(value));
      return this;
    }

    public VTrace gamma(Tensor perStep) {
      w.setGamma(perStep(perStep, "vtrace.gamma"));
      return this;
    }

    /** ρ̄, clip on importance weights in the value target (default 1). */
    public VTrace rhoThresh(double value) {
      w.setRhoThresh(value);
      return this;
    }

    /** c̄, clip on the trace coefficients (default 1). */
    public VTrace cThresh(double value) {
      w.setCThresh(value);
      return this;
    }

    /** λ in c = λ·min(c̄, ρ) (default 1, TorchRL's V-trace). */
    public VTrace lmbda(double value) {
      w.setLmbda(value);
      return this;
    }

    /** ρ̄_pg (default ρ̄). */
    public VTrace rhoPgThresh(double value) {
      w.setRhoPgThresh(value);
      return this;
    }

    public VTrace averageAdv(boolean value) {
      w.setAverageAdv(value);
      return this;
    }

    @Override
    void applyTo(ComputeAdvantageRequest.Builder request) {
      request.setVtrace(w.build());
    }

    @Override
    void applyTo(ComputeLossRequest.Builder request) {
      request.setVtrace(w.build());
    }
  }
}
