/**
 * Heads and masks against the real Python server with the two-head demo model
 * (`advantage-service export-model --two-heads`: a categorical "move" head over 3 choices and a
 * tanh-normal "aim" head in (−1, 1)², 4-dim float32 observations).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { AdvantageClient, AdvantageServiceError, Status, tensor, type Tensor } from "../src";
import { assertClose, rng } from "./helpers";
import { pythonPath, REPO_ROOT, startServer, type RunningServer } from "./server";

let server: RunningServer;
let client: AdvantageClient;
let folder: string;

before(async () => {
  folder = mkdtempSync(join(tmpdir(), "heads-"));
  await new Promise<void>((done, fail) => {
    execFile(pythonPath(), ["-m", "service.cli", "export-model", join(folder, "demo_heads"), "--two-heads"],
      { cwd: REPO_ROOT }, (err, _out, stderr) => (err ? fail(new Error(`${err.message}\n${stderr}`)) : done()));
  });
  server = await startServer(["--model-repository", folder]);
  client = new AdvantageClient(server.target, { deadlineMs: 60_000 });
  await client.waitForReady(30_000);
});

after(async () => {
  client?.close();
  await server?.stop();
  rmSync(folder, { recursive: true, force: true });
});

const B = 2, T = 5, GAMMA = 0.9;
const LENGTHS = [5, 3]; // valid steps per row

function floats(n: number, r: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

function maskTensor(): Tensor {
  const m = new Uint8Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) m[b * T + t] = t < LENGTHS[b]! ? 1 : 0;
  return tensor(m, [B, T], "bool");
}

test("GetModel describes the heads", async () => {
  const info = await client.getModel("demo_heads");
  assert.equal(info.action.distribution, "composite");
  assert.deepEqual(info.action.heads.map((h) => [h.name, h.distribution]), [["move", "categorical"], ["aim", "tanh_normal"]]);
  assert.equal(info.action.heads[0]!.numActions, 3);
  assert.deepEqual(info.action.heads[1]!.shape, [2]);
});

test("a mask zeroes the padding and cuts the segment: TD(0) worked by hand", async () => {
  const r = rng(3);
  const reward = floats(B * T, r), v = floats(B * T, r), nv = floats(B * T, r);
  for (let t = LENGTHS[1]!; t < T; t++) reward[T + t] = NaN; // padding may hold anything
  const terminated = new Uint8Array(B * T);
  terminated[1] = 1;
  const res = await client.computeAdvantage({
    model: "demo_heads", estimator: "td0", gamma: GAMMA,
    reward: tensor(reward, [B, T]), done: tensor(terminated, [B, T], "bool"),
    terminated: tensor(terminated, [B, T], "bool"),
    stateValue: tensor(v, [B, T]), nextStateValue: tensor(nv, [B, T]), mask: maskTensor(),
  });
  const expected = new Float32Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < LENGTHS[b]!; t++) {
      const i = b * T + t;
      expected[i] = reward[i]! + (terminated[i] ? 0 : GAMMA * nv[i]!) - v[i]!;
    }
  }
  assertClose(res.advantage, tensor(expected, [B, T]), { atol: 1e-6, what: "advantage" });
});

function headsBatch(seed: number) {
  const r = rng(seed);
  const obs = floats(B * (T + 1) * 4, r);
  const observation = new Float32Array(B * T * 4), next = new Float32Array(B * T * 4);
  for (let b = 0; b < B; b++) {
    observation.set(obs.subarray(b * (T + 1) * 4, (b * (T + 1) + T) * 4), b * T * 4);
    next.set(obs.subarray((b * (T + 1) + 1) * 4, (b + 1) * (T + 1) * 4), b * T * 4);
  }
  const move = new BigInt64Array(B * T);
  for (let i = 0; i < B * T; i++) move[i] = BigInt(Math.floor(r() * 3));
  return {
    reward: tensor(floats(B * T, r), [B, T]),
    done: tensor(new Uint8Array(B * T), [B, T], "bool"),
    observation: tensor(observation, [B, T, 4]),
    nextObservation: tensor(next, [B, T, 4]),
    move: tensor(move, [B, T], "int64"),
    aim: tensor(floats(B * T * 2, r, 0.9), [B, T, 2]),
    moveLogProb: tensor(floats(B * T, r).map((x) => x - 1.2), [B, T]),
    aimLogProb: tensor(floats(B * T, r), [B, T]),
  };
}

test("per-head actions and log-probabilities, with a mask, in both log-prob modes", async () => {
  const d = headsBatch(5);
  const common = {
    model: "demo_heads", reward: d.reward, done: d.done, observation: d.observation,
    nextObservation: d.nextObservation, action: { move: d.move, aim: d.aim }, mask: maskTensor(),
  };
  const perHead = await client.computeLoss({ ...common, sampleLogProb: { move: d.moveLogProb, aim: d.aimLogProb } });
  const heads = perHead.metrics["composite_entropy.move_entropy"]! + perHead.metrics["composite_entropy.aim_entropy"]!;
  assert.ok(Math.abs(perHead.metrics["entropy"]! - heads) < 1e-5, "entropy is the heads' sum");
  const summed = new Float32Array(B * T);
  for (let i = 0; i < B * T; i++) summed[i] = (d.moveLogProb.data as Float32Array)[i]! + (d.aimLogProb.data as Float32Array)[i]!;
  const aggregated = await client.computeLoss({ ...common, sampleLogProb: tensor(summed, [B, T]) });
  assert.ok(!Object.keys(aggregated.metrics).some((k) => k.startsWith("composite_entropy.")));
  assert.ok(Math.abs(aggregated.metrics["loss_objective"]! - perHead.metrics["loss_objective"]!) < 1e-5);
  const forced = await client.computeLoss({ ...common, sampleLogProb: tensor(summed, [B, T]), compositeLpAggregate: false });
  assert.ok("composite_entropy.aim_entropy" in forced.metrics);
});

test("a missing head is INVALID_ARGUMENT naming it", async () => {
  const d = headsBatch(6);
  await assert.rejects(
    client.computeLoss({
      model: "demo_heads", reward: d.reward, done: d.done, observation: d.observation,
      nextObservation: d.nextObservation, action: { move: d.move }, sampleLogProb: d.moveLogProb,
    }),
    (err: unknown) =>
      err instanceof AdvantageServiceError && err.code === Status.INVALID_ARGUMENT && /missing \['aim'\]/.test(err.message),
  );
});
