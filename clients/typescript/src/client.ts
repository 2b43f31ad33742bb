/** Promise-based client of advantage-service (grpc-js, the contract loaded at runtime). */
import { buildDreamerStepRequest, dreamerResultFromWire, type DreamerResult, type DreamerStepArgs } from "./dreamer";
import {
  buildOffPolicyRequest,
  offPolicyResultFromWire,
  type ComputeOffPolicyLossArgs,
  type OffPolicyResult,
} from "./offpolicy";
import * as grpc from "@grpc/grpc-js";
import { isIP } from "node:net";
import { AdvantageServiceError } from "./errors";
import { loadProto } from "./proto";
import {
  buildEstimator,
  buildLoss,
  buildTrajectory,
  checkArgNames,
  checkKnobs,
  estimatorFrom,
  KNOB_ARGS,
  pickKnobs,
  TRAJECTORY_ARGS,
  type EstimatorKnobs,
  type EstimatorName,
  type LossKind,
  type LossOptions,
  type TrajectoryArgs,
} from "./request";
import { arrayTypeOf, decodeTensor, dtypeOf, encodeTensor, itemsize, numel, type Tensor, type WireTensor } from "./tensor";
import {
  advantageResultFromWire,
  lossResultFromWire,
  modelInfoFromWire,
  type AdvantageResult,
  type LossResult,
  type ModelInfo,
  type Parameters,
  type SetParametersResult,
} from "./types";

/** Default cap on request and response sizes, in MiB (gRPC's own default is 4 MiB). */
export const DEFAULT_MAX_MESSAGE_MB = 256;

const SERVICE = "advantage.v1.AdvantageService";
/**
 * The gRPC service config the client uses unless told otherwise: round_robin over every address
 * of the target (a list of servers, or a dns:/// name that resolves to several), and up to 5
 * attempts of a call answered UNAVAILABLE (a server stopping or gone, a replica that does not
 * hold the model or the minParameterVersion yet), each on the next server. SetParameters is never
 * retried; give an applyUpdate call expectedParameterVersion so that a retry of a step that was
 * applied fails instead of stepping twice. (grpc-js has no client-side health checking: a replica
 * still copying its learner's parameters answers UNAVAILABLE, and the call is retried.)
 */
export const DEFAULT_SERVICE_CONFIG = {
  loadBalancingConfig: [{ round_robin: {} }],
  healthCheckConfig: { serviceName: SERVICE },
  methodConfig: [
    {
      name: [{ service: SERVICE }],
      retryPolicy: {
        maxAttempts: 5,
        initialBackoff: "0.05s",
        maxBackoff: "1s",
        backoffMultiplier: 2,
        retryableStatusCodes: ["UNAVAILABLE"],
      },
    },
    { name: [{ service: SERVICE, method: "SetParameters" }] },
  ],
};
/** Requests up to this size can be retried (gRPC keeps a copy of each until it is answered). */
const RETRY_BUFFER_BYTES = 16 * 1024 * 1024;

/**
 * The gRPC target for `target`: a string as it is ("host:port", "dns:///name:port", …); a list of
 * "ip:port" as one "ipv4:///a:p,b:q" (or "ipv6:///[a]:p,…") target, so that the channel balances
 * over them. gRPC resolves no list of names: use a dns:/// name that resolves to every server.
 */
export function channelTarget(target: string | readonly string[]): string {
  if (typeof target === "string") return target;
  if (!Array.isArray(target) || target.length === 0 || target.some((t) => typeof t !== "string")) {
    throw new TypeError(`target: expected "host:port" or a non-empty list of them, got ${JSON.stringify(target)}`);
  }
  const families = new Set<number>();
  for (const address of target) {
    const cut = address.lastIndexOf(":");
    const host = cut < 0 ? "" : address.slice(0, cut);
    const port = cut < 0 ? "" : address.slice(cut + 1);
    const bracketed = host.startsWith("[") && host.endsWith("]");
    const bare = bracketed ? host.slice(1, -1) : host;
    const family = isIP(bare);
    if (!/^\d+$/.test(port) || family === 0 || (family === 6) !== bracketed) {
      throw new TypeError(
        `target: ${JSON.stringify(address)} in a list is not "ip:port" ("[ipv6]:port"); a list holds IP ` +
          `addresses only, use a "dns:///name:port" target for a name that resolves to every server`,
      );
    }
    families.add(family);
  }
  if (families.size > 1) throw new TypeError(`target: mixes IPv4 and IPv6 addresses ${target.join(", ")}; use one family`);
  return `ipv${[...families][0]}:///${target.join(",")}`;
}
/** Largest raw_data per parameter chunk (the server's maximum too). */
export const MAX_CHUNK_BYTES = 1 << 20;

export interface ClientOptions {
  /** Default deadline of every call, in ms from the call's start (undefined = none). */
  deadlineMs?: number;
  /** Largest request or response this client sends or accepts, in MiB (default 256). */
  maxMessageMb?: number;
  /** TLS for a server started with --tls-cert: its CA and, for mutual TLS, this client's
   * certificate (see TlsOptions). Default plaintext; give this or `credentials`, not both. */
  tls?: TlsOptions;
  /** Any channel credentials (e.g. grpc.credentials.createSsl(...)); default plaintext. */
  credentials?: grpc.ChannelCredentials;
  /** Extra gRPC channel options, applied after the size limits. */
  channelOptions?: grpc.ChannelOptions;
  /** Path of advantage.proto (default: the packaged copy, else the repository's). */
  protoPath?: string;
  /** Bearer token for a server started with an auth token (sent with every call). */
  token?: string;
  /** The gRPC service config (load balancing, retries): DEFAULT_SERVICE_CONFIG unless given;
   * null = gRPC's defaults (pick_first, no retries). */
  serviceConfig?: object | null;
}

/** TLS settings, each a PEM string or Buffer (read the files with fs.readFileSync). */
export interface TlsOptions {
  /** CA certificate(s) that signed the server's certificate (default: the system's roots). */
  rootCerts?: string | Buffer;
  /** Mutual TLS (a server started with --tls-client-ca): this client's private key ... */
  privateKey?: string | Buffer;
  /** ... and its certificate chain, signed by that CA. Both or neither. */
  certChain?: string | Buffer;
}

/** Channel credentials for `tls` (undefined: plaintext). Throws TypeError on a half-given pair. */
export function tlsCredentials(tls: TlsOptions | undefined): grpc.ChannelCredentials | undefined {
  if (tls === undefined) return undefined;
  if ((tls.privateKey === undefined) !== (tls.certChain === undefined)) {
    throw new TypeError("tls: give privateKey and certChain together (mutual TLS), or neither");
  }
  const pem = (value: string | Buffer | undefined): Buffer | null =>
    value === undefined ? null : Buffer.isBuffer(value) ? value : Buffer.from(value);
  return grpc.credentials.createSsl(pem(tls.rootCerts), pem(tls.privateKey), pem(tls.certChain));
}

export interface CallOptions {
  /** Deadline of this call in ms (default: the client's deadlineMs). */
  deadlineMs?: number;
}

export interface ReadOptions {
  /**
   * Read-your-writes: compute with this parameter version or a later one (e.g. the
   * newParameterVersion of your last update). A replica that does not hold it yet waits briefly,
   * then answers UNAVAILABLE, which the client retries on the next server; the learner answers
   * FAILED_PRECONDITION for a version it has not reached.
   */
  minParameterVersion?: number;
}

export interface ComputeAdvantageArgs extends TrajectoryArgs, EstimatorKnobs, CallOptions, ReadOptions {
  /**
   * "gae" (default), "td0", "td1", "td_lambda" or "vtrace" (KNOBS lists each one's knobs), or
   * TorchRL's names ("GAE", "TDLambda", "TDLambdaEstimator", …; see `estimatorFrom`).
   */
  estimator?: EstimatorName;
  /** Model name; "" / undefined = the server's default model. */
  model?: string;
}

export interface ComputeLossArgs extends TrajectoryArgs, EstimatorKnobs, CallOptions, ReadOptions {
  /**
   * Estimator of the advantage, by any of its names (see `estimatorFrom`); unset = GAE with the
   * model's γ, λ; knobs alone imply "gae".
   */
  estimator?: EstimatorName;
  /** Loss (unset = "ppo_clip" with TorchRL's defaults). */
  loss?: LossKind;
  /** The loss's knobs (LOSS_KNOBS lists each one's). */
  lossOptions?: LossOptions;
  /** Precomputed advantage [*B, T] (with valueTarget: the estimator is skipped). */
  advantage?: Tensor;
  valueTarget?: Tensor;
  /** ppo_kl: behaviour distribution parameters ("logits", or "loc" and "scale"). */
  behaviourDistribution?: Record<string, Tensor>;
  /** Take one optimizer step on the server's networks. */
  applyUpdate?: boolean;
  /** With applyUpdate: FAILED_PRECONDITION unless the model is at this version. */
  expectedParameterVersion?: number;
  /** Composite policies: false reports each head's entropy (TorchRL's non-aggregate mode);
   * undefined = decided by the log-probabilities sent. */
  compositeLpAggregate?: boolean;
  model?: string;
}

export interface GetParametersOptions extends CallOptions, ReadOptions {
  /** Only names starting with one of these (e.g. "actor_network."). */
  prefixes?: string[];
  /** Largest raw_data per chunk (default and maximum 1 MiB). */
  maxChunkBytes?: number;
}

export interface SetParametersOptions extends CallOptions {
  /** Compare-and-set: FAILED_PRECONDITION unless the model is at this version. */
  expectedVersion?: number;
  /** Largest raw_data per chunk sent (default 1 MiB). */
  maxChunkBytes?: number;
}

const ADVANTAGE_ARGS = [
  ...TRAJECTORY_ARGS, ...KNOB_ARGS, "estimator", "model", "deadlineMs", "minParameterVersion",
];

/**
 * The request without its top-level fields that hold proto3 defaults ("", 0, false): protobufjs
 * writes a field it is given even when it holds the default, which protobuf's other
 * implementations leave out. Dropping them makes the bytes the same as theirs (the golden
 * requests of proto/testdata/), with the same meaning.
 */
function withoutDefaults<T extends Record<string, unknown>>(request: T): T {
  return Object.fromEntries(
    Object.entries(request).filter(([, v]) => v !== "" && v !== 0 && v !== false),
  ) as T;
}

/** Sets request.min_parameter_version (undefined: absent); RangeError for a non-version. */
function withMinVersion<T extends Record<string, unknown>>(request: T, version: number | undefined): T {
  if (version === undefined) return request;
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new RangeError(`minParameterVersion must be an integer >= 0, got ${version}`);
  }
  return { ...request, min_parameter_version: version };
}
const LOSS_ARGS = [
  ...ADVANTAGE_ARGS, "loss", "lossOptions", "advantage", "valueTarget", "behaviourDistribution",
  "applyUpdate", "expectedParameterVersion", "compositeLpAggregate",
];

type Callback = (err: grpc.ServiceError | null, res?: any) => void;

/**
 * Client of advantage-service.
 *
 * ```ts
 * const client = new AdvantageClient("localhost:50051", { deadlineMs: 10_000 });
 * const r = await client.computeAdvantage({ reward, done, observation, nextObservation });
 * client.close();
 * ```
 *
 * Failed RPCs reject with AdvantageServiceError (`.code`, `.details`); invalid arguments reject
 * with TypeError / RangeError before anything is sent.
 */
export class AdvantageClient {
  readonly target: string;
  private readonly stub: grpc.Client & Record<string, any>;
  private readonly deadlineMs: number | undefined;
  private readonly token: string | undefined;

  /**
   * `target`: "host:port"; a "dns:///name:port" name that resolves to several servers (e.g. a
   * Kubernetes headless Service of replicas); or a list of "ip:port". Calls are balanced
   * round-robin over the servers, with retries of UNAVAILABLE (DEFAULT_SERVICE_CONFIG).
   */
  constructor(target: string | readonly string[], options: ClientOptions = {}) {
    const mb = options.maxMessageMb ?? DEFAULT_MAX_MESSAGE_MB;
    if (!(mb > 0)) throw new RangeError(`maxMessageMb must be > 0, got ${mb}`);
    const limit = Math.min(Math.floor(mb * 1024 * 1024), 2 ** 31 - 1);
    if (options.tls !== undefined && options.credentials !== undefined) {
      throw new TypeError("give tls or credentials, not both");
    }
    const credentials =
      options.credentials ?? tlsCredentials(options.tls) ?? grpc.credentials.createInsecure();
    const { Service } = loadProto(options.protoPath);
    const channelTargetString = channelTarget(target);
    const serviceConfig = options.serviceConfig === undefined ? DEFAULT_SERVICE_CONFIG : options.serviceConfig;
    const balancing: grpc.ChannelOptions =
      serviceConfig === null
        ? {}
        : {
            "grpc.service_config": JSON.stringify(serviceConfig),
            "grpc.enable_retries": 1,
            "grpc.per_rpc_retry_buffer_size": Math.min(RETRY_BUFFER_BYTES, limit),
          };
    this.stub = new Service(channelTargetString, credentials, {
      "grpc.max_send_message_length": limit,
      "grpc.max_receive_message_length": limit,
      ...balancing,
      ...options.channelOptions,
    }) as grpc.Client & Record<string, any>;
    this.target = channelTargetString;
    this.deadlineMs = options.deadlineMs;
    this.token = options.token;
  }

  /** Per-call metadata: the bearer token when the client has one. */
  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.token) metadata.set("authorization", `Bearer ${this.token}`);
    return metadata;
  }

  /** Close the channel; calls in flight are cancelled. Idempotent. */
  close(): void {
    this.stub.close();
  }

  /** Resolve once the channel is connected (rejects after `deadlineMs`). */
  waitForReady(deadlineMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.stub.waitForReady(new Date(Date.now() + deadlineMs), (err?: Error) => (err ? reject(err) : resolve()));
    });
  }

  private callOptions(deadlineMs: number | undefined): grpc.CallOptions {
    const ms = deadlineMs ?? this.deadlineMs;
    return ms === undefined ? {} : { deadline: new Date(Date.now() + ms) };
  }

  private unary(method: string, request: object, deadlineMs: number | undefined): Promise<any> {
    return new Promise((resolve, reject) => {
      const cb: Callback = (err, res) => (err ? reject(AdvantageServiceError.from(err)) : resolve(res));
      this.stub[method](request, this.metadata(), this.callOptions(deadlineMs), cb);
    });
  }

  /** Every model the server holds, sorted by name. */
  async listModels(options: CallOptions = {}): Promise<ModelInfo[]> {
    const res = await this.unary("ListModels", {}, options.deadlineMs);
    return ((res.models ?? []) as object[]).map((m) => modelInfoFromWire(m as Record<string, unknown>));
  }

  /** One model ("" = the server's default). Rejects with NOT_FOUND for an unknown name. */
  async getModel(name = "", options: CallOptions = {}): Promise<ModelInfo> {
    const res = await this.unary("GetModel", withoutDefaults({ model_name: name }), options.deadlineMs);
    return modelInfoFromWire(res.model ?? {});
  }

  /**
   * Advantages and value targets of a batch of trajectories ([*B, T], time last).
   *
   * Sends `stateValue` + `nextStateValue` when given (the value network is not run), else the
   * observations. Results are typed-array views of the response bytes where aligned.
   */
  async computeAdvantage(args: ComputeAdvantageArgs): Promise<AdvantageResult> {
    checkArgNames(args, ADVANTAGE_ARGS, "computeAdvantage");
    const estimator = estimatorFrom(args.estimator ?? "gae");
    const knobs = pickKnobs(args as unknown as Record<string, unknown>);
    checkKnobs(estimator, knobs);
    const request = withMinVersion(
      withoutDefaults({
        model_name: args.model ?? "",
        trajectory: buildTrajectory(args),
        ...buildEstimator(estimator, knobs, args.reward),
      }),
      args.minParameterVersion,
    );
    const res = await this.unary("ComputeAdvantage", request, args.deadlineMs);
    return advantageResultFromWire(res);
  }

  /**
   * A policy/critic loss on the server's networks (PPO family, A2C, REINFORCE, IMPALA); with
   * `applyUpdate` also one optimizer step. The trajectory needs observation, action and
   * sampleLogProb.
   */
  async computeLoss(args: ComputeLossArgs): Promise<LossResult> {
    checkArgNames(args, LOSS_ARGS, "computeLoss");
    const knobs = pickKnobs(args as unknown as Record<string, unknown>);
    const name = args.estimator ?? (Object.keys(knobs).length ? "gae" : undefined);
    const estimator = name === undefined ? undefined : estimatorFrom(name);
    if (estimator !== undefined) checkKnobs(estimator, knobs);
    if ((args.advantage === undefined) !== (args.valueTarget === undefined)) {
      throw new TypeError("pass both advantage and valueTarget, or neither");
    }
    const request: Record<string, unknown> = withoutDefaults({
      model_name: args.model ?? "",
      trajectory: buildTrajectory(args),
      ...(estimator === undefined ? {} : buildEstimator(estimator, knobs, args.reward)),
      ...buildLoss(args.loss, args.lossOptions),
      apply_update: Boolean(args.applyUpdate),
    });
    if (args.advantage !== undefined) request["advantage"] = encodeTensor(args.advantage, "advantage");
    if (args.valueTarget !== undefined) request["value_target"] = encodeTensor(args.valueTarget, "valueTarget");
    if (args.behaviourDistribution !== undefined) {
      const dist: Record<string, WireTensor> = {};
      for (const [k, t] of Object.entries(args.behaviourDistribution)) {
        dist[k] = encodeTensor(t, `behaviourDistribution[${JSON.stringify(k)}]`);
      }
      request["behaviour_distribution"] = dist;
    }
    if (args.expectedParameterVersion !== undefined) {
      request["expected_parameter_version"] = args.expectedParameterVersion;
    }
    if (args.compositeLpAggregate !== undefined) {
      if (typeof args.compositeLpAggregate !== "boolean") {
        throw new TypeError(`compositeLpAggregate must be a boolean, got ${typeof args.compositeLpAggregate}`);
      }
      request["composite_lp_aggregate"] = args.compositeLpAggregate;
    }
    const res = await this.unary("ComputeLoss", withMinVersion(request, args.minParameterVersion), args.deadlineMs);
    return lossResultFromWire(res);
  }

  /**
   * One DreamerV3 learner step (`dreamer_v3`): the world model on `replay`, then the actor and
   * the critic on rollouts the server imagines from every posterior latent; with `applyUpdate`,
   * the three optimizer steps and one new parameter version.
   */
  async dreamerStep(args: DreamerStepArgs): Promise<DreamerResult> {
    const res = await this.unary("ComputeLoss", buildDreamerStepRequest(args), args.deadlineMs);
    return dreamerResultFromWire(res);
  }

  /** An off-policy loss (dqn, sac, discrete_sac, ddpg, td3) on [B] transitions; with
   * applyUpdate, one step that also moves the server's target networks (see offpolicy.ts). */
  async computeOffPolicyLoss(args: ComputeOffPolicyLossArgs): Promise<OffPolicyResult> {
    const res = await this.unary("ComputeLoss", buildOffPolicyRequest(args), args.deadlineMs);
    return offPolicyResultFromWire(res);
  }

  /** A consistent snapshot of a model's parameters ("" = the default model), reassembled. */
  async getParameters(model = "", options: GetParametersOptions = {}): Promise<Parameters> {
    const request = withMinVersion(
      withoutDefaults({
        model_name: model,
        max_chunk_bytes: options.maxChunkBytes ?? 0,
        prefixes: options.prefixes ?? [],
      }),
      options.minParameterVersion,
    );
    const call: grpc.ClientReadableStream<any> = this.stub["GetParameters"](
      request,
      this.metadata(),
      this.callOptions(options.deadlineMs),
    );
    const tensors: Record<string, Tensor> = {};
    const filled: Record<string, number> = {};
    let modelName = model;
    let version: number | undefined;
    try {
      for await (const chunk of call) {
        modelName = chunk.model_name || modelName;
        const v = chunk.parameter_version === undefined ? undefined : Number(chunk.parameter_version);
        if (version === undefined) version = v;
        else if (v !== undefined && v !== version) {
          throw new Error(`GetParameters: chunks of versions ${version} and ${v} in one stream`);
        }
        for (const nt of (chunk.tensors ?? []) as Record<string, any>[]) {
          const name: string = nt["name"];
          const piece = decodeTensor(nt["data"], `parameter ${name}`);
          const shape = ((nt["shape"] ?? []) as unknown[]).map(Number);
          let full = tensors[name];
          if (full === undefined) {
            const dtype = piece.dtype!;
            full = { data: new (arrayTypeOf(dtype))(numel(shape, name)), shape, dtype };
            tensors[name] = full;
            filled[name] = 0;
          }
          const offset = Number(nt["offset"] ?? 0);
          if (piece.dtype !== full.dtype || offset + piece.data.length > full.data.length) {
            throw new Error(`GetParameters: piece of ${name} does not fit (offset ${offset}, ${piece.data.length} elements)`);
          }
          (full.data as any).set(piece.data, offset);
          filled[name]! += piece.data.length;
        }
      }
    } catch (err) {
      throw AdvantageServiceError.from(err);
    }
    for (const [name, t] of Object.entries(tensors)) {
      if (filled[name] !== t.data.length) {
        throw new Error(`GetParameters: ${name} got ${filled[name]} of ${t.data.length} elements`);
      }
    }
    return { modelName, parameterVersion: version ?? 0, tensors };
  }

  /**
   * Replace some or all of a model's parameters (all or nothing); the version increases by one.
   * Tensors must have the parameters' full shapes and dtypes (see getParameters).
   */
  setParameters(
    model: string,
    tensors: Record<string, Tensor>,
    options: SetParametersOptions = {},
  ): Promise<SetParametersResult> {
    const maxBytes = Math.min(options.maxChunkBytes ?? MAX_CHUNK_BYTES, MAX_CHUNK_BYTES);
    if (!(maxBytes > 0)) throw new RangeError(`maxChunkBytes must be > 0, got ${maxBytes}`);
    // Validate and encode everything before opening the stream.
    const chunks: Record<string, unknown>[] = [];
    let current: Record<string, unknown>[] = [];
    let currentBytes = 0;
    const flush = (): void => {
      chunks.push({ model_name: model, tensors: current });
      current = [];
      currentBytes = 0;
    };
    for (const [name, t] of Object.entries(tensors)) {
      const dtype = dtypeOf(t, name);
      const n = numel(t.shape, name);
      if (t.data.length !== n) {
        throw new RangeError(`${name}: shape [${t.shape.join(", ")}] has ${n} elements, the data has ${t.data.length}`);
      }
      const per = Math.max(1, Math.floor(maxBytes / itemsize(dtype)));
      for (let offset = 0; offset < n || (n === 0 && offset === 0); offset += per) {
        const piece = (t.data as any).subarray(offset, Math.min(n, offset + per));
        const bytes = piece.byteLength as number;
        if (current.length && currentBytes + bytes > maxBytes) flush();
        current.push({
          name,
          shape: [...t.shape],
          offset,
          data: encodeTensor({ data: piece, shape: [piece.length], dtype }, name),
        });
        currentBytes += bytes;
        if (n === 0) break;
      }
    }
    if (current.length || chunks.length === 0) flush();
    if (options.expectedVersion !== undefined) chunks[0]!["parameter_version"] = options.expectedVersion;
    return new Promise((resolve, reject) => {
      const cb: Callback = (err, res) => {
        if (err) return reject(AdvantageServiceError.from(err));
        resolve({
          modelName: res.model_name ?? "",
          parameterVersion: Number(res.parameter_version ?? 0),
          tensorsUpdated: Number(res.tensors_updated ?? 0),
        });
      };
      const call: grpc.ClientWritableStream<any> = this.stub["SetParameters"](
        this.metadata(),
        this.callOptions(options.deadlineMs),
        cb,
      );
      for (const chunk of chunks) call.write(chunk);
      call.end();
    });
  }
}

