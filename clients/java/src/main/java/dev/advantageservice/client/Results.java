package dev.advantageservice.client;

import dev.advantageservice.v1.ComputeAdvantageResponse;
import dev.advantageservice.v1.ComputeLossResponse;
import dev.advantageservice.v1.DType;
import dev.advantageservice.v1.Distribution;
import dev.advantageservice.v1.TensorSpec;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** The answers of the typed calls (plain values, no protobuf objects). */
public final class Results {
  private Results() {}

  /** Server-side time breakdown of one call, in milliseconds. */
  public record Timing(double decodeMs, double networkMs, double estimatorMs, double encodeMs) {
    static Timing of(dev.advantageservice.v1.Timing w) {
      return new Timing(w.getDecodeMs(), w.getNetworkMs(), w.getEstimatorMs(), w.getEncodeMs());
    }
  }

  /**
   * A ComputeAdvantage answer; tensors have the reward's shape and dtype. stateValue and
   * nextStateValue are null when the request carried state values.
   */
  public record AdvantageResult(
      Tensor advantage,
      Tensor valueTarget,
      Tensor stateValue,
      Tensor nextStateValue,
      String modelName,
      long parameterVersion,
      Timing timing) {
    static AdvantageResult of(ComputeAdvantageResponse w) {
      boolean values = w.hasStateValue() && w.hasNextStateValue();
      return new AdvantageResult(
          Tensor.fromProto(w.getAdvantage()),
          Tensor.fromProto(w.getValueTarget()),
          values ? Tensor.fromProto(w.getStateValue()) : null,
          values ? Tensor.fromProto(w.getNextStateValue()) : null,
          w.getModelName(),
          w.getParameterVersion(),
          Timing.of(w.getTiming()));
    }
  }

  /** A ComputeLoss answer; metrics use TorchRL's names (loss_objective, entropy, ...). */
  public record LossResult(
      double loss,
      Map<String, Double> metrics,
      String modelName,
      long parameterVersion,
      boolean updated,
      long newParameterVersion,
      double gradNorm,
      Timing timing) {
    static LossResult of(ComputeLossResponse w) {
      return new LossResult(
          w.getLoss(),
          Collections.unmodifiableMap(new TreeMap<>(w.getMetricsMap())),
          w.getModelName(),
          w.getParameterVersion(),
          w.getUpdated(),
          w.getNewParameterVersion(),
          w.getGradNorm(),
          Timing.of(w.getTiming()));
    }
  }

  /** One network input: its key, per-step shape (without [*B, T]) and dtype. */
  public record InputSpec(String name, long[] shape, DType dtype) {
    @Override
    public String toString() {
      return "InputSpec(" + name + ", " + java.util.Arrays.toString(shape) + ", " + dtype + ")";
    }
  }

  /** The actor's policy. */
  public record ActionSpec(Distribution distribution, long[] shape, DType dtype, long numActions) {
    @Override
    public String toString() {
      return "ActionSpec(" + distribution + ", " + java.util.Arrays.toString(shape) + ", " + dtype
          + ", " + numActions + " actions)";
    }
  }

  /** A server-held model; gamma and lmbda are the defaults of requests that leave them unset. */
  public record ModelInfo(
      String name,
      List<InputSpec> inputs,
      boolean hasValueNetwork,
      boolean hasActorNetwork,
      ActionSpec action,
      long parameterVersion,
      double gamma,
      double lmbda,
      String device,
      DType parameterDtype) {
    static ModelInfo of(dev.advantageservice.v1.ModelInfo w) {
      List<InputSpec> inputs = new ArrayList<>();
      for (TensorSpec s : w.getInputsList()) {
        inputs.add(new InputSpec(s.getName(), longs(s.getShapeList()), s.getDtype()));
      }
      dev.advantageservice.v1.ActionSpec a = w.getAction();
      return new ModelInfo(
          w.getName(),
          Collections.unmodifiableList(inputs),
          w.getHasValueNetwork(),
          w.getHasActorNetwork(),
          new ActionSpec(a.getDistribution(), longs(a.getShapeList()), a.getDtype(), a.getNumActions()),
          w.getParameterVersion(),
          w.getDefaults().getGamma(),
          w.getDefaults().getLmbda(),
          w.getDevice(),
          w.getParameterDtype());
    }
  }

  /** A model's parameters: "value_network.<name>" / "actor_network.<name>" → the full tensor. */
  public record Parameters(String modelName, long parameterVersion, Map<String, Tensor> tensors) {}

  /** The answer of SetParameters: the model, its version after the update, tensors replaced. */
  public record SetParametersResult(String modelName, long parameterVersion, long tensorsUpdated) {}

  static long[] longs(List<Long> values) {
    return values.stream().mapToLong(Long::longValue).toArray();
  }
}
