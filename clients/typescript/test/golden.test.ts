/**
 * The golden vectors (proto/testdata/, format in its README) through the TypeScript client's typed
 * API, against a fresh demo server: each case's request is built from its `input` with the
 * client's methods; an interceptor takes the message the client hands grpc-js and serialises it
 * with the channel's own serializer (the bytes that go out). The test compares it with the golden
 * request decoded by a proto-loader definition (a readable diff), then byte for byte. Then the
 * answer is checked against the golden numbers.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  AdvantageClient,
  AdvantageServiceError,
  tensor,
  type ComputeAdvantageArgs,
  type ComputeLossArgs,
  type DType,
  type Estimator,
  type LossKind,
  type ModelInfo,
  type Tensor,
} from "../src";
import { findProto, LOADER_OPTIONS, PROTO_FILE } from "../src/proto";
import { REPO_ROOT, startServer, type RunningServer } from "./server";

const TESTDATA = join(REPO_ROOT, "proto", "testdata");
const SERVICE = "advantage.v1.AdvantageService";

interface Typed {
  dtype: "float32" | "float64" | "bool" | "int64";
  shape: number[];
  values: Array<number | boolean>;
}
interface Knobbed {
  kind: string;
  knobs: Record<string, unknown>;
}
interface Case {
  name: string;
  rpc: "ComputeAdvantage" | "ComputeLoss" | "ListModels" | "GetModel" | "GetParameters";
  request: string;
  input: Record<string, any>;
  expect: Record<string, any>;
}

const document = JSON.parse(readFileSync(join(TESTDATA, "cases.json"), "utf8")) as { format: number; cases: Case[] };
assert.equal(document.format, 1, "golden format");

// Messages decoded with every default filled in, so that a field the client wrote with its
// default value and one it left out compare equal (as protobuf equality says).
const definition = protoLoader.loadSync(PROTO_FILE, {
  ...LOADER_OPTIONS,
  defaults: true,
  includeDirs: [join(findProto(), "..", "..", "..")],
});
const methods = definition[SERVICE] as protoLoader.ServiceDefinition;

function decodeRequest(rpc: string, bytes: Buffer): unknown {
  return methods[rpc]!.requestDeserialize(bytes);
}

/** Requests as serialised by the channel, per method name. */
const sent: Array<{ rpc: string; bytes: Buffer }> = [];
const recorder: grpc.Interceptor = (options, nextCall) =>
  new grpc.InterceptingCall(nextCall(options), {
    sendMessage(message, next) {
      const rpc = options.method_definition.path.split("/").pop()!;
      sent.push({ rpc, bytes: options.method_definition.requestSerialize(message) });
      next(message);
    },
  });

let server: RunningServer;
let client: AdvantageClient;

before(async () => {
  // Its own server process (server flags make startServer ignore ADVANTAGE_TARGET): the cases
  // expect parameter version 0, so no other test may update it.
  server = await startServer(["--grace-seconds", "1"]);
  client = new AdvantageClient(server.target, { deadlineMs: 60_000, channelOptions: { interceptors: [recorder] } });
});

after(async () => {
  client?.close();
  await server?.stop();
});

// ---- input → the client's typed arguments ------------------------------------------------------

function typed(t: Typed): Tensor {
  if (t.dtype === "int64") return tensor((t.values as number[]).map((v) => BigInt(v)), t.shape, "int64");
  return tensor(t.values as ArrayLike<number> & ArrayLike<boolean>, t.shape, t.dtype);
}

function camel(s: string): string {
  return s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function knobs(spec: Knobbed | undefined): Record<string, unknown> {
  return Object.fromEntries(Object.entries(spec?.knobs ?? {}).map(([k, v]) => [camel(k), v]));
}

function trajectoryArgs(spec: Record<string, any>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(spec)) {
    if (name === "observation" || name === "next_observation") {
      out[camel(name)] = Object.fromEntries(Object.entries(value as Record<string, Typed>).map(([k, t]) => [k, typed(t)]));
    } else {
      out[camel(name)] = typed(value as Typed);
    }
  }
  return out;
}

// ---- answers in the golden `expect` shape --------------------------------------------------------

function described(t: Tensor): Typed {
  const values = Array.from(t.data as ArrayLike<number | bigint>, (v) =>
    t.dtype === "bool" ? v === 1 : Number(v),
  );
  return { dtype: t.dtype as Typed["dtype"], shape: [...t.shape], values };
}

const dtypeName = (d: DType | null): string => (d === null ? "DTYPE_UNSPECIFIED" : `DTYPE_${d.toUpperCase()}`);

function modelDict(m: ModelInfo): Record<string, unknown> {
  return {
    name: m.name,
    inputs: m.inputs.map((s) => ({ name: s.name, shape: s.shape, dtype: dtypeName(s.dtype) })),
    has_value_network: m.hasValueNetwork,
    has_actor_network: m.hasActorNetwork,
    action: {
      distribution: `DISTRIBUTION_${(m.action.distribution ?? "unspecified").toUpperCase()}`,
      shape: m.action.shape,
      dtype: dtypeName(m.action.dtype),
      num_actions: m.action.numActions,
    },
    parameter_version: m.parameterVersion,
    defaults: { gamma: m.gamma, lmbda: m.lmbda },
    parameter_dtype: dtypeName(m.parameterDtype),
  };
}

async function run(c: Case): Promise<Record<string, any>> {
  const input = c.input;
  switch (c.rpc) {
    case "ComputeAdvantage": {
      const r = await client.computeAdvantage({
        model: input["model"],
        form: input["form"],
        estimator: input["estimator"]?.kind as Estimator | undefined,
        ...knobs(input["estimator"]),
        ...trajectoryArgs(input["trajectory"]),
      } as ComputeAdvantageArgs);
      const tensors: Record<string, Typed> = {
        advantage: described(r.advantage),
        value_target: described(r.valueTarget),
      };
      const absent: string[] = [];
      for (const [field, t] of [["state_value", r.stateValue], ["next_state_value", r.nextStateValue]] as const) {
        if (t === undefined) absent.push(field);
        else tensors[field] = described(t);
      }
      return { model_name: r.modelName, parameter_version: r.parameterVersion, tensors, absent };
    }
    case "ComputeLoss": {
      const args: ComputeLossArgs = {
        model: input["model"],
        form: input["form"],
        loss: input["loss"].kind as LossKind,
        lossOptions: knobs(input["loss"]),
        ...(trajectoryArgs(input["trajectory"]) as unknown as ComputeLossArgs),
      };
      if (input["estimator"] !== undefined) {
        args.estimator = input["estimator"].kind as Estimator;
        Object.assign(args, knobs(input["estimator"]));
      }
      if (input["behaviour_distribution"] !== undefined) {
        args.behaviourDistribution = Object.fromEntries(
          Object.entries(input["behaviour_distribution"] as Record<string, Typed>).map(([k, t]) => [k, typed(t)]),
        );
      }
      if (input["apply_update"]) args.applyUpdate = true;
      if (input["expected_parameter_version"] !== undefined) {
        args.expectedParameterVersion = input["expected_parameter_version"];
      }
      const r = await client.computeLoss(args);
      return { model_name: r.modelName, parameter_version: r.parameterVersion, updated: r.updated, loss: r.loss, metrics: r.metrics };
    }
    case "ListModels":
      return { models: (await client.listModels()).map(modelDict) };
    case "GetModel":
      return { model: modelDict(await client.getModel(input["model"])) };
    case "GetParameters": {
      const p = await client.getParameters(input["model"], {
        prefixes: input["prefixes"],
        maxChunkBytes: input["max_chunk_bytes"],
      });
      const parameters = Object.fromEntries(Object.entries(p.tensors).map(([k, t]) => [k, described(t)]));
      return { parameter_version: p.parameterVersion, parameters };
    }
  }
}

// ---- comparison (proto/testdata/README.md, "expect") ---------------------------------------------

const close = (a: number, e: number, rtol: number, atol: number): boolean =>
  Number.isFinite(a) && Math.abs(a - e) <= atol + rtol * Math.abs(e);

function checkTensor(where: string, actual: Typed | undefined, expected: Typed, rtol: number, atol: number): void {
  assert.ok(actual !== undefined, `${where}: missing`);
  assert.equal(actual.dtype, expected.dtype, `${where}: dtype`);
  assert.deepEqual(actual.shape, expected.shape, `${where}: shape`);
  expected.values.forEach((e, i) => {
    const a = actual.values[i];
    if (typeof e === "boolean") assert.equal(a, e, `${where}[${i}]`);
    else assert.ok(close(a as number, e, rtol, atol), `${where}[${i}]: ${a} vs ${e} (rtol ${rtol}, atol ${atol})`);
  });
}

function checkAnswer(c: Case, answer: Record<string, any>): void {
  const e = c.expect;
  assert.equal(answer["status"], e["status"], `status (${answer["message"] ?? ""})`);
  if (e["status"] !== "OK") {
    for (const part of e["message_contains"] as string[]) {
      assert.ok((answer["message"] as string).includes(part), `message ${JSON.stringify(answer["message"])} lacks ${JSON.stringify(part)}`);
    }
    return;
  }
  const rtol: number = e["rtol"] ?? 0;
  const atol: number = e["atol"] ?? 0;
  for (const key of ["model_name", "parameter_version", "updated", "models", "model"]) {
    if (key in e) assert.deepEqual(answer[key], e[key], key);
  }
  for (const [field, t] of Object.entries((e["tensors"] ?? {}) as Record<string, Typed>)) {
    checkTensor(field, answer["tensors"]?.[field], t, rtol, atol);
  }
  for (const field of (e["absent"] ?? []) as string[]) {
    assert.ok((answer["absent"] as string[]).includes(field), `${field}: expected unset`);
  }
  if ("loss" in e) assert.ok(close(answer["loss"], e["loss"], rtol, atol), `loss ${answer["loss"]} vs ${e["loss"]}`);
  for (const [name, value] of Object.entries((e["metrics"] ?? {}) as Record<string, number>)) {
    assert.ok(close(answer["metrics"][name], value, rtol, atol), `metrics[${name}]: ${answer["metrics"][name]} vs ${value}`);
  }
  if ("parameters" in e) {
    const expected = e["parameters"] as Record<string, Typed>;
    assert.deepEqual(Object.keys(answer["parameters"]).sort(), Object.keys(expected).sort(), "parameter names");
    for (const [name, t] of Object.entries(expected)) checkTensor(name, answer["parameters"][name], t, rtol, atol);
  }
}

for (const c of document.cases) {
  test(`golden case ${c.name}`, async () => {
    sent.length = 0;
    let answer: Record<string, any>;
    try {
      answer = { status: "OK", ...(await run(c)) };
    } catch (err) {
      assert.ok(err instanceof AdvantageServiceError, `not an RPC error: ${String(err)}`);
      answer = { status: err.codeName, message: err.details };
    }
    const mine = sent.filter((s) => s.rpc === c.rpc);
    assert.equal(mine.length, 1, `${mine.length} ${c.rpc} requests went out`);
    const golden = readFileSync(join(TESTDATA, c.request));
    assert.deepEqual(decodeRequest(c.rpc, mine[0]!.bytes), decodeRequest(c.rpc, golden), "request differs from the golden one");
    assert.ok(mine[0]!.bytes.equals(golden), "same message, other bytes than the golden request");
    checkAnswer(c, answer);
  });
}
