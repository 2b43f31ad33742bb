package dev.advantageservice.client;

import dev.advantageservice.client.Results.AdvantageResult;
import dev.advantageservice.client.Results.LossResult;
import dev.advantageservice.client.Results.ModelInfo;
import dev.advantageservice.client.Results.Parameters;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;

/** The README's usage, compiled with the tests (`build.sh test`), not run: it needs a server. */
final class UsageExample {
  private UsageExample() {}

  public static void main(String[] args) {
    long B = 2, T = 5; // per-step tensors are [*B, T]: time last, no trailing 1
    int n = (int) (B * T);
    try (AdvantageClient client = AdvantageClient.builder("localhost:50051")
        .timeout(Duration.ofSeconds(10)).build()) {
      Trajectory trajectory = Trajectory.builder()
          .reward(Tensor.float32(new float[n], B, T))
          .done(Tensor.bools(new boolean[n], B, T))
          .terminated(Tensor.bools(new boolean[n], B, T)) // optional; absent = done
          .observation("observation", Tensor.float32(new float[n * 4], B, T, 4))
          .nextObservation("observation", Tensor.float32(new float[n * 4], B, T, 4))
          .action(Tensor.int64(new long[n], B, T))
          .sampleLogProb(Tensor.float32(new float[n], B, T))
          .build();
      AdvantageResult r = client.computeAdvantage(new AdvantageRequest(trajectory)
          .estimator(Estimator.gae().gamma(0.99).lmbda(0.95)));
      double[] advantage = r.advantage().toDoubles(); // [B*T], row-major
      System.out.println(advantage[0] + " " + r.modelName() + " " + r.parameterVersion());

      LossResult loss = client.computeLoss(new LossRequest(trajectory)
          .loss(Loss.clipPpo().clipEpsilon(0.1).entropyCoeff(0.01)));
      System.out.println(loss.loss() + " " + loss.metrics().get("loss_objective"));

      List<ModelInfo> models = client.listModels();
      ModelInfo model = client.getModel(""); // "" = the server's default model
      Parameters actor = client.getParameters("", List.of("actor_network."), 0, null);
      System.out.println(models.size() + " " + model + " " + actor.tensors().keySet());
      Results.SetParametersResult set =
          client.setParameters("demo", actor.tensors(), actor.parameterVersion(), 0);
      System.out.println(set.parameterVersion());
      try (Watch watch = client.watchModels(List.of("demo"))) { // current version, then each new one
        System.out.println(watch.next());
      }
    } catch (AdvantageException e) {
      if (e.code() == Status.Code.INVALID_ARGUMENT) {
        System.out.println(e.details()); // names the field
      }
    }
  }
}
