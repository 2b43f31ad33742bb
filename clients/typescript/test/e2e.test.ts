/**
 * End to end against the real Python server (spawned once for this file; see server.ts).
 * The demo model: input "observation" float32 [4], value network, categorical actor (2 actions).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  AdvantageClient,
  AdvantageServiceError,
  compactObservations,
  Status,
  tensor,
  type Tensor,
} from "../src";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { join } from "node:path";
import { findProto, LOADER_OPTIONS, PROTO_FILE } from "../src/proto";
import { assertClose, rng } from "./helpers";
import { startServer, type RunningServer } from "./server";

let server: RunningServer;
let client: AdvantageClient;

before(async () => {
  server = await startServer();
  client = new AdvantageClient(server.target, { deadlineMs: 30_000 });
  await client.waitForReady(30_000);
});

after(async () => {
  client?.close();
  await server?.stop();
});

// ---- data --------------------------------------------------------------------------------------

interface Batch {
  shape: number[]; // [*B, T]
  reward: Tensor;
  done: Tensor;
  terminated: Tensor;
  observation: Tensor;
  nextObservation: Tensor;
  stateValue: Tensor;
  nextStateValue: Tensor;
}

/**
 * Random trajectories with terminations and truncations (terminated ⇒ done), consistent within
 * each row: the next observation/value of a step that is not done is the following step's.
 */
function batch(shape: number[], seed: number, float: "float32" | "float64" = "float32"): Batch {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const F = float === "float32" ? Float32Array : Float64Array;
  const reward = new F(n), v = new F(n), nv = new F(n);
  const done = new Uint8Array(n), terminated = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    reward[i] = r() * 2 - 1;
    v[i] = r() * 4 - 2;
    nv[i] = r() * 4 - 2;
    done[i] = r() < 0.25 ? 1 : 0;
    terminated[i] = done[i] && r() < 0.5 ? 1 : 0;
  }
  // Make sure both kinds of episode end occur.
  done[1] = 1; terminated[1] = 1;
  done[2] = 1; terminated[2] = 0;
  const T = shape[shape.length - 1]!;
  // Consistent values: V(s_{t+1}) of a step that is not done is V(s) of the following step.
  for (let i = 0; i < n; i++) if (!done[i] && (i % T) < T - 1) nv[i] = v[i + 1]!;
  // Consistent trajectories: within a row, the next observation of a step that is not done is
  // the observation of the following step (what the compact form relies on).
  const obs = new Float32Array(n * 4), nobs = new Float32Array(n * 4);
  for (let i = 0; i < n * 4; i++) obs[i] = r() * 2 - 1;
  for (let i = 0; i < n; i++) {
    const follows = !done[i] && (i % T) < T - 1;
    for (let f = 0; f < 4; f++) nobs[i * 4 + f] = follows ? obs[(i + 1) * 4 + f]! : r() * 2 - 1;
  }
  return {
    shape,
    reward: { data: reward, shape, dtype: float },
    done: { data: done, shape, dtype: "bool" },
    terminated: { data: terminated, shape, dtype: "bool" },
    observation: { data: obs, shape: [...shape, 4] },
    nextObservation: { data: nobs, shape: [...shape, 4] },
    stateValue: { data: v, shape, dtype: float },
    nextStateValue: { data: nv, shape, dtype: float },
  };
}

/**
 * Reference GAE (TorchRL semantics), time last: δ_t = r_t + γ(1 − terminated_t)V'_t − V_t,
 * A_t = δ_t + γλ(1 − done_t)A_{t+1}, and the last step of each row is a boundary.
 */
function referenceGae(b: Batch, gamma: number, lmbda: number): { advantage: Float64Array; valueTarget: Float64Array } {
  const T = b.shape[b.shape.length - 1]!;
  const n = b.reward.data.length;
  const [r, v, nv] = [b.reward, b.stateValue, b.nextStateValue].map((t) => t.data as Float64Array);
  const done = b.done.data as Uint8Array, term = b.terminated.data as Uint8Array;
  const advantage = new Float64Array(n), valueTarget = new Float64Array(n);
  for (let row = 0; row < n / T; row++) {
    let next = 0;
    for (let t = T - 1; t >= 0; t--) {
      const i = row * T + t;
      const delta = r[i]! + gamma * (1 - term[i]!) * nv[i]! - v[i]!;
      next = delta + gamma * lmbda * (1 - done[i]!) * next;
      advantage[i] = next;
      valueTarget[i] = next + v[i]!;
    }
  }
  return { advantage, valueTarget };
}

function expectServiceError(code: Status, details?: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof AdvantageServiceError, `expected AdvantageServiceError, got ${String(err)}`);
    assert.equal(err.codeName, Status[code]);
    assert.equal(err.code, code);
    if (details) assert.match(err.details, details);
    return true;
  };
}

// Requests as the channel serialises them (the bytes that go out), in call order.
const requestDefinition = protoLoader.loadSync(PROTO_FILE, {
  ...LOADER_OPTIONS,
  defaults: true,
  enums: String,
  includeDirs: [join(findProto(), "..", "..", "..")],
});
const advantageMethods = requestDefinition["advantage.v1.AdvantageService"] as protoLoader.ServiceDefinition;

function decodeAdvantageRequest(bytes: Buffer): any {
  return advantageMethods["ComputeAdvantage"]!.requestDeserialize(bytes);
}

function recordingClient(): { client: AdvantageClient; sent: Buffer[] } {
  const sent: Buffer[] = [];
  const recorder: grpc.Interceptor = (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      sendMessage(message, next) {
        sent.push(options.method_definition.requestSerialize(message));
        next(message);
      },
    });
  const recorded = new AdvantageClient(server.target, { deadlineMs: 30_000, channelOptions: { interceptors: [recorder] } });
  return { client: recorded, sent };
}

// ---- models ------------------------------------------------------------------------------------

describe("models", () => {
  test("listModels shows demo", async () => {
    const models = await client.listModels();
    assert.ok(models.map((m) => m.name).includes("demo"), JSON.stringify(models.map((m) => m.name)));
  });

  test("getModel describes demo; '' is the default model", async () => {
    const demo = await client.getModel("demo");
    assert.deepEqual(demo.inputs, [{ name: "observation", shape: [4], dtype: "float32" }]);
    assert.deepEqual(demo.inputKeys, ["observation"]);
    assert.equal(demo.hasValueNetwork, true);
    assert.equal(demo.hasActorNetwork, true);
    assert.equal(demo.action.distribution, "categorical");
    assert.equal(demo.action.numActions, 2);
    assert.equal(demo.action.dtype, "int64");
    assert.ok(demo.gamma > 0 && demo.gamma <= 1 && demo.lmbda > 0 && demo.lmbda <= 1);
    assert.equal((await client.getModel()).name, "demo");
  });

  test("NOT_FOUND for an unknown model (getModel and computeAdvantage)", async () => {
    await assert.rejects(client.getModel("no-such-model"), expectServiceError(Status.NOT_FOUND, /demo/));
    const b = batch([1, 3], 1);
    await assert.rejects(
      client.computeAdvantage({ reward: b.reward, done: b.done, observation: b.observation, nextObservation: b.nextObservation, model: "no-such-model" }),
      expectServiceError(Status.NOT_FOUND, /no-such-model/),
    );
  });
});

// ---- computeAdvantage ----------------------------------------------------------------------------

describe("computeAdvantage", () => {
  test("GAE with server-held values returns [B, T] advantages and the values it used", async () => {
    const b = batch([3, 5], 2);
    const res = await client.computeAdvantage({
      reward: b.reward,
      done: b.done,
      terminated: b.terminated,
      observation: { observation: b.observation },
      nextObservation: { observation: b.nextObservation },
      estimator: "gae",
      gamma: 0.99,
      lmbda: 0.95,
    });
    assert.equal(res.modelName, "demo");
    for (const t of [res.advantage, res.valueTarget, res.stateValue!, res.nextStateValue!]) {
      assert.deepEqual(t.shape, [3, 5]);
      assert.equal(t.dtype, "float32");
      assert.ok(t.data instanceof Float32Array);
      assert.ok(Array.from(t.data as Float32Array).every(Number.isFinite));
    }
    // The server's own numbers satisfy the recursion too (float32).
    const ref = referenceGae({ ...b, stateValue: res.stateValue!, nextStateValue: res.nextStateValue! }, 0.99, 0.95);
    assertClose(res.advantage.data as Float32Array, ref.advantage, { atol: 1e-5, rtol: 1e-5, what: "advantage" });
    assertClose(res.valueTarget.data as Float32Array, ref.valueTarget, { atol: 1e-5, rtol: 1e-5, what: "value_target" });
    assert.ok(res.timing.estimatorMs >= 0 && res.timing.networkMs > 0);
  });

  test("GAE with client-sent float64 values equals the reference recursion (1e-12), any batch dims", async () => {
    const b = batch([2, 3, 7], 3, "float64");
    const res = await client.computeAdvantage({
      reward: b.reward,
      done: b.done,
      terminated: b.terminated,
      stateValue: b.stateValue,
      nextStateValue: b.nextStateValue,
      estimator: "gae",
      gamma: 0.9,
      lmbda: 0.8,
    });
    assert.equal(res.advantage.dtype, "float64");
    assert.deepEqual(res.advantage.shape, [2, 3, 7]);
    assert.equal(res.stateValue, undefined); // the server did not compute values
    const ref = referenceGae(b, 0.9, 0.8);
    assertClose(res.advantage.data as Float64Array, ref.advantage, { atol: 1e-12, what: "advantage" });
    assertClose(res.valueTarget.data as Float64Array, ref.valueTarget, { atol: 1e-12, what: "value_target" });
  });

  test("a per-step γ tensor gives the scalar γ's numbers", async () => {
    const b = batch([2, 6], 4, "float64");
    const common = { reward: b.reward, done: b.done, terminated: b.terminated, stateValue: b.stateValue, nextStateValue: b.nextStateValue, lmbda: 0.7 };
    const scalar = await client.computeAdvantage({ ...common, gamma: 0.95 });
    const perStep = await client.computeAdvantage({ ...common, gamma: tensor(new Float64Array(12).fill(0.95), [2, 6]) });
    assertClose(perStep.advantage, scalar.advantage, { atol: 1e-12, what: "advantage" });
    assertClose(perStep.advantage, referenceGae(b, 0.95, 0.7).advantage, { atol: 1e-12, what: "vs reference" });
  });

  test("TD(0): advantage = r + γ(1 − terminated)V' − V", async () => {
    const b = batch([4, 5], 5, "float64");
    const res = await client.computeAdvantage({
      reward: b.reward, done: b.done, terminated: b.terminated, stateValue: b.stateValue, nextStateValue: b.nextStateValue,
      estimator: "td0", gamma: 0.9,
    });
    const [r, v, nv] = [b.reward, b.stateValue, b.nextStateValue].map((t) => t.data as Float64Array);
    const term = b.terminated.data as Uint8Array;
    const expected = Array.from(r!, (ri, i) => ri + 0.9 * (1 - term[i]!) * nv![i]! - v![i]!);
    assertClose(res.advantage.data as Float64Array, expected, { atol: 1e-12, what: "td0 advantage" });
  });

  test("TorchRL's estimator names run the same estimator as the service's", async () => {
    const b = batch([2, 7], 14, "float64");
    const values = { reward: b.reward, done: b.done, terminated: b.terminated, stateValue: b.stateValue, nextStateValue: b.nextStateValue };
    const service = await client.computeAdvantage({ ...values, estimator: "td_lambda", gamma: 0.9, lmbda: 0.7 });
    const torchrl = await client.computeAdvantage({ ...values, estimator: "TDLambdaEstimator", gamma: 0.9, lmbda: 0.7 });
    const gae = await client.computeAdvantage({ ...values, estimator: "GAE", gamma: 0.9, lmbda: 0.7 });
    assert.deepEqual(Array.from(torchrl.valueTarget.data as Float64Array), Array.from(service.valueTarget.data as Float64Array));
    assert.notDeepEqual(Array.from(gae.valueTarget.data as Float64Array), Array.from(service.valueTarget.data as Float64Array));
  });

  test("V-trace on-policy (ρ = c = 1) gives TD(1)'s value target; with the server's actor too", async () => {
    const b = batch([3, 6], 12, "float64");
    const values = { reward: b.reward, done: b.done, terminated: b.terminated, stateValue: b.stateValue, nextStateValue: b.nextStateValue };
    const logp = tensor(new Float64Array(18).fill(-0.3), [3, 6], "float64");
    const vtrace = await client.computeAdvantage({ ...values, estimator: "vtrace", gamma: 0.9, sampleLogProb: logp, logProb: logp });
    const td1 = await client.computeAdvantage({ ...values, estimator: "td1", gamma: 0.9 });
    assertClose(vtrace.valueTarget, td1.valueTarget, { atol: 1e-12, what: "vs vs TD(1) target" });
    // Current log-probs from the demo actor (categorical, 2 actions): needs observation + action.
    const c = batch([3, 6], 13);
    const actor = await client.computeAdvantage({
      reward: c.reward, done: c.done, terminated: c.terminated, observation: c.observation, nextObservation: c.nextObservation,
      action: tensor(new BigInt64Array(18).map((_, i) => BigInt(i % 2)), [3, 6]),
      sampleLogProb: tensor(new Float32Array(18).fill(Math.log(0.5)), [3, 6]),
      estimator: "vtrace", rhoThresh: 1, cThresh: 1,
    });
    assert.deepEqual(actor.advantage.shape, [3, 6]);
    assert.ok(Array.from(actor.advantage.data as Float32Array).every(Number.isFinite));
  });

  test("the compact form returns the full form's numbers (client-built and pre-built)", async () => {
    const b = batch([3, 8], 6);
    const common = { reward: b.reward, done: b.done, terminated: b.terminated, estimator: "gae" as const };
    const full = await client.computeAdvantage({
      ...common, observation: b.observation, nextObservation: b.nextObservation, form: "full",
    });
    const compact = await client.computeAdvantage({
      ...common, observation: b.observation, nextObservation: b.nextObservation, form: "compact",
    });
    const pre = compactObservations(b.observation, b.nextObservation, b.done, b.terminated);
    assert.deepEqual(pre.observation.shape, [3, 9, 4]);
    assert.ok(pre.nextObservation.shape[0]! >= 1, "the batch has truncated steps");
    const prebuilt = await client.computeAdvantage({ ...common, ...pre, form: "compact" });
    for (const other of [compact, prebuilt]) {
      assertClose(other.advantage, full.advantage, { atol: 1e-6, rtol: 1e-6, what: "advantage" });
      assertClose(other.valueTarget, full.valueTarget, { atol: 1e-6, rtol: 1e-6, what: "value_target" });
      assertClose(other.stateValue!, full.stateValue!, { atol: 1e-6, rtol: 1e-6, what: "state_value" });
    }
  });

  test('form "auto" (the default) sends chained observations compact: the full form\'s numbers, fewer bytes', async () => {
    const b = batch([3, 8], 21);
    const args = { reward: b.reward, done: b.done, terminated: b.terminated, observation: b.observation, nextObservation: b.nextObservation };
    const { client: recorded, sent } = recordingClient();
    try {
      const auto = await recorded.computeAdvantage(args);
      const full = await recorded.computeAdvantage({ ...args, form: "full" });
      const [autoRequest, fullRequest] = sent.map(decodeAdvantageRequest);
      assert.equal(autoRequest!.trajectory.form, "TRAJECTORY_FORM_COMPACT");
      assert.equal(fullRequest!.trajectory.form, "TRAJECTORY_FORM_FULL");
      assert.deepEqual(autoRequest!.trajectory.observation.observation.shape.map(Number), [3, 9, 4]);
      assert.ok(sent[0]!.length < sent[1]!.length, `auto ${sent[0]!.length} bytes, full ${sent[1]!.length}`);
      assertClose(auto.advantage, full.advantage, { atol: 1e-6, rtol: 1e-6, what: "advantage" });
      assertClose(auto.valueTarget, full.valueTarget, { atol: 1e-6, rtol: 1e-6, what: "value_target" });
      assertClose(auto.nextStateValue!, full.nextStateValue!, { atol: 1e-6, rtol: 1e-6, what: "next_state_value" });
    } finally {
      recorded.close();
    }
  });

  test('form "auto" sends observations that do not chain in the full form (same numbers); "compact" refuses them', async () => {
    const b = batch([3, 8], 22);
    const done = b.done.data as Uint8Array;
    const running = done.findIndex((d, i) => !d && i % 8 < 7); // a step that is not done
    assert.ok(running >= 0);
    const nobs = Float32Array.from(b.nextObservation.data as Float32Array);
    nobs[running * 4] = (nobs[running * 4] as number) + 0.5;
    const args = { reward: b.reward, done: b.done, terminated: b.terminated, observation: b.observation, nextObservation: tensor(nobs, [3, 8, 4]) };
    const { client: recorded, sent } = recordingClient();
    try {
      const auto = await recorded.computeAdvantage(args);
      const full = await recorded.computeAdvantage({ ...args, form: "full" });
      assert.equal(decodeAdvantageRequest(sent[0]!).trajectory.form, "TRAJECTORY_FORM_FULL");
      assert.deepEqual(sent[0], sent[1]); // the same request
      assert.deepEqual(Array.from(auto.advantage.data as Float32Array), Array.from(full.advantage.data as Float32Array));
      await assert.rejects(recorded.computeAdvantage({ ...args, form: "compact" }), /compact form needs.*form "full"/);
      assert.equal(sent.length, 2); // refused before sending
    } finally {
      recorded.close();
    }
  });

  test("INVALID_ARGUMENT for a wrong reward shape, naming trajectory.done or trajectory.reward", async () => {
    const b = batch([2, 4], 7);
    // TorchRL's [*B, T, 1] reward with a [*B, T] done.
    await assert.rejects(
      client.computeAdvantage({
        reward: { data: b.reward.data, shape: [2, 4, 1] },
        done: b.done,
        observation: b.observation,
        nextObservation: b.nextObservation,
      }),
      expectServiceError(Status.INVALID_ARGUMENT, /trajectory\.(done|reward)/),
    );
    // A reward that is not float.
    await assert.rejects(
      client.computeAdvantage({
        reward: { data: new Int32Array(8), shape: [2, 4] },
        done: b.done,
        observation: b.observation,
        nextObservation: b.nextObservation,
      }),
      expectServiceError(Status.INVALID_ARGUMENT, /trajectory\.reward/),
    );
  });

  test("DEADLINE_EXCEEDED when the deadline passes", async () => {
    const b = batch([64, 256], 8);
    await assert.rejects(
      client.computeAdvantage({ reward: b.reward, done: b.done, observation: b.observation, nextObservation: b.nextObservation, deadlineMs: 1 }),
      expectServiceError(Status.DEADLINE_EXCEEDED),
    );
  });
});

// ---- computeLoss -------------------------------------------------------------------------------

describe("computeLoss", () => {
  function lossBatch(seed: number) {
    const b = batch([2, 6], seed);
    const n = 12;
    const r = rng(seed + 100);
    const action = new BigInt64Array(n).map(() => (r() < 0.5 ? 0n : 1n));
    return {
      reward: b.reward,
      done: b.done,
      terminated: b.terminated,
      observation: b.observation,
      nextObservation: b.nextObservation,
      action: tensor(action, [2, 6]),
      sampleLogProb: tensor(new Float32Array(n).fill(Math.log(0.5)), [2, 6]),
    };
  }

  test("an estimator by TorchRL's name (\"TD0\") is the service's \"td0\"", async () => {
    const torchrl = await client.computeLoss({ ...lossBatch(6), estimator: "TD0", gamma: 0.9, loss: "a2c" });
    const service = await client.computeLoss({ ...lossBatch(6), estimator: "td0", gamma: 0.9, loss: "a2c" });
    const gae = await client.computeLoss({ ...lossBatch(6), estimator: "gae", gamma: 0.9, loss: "a2c" });
    assert.equal(torchrl.loss, service.loss);
    assert.notEqual(gae.loss, service.loss);
  });

  test("default loss (ClipPPO): loss is the sum of the loss_* metrics", async () => {
    const res = await client.computeLoss(lossBatch(9));
    assert.equal(res.modelName, "demo");
    assert.equal(res.updated, false);
    for (const key of ["loss_objective", "loss_critic", "loss_entropy", "entropy"]) {
      assert.ok(key in res.metrics, `metrics lacks ${key}: ${Object.keys(res.metrics).join(", ")}`);
    }
    const sum = Object.entries(res.metrics).filter(([k]) => k.startsWith("loss_")).reduce((a, [, v]) => a + v, 0);
    assert.ok(Math.abs(res.loss - sum) <= 1e-5 * Math.max(1, Math.abs(sum)), `${res.loss} vs ${sum}`);
  });

  test("A2C with loss options and a TD(0) estimator", async () => {
    const res = await client.computeLoss({
      ...lossBatch(10), estimator: "td0", gamma: 0.9, loss: "a2c", lossOptions: { entropyBonus: false, lossCriticType: "l2" },
    });
    assert.ok(Number.isFinite(res.loss));
    assert.ok(!("loss_entropy" in res.metrics), Object.keys(res.metrics).join(", "));
  });

  test("FAILED_PRECONDITION when applyUpdate's expected version is stale (nothing applied)", async () => {
    const before = (await client.getModel("demo")).parameterVersion;
    await assert.rejects(
      client.computeLoss({ ...lossBatch(11), applyUpdate: true, expectedParameterVersion: before + 100 }),
      expectServiceError(Status.FAILED_PRECONDITION),
    );
    assert.equal((await client.getModel("demo")).parameterVersion, before);
  });

  test("applyUpdate takes one optimizer step at the expected version", async () => {
    const before = (await client.getModel("demo")).parameterVersion;
    const res = await client.computeLoss({ ...lossBatch(12), applyUpdate: true, expectedParameterVersion: before });
    assert.equal(res.updated, true);
    assert.equal(res.parameterVersion, before);
    assert.equal(res.newParameterVersion, before + 1);
    assert.ok(Number.isFinite(res.gradNorm));
    assert.equal((await client.getModel("demo")).parameterVersion, before + 1);
  });
});

// ---- parameters ----------------------------------------------------------------------------------

describe("parameters", () => {
  test("getParameters reassembles chunked tensors; prefixes filter", async () => {
    const whole = await client.getParameters("demo");
    const names = Object.keys(whole.tensors);
    assert.ok(names.some((n) => n.startsWith("value_network.")) && names.some((n) => n.startsWith("actor_network.")), names.join(", "));
    const w = whole.tensors["value_network.0.weight"]!;
    assert.deepEqual(w.shape, [64, 4]);
    assert.equal(w.dtype, "float32");
    const small = await client.getParameters("demo", { maxChunkBytes: 100 }); // many pieces per tensor
    assert.equal(small.parameterVersion, whole.parameterVersion);
    assert.deepEqual(Object.keys(small.tensors), names);
    for (const name of names) assertClose(small.tensors[name]!, whole.tensors[name]!, { what: name });
    const actor = await client.getParameters("demo", { prefixes: ["actor_network."] });
    assert.ok(Object.keys(actor.tensors).length > 0);
    assert.ok(Object.keys(actor.tensors).every((n) => n.startsWith("actor_network.")));
  });

  test("setParameters round trip bumps the version; a stale version is refused", async () => {
    const before = await client.getParameters("demo", { prefixes: ["value_network."] });
    const set = await client.setParameters("demo", before.tensors, { expectedVersion: before.parameterVersion, maxChunkBytes: 4096 });
    assert.equal(set.parameterVersion, before.parameterVersion + 1);
    assert.equal(set.tensorsUpdated, Object.keys(before.tensors).length);
    const afterSet = await client.getParameters("demo", { prefixes: ["value_network."] });
    for (const name of Object.keys(before.tensors)) assertClose(afterSet.tensors[name]!, before.tensors[name]!, { what: name });
    await assert.rejects(
      client.setParameters("demo", before.tensors, { expectedVersion: before.parameterVersion }),
      expectServiceError(Status.FAILED_PRECONDITION),
    );
  });
});
