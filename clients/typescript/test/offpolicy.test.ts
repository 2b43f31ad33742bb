/**
 * Off-policy losses against the real Python server with the off-policy demo models
 * (ADVANTAGE_OFFPOLICY_DEMOS=true): sac and dqn requests, updates that move the targets, the
 * per-sample TD error, and the server's refusals.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { AdvantageClient, AdvantageServiceError, buildOffPolicyLoss, Status, tensor } from "../src";
import { rng } from "./helpers";
import { startServer, type RunningServer } from "./server";

let server: RunningServer;
let client: AdvantageClient;

before(async () => {
  server = await startServer([], { ADVANTAGE_OFFPOLICY_DEMOS: "true" });
  client = new AdvantageClient(server.target, { deadlineMs: 30_000 });
  await client.waitForReady(30_000);
});

after(async () => {
  client?.close();
  await server?.stop();
});

const B = 8;

function transitions(observationSize: number, seed: number, discrete: boolean) {
  const r = rng(seed);
  const obs = new Float32Array(B * observationSize).map(() => r() * 2 - 1);
  const next = new Float32Array(B * observationSize).map(() => r() * 2 - 1);
  const reward = new Float32Array(B).map(() => r() * 2 - 1);
  const done = new Uint8Array(B).map((_, i) => (i % 4 === 1 ? 1 : 0));
  const action = discrete
    ? tensor(BigInt64Array.from({ length: B }, (_, i) => BigInt(i % 2)), [B], "int64")
    : tensor(new Float32Array(B).map(() => r() * 1.8 - 0.9), [B, 1]);
  return {
    observation: tensor(obs, [B, observationSize]),
    nextObservation: tensor(next, [B, observationSize]),
    action,
    reward: tensor(reward, [B]),
    done: tensor(done, [B], "bool"),
    terminated: tensor(done, [B], "bool"),
  };
}

test("sac: seeded losses repeat, an update moves the targets and bumps the version once", async () => {
  const batch = transitions(3, 1, false);
  const ask = () => client.computeOffPolicyLoss({ model: "demo_sac", loss: "sac", knobs: { seed: 7 }, ...batch, returnTdError: true });
  const [first, second] = [await ask(), await ask()];
  assert.equal(first.loss, second.loss); // same seed, same draws
  assert.deepEqual(Object.keys(first.metrics).sort(), ["alpha", "entropy", "loss_actor", "loss_alpha", "loss_qvalue"]);
  assert.deepEqual(first.tdError?.shape, [B]);
  const version = first.parameterVersion;
  const step = await client.computeOffPolicyLoss({
    model: "demo_sac", loss: "sac", knobs: { alphaInit: 0.5, targetEntropy: "auto" }, ...batch,
    applyUpdate: true, expectedParameterVersion: version, tau: 0.5,
  });
  assert.equal(step.updated, true);
  assert.equal(step.targetsUpdated, true);
  assert.equal(step.newParameterVersion, version + 1);
  assert.equal(step.metrics["alpha"], 0.5); // the seed of a model whose α never moved
  const after = await ask();
  assert.notEqual(after.loss, first.loss);
});

test("dqn: td_error is (Q − target)², the hard rule fires on the (N+1)-th update", async () => {
  const batch = transitions(4, 2, true);
  const moved: boolean[] = [];
  for (let i = 0; i < 3; i++) {
    const step = await client.computeOffPolicyLoss({
      model: "demo_dqn", loss: "dqn", knobs: { doubleDqn: true, gamma: 0.9 }, ...batch,
      applyUpdate: true, hardInterval: 1, returnTdError: true,
    });
    moved.push(step.targetsUpdated);
    const td = Array.from(step.tdError!.data as Float32Array);
    assert.equal(td.length, B);
    assert.ok(td.every((x) => x >= 0));
    assert.ok(Math.abs(td.reduce((a, b) => a + b, 0) / B - step.loss) < 1e-5 * Math.max(1, step.loss)); // l2: mean of td_error
  }
  assert.deepEqual(moved, [false, true, false]);
});

test("refusals: an action index out of range, a model without Q-networks, a bad knob", async () => {
  const batch = transitions(4, 3, true);
  const bad = { ...batch, action: tensor(BigInt64Array.from({ length: B }, () => 5n), [B], "int64") };
  await assert.rejects(
    client.computeOffPolicyLoss({ model: "demo_dqn", loss: "dqn", ...bad, applyUpdate: true }),
    (e: unknown) => e instanceof AdvantageServiceError && e.code === Status.INVALID_ARGUMENT && /trajectory\.action/.test(e.details),
  );
  await assert.rejects(
    client.computeOffPolicyLoss({ model: "demo", loss: "dqn", ...batch }),
    (e: unknown) => e instanceof AdvantageServiceError && e.code === Status.FAILED_PRECONDITION,
  );
  assert.throws(() => buildOffPolicyLoss("sac", { doubleDqn: true }), TypeError);
  assert.throws(() => buildOffPolicyLoss("dqn", { lossFunction: "huber" as "l2" }), TypeError);
});
