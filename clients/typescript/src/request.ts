/**
 * Building requests from the client's arguments (pure, no I/O): estimator knobs, the trajectory
 * (with the compact form), the loss oneof. Everything is validated before anything is sent;
 * invalid arguments throw TypeError (wrong name/type) or RangeError (out-of-range value).
 */
import { arrayTypeOf, dtypeOf, encodeTensor, isTensor, numel, type Tensor, type WireTensor } from "./tensor";

export type Estimator = "gae" | "td0" | "td1" | "td_lambda" | "vtrace";
/**
 * A name an estimator is also known by: TorchRL's `ValueEstimators` members ("GAE", "TD0", "TD1",
 * "TDLambda", "VTrace") and estimator classes ("TD0Estimator", "TDLambdaEstimator", …), or the
 * service's, with case, "_" and "-" ignored (`estimatorFrom` resolves it).
 */
export type EstimatorName =
  | Estimator
  | "GAE"
  | "TD0"
  | "TD1"
  | "TDLambda"
  | "VTrace"
  | "TD0Estimator"
  | "TD1Estimator"
  | "TDLambdaEstimator"
  | (string & {});
/**
 * The observations' wire layout (proto: TrajectoryForm). "auto" sends the compact form when the
 * data allows it (see `buildTrajectory`), else the full form; the numbers are the same either way.
 */
export type Form = "auto" | "full" | "compact";
export type LossKind = "ppo_clip" | "ppo_kl" | "ppo" | "a2c" | "reinforce" | "impala";

/** Knobs of the estimators; each estimator takes the subset listed in `KNOBS`. */
export interface EstimatorKnobs {
  /** Discount: a number in [0, 1] or a per-step tensor [*B, T] (V-trace: number or tensor). */
  gamma?: number | Tensor;
  /** Trace decay: number in [0, 1] or per-step tensor (td_lambda, gae); V-trace: a number. */
  lmbda?: number | Tensor;
  /** gae: standardise the advantage. */
  averageGae?: boolean;
  /** vtrace: standardise the advantage. */
  averageAdv?: boolean;
  /** td0, td1, td_lambda: standardise the rewards first. */
  averageRewards?: boolean;
  /** vtrace: ρ̄ (> 0). */
  rhoThresh?: number;
  /** vtrace: c̄ (> 0). */
  cThresh?: number;
  /** vtrace: ρ̄_pg (> 0). */
  rhoPgThresh?: number;
}

type KnobKind = "coefficient" | "double" | "bool";

/** Each estimator's knobs (the fields of its message in the proto) and their kind. */
const ESTIMATOR_FIELDS: Readonly<Record<Estimator, Readonly<Record<string, KnobKind>>>> = {
  td0: { gamma: "coefficient", average_rewards: "bool" },
  td1: { gamma: "coefficient", average_rewards: "bool" },
  td_lambda: { gamma: "coefficient", lmbda: "coefficient", average_rewards: "bool" },
  gae: { gamma: "coefficient", lmbda: "coefficient", average_gae: "bool" },
  vtrace: {
    gamma: "coefficient",
    rho_thresh: "double",
    c_thresh: "double",
    lmbda: "double",
    rho_pg_thresh: "double",
    average_adv: "bool",
  },
};

/** The knobs each estimator takes, by their camelCase argument names. */
export const KNOBS: Readonly<Record<Estimator, readonly string[]>> = Object.freeze(
  Object.fromEntries(
    Object.entries(ESTIMATOR_FIELDS).map(([est, fields]) => [est, Object.keys(fields).map(camel)]),
  ) as Record<Estimator, string[]>,
);

export const ESTIMATORS = Object.keys(ESTIMATOR_FIELDS) as Estimator[];
const KNOB_ARGS = ["gamma", "lmbda", "averageGae", "averageAdv", "averageRewards", "rhoThresh", "cThresh", "rhoPgThresh"];

/** snake_case → camelCase. */
export function camel(s: string): string {
  return s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** camelCase → snake_case. */
export function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function checkRange(knob: string, value: number): void {
  if (!Number.isFinite(value)) throw new RangeError(`${knob} must be a finite number, got ${value}`);
  if (knob.endsWith("Thresh")) {
    if (!(value > 0)) throw new RangeError(`${knob} must be > 0, got ${value}`);
  } else if (!(value >= 0 && value <= 1)) {
    throw new RangeError(`${knob} must be in [0, 1], got ${value}`);
  }
}

/** "TDLambdaEstimator", "TDLambda", "td_lambda" → "tdlambda" (as the Python client's names). */
function nameKey(name: string): string {
  const key = name.toLowerCase().replace(/[_-]/g, "");
  return key.endsWith("estimator") && key !== "estimator" ? key.slice(0, -"estimator".length) : key;
}

const ESTIMATOR_KEYS: Readonly<Record<string, Estimator>> = Object.fromEntries(
  (Object.keys(ESTIMATOR_FIELDS) as Estimator[]).map((e) => [nameKey(e), e]),
);

/**
 * The service's name of an estimator given by any of its names (`EstimatorName`): "GAE" → "gae",
 * "TDLambda" / "TDLambdaEstimator" / "td_lambda" → "td_lambda". Throws TypeError for an unknown
 * name (TorchRL's "MAGAE" too: the service has no multi-agent GAE).
 */
export function estimatorFrom(name: string): Estimator {
  const estimator = typeof name === "string" ? ESTIMATOR_KEYS[nameKey(name)] : undefined;
  if (estimator === undefined) {
    throw new TypeError(
      `unknown estimator ${JSON.stringify(name)}; expected one of ${ESTIMATORS.join(", ")} ` +
        "(or TorchRL's names: GAE, TD0, TD1, TDLambda, VTrace, TDLambdaEstimator, …)",
    );
  }
  return estimator;
}

/** Validate an estimator name and its knobs (undefined knobs are ignored). */
export function checkKnobs(estimator: string, knobs: Record<string, unknown>): asserts estimator is Estimator {
  if (!(estimator in ESTIMATOR_FIELDS)) {
    throw new TypeError(`unknown estimator ${JSON.stringify(estimator)}; expected one of ${ESTIMATORS.join(", ")}`);
  }
  const fields = ESTIMATOR_FIELDS[estimator as Estimator];
  for (const [knob, value] of Object.entries(knobs)) {
    if (value === undefined) continue;
    const kind = fields[snake(knob)];
    if (kind === undefined) {
      throw new TypeError(
        `estimator ${JSON.stringify(estimator)} takes no ${knob} (it takes: ${KNOBS[estimator as Estimator].join(", ")})`,
      );
    }
    if (kind === "bool") {
      if (typeof value !== "boolean") throw new TypeError(`${knob} must be a boolean, got ${typeof value}`);
    } else if (typeof value === "number") {
      checkRange(knob, value);
    } else if (kind === "double" || !isTensor(value)) {
      const want = kind === "double" ? "a number" : "a number or a per-step Tensor";
      throw new TypeError(`${estimator}'s ${knob} must be ${want}, got ${typeof value}`);
    }
  }
}

function coefficient(value: number | Tensor, knob: string, reward: Tensor): object {
  if (typeof value === "number") return { scalar: value };
  const rewardDtype = dtypeOf(reward, "reward");
  let t = value;
  const shape = t.shape.length === reward.shape.length + 1 && t.shape[t.shape.length - 1] === 1
    ? t.shape.slice(0, -1) // TorchRL's trailing feature dim of 1
    : t.shape;
  if (shape.length !== reward.shape.length || shape.some((d, i) => d !== reward.shape[i])) {
    throw new RangeError(
      `${knob}: a per-step coefficient must have the reward's shape [${reward.shape.join(", ")}], ` +
        `got [${t.shape.join(", ")}]`,
    );
  }
  const dt = dtypeOf(t, knob);
  if (dt !== rewardDtype && (rewardDtype === "float32" || rewardDtype === "float64")) {
    const ctor = arrayTypeOf(rewardDtype) as Float64ArrayConstructor;
    t = { data: ctor.from(t.data as ArrayLike<number>), shape, dtype: rewardDtype };
  } else {
    t = { ...t, shape };
  }
  return { per_step: encodeTensor(t, `${knob}.per_step`) };
}

/** The estimator oneof: `{[estimator]: message}` with the knobs that are set. */
export function buildEstimator(estimator: Estimator, knobs: Record<string, unknown>, reward: Tensor): Record<string, object> {
  checkKnobs(estimator, knobs);
  const fields = ESTIMATOR_FIELDS[estimator];
  const msg: Record<string, unknown> = {};
  for (const [knob, value] of Object.entries(knobs)) {
    if (value === undefined) continue;
    const field = snake(knob);
    msg[field] = fields[field] === "coefficient" ? coefficient(value as number | Tensor, knob, reward) : value;
  }
  return { [estimator]: msg };
}

/** Split the estimator knobs out of an arguments object. */
export function pickKnobs(args: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of KNOB_ARGS) if (args[k] !== undefined) out[k] = args[k];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Trajectory
// ---------------------------------------------------------------------------------------------

/** The trajectory arguments shared by computeAdvantage and computeLoss. */
export interface TrajectoryArgs {
  /** [*B, T], float32 or float64 (sets the computation's dtype). */
  reward: Tensor;
  /** [*B, T] bool: the episode ended (terminated or truncated) after the step. */
  done: Tensor;
  /** [*B, T] bool: terminal state reached; absent = done. Must imply done. */
  terminated?: Tensor;
  /** Network inputs by key, [*B, T, *obs] (full form) or [*B, T + 1, *obs] (compact); a bare
   * Tensor is sent under the key "observation". */
  observation?: Record<string, Tensor> | Tensor;
  /** Next observations, keyed like `observation`: [*B, T, *obs], or [K, *obs] with compact
   * observations that already have T + 1 steps. */
  nextObservation?: Record<string, Tensor> | Tensor;
  /** V(s_t), [*B, T], the reward's dtype; with nextStateValue the value network is not run. */
  stateValue?: Tensor;
  /** V(s_{t+1}), [*B, T]. */
  nextStateValue?: Tensor;
  /** [*B, T] int64 (categorical) or [*B, T, *action_shape] float; a composite policy's
   * actions as {head: Tensor} (head names as GetModel lists them, e.g. "move"). */
  action?: Tensor | Record<string, Tensor>;
  /** Behaviour policy's log-probability of `action`, [*B, T]; or {head: [*B, T]} per head
   * (TorchRL's non-aggregate mode: the server then reports each head's entropy). */
  sampleLogProb?: Tensor | Record<string, Tensor>;
  /** Current policy's log-probability of `action`, [*B, T] (V-trace without the actor); or per
   * head. */
  logProb?: Tensor | Record<string, Tensor>;
  /** [*B, T] bool: false at padded steps (TorchRL's ("collector", "mask")). Padded steps get 0
   * and nothing flows from them into valid steps. */
  mask?: Tensor;
  /** Agents per step: per-agent tensors are [*B, T, nAgents, ...] (time before agents);
   * done/terminated [*B, T] (shared) or [*B, T, nAgents]; full form only. */
  nAgents?: number;
  /** "auto" (default): the compact form when the observations chain (about half the bytes),
   * else the full form. "full", or "compact": full-form observations are converted by the client
   * (and refused when they do not chain). */
  form?: Form;
}

export const TRAJECTORY_ARGS = [
  "reward", "done", "terminated", "observation", "nextObservation", "stateValue",
  "nextStateValue", "action", "sampleLogProb", "logProb", "mask", "nAgents", "form",
];

/** The Trajectory map a per-head argument goes to. */
const HEAD_FIELDS: Readonly<Record<string, string>> = {
  action: "action_heads",
  sampleLogProb: "sample_log_prob_heads",
  logProb: "log_prob_heads",
};

/** Padded steps are done and terminated for the compact form (never truncated). */
function maskedFlags(done: Tensor, terminated: Tensor | undefined, mask: Tensor): { done: Tensor; terminated: Tensor } {
  if (!sameShape(mask.shape, done.shape)) {
    throw new RangeError(`mask: expected the done shape [${done.shape.join(", ")}], got [${mask.shape.join(", ")}]`);
  }
  const n = numel(done.shape, "done");
  const d = done.data as ArrayLike<number | boolean>;
  const t = (terminated ?? done).data as ArrayLike<number | boolean>;
  const m = mask.data as ArrayLike<number | boolean>;
  const doneOut = new Uint8Array(n);
  const termOut = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    doneOut[i] = d[i] || !m[i] ? 1 : 0;
    termOut[i] = t[i] || !m[i] ? 1 : 0;
  }
  return {
    done: { data: doneOut, shape: done.shape, dtype: "bool" },
    terminated: { data: termOut, shape: done.shape, dtype: "bool" },
  };
}

const DEFAULT_OBS_KEY = "observation";

function asObsMap(x: Record<string, Tensor> | Tensor | undefined, name: string): Record<string, Tensor> {
  if (x === undefined || x === null) return {};
  if (isTensor(x)) return { [DEFAULT_OBS_KEY]: x };
  if (typeof x !== "object") throw new TypeError(`${name} must be a Tensor or {key: Tensor}, got ${typeof x}`);
  return x;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function truncatedMask(done: Tensor, terminated: Tensor | undefined): Uint8Array {
  const n = numel(done.shape, "done");
  const mask = new Uint8Array(n);
  if (terminated === undefined) return mask; // terminated = done: nothing is truncated
  if (!sameShape(terminated.shape, done.shape)) {
    throw new RangeError(
      `terminated: expected the done shape [${done.shape.join(", ")}], got [${terminated.shape.join(", ")}]`,
    );
  }
  const d = done.data as ArrayLike<number>;
  const t = terminated.data as ArrayLike<number>;
  for (let i = 0; i < n; i++) mask[i] = d[i] && !t[i] ? 1 : 0;
  return mask;
}

/**
 * The first step (row of [*B], step t) that is not done and whose next observation differs from
 * the following observation (nextObservation[t] != observation[t + 1], compared by value, per
 * element); undefined when every such step chains. Shapes [*B, T, *obs] are checked by callers.
 */
function brokenLink(observation: Tensor, nextObservation: Tensor, done: Tensor): { row: number; step: number } | undefined {
  const step = done.shape;
  const T = step[step.length - 1]!;
  const rows = numel(step.slice(0, -1));
  const feat = numel(observation.shape.slice(step.length));
  const obs = observation.data as ArrayLike<unknown>;
  const nxt = nextObservation.data as ArrayLike<unknown>;
  const doneFlags = done.data as ArrayLike<number | boolean>;
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t + 1 < T; t++) {
      if (doneFlags[r * T + t]) continue;
      const a = (r * T + t) * feat;
      const b = (r * T + t + 1) * feat;
      for (let f = 0; f < feat; f++) {
        if (nxt[a + f] !== obs[b + f]) return { row: r, step: t };
      }
    }
  }
  return undefined;
}

/**
 * Whether form "auto" may send the compact form: full-form observations [*B, T, *obs], each key
 * with its next observations of the same shape and dtype, chained (nextObservation[t] ==
 * observation[t + 1] wherever step t is not done). Without observations there is nothing to
 * compact: the full form.
 */
function chains(observation: Record<string, Tensor>, nextObservation: Record<string, Tensor>, done: Tensor): boolean {
  const keys = Object.keys(observation);
  const nb = done.shape.length;
  if (keys.length === 0 || nb === 0) return false;
  const nextKeys = Object.keys(nextObservation);
  if (nextKeys.length !== keys.length || nextKeys.some((k) => !Object.hasOwn(observation, k))) return false;
  for (const key of keys) {
    const obs = observation[key]!;
    const nxt = nextObservation[key]!;
    if (!isTensor(obs) || !isTensor(nxt)) return false;
    if (!sameShape(obs.shape.slice(0, nb), done.shape) || !sameShape(nxt.shape, obs.shape)) return false;
    if (dtypeOf(nxt, `nextObservation[${JSON.stringify(key)}]`) !== dtypeOf(obs, `observation[${JSON.stringify(key)}]`)) {
      return false;
    }
    if (brokenLink(obs, nxt, done) !== undefined) return false;
  }
  return true;
}

/**
 * Full-form observations → the compact form (proto: TRAJECTORY_FORM_COMPACT).
 *
 * Returns `observation` [*B, T + 1, *obs] (the T observations before each step, then the next
 * observation of the last step) and `nextObservation` [K, *obs]: the next observations of the K
 * truncated steps (done and not terminated), in row-major order of their [*B, T] index.
 */
export function compactObservations(
  observation: Tensor,
  nextObservation: Tensor,
  done: Tensor,
  terminated?: Tensor,
  key = DEFAULT_OBS_KEY,
): { observation: Tensor; nextObservation: Tensor } {
  const step = done.shape;
  const nb = step.length;
  if (nb === 0) throw new RangeError("done must have at least the time dimension, got a scalar");
  if (!sameShape(observation.shape.slice(0, nb), step)) {
    throw new RangeError(
      `observation[${JSON.stringify(key)}]: expected a leading [*B, T] = [${step.join(", ")}], ` +
        `got shape [${observation.shape.join(", ")}]`,
    );
  }
  const dtype = dtypeOf(observation, `observation[${JSON.stringify(key)}]`);
  if (!sameShape(nextObservation.shape, observation.shape) || dtypeOf(nextObservation) !== dtype) {
    throw new RangeError(
      `nextObservation[${JSON.stringify(key)}]: expected the observation's shape ` +
        `[${observation.shape.join(", ")}] and dtype ${dtype}, got [${nextObservation.shape.join(", ")}] ` +
        `${dtypeOf(nextObservation)}`,
    );
  }
  const T = step[nb - 1]!;
  const rows = numel(step.slice(0, -1));
  const objShape = observation.shape.slice(nb);
  const feat = numel(objShape);
  const ctor = arrayTypeOf(dtype);
  // Typed arrays of one dtype; `any` keeps set/subarray generic over the union.
  const obs = observation.data as any;
  const nxt = nextObservation.data as any;
  // The compact form drops nextObservation[t] wherever step t is not done, so it must equal
  // observation[t + 1] there: refuse rather than silently send different data.
  const broken = brokenLink(observation, nextObservation, done);
  if (broken !== undefined) {
    throw new RangeError(
      `nextObservation[${JSON.stringify(key)}]: the compact form needs nextObservation[t] == ` +
        `observation[t + 1] wherever step t is not done; they differ at row ${broken.row}, step ` +
        `${broken.step}. Send form "full" for such data.`,
    );
  }
  const out = new ctor(rows * (T + 1) * feat) as any;
  for (let r = 0; r < rows; r++) {
    out.set(obs.subarray(r * T * feat, (r + 1) * T * feat), r * (T + 1) * feat);
    if (T > 0) out.set(nxt.subarray(((r + 1) * T - 1) * feat, (r + 1) * T * feat), (r * (T + 1) + T) * feat);
  }
  const mask = truncatedMask(done, terminated);
  let k = 0;
  for (const m of mask) k += m;
  const truncated = new ctor(k * feat) as any;
  for (let i = 0, j = 0; i < mask.length; i++) {
    if (mask[i]) truncated.set(nxt.subarray(i * feat, (i + 1) * feat), (j++) * feat);
  }
  return {
    observation: { data: out, shape: [...step.slice(0, -1), T + 1, ...objShape], dtype },
    nextObservation: { data: truncated, shape: [k, ...objShape], dtype },
  };
}

/**
 * Encode a Trajectory message (object form), building the compact form when asked: form
 * "compact", or "auto" (the default) when the data allows it (`chains`, no agents).
 */
export function buildTrajectory(args: TrajectoryArgs): Record<string, unknown> {
  const { reward, done } = args;
  let terminated = args.terminated;
  if (reward === undefined || done === undefined) {
    const missing = ["reward", "done"].filter((k) => (args as unknown as Record<string, unknown>)[k] === undefined);
    throw new TypeError(`a trajectory needs ${missing.join(" and ")}`);
  }
  if ((args.stateValue === undefined) !== (args.nextStateValue === undefined)) {
    throw new TypeError("pass both stateValue and nextStateValue, or neither");
  }
  const asked = args.form ?? "auto";
  if (asked !== "auto" && asked !== "full" && asked !== "compact") {
    throw new TypeError(`form must be "auto", "full" or "compact", got ${JSON.stringify(asked)}`);
  }
  if (args.nAgents !== undefined && (!Number.isInteger(args.nAgents) || args.nAgents < 0)) {
    throw new RangeError(`nAgents must be an integer >= 0, got ${args.nAgents}`);
  }
  const observation = asObsMap(args.observation, "observation");
  const nextObservation = asObsMap(args.nextObservation, "nextObservation");
  // "auto": the agent layout has no compact form; otherwise compact when the observations chain.
  const form = asked !== "auto" ? asked : !args.nAgents && chains(observation, nextObservation, done) ? "compact" : "full";
  const traj: Record<string, unknown> = {
    reward: encodeTensor(reward, "reward"),
    done: encodeTensor(done, "done"),
    form: form === "full" ? 1 : 2,
  };
  if (terminated !== undefined) traj["terminated"] = encodeTensor(terminated, "terminated");
  const optional: Array<[keyof TrajectoryArgs, string]> = [
    ["stateValue", "state_value"],
    ["nextStateValue", "next_state_value"],
    ["action", "action"],
    ["sampleLogProb", "sample_log_prob"],
    ["logProb", "log_prob"],
    ["mask", "mask"],
  ];
  for (const [arg, field] of optional) {
    const value = args[arg];
    if (value === undefined) continue;
    if (arg in HEAD_FIELDS && !isTensor(value)) {
      if (typeof value !== "object" || value === null) {
        throw new TypeError(`${arg} must be a Tensor or {head: Tensor}, got ${typeof value}`);
      }
      const heads: Record<string, WireTensor> = {};
      for (const [head, t] of Object.entries(value as Record<string, Tensor>)) {
        heads[head] = encodeTensor(t, `${arg}[${JSON.stringify(head)}]`);
      }
      traj[HEAD_FIELDS[arg]!] = heads;
    } else {
      traj[field] = encodeTensor(value as Tensor, arg);
    }
  }
  if (args.nAgents !== undefined) {
    if (args.nAgents > 0 && form === "compact") {
      throw new RangeError('form "compact" is not available with nAgents; send form "full"');
    }
    traj["n_agents"] = args.nAgents;
  }
  const flags = args.mask !== undefined && form === "compact" ? maskedFlags(done, terminated, args.mask) : undefined;
  const compactDone = flags?.done ?? done;
  if (flags !== undefined) terminated = flags.terminated;
  const obsOut: Record<string, WireTensor> = {};
  const nextOut: Record<string, WireTensor> = {};
  if (form === "full") {
    for (const [key, t] of Object.entries(observation)) obsOut[key] = encodeTensor(t, `observation[${JSON.stringify(key)}]`);
    for (const [key, t] of Object.entries(nextObservation)) nextOut[key] = encodeTensor(t, `nextObservation[${JSON.stringify(key)}]`);
  } else {
    const extra = Object.keys(nextObservation).filter((k) => !(k in observation));
    if (extra.length) throw new TypeError(`nextObservation has keys ${JSON.stringify(extra)} not in observation`);
    const step = done.shape; // the steps compactObservations and the chain check use
    const nb = step.length;
    const compactStep = nb ? [...step.slice(0, -1), step[nb - 1]! + 1] : [];
    for (const [key, obs] of Object.entries(observation)) {
      const label = JSON.stringify(key);
      let o = obs;
      let n = nextObservation[key];
      if (sameShape(obs.shape.slice(0, nb), step)) {
        if (n === undefined) throw new TypeError(`form "compact" from full-form observations needs nextObservation[${label}]`);
        ({ observation: o, nextObservation: n } = compactObservations(obs, n, compactDone, terminated, key));
      } else if (sameShape(obs.shape.slice(0, nb), compactStep)) {
        if (n === undefined) {
          let k = 0;
          for (const m of truncatedMask(compactDone, terminated)) k += m;
          if (k) throw new TypeError(`nextObservation[${label}] is needed at the ${k} truncated steps`);
          const dtype = dtypeOf(obs, `observation[${label}]`);
          n = { data: new (arrayTypeOf(dtype))(0), shape: [0, ...obs.shape.slice(nb)], dtype };
        }
      } else {
        throw new RangeError(
          `observation[${label}]: expected a leading [${step.join(", ")}] (full form) or ` +
            `[${compactStep.join(", ")}] (compact form), got shape [${obs.shape.join(", ")}]`,
        );
      }
      obsOut[key] = encodeTensor(o, `observation[${label}]`);
      nextOut[key] = encodeTensor(n, `nextObservation[${label}]`);
    }
  }
  traj["observation"] = obsOut;
  traj["next_observation"] = nextOut;
  return traj;
}

// ---------------------------------------------------------------------------------------------
// Loss
// ---------------------------------------------------------------------------------------------

/** Knobs of the losses (camelCase of the proto's fields); absent = TorchRL's defaults. */
export interface LossOptions {
  // PolicyLossOptions (ppo_clip, ppo_kl, ppo, a2c, reinforce) and partly impala.
  entropyBonus?: boolean;
  entropyCoeff?: number;
  criticCoeff?: number;
  lossCriticType?: "l1" | "l2" | "smooth_l1";
  normalizeAdvantage?: boolean;
  clipValue?: number;
  // ppo_clip
  clipEpsilon?: number;
  clipEpsilonLow?: number;
  clipEpsilonHigh?: number;
  // ppo_kl
  dtarg?: number;
  beta?: number;
  increment?: number;
  decrement?: number;
  // impala
  gamma?: number;
  lmbda?: number;
  rhoThresh?: number;
  cThresh?: number;
  rhoPgThresh?: number;
}

const POLICY_OPTIONS = ["entropy_bonus", "entropy_coeff", "critic_coeff", "loss_critic_type", "normalize_advantage", "clip_value"];

/** The fields each loss message takes directly (PPO family and A2C/REINFORCE: plus `options`). */
const LOSS_FIELDS: Readonly<Record<LossKind, readonly string[]>> = {
  ppo_clip: ["clip_epsilon", "clip_epsilon_low", "clip_epsilon_high"],
  ppo_kl: ["dtarg", "beta", "increment", "decrement"],
  ppo: [],
  a2c: [],
  reinforce: [],
  impala: ["gamma", "lmbda", "rho_thresh", "c_thresh", "rho_pg_thresh", "entropy_coeff", "critic_coeff", "entropy_bonus"],
};

/** The loss knobs each loss takes, by their camelCase names. */
export const LOSS_KNOBS: Readonly<Record<LossKind, readonly string[]>> = Object.freeze(
  Object.fromEntries(
    (Object.keys(LOSS_FIELDS) as LossKind[]).map((loss) => [
      loss,
      [...(loss === "impala" ? [] : POLICY_OPTIONS), ...LOSS_FIELDS[loss]].map(camel),
    ]),
  ) as Record<LossKind, string[]>,
);

export const LOSSES = Object.keys(LOSS_FIELDS) as LossKind[];

const CRITIC_LOSS: Record<string, number> = { l1: 1, l2: 2, smooth_l1: 3 };
const BOOL_LOSS_FIELDS = new Set(["entropy_bonus", "normalize_advantage"]);

/** The loss oneof, `{[loss]: message}`; `{}` when neither a loss nor options are given. */
export function buildLoss(loss: LossKind | undefined, options: LossOptions | undefined): Record<string, object> {
  const opts = (options ?? {}) as Record<string, unknown>;
  const given = Object.entries(opts).filter(([, v]) => v !== undefined);
  if (loss === undefined) {
    if (given.length === 0) return {};
    loss = "ppo_clip";
  }
  if (!(loss in LOSS_FIELDS)) {
    throw new TypeError(`unknown loss ${JSON.stringify(loss)}; expected one of ${LOSSES.join(", ")}`);
  }
  const msg: Record<string, unknown> = {};
  const policy: Record<string, unknown> = {};
  for (const [knob, value] of given) {
    const field = snake(knob);
    const direct = LOSS_FIELDS[loss].includes(field);
    if (!direct && (loss === "impala" || !POLICY_OPTIONS.includes(field))) {
      throw new TypeError(`loss ${JSON.stringify(loss)} takes no ${knob} (it takes: ${LOSS_KNOBS[loss].join(", ")})`);
    }
    let wire: unknown = value;
    if (field === "loss_critic_type") {
      wire = CRITIC_LOSS[value as string];
      if (wire === undefined) throw new TypeError(`lossCriticType must be "l1", "l2" or "smooth_l1", got ${JSON.stringify(value)}`);
    } else if (BOOL_LOSS_FIELDS.has(field)) {
      if (typeof value !== "boolean") throw new TypeError(`${knob} must be a boolean, got ${typeof value}`);
    } else if (typeof value !== "number" || !Number.isFinite(value)) {
      throw new TypeError(`${knob} must be a finite number, got ${String(value)}`);
    }
    (direct ? msg : policy)[field] = wire;
  }
  if (Object.keys(policy).length) msg["options"] = policy;
  return { [loss]: msg };
}

/** Throw a TypeError for keys of `args` not in `allowed` (catches typos from JavaScript). */
export function checkArgNames(args: object, allowed: readonly string[], fn: string): void {
  const unknown = Object.keys(args).filter((k) => !allowed.includes(k));
  if (unknown.length) throw new TypeError(`${fn}() got unknown argument(s): ${unknown.join(", ")}`);
}

export { KNOB_ARGS };
