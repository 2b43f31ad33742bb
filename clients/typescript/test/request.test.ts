/** Request building without a server: knobs (checked against the proto), compact form, argument checks. */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { AdvantageClient, compactObservations, estimatorFrom, KNOBS, LOSS_KNOBS, loadProto, tensor } from "../src";
import { buildEstimator, buildLoss, buildTrajectory, camel, type Estimator, type LossKind } from "../src/request";

type Descriptor = { type: { field: Array<{ name: string }> } };

function protoFields(message: string): string[] {
  const def = loadProto().packageDefinition[`advantage.v1.${message}`] as unknown as Descriptor;
  return def.type.field.map((f) => f.name);
}

describe("knob tables match the proto", () => {
  const messages: Record<Estimator, string> = { td0: "TD0", td1: "TD1", td_lambda: "TDLambda", gae: "GAE", vtrace: "VTrace" };
  for (const [est, msg] of Object.entries(messages)) {
    test(`${est} ↔ ${msg}`, () => {
      assert.deepEqual([...KNOBS[est as Estimator]].sort(), protoFields(msg).map(camel).sort());
    });
  }
  const losses: Record<LossKind, string> = {
    ppo_clip: "ClipPPOLoss", ppo_kl: "KLPENPPOLoss", ppo: "PPOLoss", a2c: "A2CLoss", reinforce: "ReinforceLoss", impala: "ImpalaLoss",
  };
  const policyOptions = protoFields("PolicyLossOptions");
  for (const [loss, msg] of Object.entries(losses)) {
    test(`${loss} ↔ ${msg}`, () => {
      const fields = protoFields(msg).flatMap((f) => (f === "options" ? policyOptions : [f]));
      assert.deepEqual([...LOSS_KNOBS[loss as LossKind]].sort(), fields.map(camel).sort());
    });
  }
  test("the request oneofs hold exactly these estimators and losses", () => {
    const fields = protoFields("ComputeLossRequest");
    for (const est of Object.keys(messages)) assert.ok(fields.includes(est), est);
    for (const loss of Object.keys(losses)) assert.ok(fields.includes(loss), loss);
  });
});

describe("estimator and loss messages", () => {
  const reward = tensor(new Float64Array(6), [2, 3]);

  test("scalar and per-step coefficients; per-step is cast to the reward's dtype", () => {
    const msg = buildEstimator("gae", { gamma: 0.9, lmbda: tensor(new Float32Array(6).fill(0.5), [2, 3, 1]), averageGae: true }, reward);
    const gae = msg["gae"] as Record<string, any>;
    assert.deepEqual(gae["gamma"], { scalar: 0.9 });
    assert.equal(gae["average_gae"], true);
    assert.equal(gae["lmbda"].per_step.dtype, 2); // float64, like the reward
    assert.deepEqual(gae["lmbda"].per_step.shape, [2, 3]); // trailing 1 dropped
  });

  test("an estimator with no knobs is still selected", () => {
    assert.deepEqual(buildEstimator("td0", {}, reward), { td0: {} });
  });

  test("knob errors", () => {
    assert.throws(() => buildEstimator("gae", { averageRewards: true }, reward), /takes no averageRewards/);
    assert.throws(() => buildEstimator("gae", { gamma: 1.5 }, reward), RangeError);
    assert.throws(() => buildEstimator("vtrace", { rhoThresh: 0 }, reward), RangeError);
    assert.throws(() => buildEstimator("vtrace", { lmbda: reward }, reward), /must be a number/);
    assert.throws(() => buildEstimator("gae", { lmbda: tensor(new Float64Array(3), [3]) }, reward), /reward's shape/);
    assert.throws(() => buildEstimator("nope" as Estimator, {}, reward), /unknown estimator/);
  });

  test("TorchRL's ValueEstimators names and estimator classes name the same estimators", () => {
    const names: Record<string, Estimator> = {
      GAE: "gae", TD0: "td0", TD1: "td1", TDLambda: "td_lambda", VTrace: "vtrace",
      TD0Estimator: "td0", TD1Estimator: "td1", TDLambdaEstimator: "td_lambda",
      td_lambda: "td_lambda", "td-lambda": "td_lambda", vtrace: "vtrace", Gae: "gae",
    };
    for (const [name, estimator] of Object.entries(names)) assert.equal(estimatorFrom(name), estimator, name);
    for (const name of ["MAGAE", "QValue", "estimator", ""]) {
      assert.throws(() => estimatorFrom(name), /unknown estimator .*TorchRL's names/, name);
    }
  });

  test("loss options go to the message or its PolicyLossOptions", () => {
    assert.deepEqual(buildLoss(undefined, undefined), {});
    assert.deepEqual(buildLoss(undefined, { clipEpsilon: 0.1, entropyCoeff: 0 }), {
      ppo_clip: { clip_epsilon: 0.1, options: { entropy_coeff: 0 } },
    });
    assert.deepEqual(buildLoss("a2c", { lossCriticType: "l2" }), { a2c: { options: { loss_critic_type: 2 } } });
    assert.deepEqual(buildLoss("impala", { gamma: 0.9, entropyBonus: false }), { impala: { gamma: 0.9, entropy_bonus: false } });
    assert.throws(() => buildLoss("impala", { clipValue: 1 }), /takes no clipValue/);
    assert.throws(() => buildLoss("ppo", { dtarg: 0.1 }), /takes no dtarg/);
  });
});

describe("compactObservations", () => {
  // B = 2, T = 3, obs [2]; observation = 100·b + 10·t + feature. Within an episode the next
  // observation is the following one; at a done step it is that + 5 (the true next, not the reset).
  const B = 2, T = 3;
  const doneFlags = [false, true, false, true, false, true]; // (0,1) (1,0) (1,2)
  function batch() {
    const obs = new Float32Array(B * T * 2);
    const nxt = new Float32Array(B * T * 2);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let f = 0; f < 2; f++) {
      obs[(b * T + t) * 2 + f] = 100 * b + 10 * t + f;
      nxt[(b * T + t) * 2 + f] = 100 * b + 10 * (t + 1) + f + (doneFlags[b * T + t] ? 5 : 0);
    }
    return { obs, nxt };
  }
  const done = tensor(doneFlags, [B, T]);
  const terminated = tensor([false, false, false, true, false, false], [B, T]); // (1,0) terminated

  test("T + 1 observations per row and the truncated steps' next observations", () => {
    const { obs, nxt } = batch();
    const c = compactObservations(tensor(obs, [B, T, 2]), tensor(nxt, [B, T, 2]), done, terminated);
    assert.deepEqual(c.observation.shape, [B, T + 1, 2]);
    assert.deepEqual(Array.from(c.observation.data as Float32Array), [
      0, 1, 10, 11, 20, 21, 30, 31,
      100, 101, 110, 111, 120, 121, 135, 136,
    ]);
    // Truncated = done & !terminated: (0, 1) and (1, 2), in row-major order.
    assert.deepEqual(c.nextObservation.shape, [2, 2]);
    assert.deepEqual(Array.from(c.nextObservation.data as Float32Array), [25, 26, 135, 136]);
    // Without `terminated` nothing is truncated.
    assert.deepEqual(compactObservations(tensor(obs, [B, T, 2]), tensor(nxt, [B, T, 2]), done).nextObservation.shape, [0, 2]);
  });

  test("refuses next observations that do not chain within an episode", () => {
    const { obs, nxt } = batch();
    nxt[(0 * T + 0) * 2 + 1] = 99; // step (0, 0) is not done: must equal observation (0, 1)
    assert.throws(
      () => compactObservations(tensor(obs, [B, T, 2]), tensor(nxt, [B, T, 2]), done, terminated),
      /differ at row 0, step 0.*form "full"/,
    );
  });
});

describe('form "auto" (the default)', () => {
  // B = 2, T = 3, obs [2]: row-major observation 100·b + 10·t + feature; a step that is not done
  // is followed by its next observation, a done step's next observation is that + 5 (the true
  // next, not the reset). Done at (0, 1), (1, 0), (1, 2); (1, 0) terminated.
  const B = 2, T = 3;
  const doneFlags = [false, true, false, true, false, true];
  function arrays() {
    const obs = new Float32Array(B * T * 2);
    const nxt = new Float32Array(B * T * 2);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let f = 0; f < 2; f++) {
      obs[(b * T + t) * 2 + f] = 100 * b + 10 * t + f;
      nxt[(b * T + t) * 2 + f] = 100 * b + 10 * (t + 1) + f + (doneFlags[b * T + t] ? 5 : 0);
    }
    return {
      reward: tensor(new Float32Array(B * T).map((_, i) => i / 4), [B, T]),
      done: tensor(doneFlags, [B, T]),
      terminated: tensor([false, false, false, true, false, false], [B, T]),
      observation: tensor(obs, [B, T, 2]),
      nextObservation: tensor(nxt, [B, T, 2]),
    };
  }
  const rawBytes = (traj: Record<string, any>): number =>
    ["observation", "next_observation"].reduce(
      (n, field) => n + Object.values(traj[field] as Record<string, any>).reduce((m: number, t: any) => m + t.raw_data.length, 0),
      0,
    );

  test("chained observations go compact: the explicit compact trajectory, fewer bytes", () => {
    const a = arrays();
    const auto = buildTrajectory(a);
    assert.equal(auto["form"], 2); // TRAJECTORY_FORM_COMPACT
    assert.deepEqual(auto, buildTrajectory({ ...a, form: "compact" }));
    const obs = (auto["observation"] as Record<string, any>)["observation"];
    const nxt = (auto["next_observation"] as Record<string, any>)["observation"];
    assert.deepEqual(obs.shape, [B, T + 1, 2]);
    assert.deepEqual(nxt.shape, [2, 2]); // the truncated steps (0, 1) and (1, 2)
    // Observations once, plus the two truncated next observations: (8 + 2)·2 floats of 4 bytes
    // instead of the full form's 2·6·2.
    assert.equal(rawBytes(auto), (B * (T + 1) + 2) * 2 * 4);
    assert.equal(rawBytes(buildTrajectory({ ...a, form: "full" })), 2 * B * T * 2 * 4);
  });

  test("a truncated step's next observation may differ; a running step's may not (then full)", () => {
    const a = arrays();
    const nxt = a.nextObservation.data as Float32Array;
    nxt[(0 * T + 1) * 2] = -1; // (0, 1) is done (truncated): not part of the chain
    assert.equal(buildTrajectory(a)["form"], 2);
    nxt[(1 * T + 1) * 2 + 1] = -1; // (1, 1) is not done: next_observation != observation (1, 2)
    const auto = buildTrajectory(a);
    assert.equal(auto["form"], 1); // TRAJECTORY_FORM_FULL
    assert.deepEqual(auto, buildTrajectory({ ...a, form: "full" }));
    assert.throws(() => buildTrajectory({ ...a, form: "compact" }), /differ at row 1, step 1.*form "full"/);
  });

  function nanChained(a: ReturnType<typeof arrays>): Record<string, unknown> {
    const obs = Float32Array.from(a.observation.data as Float32Array);
    const nxt = Float32Array.from(a.nextObservation.data as Float32Array);
    obs[(0 * T + 1) * 2] = nxt[(0 * T + 0) * 2] = NaN; // step (0, 0) is not done
    return { ...a, observation: tensor(obs, [B, T, 2]), nextObservation: tensor(nxt, [B, T, 2]) };
  }

  test("agents, no observations, a missing or mismatched next observation: full", () => {
    const a = arrays();
    const cases: Array<[string, Record<string, unknown>]> = [
      ["nAgents", { ...a, nAgents: 1, observation: tensor(a.observation.data, [B, T, 1, 2]), nextObservation: tensor(a.nextObservation.data, [B, T, 1, 2]) }],
      ["client values only", { reward: a.reward, done: a.done, stateValue: a.reward, nextStateValue: a.reward }],
      ["no next observation", { ...a, nextObservation: undefined }],
      ["another key", { ...a, observation: { observation: a.observation }, nextObservation: { other: a.nextObservation } }],
      ["another dtype", { ...a, nextObservation: tensor(Float64Array.from(a.nextObservation.data as Float32Array), [B, T, 2]) }],
      ["a chained NaN (not equal to itself)", nanChained(a)],
    ];
    for (const [what, args] of cases) {
      const auto = buildTrajectory(args as never);
      assert.equal(auto["form"], 1, what);
      assert.deepEqual(auto, buildTrajectory({ ...args, form: "full" } as never), what);
    }
    // With agents an explicit compact form is still refused.
    assert.throws(() => buildTrajectory({ ...cases[0]![1], form: "compact" } as never), /not available with nAgents/);
  });

  test("a mask: padded steps end their episode (terminated) as with an explicit compact form", () => {
    const a = arrays();
    const mask = tensor([true, true, true, true, true, false], [B, T]);
    const auto = buildTrajectory({ ...a, mask });
    assert.equal(auto["form"], 2);
    assert.deepEqual(auto, buildTrajectory({ ...a, mask, form: "compact" }));
    // (1, 2) is padding now: terminated, so only (0, 1) is a truncated step.
    assert.deepEqual((auto["next_observation"] as Record<string, any>)["observation"].shape, [1, 2]);
  });

  test("form names", () => {
    assert.throws(() => buildTrajectory({ ...arrays(), form: "half" as never }), /form must be "auto", "full" or "compact"/);
  });
});

describe("client-side argument checks reject before sending", () => {
  // Nothing listens on port 1: these must fail on the arguments, not on the connection.
  const client = new AdvantageClient("127.0.0.1:1", { deadlineMs: 2000 });
  after(() => client.close());
  const base = { reward: tensor(new Float32Array(2), [1, 2]), done: tensor([false, false], [1, 2]) };

  test("a knob the estimator does not take", async () => {
    await assert.rejects(client.computeAdvantage({ ...base, estimator: "td0", lmbda: 0.9 }), TypeError);
  });
  test("an unknown argument (a typo from JavaScript)", async () => {
    await assert.rejects(client.computeAdvantage({ ...base, lambda: 0.9 } as never), /unknown argument\(s\): lambda/);
  });
  test("stateValue without nextStateValue", async () => {
    await assert.rejects(client.computeAdvantage({ ...base, stateValue: base.reward }), /both stateValue and nextStateValue/);
  });
  test("a bad form", async () => {
    await assert.rejects(client.computeAdvantage({ ...base, form: "half" as never }), /form must be/);
  });
});
