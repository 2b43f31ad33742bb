/**
 * Off-policy losses on server-held Q-networks, target networks and SAC's temperature (pure, no
 * I/O): the request for a batch of [B] transitions and the result. See the Python client's
 * `advantage_client.offpolicy` and ../../proto/README.md ("Off-policy losses").
 *
 *   const step = await client.computeOffPolicyLoss({
 *     model: "demo_sac", loss: "sac", knobs: { alphaInit: 1.0, seed: 3 },
 *     observation, nextObservation, action, reward, done, terminated,
 *     applyUpdate: true, returnTdError: true,
 *   });
 */
import { decodeTensor, encodeTensor, isTensor, type Tensor, type WireTensor } from "./tensor";

export type OffPolicyLossKind = "dqn" | "sac" | "discrete_sac" | "ddpg" | "td3"
  | "td3_bc"
  | "iql"
  | "discrete_iql"
  | "cql"
  | "discrete_cql"
  | "redq"
  | "crossq";

/** Knobs of the off-policy losses (camelCase of the proto's fields); absent = TorchRL's defaults. */
export interface OffPolicyKnobs {
  gamma?: number;
  lossFunction?: "l1" | "l2" | "smooth_l1";
  // dqn
  delayValue?: boolean;
  doubleDqn?: boolean;
  // sac, discrete_sac
  alphaInit?: number;
  minAlpha?: number;
  maxAlpha?: number;
  fixedAlpha?: boolean;
  /** A number, or "auto" (the default: −prod(action shape); discrete: −log(1/A)·weight). */
  targetEntropy?: number | "auto";
  numQvalueNets?: number;
  delayQvalue?: boolean;
  targetEntropyWeight?: number;
  /** sac, td3: seed of the server's sampler for this call. */
  seed?: number;
  // ddpg, td3
  delayActor?: boolean;
  // td3
  policyNoise?: number;
  noiseClip?: number;
  policyUpdateDelay?: number;
  /** td3_bc: α of λ = α / mean|Q|. */
  alpha?: number;
  // iql (and cql's temperature)
  temperature?: number;
  expectile?: number;
  // cql
  minQWeight?: number;
  deterministicBackup?: boolean;
  numRandom?: number;
  // redq
  subSampleLen?: number;
}

type Kind = "double" | "bool" | "int" | "distance" | "entropy";
const SHARED: Record<string, Kind> = { gamma: "double", loss_function: "distance" };
const TEMPERATURE: Record<string, Kind> = {
  alpha_init: "double",
  min_alpha: "double",
  max_alpha: "double",
  fixed_alpha: "bool",
  target_entropy: "entropy",
  num_qvalue_nets: "int",
  delay_qvalue: "bool",
};

/** Each loss's fields (its message in the proto) and their kind. */
const FIELDS: Readonly<Record<OffPolicyLossKind, Readonly<Record<string, Kind>>>> = {
  dqn: { ...SHARED, delay_value: "bool", double_dqn: "bool" },
  sac: { ...SHARED, ...TEMPERATURE, seed: "int" },
  discrete_sac: { ...SHARED, ...TEMPERATURE, target_entropy_weight: "double" },
  ddpg: { ...SHARED, delay_actor: "bool", delay_value: "bool" },
  td3: {
    ...SHARED,
    policy_noise: "double",
    noise_clip: "double",
    delay_actor: "bool",
    delay_qvalue: "bool",
    num_qvalue_nets: "int",
    policy_update_delay: "int",
    seed: "int",
  },
  td3_bc: {
    ...SHARED,
    policy_noise: "double",
    noise_clip: "double",
    alpha: "double",
    delay_actor: "bool",
    delay_qvalue: "bool",
    num_qvalue_nets: "int",
    policy_update_delay: "int",
    seed: "int",
  },
  iql: { ...SHARED, temperature: "double", expectile: "double", num_qvalue_nets: "int" },
  discrete_iql: { ...SHARED, temperature: "double", expectile: "double", num_qvalue_nets: "int" },
  cql: {
    ...SHARED,
    ...TEMPERATURE,
    temperature: "double",
    min_q_weight: "double",
    deterministic_backup: "bool",
    num_random: "int",
    seed: "int",
  },
  discrete_cql: { ...SHARED, delay_value: "bool" },
  redq: { ...SHARED, ...TEMPERATURE, sub_sample_len: "int", seed: "int" },
  crossq: {
    ...SHARED,
    alpha_init: "double",
    min_alpha: "double",
    max_alpha: "double",
    fixed_alpha: "bool",
    target_entropy: "entropy",
    num_qvalue_nets: "int",
    seed: "int",
  },
};

export const OFFPOLICY_LOSSES = Object.keys(FIELDS) as OffPolicyLossKind[];
const DISTANCE: Record<string, number> = { l1: 1, l2: 2, smooth_l1: 3 };

const snake = (s: string): string => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const camel = (s: string): string => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** The loss oneof, `{[loss]: message}`, with the knobs checked. */
export function buildOffPolicyLoss(loss: OffPolicyLossKind, knobs: OffPolicyKnobs = {}): Record<string, object> {
  const fields = FIELDS[loss];
  if (fields === undefined) {
    throw new TypeError(`unknown off-policy loss ${JSON.stringify(loss)}; expected one of ${OFFPOLICY_LOSSES.join(", ")}`);
  }
  const msg: Record<string, unknown> = {};
  for (const [knob, value] of Object.entries(knobs)) {
    if (value === undefined) continue;
    const field = snake(knob);
    const kind = fields[field];
    if (kind === undefined) {
      const takes = Object.keys(fields).map(camel).join(", ");
      throw new TypeError(`loss ${JSON.stringify(loss)} takes no ${knob} (it takes: ${takes})`);
    }
    if (kind === "distance") {
      if (!(value in DISTANCE)) throw new TypeError(`lossFunction must be "l1", "l2" or "smooth_l1", got ${JSON.stringify(value)}`);
      msg[field] = DISTANCE[value as string];
    } else if (kind === "bool") {
      if (typeof value !== "boolean") throw new TypeError(`${knob} must be a boolean, got ${typeof value}`);
      msg[field] = value;
    } else if (kind === "entropy" && value === "auto") {
      continue; // the server's default
    } else if (typeof value !== "number" || !Number.isFinite(value)) {
      throw new TypeError(`${knob} must be a finite number, got ${String(value)}`);
    } else if (kind === "int") {
      if (!Number.isInteger(value) || value < (field === "seed" ? 0 : 1)) {
        throw new RangeError(`${knob} must be an integer ≥ ${field === "seed" ? 0 : 1}, got ${value}`);
      }
      msg[field] = value;
    } else {
      msg[field] = value;
    }
  }
  return { [loss]: msg };
}

/** computeOffPolicyLoss's arguments: [B] transitions and what to do with them. */
export interface ComputeOffPolicyLossArgs {
  /** Model name; "" = the server's default model. */
  model?: string;
  loss: OffPolicyLossKind;
  knobs?: OffPolicyKnobs;
  /** [B, ...] per input; a bare tensor is the input "observation". */
  observation: Tensor | Record<string, Tensor>;
  nextObservation: Tensor | Record<string, Tensor>;
  /** [B, ...action] float, or [B] int64 indices (dqn, discrete_sac). */
  action: Tensor;
  reward: Tensor;
  done: Tensor;
  terminated?: Tensor;
  applyUpdate?: boolean;
  expectedParameterVersion?: number;
  /** Return the per-sample TD error [B] (a prioritized replay buffer's priorities). */
  returnTdError?: boolean;
  /** This call's soft target rule, τ in (0, 1] (default: the model's). */
  tau?: number;
  /** This call's hard target rule, TorchRL's HardUpdate interval. */
  hardInterval?: number;
  deadlineMs?: number;
}

export const OFFPOLICY_ARGS = [
  "model", "loss", "knobs", "observation", "nextObservation", "action", "reward", "done", "terminated",
  "applyUpdate", "expectedParameterVersion", "returnTdError", "tau", "hardInterval", "deadlineMs",
];

function observations(value: Tensor | Record<string, Tensor>, name: string): Record<string, WireTensor> {
  const entries = isTensor(value) ? { observation: value } : value;
  const out: Record<string, WireTensor> = {};
  for (const [key, t] of Object.entries(entries)) out[key] = encodeTensor(t, `${name}[${JSON.stringify(key)}]`);
  return out;
}

/** The ComputeLossRequest object. */
export function buildOffPolicyRequest(args: ComputeOffPolicyLossArgs): Record<string, unknown> {
  const unknown = Object.keys(args).filter((k) => !OFFPOLICY_ARGS.includes(k));
  if (unknown.length) throw new TypeError(`computeOffPolicyLoss() got unknown argument(s): ${unknown.join(", ")}`);
  if (args.tau !== undefined && args.hardInterval !== undefined) {
    throw new TypeError("pass tau (soft target update) or hardInterval, not both");
  }
  const trajectory: Record<string, unknown> = {
    observation: observations(args.observation, "observation"),
    next_observation: observations(args.nextObservation, "nextObservation"),
    action: encodeTensor(args.action, "action"),
    reward: encodeTensor(args.reward, "reward"),
    done: encodeTensor(args.done, "done"),
  };
  if (args.terminated !== undefined) trajectory["terminated"] = encodeTensor(args.terminated, "terminated");
  const request: Record<string, unknown> = {
    model_name: args.model ?? "",
    trajectory,
    ...buildOffPolicyLoss(args.loss, args.knobs),
    apply_update: Boolean(args.applyUpdate),
    return_td_error: Boolean(args.returnTdError),
  };
  if (args.expectedParameterVersion !== undefined) request["expected_parameter_version"] = args.expectedParameterVersion;
  if (args.tau !== undefined) request["target_update"] = { tau: args.tau };
  if (args.hardInterval !== undefined) request["target_update"] = { hard_interval: args.hardInterval };
  return request;
}

/** computeOffPolicyLoss's result. */
export interface OffPolicyResult {
  /** The minimised total (sum of loss_*; TD3's critic-only updates: loss_qvalue). */
  loss: number;
  /** TorchRL's names: loss_qvalue, loss_actor, loss_alpha, alpha, entropy, … */
  metrics: Record<string, number>;
  /** Per-sample TD error [B] with returnTdError. */
  tdError?: Tensor;
  modelName: string;
  parameterVersion: number;
  newParameterVersion: number;
  updated: boolean;
  /** Whether the update moved the target networks. */
  targetsUpdated: boolean;
  gradNorm: number;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function offPolicyResultFromWire(w: Record<string, any>): OffPolicyResult {
  const metrics: Record<string, number> = {};
  for (const [k, v] of Object.entries((w["metrics"] ?? {}) as Record<string, number>)) metrics[k] = Number(v);
  return {
    loss: Number(w["loss"] ?? 0),
    metrics,
    ...(w["td_error"] ? { tdError: decodeTensor(w["td_error"] as WireTensor, "td_error") } : {}),
    modelName: w["model_name"] ?? "",
    parameterVersion: Number(w["parameter_version"] ?? 0),
    newParameterVersion: Number(w["new_parameter_version"] ?? 0),
    updated: Boolean(w["updated"]),
    targetsUpdated: Boolean(w["targets_updated"]),
    gradNorm: Number(w["grad_norm"] ?? 0),
  };
}
