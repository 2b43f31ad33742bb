/**
 * The one-call DreamerV3 learner step against the real Python server's built-in
 * `dreamer-demo` model (state 16, belief 16, observation [3], action [1]).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { AdvantageClient, AdvantageServiceError, Status } from "../src";
import { rng } from "./helpers";
import { startServer, type RunningServer } from "./server";

let server: RunningServer;
let client: AdvantageClient;

before(async () => {
  server = await startServer(["--dreamer-demo"]);
  client = new AdvantageClient(server.target, { deadlineMs: 60_000 });
  await client.waitForReady(30_000);
});

after(async () => {
  client?.close();
  await server?.stop();
});

const B = 2;
const T = 5;

function replay(seed: number) {
  const r = rng(seed);
  const isFirst = new Uint8Array(B * T);
  for (let b = 0; b < B; b++) isFirst[b * T] = 1;
  return {
    observation: { data: Float32Array.from({ length: B * T * 3 }, () => r() * 2 - 1), shape: [B, T, 3] },
    action: { data: Float32Array.from({ length: B * T }, () => r() * 2 - 1), shape: [B, T, 1] },
    reward: { data: Float32Array.from({ length: B * T }, () => r()), shape: [B, T] },
    isFirst: { data: isFirst, shape: [B, T] },
  };
}

test("dreamerStep: one learner step, one new version, TorchRL's names, posterior latents", async () => {
  const before = (await client.getModel("dreamer-demo")).parameterVersion;
  const step = await client.dreamerStep({
    model: "dreamer-demo",
    knobs: { actor: { imagination: { imaginationHorizon: 4 } }, model: { klMode: "separate" } },
    replay: replay(1),
    applyUpdate: true,
    returnPosterior: true,
  });
  assert.equal(step.updated, true);
  assert.equal(step.newParameterVersion, before + 1);
  for (const name of ["loss_model_dynamic", "loss_model_representation", "loss_actor", "loss_value", "return_scale"]) {
    assert.ok(name in step.metrics, name);
  }
  const total = Object.entries(step.metrics)
    .filter(([k]) => k.startsWith("loss_"))
    .reduce((s, [, v]) => s + v, 0);
  assert.ok(Math.abs(total - step.loss) <= 1e-4 * Math.max(1, Math.abs(total)));
  assert.deepEqual(step.posteriorLatents?.["state"]?.shape, [B, T, 16]);
});

test("dreamerStep: a horizon above the server's limit is RESOURCE_EXHAUSTED", async () => {
  await assert.rejects(
    client.dreamerStep({
      model: "dreamer-demo",
      knobs: { actor: { imagination: { imaginationHorizon: 100_000 } } },
      replay: replay(2),
    }),
    (error: unknown) => error instanceof AdvantageServiceError && error.code === Status.RESOURCE_EXHAUSTED,
  );
});
