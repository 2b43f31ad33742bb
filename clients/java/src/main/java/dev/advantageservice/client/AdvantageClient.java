package dev.advantageservice.client;

import dev.advantageservice.client.Results.AdvantageResult;
import dev.advantageservice.client.Results.LossResult;
import dev.advantageservice.client.Results.ModelInfo;
import dev.advantageservice.client.Results.Parameters;
import dev.advantageservice.client.Results.SetParametersResult;
import dev.advantageservice.v1.AdvantageServiceGrpc;
import dev.advantageservice.v1.GetModelRequest;
import dev.advantageservice.v1.GetParametersRequest;
import dev.advantageservice.v1.ListModelsRequest;
import dev.advantageservice.v1.NamedTensor;
import dev.advantageservice.v1.ParameterChunk;
import dev.advantageservice.v1.SetParametersResponse;
import dev.advantageservice.v1.WatchModelsRequest;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ClientInterceptors;
import io.grpc.Context;
import io.grpc.ForwardingClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.NettyChannelBuilder;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import java.io.ByteArrayInputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLException;

/**
 * Client of advantage-service (grpc-java over Netty).
 *
 * <pre>{@code
 * try (AdvantageClient client = AdvantageClient.builder("localhost:50051").build()) {
 *   AdvantageResult r = client.computeAdvantage(new AdvantageRequest(trajectory));
 * }
 * }</pre>
 *
 * A failed call throws {@link AdvantageException} (status code and the server's message); a
 * malformed request throws IllegalArgumentException naming the field before anything is sent.
 */
public final class AdvantageClient implements AutoCloseable {
  private static final String SERVICE = "advantage.v1.AdvantageService";
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  /** Default cap on requests and responses, in MiB (gRPC's own default is 4 MiB). */
  public static final int DEFAULT_MAX_MESSAGE_MB = 256;

  private final ManagedChannel channel;
  private final Channel intercepted;
  private final Duration timeout;

  /**
   * The service config every channel carries unless the builder says otherwise: round_robin over
   * the target's servers and up to 5 attempts of a call answered UNAVAILABLE (never
   * SetParameters), as the Python, TypeScript, C++ and Go clients. (Debian's grpc-java has no
   * grpc-services jar, so the healthCheckConfig part is not applied here.)
   */
  public static Map<String, Object> defaultServiceConfig() {
    Map<String, Object> service = Map.of("service", SERVICE);
    Map<String, Object> retry = new LinkedHashMap<>();
    retry.put("maxAttempts", 5.0);
    retry.put("initialBackoff", "0.05s");
    retry.put("maxBackoff", "1s");
    retry.put("backoffMultiplier", 2.0);
    retry.put("retryableStatusCodes", List.of("UNAVAILABLE"));
    Map<String, Object> config = new HashMap<>();
    config.put("loadBalancingConfig", List.of(Map.of("round_robin", Map.of())));
    config.put("healthCheckConfig", Map.of("serviceName", SERVICE));
    config.put(
        "methodConfig",
        List.of(
            Map.of("name", List.of(service), "retryPolicy", retry),
            Map.of("name", List.of(Map.of("service", SERVICE, "method", "SetParameters")))));
    return config;
  }

  /** Joins "ip:port" addresses (one family) into an "ipv4:///a,b" or "ipv6:///..." target. */
  public static String channelTarget(List<String> addresses) {
    if (addresses.isEmpty()) {
      throw new IllegalArgumentException("target: no addresses");
    }
    String family = null;
    for (String address : addresses) {
      int cut = address.lastIndexOf(':');
      String host = cut < 0 ? "" : address.substring(0, cut);
      String port = cut < 0 ? "" : address.substring(cut + 1);
      boolean v6 = host.startsWith("[") && host.endsWith("]");
      boolean v4 = host.matches("\\d{1,3}(\\.\\d{1,3}){3}");
      if (!port.matches("\\d+") || !(v4 || v6)) {
        throw new IllegalArgumentException("target: \"" + address + "\" in a list is not \"ip:port\""
            + " (\"[ipv6]:port\"); use a \"dns:///name:port\" target for a name that resolves to"
            + " every server");
      }
      String f = v6 ? "ipv6" : "ipv4";
      if (family != null && !family.equals(f)) {
        throw new IllegalArgumentException(
            "target: mixes IPv4 and IPv6 addresses " + String.join(", ", addresses));
      }
      family = f;
    }
    return family + ":///" + String.join(",", addresses);
  }

  /** Options of a client; {@link #build} opens the channel (connecting lazily). */
  public static final class Builder {
    private final String target;
    private TlsOptions tls;
    private String token;
    private Duration timeout;
    private int maxMessageMb = DEFAULT_MAX_MESSAGE_MB;
    private Map<String, ?> serviceConfig = defaultServiceConfig();
    private final List<ClientInterceptor> interceptors = new ArrayList<>();

    private Builder(String target) {
      this.target = target;
    }

    /** TLS (a server started with --tls-cert); default plaintext. */
    public Builder tls(TlsOptions options) {
      tls = options;
      return this;
    }

    /** Bearer token sent with every call, through {@link #stub()} too. */
    public Builder token(String value) {
      token = value;
      return this;
    }

    /** Deadline of each call; null (default) = none. */
    public Builder timeout(Duration value) {
      timeout = value;
      return this;
    }

    public Builder maxMessageMb(int value) {
      if (value <= 0) throw new IllegalArgumentException("maxMessageMb must be > 0, got " + value);
      maxMessageMb = value;
      return this;
    }

    /** The gRPC service config; null = gRPC's defaults (pick_first, no retries). */
    public Builder serviceConfig(Map<String, ?> config) {
      serviceConfig = config;
      return this;
    }

    /** An interceptor on every call (after the token's). */
    public Builder intercept(ClientInterceptor interceptor) {
      interceptors.add(interceptor);
      return this;
    }

    public AdvantageClient build() {
      return new AdvantageClient(this);
    }
  }

  /**
   * A client of {@code target}: "host:port", "dns:///name:port", or an "ipv4:///..." list
   * ({@link #channelTarget}).
   */
  public static Builder builder(String target) {
    return new Builder(target);
  }

  @SuppressWarnings("deprecation") // nameResolverFactory: the per-channel way in grpc-java 1.41
  private AdvantageClient(Builder b) {
    int limit = (int) Math.min((long) b.maxMessageMb << 20, Integer.MAX_VALUE);
    NettyChannelBuilder channelBuilder = NettyChannelBuilder.forTarget(b.target)
        .maxInboundMessageSize(limit);
    AddressListResolver list = AddressListResolver.forTarget(b.target);
    if (list != null) {
      channelBuilder.nameResolverFactory(list); // channelTarget's lists
    }
    if (b.serviceConfig != null) {
      channelBuilder.defaultServiceConfig(b.serviceConfig).enableRetry();
    }
    if (b.tls == null) {
      channelBuilder.usePlaintext();
    } else {
      channelBuilder.sslContext(sslContext(b.tls));
      if (b.tls.authority() != null) channelBuilder.overrideAuthority(b.tls.authority());
    }
    channel = channelBuilder.build();
    List<ClientInterceptor> interceptors = new ArrayList<>(b.interceptors);
    if (b.token != null && !b.token.isEmpty()) {
      interceptors.add(bearer(b.token)); // ClientInterceptors runs the last one first
    }
    intercepted = ClientInterceptors.intercept(channel, interceptors);
    timeout = b.timeout;
  }

  private static SslContext sslContext(TlsOptions tls) {
    try {
      SslContextBuilder builder = GrpcSslContexts.forClient();
      if (tls.rootCertificates() != null) {
        builder.trustManager(new ByteArrayInputStream(tls.rootCertificates()));
      }
      if (tls.certificateChain() != null) {
        builder.keyManager(
            new ByteArrayInputStream(tls.certificateChain()),
            new ByteArrayInputStream(tls.privateKey()));
      }
      return builder.build();
    } catch (SSLException | IllegalArgumentException e) {
      throw new IllegalArgumentException("tls: " + e.getMessage(), e);
    } catch (UnsupportedOperationException e) {
      // Debian's netty: no ALPN with the JDK's TLS, and netty-tcnative (OpenSSL) not loaded.
      throw new IllegalStateException("tls: gRPC needs ALPN, which this netty offers only through"
          + " netty-tcnative (OpenSSL): put netty-tcnative.jar on the classpath and run java with"
          + " -Djava.library.path=<folder holding libnetty_tcnative.so> (clients/java/build.sh"
          + " prepares build/native; see clients/java/README.md)", e);
    }
  }

  private static ClientInterceptor bearer(String token) {
    String value = "Bearer " + token;
    return new ClientInterceptor() {
      @Override
      public <Q, R> ClientCall<Q, R> interceptCall(
          MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
        return new ForwardingClientCall.SimpleForwardingClientCall<Q, R>(
            next.newCall(method, options)) {
          @Override
          public void start(Listener<R> listener, Metadata headers) {
            headers.put(AUTHORIZATION, value);
            super.start(listener, headers);
          }
        };
      }
    };
  }

  /**
   * The generated blocking stub on this client's channel (token, interceptors and service config
   * included), for SetParameters and WatchModels. Apply your own deadline to it.
   */
  public AdvantageServiceGrpc.AdvantageServiceBlockingStub stub() {
    return AdvantageServiceGrpc.newBlockingStub(intercepted);
  }

  private AdvantageServiceGrpc.AdvantageServiceBlockingStub call() {
    AdvantageServiceGrpc.AdvantageServiceBlockingStub stub = stub();
    return timeout == null ? stub : stub.withDeadlineAfter(timeout.toNanos(), TimeUnit.NANOSECONDS);
  }

  /** Advantages and value targets of a batch of trajectories. */
  public AdvantageResult computeAdvantage(AdvantageRequest request) {
    var wire = request.toProto();
    try {
      return AdvantageResult.of(call().computeAdvantage(wire));
    } catch (StatusRuntimeException e) {
      throw AdvantageException.of(e);
    }
  }

  /** A policy/critic loss on the server's networks; with applyUpdate also one optimizer step. */
  public LossResult computeLoss(LossRequest request) {
    var wire = request.toProto();
    try {
      return LossResult.of(call().computeLoss(wire));
    } catch (StatusRuntimeException e) {
      throw AdvantageException.of(e);
    }
  }

  /** Every model the server holds, sorted by name. */
  public List<ModelInfo> listModels() {
    try {
      List<ModelInfo> out = new ArrayList<>();
      for (var m : call().listModels(ListModelsRequest.getDefaultInstance()).getModelsList()) {
        out.add(ModelInfo.of(m));
      }
      return out;
    } catch (StatusRuntimeException e) {
      throw AdvantageException.of(e);
    }
  }

  /** One model ("" = the server's default); NOT_FOUND for an unknown name. */
  public ModelInfo getModel(String name) {
    try {
      return ModelInfo.of(
          call().getModel(GetModelRequest.newBuilder().setModelName(name).build()).getModel());
    } catch (StatusRuntimeException e) {
      throw AdvantageException.of(e);
    }
  }

  /**
   * A consistent snapshot of a model's parameters ("" = the default model), reassembled from
   * the chunked stream. {@code prefixes}: only names starting with one of these (empty = all);
   * {@code maxChunkBytes}: largest piece per chunk (0 = the server's 1 MiB);
   * {@code minParameterVersion}: null = any.
   */
  public Parameters getParameters(
      String model, List<String> prefixes, long maxChunkBytes, Long minParameterVersion) {
    GetParametersRequest.Builder request = GetParametersRequest.newBuilder()
        .setModelName(model)
        .addAllPrefixes(prefixes)
        .setMaxChunkBytes(maxChunkBytes);
    if (minParameterVersion != null) request.setMinParameterVersion(minParameterVersion);
    Map<String, byte[]> raw = new TreeMap<>();
    Map<String, NamedTensor> first = new TreeMap<>();
    Map<String, Long> filled = new HashMap<>();
    String name = model;
    Long version = null;
    try {
      Iterator<ParameterChunk> chunks = call().getParameters(request.build());
      while (chunks.hasNext()) {
        ParameterChunk chunk = chunks.next();
        if (!chunk.getModelName().isEmpty()) name = chunk.getModelName();
        if (chunk.hasParameterVersion()) {
          if (version == null) {
            version = chunk.getParameterVersion();
          } else if (version != chunk.getParameterVersion()) {
            throw new IllegalStateException("GetParameters: chunks of versions " + version
                + " and " + chunk.getParameterVersion() + " in one stream");
          }
        }
        for (NamedTensor nt : chunk.getTensorsList()) {
          Tensor piece = Tensor.fromProto(nt.getData());
          piece.check("parameter " + nt.getName());
          int size = Tensor.itemsize(piece.dtype());
          byte[] full = raw.get(nt.getName());
          if (full == null) {
            long n = new Tensor(piece.dtype(), Results.longs(nt.getShapeList()), new byte[0])
                .numElements();
            full = new byte[Math.toIntExact(n * size)];
            raw.put(nt.getName(), full);
            first.put(nt.getName(), nt);
          }
          long start = nt.getOffset() * size;
          if (piece.dtype() != first.get(nt.getName()).getData().getDtype()
              || start < 0 || start + piece.raw().length > full.length) {
            throw new IllegalStateException("GetParameters: a piece of " + nt.getName()
                + " does not fit (offset " + nt.getOffset() + ")");
          }
          System.arraycopy(piece.raw(), 0, full, (int) start, piece.raw().length);
          filled.merge(nt.getName(), (long) piece.raw().length, Long::sum);
        }
      }
    } catch (StatusRuntimeException e) {
      throw AdvantageException.of(e);
    }
    Map<String, Tensor> tensors = new TreeMap<>();
    for (Map.Entry<String, byte[]> e : raw.entrySet()) {
      if (filled.get(e.getKey()) != e.getValue().length) {
        throw new IllegalStateException("GetParameters: " + e.getKey() + " got "
            + filled.get(e.getKey()) + " of " + e.getValue().length + " bytes");
      }
      NamedTensor nt = first.get(e.getKey());
      tensors.put(e.getKey(),
          new Tensor(nt.getData().getDtype(), Results.longs(nt.getShapeList()), e.getValue()));
    }
    return new Parameters(name, version == null ? 0 : version, tensors);
  }

  /** Every parameter of a model ("" = the default). */
  public Parameters getParameters(String model) {
    return getParameters(model, List.of(), 0, null);
  }

  /** Largest raw_data of one parameter chunk (the server's maximum too). */
  public static final int MAX_CHUNK_BYTES = 1 << 20;

  /** The chunks of a SetParameters stream (tensors split in flat pieces of at most maxBytes). */
  static List<ParameterChunk> parameterChunks(
      String model, Map<String, Tensor> tensors, Long expectedVersion, int maxChunkBytes) {
    int maxBytes = maxChunkBytes <= 0 ? MAX_CHUNK_BYTES : Math.min(maxChunkBytes, MAX_CHUNK_BYTES);
    List<ParameterChunk.Builder> chunks = new ArrayList<>();
    chunks.add(ParameterChunk.newBuilder().setModelName(model));
    if (expectedVersion != null) chunks.get(0).setParameterVersion(expectedVersion);
    int used = 0;
    for (Map.Entry<String, Tensor> e : new TreeMap<>(tensors).entrySet()) {
      Tensor t = e.getValue();
      t.check(e.getKey());
      int size = Tensor.itemsize(t.dtype());
      int per = Math.max(1, maxBytes / size);
      int n = t.raw().length / size;
      for (int offset = 0; offset < n || (n == 0 && offset == 0); offset += per) {
        int end = Math.min(n, offset + per);
        byte[] piece = java.util.Arrays.copyOfRange(t.raw(), offset * size, end * size);
        ParameterChunk.Builder current = chunks.get(chunks.size() - 1);
        if (current.getTensorsCount() > 0 && used + piece.length > maxBytes) {
          current = ParameterChunk.newBuilder().setModelName(model);
          chunks.add(current);
          used = 0;
        }
        NamedTensor.Builder named = NamedTensor.newBuilder().setName(e.getKey()).setOffset(offset)
            .setData(new Tensor(t.dtype(), new long[] {end - offset}, piece).toProto(e.getKey()));
        for (long d : t.shape()) named.addShape(d);
        current.addTensors(named);
        used += piece.length;
        if (n == 0) break;
      }
    }
    List<ParameterChunk> out = new ArrayList<>();
    for (ParameterChunk.Builder chunk : chunks) out.add(chunk.build());
    return out;
  }

  /**
   * Replaces the named parameters of a model ("" = the default) with tensors of their full shapes
   * and dtypes (as getParameters returns them), all or nothing; the version increases by one.
   * {@code expectedVersion}: compare-and-set (null = no check); {@code maxChunkBytes}: largest
   * piece sent (0 = 1 MiB). On a server with an admin token it needs that token.
   */
  public SetParametersResult setParameters(
      String model, Map<String, Tensor> tensors, Long expectedVersion, int maxChunkBytes) {
    List<ParameterChunk> chunks = parameterChunks(model, tensors, expectedVersion, maxChunkBytes);
    AdvantageServiceGrpc.AdvantageServiceStub stub = AdvantageServiceGrpc.newStub(intercepted);
    if (timeout != null) stub = stub.withDeadlineAfter(timeout.toNanos(), TimeUnit.NANOSECONDS);
    CompletableFuture<SetParametersResponse> answer = new CompletableFuture<>();
    StreamObserver<ParameterChunk> requests = stub.setParameters(new StreamObserver<>() {
      @Override
      public void onNext(SetParametersResponse value) {
        answer.complete(value);
      }

      @Override
      public void onError(Throwable t) {
        answer.completeExceptionally(t);
      }

      @Override
      public void onCompleted() {
        answer.completeExceptionally(new IllegalStateException("SetParameters: no answer"));
      }
    });
    for (ParameterChunk chunk : chunks) requests.onNext(chunk);
    requests.onCompleted();
    try {
      SetParametersResponse res = answer.get();
      return new SetParametersResult(res.getModelName(), res.getParameterVersion(), res.getTensorsUpdated());
    } catch (ExecutionException e) {
      if (e.getCause() instanceof StatusRuntimeException s) throw AdvantageException.of(s);
      throw new IllegalStateException(e.getCause());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("SetParameters interrupted", e);
    }
  }

  /**
   * Streams the versions of the named models (empty = every model): first each one's current
   * version, then one per new version committed (a slow reader gets the latest, not every
   * intermediate one). Open until {@link Watch#close}; the client's timeout does not apply.
   */
  public Watch watchModels(List<String> models) {
    Context.CancellableContext context = Context.current().withCancellation();
    WatchModelsRequest request = WatchModelsRequest.newBuilder().addAllModelNames(models).build();
    Context previous = context.attach();
    try {
      return new Watch(context, stub().watchModels(request));
    } finally {
      context.detach(previous);
    }
  }

  /** Closes the channel; calls in flight are cancelled. */
  @Override
  public void close() {
    channel.shutdownNow();
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
