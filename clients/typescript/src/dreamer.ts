/**
 * DreamerV3 on the server: the one-call learner step (`dreamer_v3` in ComputeLoss). The world
 * model runs on the replay sequences [*B, T], then the actor and the critic learn on rollouts the
 * server imagines from every posterior latent; with `applyUpdate`, the three optimizers step and
 * the parameter version increases once. Unset knobs take TorchRL 0.14.1's defaults (γ and λ: the
 * model's).
 */
import { decodeTensor, encodeTensor, type Tensor, type WireTensor } from "./tensor";

/** The imagined rollout: horizon H (default 15), γ, λ, discount_loss. */
export interface DreamerImagination {
  imaginationHorizon?: number;
  gamma?: number;
  lmbda?: number;
  discountLoss?: boolean;
}

/** TorchRL's DreamerV3ActorLoss knobs. */
export interface DreamerV3ActorKnobs {
  imagination?: DreamerImagination;
  entropyBonus?: number;
  useReinforce?: boolean;
  returnNormalization?: boolean;
  returnNormalizationRate?: number;
  returnNormalizationMinScale?: number;
  returnLowQuantile?: number;
  returnHighQuantile?: number;
}

/** TorchRL's DreamerV3ValueLoss knobs. */
export interface DreamerV3ValueKnobs {
  valueLoss?: "symlog_mse" | "two_hot";
  slowCriticRegularization?: number;
  slowCriticRate?: number;
}

/** TorchRL's DreamerV3ModelLoss knobs (lambdaContinue defaults to 1 here). */
export interface DreamerV3ModelKnobs {
  lambdaKl?: number;
  lambdaReco?: number;
  lambdaReward?: number;
  lambdaContinue?: number;
  klMode?: "balanced" | "separate";
  klAlpha?: number;
  freeBits?: number;
  lambdaDynamic?: number;
  lambdaRepresentation?: number;
  unimix?: number;
  recoLoss?: "l1" | "l2";
  recoSymlog?: boolean;
  continueTargetScale?: number;
}

/** The learner step's knobs: world model, actor (its imagination serves the critic too), critic. */
export interface DreamerV3Knobs {
  model?: DreamerV3ModelKnobs;
  actor?: DreamerV3ActorKnobs;
  value?: DreamerV3ValueKnobs;
}

/** Replay sequences [*B, T]: step t sees the action taken before observation t. */
export interface DreamerReplay {
  /** One observation tensor [*B, T, *obs] (named "observation"), or several by name. */
  observation: Tensor | Record<string, Tensor>;
  /** [*B, T, action_size] (float32), or a categorical actor's indices [*B, T] (int64). */
  action: Tensor;
  /** [*B, T]. */
  reward: Tensor;
  /** [*B, T] bool (Uint8Array 0/1): episode starts. */
  isFirst: Tensor;
  /** [*B, T] bool: terminal steps (default none). */
  terminated?: Tensor;
}

export interface DreamerStepArgs {
  /** Model name ("" = the default model). */
  model?: string;
  knobs?: DreamerV3Knobs;
  replay: DreamerReplay;
  /** Return the posterior latents of the replay (state, belief: [*B, T, …]). */
  returnPosterior?: boolean;
  applyUpdate?: boolean;
  expectedParameterVersion?: number;
  deadlineMs?: number;
}

/** Result of dreamerStep: every loss term and metric under TorchRL's names. */
export interface DreamerResult {
  loss: number;
  metrics: Record<string, number>;
  modelName: string;
  parameterVersion: number;
  newParameterVersion: number;
  updated: boolean;
  gradNorm: number;
  posteriorLatents?: Record<string, Tensor>;
}

const ENUM_PREFIXES: Record<string, string> = {
  value_loss: "DREAMER_VALUE_LOSS_",
  kl_mode: "DREAMER_KL_MODE_",
  reco_loss: "DREAMER_RECO_LOSS_",
};

/** camelCase knobs → the proto's snake_case fields (enums by their full names). */
function snakeKnobs(knobs: object | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(knobs ?? {})) {
    if (value === undefined) continue;
    const name = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    if (typeof value === "object" && value !== null) out[name] = snakeKnobs(value);
    else if (name in ENUM_PREFIXES) out[name] = ENUM_PREFIXES[name] + String(value).toUpperCase();
    else out[name] = value;
  }
  return out;
}

/** The ComputeLossRequest object of a dreamer_v3 learner step. */
export function buildDreamerStepRequest(args: DreamerStepArgs): Record<string, unknown> {
  const knobs = args.knobs ?? {};
  const { replay } = args;
  const observations: Record<string, WireTensor> = {};
  const named =
    "data" in replay.observation && "shape" in replay.observation
      ? { observation: replay.observation as Tensor }
      : (replay.observation as Record<string, Tensor>);
  for (const [name, t] of Object.entries(named)) {
    observations[name] = encodeTensor(t, `replay.observation[${JSON.stringify(name)}]`);
  }
  const wireReplay: Record<string, unknown> = {
    observation: observations,
    action: encodeTensor(replay.action, "replay.action"),
    reward: encodeTensor(replay.reward, "replay.reward"),
    is_first: encodeTensor(replay.isFirst, "replay.isFirst"),
  };
  if (replay.terminated !== undefined) {
    wireReplay["terminated"] = encodeTensor(replay.terminated, "replay.terminated");
  }
  const request: Record<string, unknown> = {
    model_name: args.model ?? "",
    dreamer_v3: {
      model: snakeKnobs(knobs.model),
      actor: snakeKnobs(knobs.actor),
      value: snakeKnobs(knobs.value),
    },
    replay: wireReplay,
    return_posterior: Boolean(args.returnPosterior),
    apply_update: Boolean(args.applyUpdate),
  };
  if (args.expectedParameterVersion !== undefined) {
    request["expected_parameter_version"] = args.expectedParameterVersion;
  }
  return request;
}

/** A ComputeLossResponse object → DreamerResult. */
export function dreamerResultFromWire(res: any): DreamerResult {
  const latents: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(res.posterior_latents ?? {})) {
    latents[name] = decodeTensor(t as WireTensor, `posterior_latents[${JSON.stringify(name)}]`);
  }
  return {
    loss: Number(res.loss ?? 0),
    metrics: Object.fromEntries(Object.entries(res.metrics ?? {}).map(([k, v]) => [k, Number(v)])),
    modelName: res.model_name ?? "",
    parameterVersion: Number(res.parameter_version ?? 0),
    newParameterVersion: Number(res.new_parameter_version ?? 0),
    updated: Boolean(res.updated),
    gradNorm: Number(res.grad_norm ?? 0),
    ...(Object.keys(latents).length ? { posteriorLatents: latents } : {}),
  };
}
