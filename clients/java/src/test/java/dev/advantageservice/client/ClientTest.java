package dev.advantageservice.client;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.Message;
import dev.advantageservice.client.Results.AdvantageResult;
import dev.advantageservice.client.Results.LossResult;
import dev.advantageservice.client.Results.ModelInfo;
import dev.advantageservice.client.Results.Parameters;
import dev.advantageservice.v1.ComputeAdvantageRequest;
import dev.advantageservice.v1.ComputeLossRequest;
import dev.advantageservice.v1.CriticLoss;
import dev.advantageservice.v1.DType;
import dev.advantageservice.v1.Distribution;
import dev.advantageservice.v1.GetModelRequest;
import dev.advantageservice.v1.GetParametersRequest;
import dev.advantageservice.v1.ListModelsRequest;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The Java client's tests, against real advantage-service servers: a plain runner (no JUnit) that
 * prints one line per test in Go's verbose format ({@code --- PASS: name (0.01s)}, subtests
 * {@code name/case}) and exits 1 when any fails. tests/clients/test_java_client.py starts the
 * servers and sets the variables below; by hand, against `make serve`:
 * {@code ADVANTAGE_TEST_TARGET=127.0.0.1:50051 clients/java/build.sh test computeAdvantageHandWorked}
 *
 * <ul>
 *   <li>ADVANTAGE_TEST_TARGET: a server with the demo model (plaintext, no token)
 *   <li>ADVANTAGE_TEST_CASES: the reference cases (tests/support/client_cases.py): TorchRL's numbers
 *   <li>ADVANTAGE_TEST_TOKEN_TARGET: a server started with auth token ADVANTAGE_TEST_TOKEN
 *   <li>ADVANTAGE_TEST_TLS_TARGET: a TLS server; ADVANTAGE_TEST_CERTS holds ca.crt, other-ca.crt, ...
 *   <li>ADVANTAGE_TEST_MTLS_TARGET: a TLS server that wants client certificates signed by ca.crt
 *   <li>ADVANTAGE_TEST_GOLDEN: proto/testdata (golden requests and answers)
 *   <li>ADVANTAGE_TEST_REFUSING_TARGET: a server SERVING by health that answers every call UNAVAILABLE
 * </ul>
 * A test whose variable is missing fails: none is skipped.
 */
public final class ClientTest {
  /** A failed check. */
  static final class Failure extends RuntimeException {
    Failure(String message) {
      super(message);
    }
  }

  interface Body {
    void run() throws Exception;
  }

  private final List<String> filters;
  private int failed;
  private int ran;

  private ClientTest(List<String> filters) {
    this.filters = filters;
  }

  public static void main(String[] args) {
    ClientTest suite = new ClientTest(Arrays.asList(args));
    suite.all();
    System.out.println(suite.failed == 0 && suite.ran > 0 ? "PASS" : "FAIL");
    System.out.println("ran " + suite.ran + " tests, " + suite.failed + " failed");
    System.exit(suite.failed == 0 && suite.ran > 0 ? 0 : 1);
  }

  private boolean selected(String name) {
    return filters.isEmpty() || filters.stream().anyMatch(f -> name.equals(f) || name.startsWith(f + "/"));
  }

  /** Runs one test (or subtest "parent/case"); prints its line. */
  private void test(String name, Body body) {
    if (!selected(name)) {
      return;
    }
    ran++;
    long start = System.nanoTime();
    String indent = name.contains("/") ? "    " : "";
    try {
      body.run();
      System.out.printf("%s--- PASS: %s (%.2fs)%n", indent, name, (System.nanoTime() - start) / 1e9);
    } catch (Throwable e) {
      failed++;
      System.out.printf("%s--- FAIL: %s (%.2fs)%n", indent, name, (System.nanoTime() - start) / 1e9);
      System.out.println(indent + "    " + e);
      if (!(e instanceof Failure)) {
        e.printStackTrace(System.out);
      }
    }
    System.out.flush();
  }

  private void all() {
    test("tensorEncodingIsTheContractsWorkedExample", ClientTest::tensorEncodingIsTheContractsWorkedExample);
    test("malformedTensorIsRefusedNamingTheField", ClientTest::malformedTensorIsRefusedNamingTheField);
    test("channelTarget", ClientTest::channelTarget);
    test("listModelsAndGetModel", ClientTest::listModelsAndGetModel);
    test("getParametersReassemblesChunks", ClientTest::getParametersReassemblesChunks);
    test("setParametersRoundTrip", ClientTest::setParametersRoundTrip);
    test("watchModelsSeesAWrite", ClientTest::watchModelsSeesAWrite);
    test("computeAdvantageHandWorked", ClientTest::computeAdvantageHandWorked);
    test("autoFormSendsCompactWhenObservationsChain", FormTest::autoFormSendsCompactWhenObservationsChain);
    test("autoFormSendsFullWhenObservationsDoNotChain", FormTest::autoFormSendsFullWhenObservationsDoNotChain);
    test("autoFormWithAgentsSendsFull", FormTest::autoFormWithAgentsSendsFull);
    test("compactFormRefusesObservationsThatDoNotChain", FormTest::compactFormRefusesObservationsThatDoNotChain);
    test("invalidArgumentNamesTheField", ClientTest::invalidArgumentNamesTheField);
    test("versionsAreChecked", this::versionsAreChecked);
    test("unreachableServerIsUnavailable", ClientTest::unreachableServerIsUnavailable);
    test("listOfServersIsBalancedAndUnavailableRetried", ClientTest::listOfServersIsBalancedAndUnavailableRetried);
    test("tokenIsSentWithEveryCall", ClientTest::tokenIsSentWithEveryCall);
    test("tls", ClientTest::tls);
    test("mutualTls", ClientTest::mutualTls);
    referenceCases();
    golden();
  }

  // ---- helpers --------------------------------------------------------------------------------

  static String env(String name) {
    String value = System.getenv(name);
    if (value == null || value.isEmpty()) {
      throw new Failure(name + " is not set (see the top of ClientTest.java)");
    }
    return value;
  }

  static void check(boolean condition, String message) {
    if (!condition) {
      throw new Failure(message);
    }
  }

  static AdvantageClient.Builder client(String target) {
    return AdvantageClient.builder(target).timeout(Duration.ofSeconds(60));
  }

  static AdvantageClient demo() {
    return client(env("ADVANTAGE_TEST_TARGET")).build();
  }

  /** Runs body, which must throw AdvantageException with code and a message holding fragments. */
  static AdvantageException expectStatus(Status.Code code, Body body, String... fragments)
      throws Exception {
    try {
      body.run();
    } catch (AdvantageException e) {
      check(e.code() == code, "want " + code + ", got " + e);
      for (String fragment : fragments) {
        check(e.details().contains(fragment), "message \"" + e.details() + "\" lacks \"" + fragment + "\"");
      }
      return e;
    }
    throw new Failure("want " + code + ", the call succeeded");
  }

  static void close(String what, double[] got, double[] want, double rtol, double atol) {
    check(got.length == want.length, what + ": " + got.length + " values, want " + want.length);
    for (int i = 0; i < want.length; i++) {
      if (!(Math.abs(got[i] - want[i]) <= atol + rtol * Math.abs(want[i]))) {
        throw new Failure(String.format("%s[%d] = %.17g, want %.17g (rtol %g, atol %g)",
            what, i, got[i], want[i], rtol, atol));
      }
    }
  }

  // ---- without a server -----------------------------------------------------------------------

  /** The worked example of proto/README.md: float32 [[1, 2], [3, 4]] and its 24 wire bytes. */
  static void tensorEncodingIsTheContractsWorkedExample() {
    Tensor t = Tensor.float32(new float[] {1, 2, 3, 4}, 2, 2);
    String raw = "0000803f000000400000404000008040";
    check(HexFormat.of().formatHex(t.raw()).equals(raw), "raw " + HexFormat.of().formatHex(t.raw()));
    String wire = HexFormat.of().formatHex(t.toProto("x").toByteArray());
    check(wire.equals("0801120202021a10" + raw), "wire " + wire);
    String done = HexFormat.of().formatHex(
        Tensor.bools(new boolean[] {false, true}, 1, 2).toProto("x").toByteArray());
    check(done.equals("0803120201021a020001"), "bool wire " + done);
    double[] back = Tensor.float64(new double[] {0.1, -2.5e300}, 2).toDoubles();
    check(back[0] == 0.1 && back[1] == -2.5e300, "float64 round trip " + Arrays.toString(back));
    check(Tensor.float32(new float[] {0.1f}, 1).toDoubles()[0] == (double) 0.1f, "float32 widening");
  }

  static void malformedTensorIsRefusedNamingTheField() {
    Trajectory bad = Trajectory.builder()
        .reward(Tensor.float64(new double[] {1, 2, 3}, 2, 2))
        .done(Tensor.bools(new boolean[4], 2, 2))
        .build();
    try {
      new AdvantageRequest(bad).toProto();
      throw new Failure("a 3-value [2, 2] reward was accepted");
    } catch (IllegalArgumentException e) {
      check(e.getMessage().startsWith("trajectory.reward: shape [2, 2]"), e.getMessage());
    }
    Trajectory ok = Trajectory.builder()
        .reward(Tensor.float64(new double[2], 2)).done(Tensor.bools(new boolean[2], 2)).build();
    try {
      new AdvantageRequest(ok).estimator(Estimator.gae().gamma(Tensor.float64(new double[1], 2)));
      throw new Failure("a malformed per-step gamma was accepted");
    } catch (IllegalArgumentException e) {
      check(e.getMessage().startsWith("gae.gamma.per_step:"), e.getMessage());
    }
  }

  static void channelTarget() {
    check(AdvantageClient.channelTarget(List.of("10.0.0.7:50051", "10.0.0.8:50052"))
        .equals("ipv4:///10.0.0.7:50051,10.0.0.8:50052"), "ipv4 list");
    check(AdvantageClient.channelTarget(List.of("[::1]:1", "[::2]:2")).equals("ipv6:///[::1]:1,[::2]:2"),
        "ipv6 list");
    for (List<String> bad : List.of(List.of("localhost:1"), List.of("10.0.0.1:1", "[::1]:2"), List.<String>of())) {
      try {
        AdvantageClient.channelTarget(bad);
        throw new Failure(bad + " accepted");
      } catch (IllegalArgumentException expected) {
        // refused
      }
    }
  }

  // ---- models and parameters ------------------------------------------------------------------

  static void listModelsAndGetModel() throws Exception {
    try (AdvantageClient client = demo()) {
      List<ModelInfo> models = client.listModels();
      check(models.size() == 1 && models.get(0).name().equals("demo"), "models " + models);
      ModelInfo m = client.getModel("");
      // The demo model: CartPole-sized networks, 4 float32 inputs, 2 categorical actions.
      check(m.name().equals("demo") && m.hasValueNetwork() && m.hasActorNetwork()
          && m.inputs().size() == 1 && m.inputs().get(0).name().equals("observation")
          && Arrays.equals(m.inputs().get(0).shape(), new long[] {4})
          && m.inputs().get(0).dtype() == DType.DTYPE_FLOAT32
          && m.action().distribution() == Distribution.DISTRIBUTION_CATEGORICAL
          && m.action().numActions() == 2 && m.gamma() == 0.99 && m.lmbda() == 0.95
          && m.parameterDtype() == DType.DTYPE_FLOAT32, "demo model " + m);
      expectStatus(Status.Code.NOT_FOUND, () -> client.getModel("no-such-model"), "no-such-model", "demo");
    }
  }

  static void getParametersReassemblesChunks() {
    try (AdvantageClient client = demo()) {
      Parameters whole = client.getParameters("");
      check(whole.modelName().equals("demo") && whole.tensors().size() == 10, "parameters " + whole);
      // demo_networks(): value 4→64→64→1 and actor 4→64→2 (nn.Linear weights are [out, in]).
      Map<String, long[]> shapes = Map.of(
          "value_network.0.weight", new long[] {64, 4}, "value_network.2.weight", new long[] {64, 64},
          "value_network.4.bias", new long[] {1}, "actor_network.0.weight", new long[] {64, 4},
          "actor_network.2.weight", new long[] {2, 64}, "actor_network.2.bias", new long[] {2});
      for (var e : shapes.entrySet()) {
        Tensor t = whole.tensors().get(e.getKey());
        check(t != null && Arrays.equals(t.shape(), e.getValue()) && t.dtype() == DType.DTYPE_FLOAT32,
            e.getKey() + ": " + t);
      }
      // 100-byte chunks split every weight into many pieces; the reassembled bytes are the same.
      Parameters pieces = client.getParameters("demo", List.of("actor_network."), 100, null);
      check(pieces.tensors().size() == 4 && pieces.parameterVersion() == whole.parameterVersion(),
          "actor parameters " + pieces.tensors().keySet());
      for (var e : pieces.tensors().entrySet()) {
        check(Arrays.equals(e.getValue().raw(), whole.tensors().get(e.getKey()).raw()),
            e.getKey() + " differs when chunked");
      }
    }
  }

  /**
   * SetParameters on the token server (the demo server's version must stay 0 for the golden
   * cases): the parameters read back, sent in 100-byte pieces with compare-and-set, come back
   * bit-identical at the next version; a stale version and a wrong shape change nothing.
   */
  static void setParametersRoundTrip() throws Exception {
    try (AdvantageClient client = client(env("ADVANTAGE_TEST_TOKEN_TARGET"))
        .token(env("ADVANTAGE_TEST_TOKEN")).build()) {
      Parameters before = client.getParameters("demo");
      Tensor bias = before.tensors().get("actor_network.2.bias");
      float[] values = bias.toFloats();
      for (int i = 0; i < values.length; i++) values[i] /= 2; // a visible write
      Map<String, Tensor> changed = new java.util.TreeMap<>(before.tensors());
      changed.put("actor_network.2.bias", Tensor.float32(values, bias.shape()));
      long version = before.parameterVersion();
      Results.SetParametersResult result = client.setParameters("demo", changed, version, 100);
      check(result.modelName().equals("demo") && result.parameterVersion() == version + 1
          && result.tensorsUpdated() == 10, "answer " + result);
      Parameters after = client.getParameters("demo");
      check(after.parameterVersion() == version + 1, "read back at " + after.parameterVersion());
      for (var e : changed.entrySet()) {
        check(Arrays.equals(after.tensors().get(e.getKey()).raw(), e.getValue().raw()),
            e.getKey() + " differs after the write");
      }
      expectStatus(Status.Code.FAILED_PRECONDITION, () -> client.setParameters("demo", changed, version, 0));
      Map<String, Tensor> wrong = Map.of("actor_network.2.bias", Tensor.float32(new float[] {1, 2, 3}, 3));
      expectStatus(Status.Code.INVALID_ARGUMENT, () -> client.setParameters("demo", wrong, null, 0),
          "actor_network.2.bias");
      check(client.getModel("demo").parameterVersion() == version + 1, "version changed by refused writes");
    }
  }

  /**
   * WatchModels on the token server: the current version first, then the one a write commits; an
   * unknown model is NOT_FOUND; close ends the stream.
   */
  static void watchModelsSeesAWrite() throws Exception {
    try (AdvantageClient client = client(env("ADVANTAGE_TEST_TOKEN_TARGET"))
        .token(env("ADVANTAGE_TEST_TOKEN")).build()) {
      Parameters head = client.getParameters("demo", List.of("value_network.4."), 0, null);
      Watch watch = client.watchModels(List.of("demo"));
      try (watch) {
        Watch.Version now = watch.next();
        check(now.equals(new Watch.Version("demo", head.parameterVersion())), "first message " + now);
        client.setParameters("demo", head.tensors(), head.parameterVersion(), 0);
        Watch.Version next = watch.next();
        check(next.parameterVersion() == head.parameterVersion() + 1, "after the write " + next);
      }
      expectStatus(Status.Code.CANCELLED, watch::next);
      try (Watch unknown = client.watchModels(List.of("no-such-model"))) {
        expectStatus(Status.Code.NOT_FOUND, unknown::next, "no-such-model");
      }
    }
  }

  // ---- ComputeAdvantage -----------------------------------------------------------------------

  /**
   * GAE by hand, γ = 0.5, λ = 0.5 (γλ = 0.25), one row of three steps, the last one terminated:
   * δ2 = 1 − 3 = −2 (no bootstrap); δ1 = 0 + 0.5·3 − 2 = −0.5, A1 = −0.5 + 0.25·(−2) = −1;
   * δ0 = 2 + 0.5·2 − 1 = 2, A0 = 2 + 0.25·(−1) = 1.75; value_target = A + V = [2.75, 1, 1].
   */
  static void computeAdvantageHandWorked() {
    try (AdvantageClient client = demo()) {
      Trajectory t = Trajectory.builder()
          .reward(Tensor.float64(new double[] {2, 0, 1}, 1, 3))
          .done(Tensor.bools(new boolean[] {false, false, true}, 1, 3))
          .terminated(Tensor.bools(new boolean[] {false, false, true}, 1, 3))
          .stateValue(Tensor.float64(new double[] {1, 2, 3}, 1, 3))
          .nextStateValue(Tensor.float64(new double[] {2, 3, 100}, 1, 3)) // 100: never read
          .build();
      AdvantageResult r = client.computeAdvantage(
          new AdvantageRequest(t).estimator(Estimator.gae().gamma(0.5).lmbda(0.5)));
      close("advantage", r.advantage().toDoubles(), new double[] {1.75, -1, -2}, 0, 0);
      close("value_target", r.valueTarget().toDoubles(), new double[] {2.75, 1, 1}, 0, 0);
      check(r.advantage().dtype() == DType.DTYPE_FLOAT64
          && Arrays.equals(r.advantage().shape(), new long[] {1, 3}), "advantage " + r.advantage());
      check(r.modelName().equals("demo") && r.stateValue() == null, "answer " + r);
    }
  }

  static Trajectory small(long... rewardShape) {
    int n = (int) Arrays.stream(rewardShape).reduce(1, (a, b) -> a * b);
    Tensor value = Tensor.float64(new double[8], 2, 4);
    return Trajectory.builder().reward(Tensor.float64(new double[n], rewardShape))
        .done(Tensor.bools(new boolean[8], 2, 4)).stateValue(value).nextStateValue(value).build();
  }

  static void invalidArgumentNamesTheField() throws Exception {
    try (AdvantageClient client = demo()) {
      expectStatus(Status.Code.INVALID_ARGUMENT,
          () -> client.computeAdvantage(new AdvantageRequest(small(2, 5))), "trajectory.", "[2, 4]", "[2, 5]");
      expectStatus(Status.Code.INVALID_ARGUMENT, () -> client.computeAdvantage(
          new AdvantageRequest(small(2, 4)).estimator(Estimator.gae().gamma(1.5))), "gae.gamma", "1.5");
      expectStatus(Status.Code.INVALID_ARGUMENT, () -> client.computeAdvantage(
          new AdvantageRequest(small(2, 4)).estimator(Estimator.vtrace().rhoThresh(-1))), "vtrace.rho_thresh");
      expectStatus(Status.Code.NOT_FOUND, () -> client.computeAdvantage(
          new AdvantageRequest(small(2, 4)).model("no-such-model")), "no-such-model");
    }
  }

  void versionsAreChecked() throws Exception {
    try (AdvantageClient client = demo()) {
      expectStatus(Status.Code.FAILED_PRECONDITION, () -> client.computeAdvantage(
          new AdvantageRequest(small(2, 4)).minParameterVersion(1L << 40)));
      long version = client.getModel("demo").parameterVersion();
      AdvantageResult again = client.computeAdvantage(
          new AdvantageRequest(small(2, 4)).minParameterVersion(version));
      check(again.parameterVersion() >= version, "read at version " + version);
      // A compare-and-set update at a version the model is not at is refused; nothing changes.
      LossRequest update = lossRequest("a2c").applyUpdate(true).expectedParameterVersion(version + 1000);
      expectStatus(Status.Code.FAILED_PRECONDITION, () -> client.computeLoss(update));
      check(client.getModel("demo").parameterVersion() == version, "version changed by a refused update");
    }
  }

  static void unreachableServerIsUnavailable() throws Exception {
    int port;
    try (ServerSocket socket = new ServerSocket(0)) {
      port = socket.getLocalPort(); // nobody listens there once closed
    }
    try (AdvantageClient client = client("127.0.0.1:" + port).serviceConfig(null).build()) {
      expectStatus(Status.Code.UNAVAILABLE, client::listModels);
    }
  }

  /**
   * A list of two servers, one refusing every call: round_robin sends calls to both, and the
   * default service config retries each refused one on the other server (the test's driver checks
   * that the refusing server was called). With gRPC's defaults (pick_first on the first address,
   * no retries) the refusal reaches the caller.
   */
  static void listOfServersIsBalancedAndUnavailableRetried() throws Exception {
    String target = AdvantageClient.channelTarget(
        List.of(env("ADVANTAGE_TEST_REFUSING_TARGET"), env("ADVANTAGE_TEST_TARGET")));
    try (AdvantageClient balanced = client(target).build();
        AdvantageClient plain = client(target).serviceConfig(null).build()) {
      for (int i = 0; i < 10; i++) {
        check(balanced.listModels().size() == 1, "call " + i);
      }
      expectStatus(Status.Code.UNAVAILABLE, plain::listModels, "refusing server");
    }
  }

  // ---- auth and TLS ---------------------------------------------------------------------------

  static void tokenIsSentWithEveryCall() throws Exception {
    String target = env("ADVANTAGE_TEST_TOKEN_TARGET");
    String token = env("ADVANTAGE_TEST_TOKEN");
    try (AdvantageClient none = client(target).build();
        AdvantageClient wrong = client(target).token(token + "x").build();
        AdvantageClient right = client(target).token(token).build()) {
      expectStatus(Status.Code.UNAUTHENTICATED, none::listModels);
      expectStatus(Status.Code.UNAUTHENTICATED, wrong::listModels);
      check(right.listModels().size() == 1, "models with the token");
      // The generated stub on the same channel carries the token too (unary and streaming).
      check(right.stub().getModel(GetModelRequest.getDefaultInstance()).getModel().getName().equals("demo"),
          "stub GetModel");
      check(!right.getParameters("").tensors().isEmpty(), "GetParameters with the token");
    }
  }

  static byte[] pem(String name) throws IOException {
    return Files.readAllBytes(Path.of(env("ADVANTAGE_TEST_CERTS"), name));
  }

  static void tls() throws Exception {
    String target = env("ADVANTAGE_TEST_TLS_TARGET");
    try (AdvantageClient trusted = client(target).tls(TlsOptions.trusting(pem("ca.crt"))).build()) {
      check(trusted.getModel("").name().equals("demo"), "TLS GetModel");
    }
    try (AdvantageClient plaintext = client(target).serviceConfig(null).build();
        AdvantageClient untrusted = client(target).serviceConfig(null)
            .tls(TlsOptions.trusting(pem("other-ca.crt"))).build()) {
      expectStatus(Status.Code.UNAVAILABLE, () -> plaintext.getModel(""));
      expectStatus(Status.Code.UNAVAILABLE, () -> untrusted.getModel(""));
    }
  }

  static void mutualTls() throws Exception {
    String target = env("ADVANTAGE_TEST_MTLS_TARGET");
    TlsOptions with = new TlsOptions(pem("ca.crt"), pem("client.crt"), pem("client.key"), null);
    try (AdvantageClient client = client(target).tls(with).build()) {
      check(client.getModel("").name().equals("demo"), "mutual TLS GetModel");
    }
    try (AdvantageClient without = client(target).serviceConfig(null)
        .tls(TlsOptions.trusting(pem("ca.crt"))).build()) {
      expectStatus(Status.Code.UNAVAILABLE, () -> without.getModel(""));
    }
    try {
      new TlsOptions(pem("ca.crt"), null, pem("client.key"), null);
      throw new Failure("half a key pair accepted");
    } catch (IllegalArgumentException e) {
      check(e.getMessage().contains("together (mutual TLS), or neither"), e.getMessage());
    }
  }

  // ---- TorchRL's numbers (ADVANTAGE_TEST_CASES) -----------------------------------------------

  /** A JSON tensor {"dtype", "shape", and "data" or "values"} as a Tensor. */
  static Tensor tensor(JsonObject json) {
    long[] shape = new long[json.getAsJsonArray("shape").size()];
    for (int i = 0; i < shape.length; i++) {
      shape[i] = json.getAsJsonArray("shape").get(i).getAsLong();
    }
    JsonArray data = json.has("data") ? json.getAsJsonArray("data") : json.getAsJsonArray("values");
    int n = data.size();
    switch (json.get("dtype").getAsString()) {
      case "float64": {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) v[i] = data.get(i).getAsDouble();
        return Tensor.float64(v, shape);
      }
      case "float32": {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) data.get(i).getAsDouble();
        return Tensor.float32(v, shape);
      }
      case "bool": {
        boolean[] v = new boolean[n];
        for (int i = 0; i < n; i++) v[i] = data.get(i).getAsBoolean();
        return Tensor.bools(v, shape);
      }
      case "int64": {
        long[] v = new long[n];
        for (int i = 0; i < n; i++) v[i] = data.get(i).getAsLong();
        return Tensor.int64(v, shape);
      }
      default:
        throw new Failure("dtype " + json.get("dtype"));
    }
  }

  static double[] doubles(JsonArray values) {
    double[] out = new double[values.size()];
    for (int i = 0; i < out.length; i++) out[i] = values.get(i).getAsDouble();
    return out;
  }

  /** A trajectory object of JSON tensors (and observation maps) through the typed builder. */
  static Trajectory trajectory(JsonObject json, String form) {
    Trajectory.Builder b = Trajectory.builder();
    for (var entry : json.entrySet()) {
      JsonObject value = entry.getValue().getAsJsonObject();
      switch (entry.getKey()) {
        case "observation" -> value.entrySet().forEach(e -> b.observation(e.getKey(), tensor(e.getValue().getAsJsonObject())));
        case "next_observation" -> value.entrySet().forEach(e -> b.nextObservation(e.getKey(), tensor(e.getValue().getAsJsonObject())));
        case "reward" -> b.reward(tensor(value));
        case "done" -> b.done(tensor(value));
        case "terminated" -> b.terminated(tensor(value));
        case "state_value" -> b.stateValue(tensor(value));
        case "next_state_value" -> b.nextStateValue(tensor(value));
        case "action" -> b.action(tensor(value));
        case "sample_log_prob" -> b.sampleLogProb(tensor(value));
        case "log_prob" -> b.logProb(tensor(value));
        default -> throw new Failure("trajectory key " + entry.getKey());
      }
    }
    if (form != null) {
      b.form(switch (form) {
        case "full" -> Trajectory.Form.FULL;
        case "compact" -> Trajectory.Form.COMPACT;
        default -> throw new Failure("form " + form);
      });
    }
    return b.build();
  }

  /** Reads knobs by name; fails on any knob left unread. */
  static final class Knobs {
    private final Map<String, JsonElement> left = new LinkedHashMap<>();

    Knobs(JsonObject knobs) {
      if (knobs != null) knobs.entrySet().forEach(e -> left.put(e.getKey(), e.getValue()));
    }

    boolean has(String name) {
      return left.containsKey(name);
    }

    JsonElement take(String name) {
      return left.remove(name);
    }

    void done() {
      check(left.isEmpty(), "knobs this test does not map: " + left);
    }
  }

  /** The typed estimator of {"kind": K, "knobs": {...}} (γ, λ: a number or {"per_step": tensor}). */
  static Estimator estimator(String kind, JsonObject knobsJson) {
    Knobs k = new Knobs(knobsJson);
    Estimator out;
    switch (kind) {
      case "td0" -> {
        Estimator.TD0 e = Estimator.td0();
        if (k.has("gamma")) coefficient(k.take("gamma"), e::gamma, e::gamma);
        if (k.has("average_rewards")) e.averageRewards(k.take("average_rewards").getAsBoolean());
        out = e;
      }
      case "td1" -> {
        Estimator.TD1 e = Estimator.td1();
        if (k.has("gamma")) coefficient(k.take("gamma"), e::gamma, e::gamma);
        if (k.has("average_rewards")) e.averageRewards(k.take("average_rewards").getAsBoolean());
        out = e;
      }
      case "td_lambda" -> {
        Estimator.TDLambda e = Estimator.tdLambda();
        if (k.has("gamma")) coefficient(k.take("gamma"), e::gamma, e::gamma);
        if (k.has("lmbda")) coefficient(k.take("lmbda"), e::lmbda, e::lmbda);
        if (k.has("average_rewards")) e.averageRewards(k.take("average_rewards").getAsBoolean());
        out = e;
      }
      case "gae" -> {
        Estimator.GAE e = Estimator.gae();
        if (k.has("gamma")) coefficient(k.take("gamma"), e::gamma, e::gamma);
        if (k.has("lmbda")) coefficient(k.take("lmbda"), e::lmbda, e::lmbda);
        if (k.has("average_gae")) e.averageGae(k.take("average_gae").getAsBoolean());
        out = e;
      }
      case "vtrace" -> {
        Estimator.VTrace e = Estimator.vtrace();
        if (k.has("gamma")) coefficient(k.take("gamma"), e::gamma, e::gamma);
        if (k.has("rho_thresh")) e.rhoThresh(k.take("rho_thresh").getAsDouble());
        if (k.has("c_thresh")) e.cThresh(k.take("c_thresh").getAsDouble());
        if (k.has("lmbda")) e.lmbda(k.take("lmbda").getAsDouble());
        if (k.has("rho_pg_thresh")) e.rhoPgThresh(k.take("rho_pg_thresh").getAsDouble());
        if (k.has("average_adv")) e.averageAdv(k.take("average_adv").getAsBoolean());
        out = e;
      }
      default -> throw new Failure("estimator " + kind);
    }
    k.done();
    return out;
  }

  interface ScalarSetter {
    Object set(double value);
  }

  interface TensorSetter {
    Object set(Tensor value);
  }

  static void coefficient(JsonElement value, ScalarSetter scalar, TensorSetter perStep) {
    if (value.isJsonPrimitive()) {
      scalar.set(value.getAsDouble());
    } else {
      perStep.set(tensor(value.getAsJsonObject().getAsJsonObject("per_step")));
    }
  }

  static <S extends Loss.PolicyLoss<S>> S options(S loss, Knobs k) {
    if (k.has("entropy_bonus")) loss.entropyBonus(k.take("entropy_bonus").getAsBoolean());
    if (k.has("entropy_coeff")) loss.entropyCoeff(k.take("entropy_coeff").getAsDouble());
    if (k.has("critic_coeff")) loss.criticCoeff(k.take("critic_coeff").getAsDouble());
    if (k.has("normalize_advantage")) loss.normalizeAdvantage(k.take("normalize_advantage").getAsBoolean());
    if (k.has("clip_value")) loss.clipValue(k.take("clip_value").getAsDouble());
    if (k.has("loss_critic_type")) {
      String name = k.take("loss_critic_type").getAsString().toUpperCase().replace("CRITIC_LOSS_", "");
      loss.lossCriticType(CriticLoss.valueOf("CRITIC_LOSS_" + name));
    }
    return loss;
  }

  static Loss loss(String kind, JsonObject knobsJson) {
    Knobs k = new Knobs(knobsJson);
    Loss out;
    switch (kind) {
      case "ppo_clip" -> {
        Loss.ClipPPO l = options(Loss.clipPpo(), k);
        if (k.has("clip_epsilon")) l.clipEpsilon(k.take("clip_epsilon").getAsDouble());
        if (k.has("clip_epsilon_low")) l.clipEpsilonLow(k.take("clip_epsilon_low").getAsDouble());
        if (k.has("clip_epsilon_high")) l.clipEpsilonHigh(k.take("clip_epsilon_high").getAsDouble());
        out = l;
      }
      case "ppo_kl" -> {
        Loss.KLPenPPO l = options(Loss.klPenPpo(), k);
        if (k.has("dtarg")) l.dtarg(k.take("dtarg").getAsDouble());
        if (k.has("beta")) l.beta(k.take("beta").getAsDouble());
        if (k.has("increment")) l.increment(k.take("increment").getAsDouble());
        if (k.has("decrement")) l.decrement(k.take("decrement").getAsDouble());
        out = l;
      }
      case "ppo" -> out = options(Loss.ppo(), k);
      case "a2c" -> out = options(Loss.a2c(), k);
      case "reinforce" -> out = options(Loss.reinforce(), k);
      case "impala" -> {
        Loss.Impala l = Loss.impala();
        if (k.has("gamma")) l.gamma(k.take("gamma").getAsDouble());
        if (k.has("lmbda")) l.lmbda(k.take("lmbda").getAsDouble());
        if (k.has("rho_thresh")) l.rhoThresh(k.take("rho_thresh").getAsDouble());
        if (k.has("c_thresh")) l.cThresh(k.take("c_thresh").getAsDouble());
        if (k.has("rho_pg_thresh")) l.rhoPgThresh(k.take("rho_pg_thresh").getAsDouble());
        if (k.has("entropy_coeff")) l.entropyCoeff(k.take("entropy_coeff").getAsDouble());
        if (k.has("critic_coeff")) l.criticCoeff(k.take("critic_coeff").getAsDouble());
        if (k.has("entropy_bonus")) l.entropyBonus(k.take("entropy_bonus").getAsBoolean());
        out = l;
      }
      default -> throw new Failure("loss " + kind);
    }
    k.done();
    return out;
  }

  static JsonObject cases() throws IOException {
    return JsonParser.parseString(Files.readString(Path.of(env("ADVANTAGE_TEST_CASES")))).getAsJsonObject();
  }

  /** The reference loss case {@code name} as a LossRequest. */
  static LossRequest lossRequest(String name) throws IOException {
    for (JsonElement c : cases().getAsJsonArray("loss")) {
      JsonObject o = c.getAsJsonObject();
      if (o.get("name").getAsString().equals(name)) {
        return new LossRequest(trajectory(o.getAsJsonObject("trajectory"), null))
            .loss(loss(o.get("loss").getAsString(), null));
      }
    }
    throw new Failure("no loss case " + name);
  }

  private void referenceCases() {
    JsonObject all;
    try {
      all = cases();
    } catch (Throwable e) {
      test("referenceAdvantage", () -> {
        throw e;
      });
      return;
    }
    for (JsonElement c : all.getAsJsonArray("advantage")) {
      JsonObject o = c.getAsJsonObject();
      test("referenceAdvantage/" + o.get("name").getAsString(), () -> {
        try (AdvantageClient client = demo()) {
          AdvantageResult r = client.computeAdvantage(
              new AdvantageRequest(trajectory(o.getAsJsonObject("trajectory"), null))
                  .estimator(estimator(o.get("estimator").getAsString(), o.getAsJsonObject("knobs"))));
          JsonObject expected = o.getAsJsonObject("expected");
          double tolerance = o.get("tolerance").getAsDouble();
          close("advantage", r.advantage().toDoubles(), doubles(expected.getAsJsonArray("advantage")), 0, tolerance);
          close("value_target", r.valueTarget().toDoubles(), doubles(expected.getAsJsonArray("value_target")), 0, tolerance);
          if (expected.has("state_value")) {
            check(r.stateValue() != null, "no state_value in the answer");
            close("state_value", r.stateValue().toDoubles(), doubles(expected.getAsJsonArray("state_value")), 0, tolerance);
          }
        }
      });
    }
    for (JsonElement c : all.getAsJsonArray("loss")) {
      JsonObject o = c.getAsJsonObject();
      String name = o.get("name").getAsString();
      test("referenceLoss/" + name, () -> {
        try (AdvantageClient client = demo()) {
          LossResult r = client.computeLoss(lossRequest(name));
          double rel = o.get("rel").getAsDouble();
          double abs = o.get("abs").getAsDouble();
          JsonObject expected = o.getAsJsonObject("expected");
          close("loss", new double[] {r.loss()}, new double[] {expected.get("loss").getAsDouble()}, rel, abs);
          for (var m : expected.getAsJsonObject("metrics").entrySet()) {
            Double got = r.metrics().get(m.getKey());
            check(got != null, "no metric " + m.getKey() + " in " + r.metrics());
            close(m.getKey(), new double[] {got}, new double[] {m.getValue().getAsDouble()}, rel, abs);
          }
          check(!r.updated() && r.modelName().equals("demo"), "answer " + r);
        }
      });
    }
  }

  // ---- golden vectors (proto/testdata) --------------------------------------------------------

  /**
   * Keeps the last request message the client sent, and its bytes as the method's request
   * marshaller (the one the channel uses) serialises them.
   */
  static final class Recorder implements ClientInterceptor {
    final AtomicReference<Object> sent = new AtomicReference<>();
    final AtomicReference<byte[]> bytes = new AtomicReference<>();

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<Q, R>(next.newCall(method, options)) {
        @Override
        public void sendMessage(Q message) {
          sent.set(message);
          try (java.io.InputStream stream = method.streamRequest(message)) {
            bytes.set(stream.readAllBytes());
          } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
          }
          super.sendMessage(message);
        }
      };
    }
  }

  private void golden() {
    JsonObject document;
    Path folder;
    try {
      folder = Path.of(env("ADVANTAGE_TEST_GOLDEN"));
      document = JsonParser.parseString(Files.readString(folder.resolve("cases.json"))).getAsJsonObject();
      check(document.get("format").getAsInt() == 1, "golden format " + document.get("format"));
    } catch (Throwable e) {
      test("golden", () -> {
        throw e;
      });
      return;
    }
    Recorder recorder = new Recorder();
    try (AdvantageClient client = client(env("ADVANTAGE_TEST_TARGET")).intercept(recorder).build()) {
      for (JsonElement c : document.getAsJsonArray("cases")) {
        JsonObject o = c.getAsJsonObject();
        test("golden/" + o.get("name").getAsString(), () -> goldenCase(client, recorder, folder, o));
      }
    }
  }

  static String string(JsonObject o, String key) {
    return o.has(key) ? o.get(key).getAsString() : "";
  }

  static void goldenCase(AdvantageClient client, Recorder recorder, Path folder, JsonObject c) throws Exception {
    String rpc = c.get("rpc").getAsString();
    JsonObject in = c.getAsJsonObject("input");
    JsonObject expect = c.getAsJsonObject("expect");
    byte[] golden = Files.readAllBytes(folder.resolve(c.get("request").getAsString()));
    recorder.sent.set(null);
    recorder.bytes.set(null);
    Object answer = null;
    AdvantageException error = null;
    Message want;
    try {
      switch (rpc) {
        case "ComputeAdvantage" -> {
          want = ComputeAdvantageRequest.parseFrom(golden);
          AdvantageRequest request = new AdvantageRequest(
              trajectory(in.getAsJsonObject("trajectory"), in.get("form").getAsString()))
              .model(string(in, "model"));
          if (in.has("estimator")) {
            JsonObject e = in.getAsJsonObject("estimator");
            request.estimator(estimator(e.get("kind").getAsString(), e.getAsJsonObject("knobs")));
          }
          answer = client.computeAdvantage(request);
        }
        case "ComputeLoss" -> {
          want = ComputeLossRequest.parseFrom(golden);
          LossRequest request = new LossRequest(
              trajectory(in.getAsJsonObject("trajectory"), in.get("form").getAsString()))
              .model(string(in, "model"));
          if (in.has("estimator")) {
            JsonObject e = in.getAsJsonObject("estimator");
            request.estimator(estimator(e.get("kind").getAsString(), e.getAsJsonObject("knobs")));
          }
          JsonObject l = in.getAsJsonObject("loss");
          request.loss(loss(l.get("kind").getAsString(), l.getAsJsonObject("knobs")));
          if (in.has("behaviour_distribution")) {
            for (var e : in.getAsJsonObject("behaviour_distribution").entrySet()) {
              request.behaviourDistribution(e.getKey(), tensor(e.getValue().getAsJsonObject()));
            }
          }
          if (in.has("apply_update")) request.applyUpdate(in.get("apply_update").getAsBoolean());
          if (in.has("expected_parameter_version")) {
            request.expectedParameterVersion(in.get("expected_parameter_version").getAsLong());
          }
          answer = client.computeLoss(request);
        }
        case "ListModels" -> {
          want = ListModelsRequest.parseFrom(golden);
          answer = client.listModels();
        }
        case "GetModel" -> {
          want = GetModelRequest.parseFrom(golden);
          answer = client.getModel(string(in, "model"));
        }
        case "GetParameters" -> {
          want = GetParametersRequest.parseFrom(golden);
          List<String> prefixes = new ArrayList<>();
          if (in.has("prefixes")) in.getAsJsonArray("prefixes").forEach(p -> prefixes.add(p.getAsString()));
          long chunk = in.has("max_chunk_bytes") ? in.get("max_chunk_bytes").getAsLong() : 0;
          answer = client.getParameters(string(in, "model"), prefixes, chunk, null);
        }
        default -> throw new Failure("rpc " + rpc);
      }
    } catch (AdvantageException e) {
      error = e;
      want = switch (rpc) {
        case "ComputeAdvantage" -> ComputeAdvantageRequest.parseFrom(golden);
        case "ComputeLoss" -> ComputeLossRequest.parseFrom(golden);
        case "GetModel" -> GetModelRequest.parseFrom(golden);
        case "ListModels" -> ListModelsRequest.parseFrom(golden);
        default -> GetParametersRequest.parseFrom(golden);
      };
    }
    // What the client sent is the golden request: as a message (map entries unordered), and
    // byte for byte as the channel serialises it.
    Object sent = recorder.sent.get();
    check(want.equals(sent), "sent a request that differs from " + c.get("request").getAsString()
        + ":\n got " + sent + "\nwant " + want);
    byte[] bytes = recorder.bytes.get();
    check(Arrays.equals(bytes, golden), "sent bytes differ from " + c.get("request").getAsString()
        + ":\n got " + (bytes == null ? "nothing" : HexFormat.of().formatHex(bytes))
        + "\nwant " + HexFormat.of().formatHex(golden));
    String status = expect.get("status").getAsString();
    if (!status.equals("OK")) {
      check(error != null && error.codeName().equals(status), "got " + (error == null ? "OK" : error) + ", want " + status);
      for (JsonElement fragment : expect.getAsJsonArray("message_contains")) {
        check(error.details().contains(fragment.getAsString()),
            "message \"" + error.details() + "\" lacks \"" + fragment.getAsString() + "\"");
      }
      return;
    }
    if (error != null) throw error;
    double rtol = expect.has("rtol") ? expect.get("rtol").getAsDouble() : 0;
    double atol = expect.has("atol") ? expect.get("atol").getAsDouble() : 0;
    if (answer instanceof AdvantageResult r) {
      check(r.modelName().equals(expect.get("model_name").getAsString()), "model " + r.modelName());
      check(r.parameterVersion() == expect.get("parameter_version").getAsLong(), "version " + r.parameterVersion());
      Map<String, Tensor> fields = new LinkedHashMap<>();
      fields.put("advantage", r.advantage());
      fields.put("value_target", r.valueTarget());
      fields.put("state_value", r.stateValue());
      fields.put("next_state_value", r.nextStateValue());
      for (var e : expect.getAsJsonObject("tensors").entrySet()) {
        requireTensor(e.getKey(), fields.get(e.getKey()), e.getValue().getAsJsonObject(), rtol, atol);
      }
      if (expect.has("absent")) {
        for (JsonElement name : expect.getAsJsonArray("absent")) {
          check(fields.get(name.getAsString()) == null, name + " should be absent");
        }
      }
    } else if (answer instanceof LossResult r) {
      check(r.modelName().equals(expect.get("model_name").getAsString()), "model " + r.modelName());
      check(r.parameterVersion() == expect.get("parameter_version").getAsLong(), "version " + r.parameterVersion());
      check(r.updated() == expect.get("updated").getAsBoolean(), "updated " + r.updated());
      close("loss", new double[] {r.loss()}, new double[] {expect.get("loss").getAsDouble()}, rtol, atol);
      for (var m : expect.getAsJsonObject("metrics").entrySet()) {
        Double got = r.metrics().get(m.getKey());
        check(got != null, "no metric " + m.getKey() + " in " + r.metrics());
        close(m.getKey(), new double[] {got}, new double[] {m.getValue().getAsDouble()}, rtol, atol);
      }
    } else if (answer instanceof ModelInfo m) {
      requireModel(m, expect.getAsJsonObject("model"));
    } else if (answer instanceof List<?> models) {
      JsonArray want2 = expect.getAsJsonArray("models");
      check(models.size() == want2.size(), models.size() + " models, want " + want2.size());
      for (int i = 0; i < models.size(); i++) {
        requireModel((ModelInfo) models.get(i), want2.get(i).getAsJsonObject());
      }
    } else if (answer instanceof Parameters p) {
      check(p.parameterVersion() == expect.get("parameter_version").getAsLong(), "version " + p.parameterVersion());
      JsonObject parameters = expect.getAsJsonObject("parameters");
      check(parameters.size() == p.tensors().size(), p.tensors().keySet() + " , want " + parameters.keySet());
      for (var e : parameters.entrySet()) {
        requireTensor(e.getKey(), p.tensors().get(e.getKey()), e.getValue().getAsJsonObject(), rtol, atol);
      }
    } else {
      throw new Failure("answer " + answer);
    }
  }

  static void requireTensor(String what, Tensor got, JsonObject want, double rtol, double atol) {
    check(got != null, "no " + what + " in the answer");
    Tensor expected = tensor(want);
    check(got.dtype() == expected.dtype() && Arrays.equals(got.shape(), expected.shape()),
        what + ": " + got + ", want " + expected);
    close(what, got.toDoubles(), expected.toDoubles(), rtol, atol);
  }

  static JsonArray longs(long[] values) {
    JsonArray out = new JsonArray();
    for (long v : values) out.add(v);
    return out;
  }

  /** Compares the fields cases.json lists (proto names, enum names; device is not listed). */
  static void requireModel(ModelInfo m, JsonObject want) {
    JsonObject have = new JsonObject();
    have.addProperty("name", m.name());
    JsonArray inputs = new JsonArray();
    for (var s : m.inputs()) {
      JsonObject spec = new JsonObject();
      spec.addProperty("name", s.name());
      spec.add("shape", longs(s.shape()));
      spec.addProperty("dtype", s.dtype().name());
      inputs.add(spec);
    }
    have.add("inputs", inputs);
    have.addProperty("has_value_network", m.hasValueNetwork());
    have.addProperty("has_actor_network", m.hasActorNetwork());
    JsonObject action = new JsonObject();
    action.addProperty("distribution", m.action().distribution().name());
    action.add("shape", longs(m.action().shape()));
    action.addProperty("dtype", m.action().dtype().name());
    action.addProperty("num_actions", m.action().numActions());
    have.add("action", action);
    have.addProperty("parameter_version", m.parameterVersion());
    JsonObject defaults = new JsonObject();
    defaults.addProperty("gamma", m.gamma());
    defaults.addProperty("lmbda", m.lmbda());
    have.add("defaults", defaults);
    have.addProperty("device", m.device());
    have.addProperty("parameter_dtype", m.parameterDtype().name());
    for (var e : want.entrySet()) {
      // Gson compares numbers by value (2 and 2.0 are equal), lists in order.
      check(e.getValue().equals(have.get(e.getKey())), "model " + e.getKey() + ": " + have.get(e.getKey()) + ", want " + e.getValue());
    }
  }
}
