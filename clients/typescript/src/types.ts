/** Plain result and description types (no protobuf objects in the public API). */
import { decodeTensor, dtypeFromWire, type DType, type Tensor, type WireTensor } from "./tensor";

/** Server-side time breakdown of one call, in milliseconds. */
export interface Timing {
  decodeMs: number;
  networkMs: number;
  estimatorMs: number;
  encodeMs: number;
}

/** Result of computeAdvantage; every tensor has the reward's shape [*B, T] and dtype. */
export interface AdvantageResult {
  advantage: Tensor;
  valueTarget: Tensor;
  /** V(s_t) the server computed; undefined when the request carried state values. */
  stateValue?: Tensor;
  /** V(s_{t+1}) the server computed (0 at terminated steps); undefined likewise. */
  nextStateValue?: Tensor;
  modelName: string;
  parameterVersion: number;
  timing: Timing;
}

/** Result of computeLoss. */
export interface LossResult {
  /** Sum of the loss_* metrics. */
  loss: number;
  /** Every scalar the loss reports, TorchRL's names (loss_objective, loss_critic, entropy, …). */
  metrics: Record<string, number>;
  modelName: string;
  parameterVersion: number;
  updated: boolean;
  newParameterVersion: number;
  gradNorm: number;
  timing: Timing;
}

/** One network input: its key, per-step shape (without [*B, T]) and dtype. */
export interface InputSpec {
  name: string;
  shape: number[];
  dtype: DType | null;
}

export type Distribution =
  | "categorical" | "normal" | "tanh_normal" | "composite" | "one_hot_categorical" | "bernoulli";

/** The actor's policy (distribution null without an actor network). A "composite" policy has
 * named heads (send their actions as `action: {head: Tensor}`). */
export interface ActionSpec {
  distribution: Distribution | null;
  shape: number[];
  dtype: DType | null;
  numActions: number;
  /** A composite policy's heads, each with its `name`. */
  heads: ActionSpec[];
  /** Head name ("" for the policy itself). */
  name: string;
}

/** Description of a server-held model (proto ModelInfo). */
export interface ModelInfo {
  name: string;
  inputs: InputSpec[];
  /** The observation keys the networks read, in order. */
  inputKeys: string[];
  hasValueNetwork: boolean;
  hasActorNetwork: boolean;
  action: ActionSpec;
  /** Agents per step the model declares (0 = not declared). */
  nAgents: number;
  /** "shared" (one agent's rows at a time) or "per_agent" (the agents of a step together). */
  agentNetworks: string;
  parameterVersion: number;
  /** Default γ and λ (used when a request leaves them unset). */
  gamma: number;
  lmbda: number;
  device: string;
  parameterDtype: DType | null;
}

/** A model's parameters, reassembled from the GetParameters stream. */
export interface Parameters {
  modelName: string;
  parameterVersion: number;
  /** "value_network.<name>" / "actor_network.<name>" → full tensor. */
  tensors: Record<string, Tensor>;
}

/** Result of setParameters. */
export interface SetParametersResult {
  modelName: string;
  parameterVersion: number;
  tensorsUpdated: number;
}

// ---- wire → plain -----------------------------------------------------------------------------

type Wire = Record<string, any>;

export function timingFromWire(w: Wire | undefined | null): Timing {
  return {
    decodeMs: w?.["decode_ms"] ?? 0,
    networkMs: w?.["network_ms"] ?? 0,
    estimatorMs: w?.["estimator_ms"] ?? 0,
    encodeMs: w?.["encode_ms"] ?? 0,
  };
}

export function advantageResultFromWire(w: Wire): AdvantageResult {
  const out: AdvantageResult = {
    advantage: decodeTensor(w["advantage"] as WireTensor, "advantage"),
    valueTarget: decodeTensor(w["value_target"] as WireTensor, "value_target"),
    modelName: w["model_name"] ?? "",
    parameterVersion: Number(w["parameter_version"] ?? 0),
    timing: timingFromWire(w["timing"]),
  };
  if (w["state_value"] && w["next_state_value"]) {
    out.stateValue = decodeTensor(w["state_value"] as WireTensor, "state_value");
    out.nextStateValue = decodeTensor(w["next_state_value"] as WireTensor, "next_state_value");
  }
  return out;
}

export function lossResultFromWire(w: Wire): LossResult {
  const metrics: Record<string, number> = {};
  for (const [k, v] of Object.entries((w["metrics"] ?? {}) as Record<string, number>)) metrics[k] = Number(v);
  return {
    loss: Number(w["loss"] ?? 0),
    metrics,
    modelName: w["model_name"] ?? "",
    parameterVersion: Number(w["parameter_version"] ?? 0),
    updated: Boolean(w["updated"]),
    newParameterVersion: Number(w["new_parameter_version"] ?? 0),
    gradNorm: Number(w["grad_norm"] ?? 0),
    timing: timingFromWire(w["timing"]),
  };
}

const DISTRIBUTIONS: Record<string, Distribution> = {
  DISTRIBUTION_CATEGORICAL: "categorical",
  DISTRIBUTION_NORMAL: "normal",
  DISTRIBUTION_TANH_NORMAL: "tanh_normal",
  DISTRIBUTION_COMPOSITE: "composite",
  DISTRIBUTION_ONE_HOT_CATEGORICAL: "one_hot_categorical",
  DISTRIBUTION_BERNOULLI: "bernoulli",
};

function actionFromWire(a: Wire): ActionSpec {
  return {
    distribution: DISTRIBUTIONS[a["distribution"] as string] ?? null,
    shape: ((a["shape"] ?? []) as unknown[]).map(Number),
    dtype: dtypeFromWire(a["dtype"]),
    numActions: Number(a["num_actions"] ?? 0),
    heads: ((a["heads"] ?? []) as Wire[]).map(actionFromWire),
    name: a["name"] ?? "",
  };
}

export function modelInfoFromWire(w: Wire): ModelInfo {
  const inputs: InputSpec[] = ((w["inputs"] ?? []) as Wire[]).map((s) => ({
    name: s["name"] ?? "",
    shape: ((s["shape"] ?? []) as unknown[]).map(Number),
    dtype: dtypeFromWire(s["dtype"]),
  }));
  const a: Wire = w["action"] ?? {};
  return {
    name: w["name"] ?? "",
    inputs,
    inputKeys: inputs.map((s) => s.name),
    hasValueNetwork: Boolean(w["has_value_network"]),
    hasActorNetwork: Boolean(w["has_actor_network"]),
    action: actionFromWire(a),
    nAgents: Number(w["n_agents"] ?? 0),
    agentNetworks: String(w["agent_networks"] || "shared"),
    parameterVersion: Number(w["parameter_version"] ?? 0),
    gamma: Number(w["defaults"]?.["gamma"] ?? 0),
    lmbda: Number(w["defaults"]?.["lmbda"] ?? 0),
    device: w["device"] ?? "",
    parameterDtype: dtypeFromWire(w["parameter_dtype"]),
  };
}
