package dev.advantageservice.client;

import dev.advantageservice.v1.ComputeLossRequest;
import dev.advantageservice.v1.CriticLoss;
import dev.advantageservice.v1.PolicyLossOptions;

/**
 * The loss of a ComputeLoss request: {@code Loss.clipPpo().clipEpsilon(0.1)}, {@code Loss.ppo()},
 * {@code Loss.klPenPpo()}, {@code Loss.a2c().entropyCoeff(0.05)}, {@code Loss.reinforce()},
 * {@code Loss.impala().gamma(0.9)}. Knobs left unset take TorchRL's defaults; no loss at all =
 * ClipPPO with TorchRL's defaults.
 */
public abstract class Loss {
  Loss() {}

  public static ClipPPO clipPpo() {
    return new ClipPPO();
  }

  public static KLPenPPO klPenPpo() {
    return new KLPenPPO();
  }

  public static PPO ppo() {
    return new PPO();
  }

  public static A2C a2c() {
    return new A2C();
  }

  public static Reinforce reinforce() {
    return new Reinforce();
  }

  public static Impala impala() {
    return new Impala();
  }

  abstract void applyTo(ComputeLossRequest.Builder request);

  /**
   * The knobs shared by the TorchRL-derived losses (PolicyLossOptions); sent only when one is
   * set. {@code S} is the concrete loss, so that the setters chain.
   */
  public abstract static class PolicyLoss<S extends PolicyLoss<S>> extends Loss {
    private final PolicyLossOptions.Builder options = PolicyLossOptions.newBuilder();
    private boolean anyOption;

    @SuppressWarnings("unchecked")
    private S option() {
      anyOption = true;
      return (S) this;
    }

    public S entropyBonus(boolean value) {
      options.setEntropyBonus(value);
      return option();
    }

    public S entropyCoeff(double value) {
      options.setEntropyCoeff(value);
      return option();
    }

    public S criticCoeff(double value) {
      options.setCriticCoeff(value);
      return option();
    }

    public S lossCriticType(CriticLoss value) {
      options.setLossCriticType(value);
      return option();
    }

    public S normalizeAdvantage(boolean value) {
      options.setNormalizeAdvantage(value);
      return option();
    }

    public S clipValue(double value) {
      options.setClipValue(value);
      return option();
    }

    /** The options message, or null when no knob was set (then none is sent). */
    PolicyLossOptions options() {
      return anyOption ? options.build() : null;
    }
  }

  /** TorchRL's ClipPPOLoss. */
  public static final class ClipPPO extends PolicyLoss<ClipPPO> {
    private final dev.advantageservice.v1.ClipPPOLoss.Builder w =
        dev.advantageservice.v1.ClipPPOLoss.newBuilder();

    public ClipPPO clipEpsilon(double value) {
      w.setClipEpsilon(value);
      return this;
    }

    public ClipPPO clipEpsilonLow(double value) {
      w.setClipEpsilonLow(value);
      return this;
    }

    public ClipPPO clipEpsilonHigh(double value) {
      w.setClipEpsilonHigh(value);
      return this;
    }

    @Override
    void applyTo(ComputeLossRequest.Builder request) {
      if (options() != null) w.setOptions(options());
      request.setPpoClip(w.build());
    }
  }

  /** TorchRL's KLPENPPOLoss; needs the request's behaviourDistribution. */
  public static final class KLPenPPO extends PolicyLoss<KLPenPPO> {
    private final dev.advantageservice.v1.KLPENPPOLoss.Builder w =
        dev.advantageservice.v1.KLPENPPOLoss.newBuilder();

    public KLPenPPO dtarg(double value) {
      w.setDtarg(value);
      return this;
    }

    public KLPenPPO beta(double value) {
      w.setBeta(value);
      return this;
    }

    public KLPenPPO increment(double value) {
      w.setIncrement(value);
      return this;
    }

    public KLPenPPO decrement(double value) {
      w.setDecrement(value);
      return this;
    }

    @Override
    void applyTo(ComputeLossRequest.Builder request) {
      if (options() != null) w.setOptions(options());
      request.setPpoKl(w.build());
    }
  }

  /** TorchRL's PPOLoss (no clipping). */
  public static final class PPO extends PolicyLoss<PPO> {
    @Override
    void applyTo(ComputeLossRequest.Builder request) {
      dev.advantageservice.v1.PPOLoss.Builder w = dev.advantageservice.v1.PPOLoss.newBuilder();
      if (options() != null) w.setOptions(options());
      request.setPpo(w.build());
    }
  }

  /** TorchRL's A2CLoss. */
  public static final class A2C extends PolicyLoss<A2C> {
    @Override
    void applyTo(ComputeLossRequest.Builder request) {
      dev.advantageservice.v1.A2CLoss.Builder w = dev.advantageservice.v1.A2CLoss.newBuilder();
      if (options() != null) w.setOptions(options());
      request.setA2C(w.build());
    }
  }

  /** TorchRL's ReinforceLoss. */
  public static final class Reinforce extends PolicyLoss<Reinforce> {
    @Override
    void applyTo(ComputeLossRequest.Builder request) {
      dev.advantageservice.v1.ReinforceLoss.Builder w =
          dev.advantageservice.v1.ReinforceLoss.newBuilder();
      if (options() != null) w.setOptions(options());
      request.setReinforce(w.build());
    }
  }

  /** DI-engine's vtrace_error (IMPALA); its V-trace replaces the request's estimator. */
  public static final class Impala extends Loss {
    private final dev.advantageservice.v1.ImpalaLoss.Builder w =
        dev.advantageservice.v1.ImpalaLoss.newBuilder();

    public Impala gamma(double value) {
      w.setGamma(value);
      return this;
    }

    public Impala lmbda(double value) {
      w.setLmbda(value);
      return this;
    }

    public Impala rhoThresh(double value) {
      w.setRhoThresh(value);
      return this;
    }

    public Impala cThresh(double value) {
      w.setCThresh(value);
      return this;
    }

    public Impala rhoPgThresh(double value) {
      w.setRhoPgThresh(value);
      return this;
    }

    public Impala entropyCoeff(double value) {
      w.setEntropyCoeff(value);
      return this;
    }

    public Impala criticCoeff(double value) {
      w.setCriticCoeff(value);
      return this;
    }

    public Impala entropyBonus(boolean value) {
      w.setEntropyBonus(value);
      return this;
    }

    @Override
    void applyTo(ComputeLossRequest.Builder request) {
      request.setImpala(w.build());
    }
  }
}
