/**
 * Client-side load balancing and retries (the gRPC service config): target lists, round_robin,
 * retries of UNAVAILABLE, and minParameterVersion against a real learner and replica.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  AdvantageClient,
  AdvantageServiceError,
  channelTarget,
  DEFAULT_SERVICE_CONFIG,
  loadProto,
  Status,
  tensor,
} from "../src";
import { startServer, type RunningServer } from "./server";

/** A server that answers every ComputeAdvantage / ListModels with UNAVAILABLE; counts them. */
class RefusingServer {
  calls = 0;
  private readonly server = new grpc.Server();
  target = "";

  async start(): Promise<void> {
    const refuse = (_call: unknown, callback: grpc.sendUnaryData<unknown>): void => {
      this.calls++;
      callback({ code: grpc.status.UNAVAILABLE, details: "refusing server: try another" });
    };
    this.server.addService(loadProto().Service.service, { ComputeAdvantage: refuse, ListModels: refuse });
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    this.target = `127.0.0.1:${port}`;
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

const N = 6;
function advantageArgs(seed: number) {
  const reward = new Float32Array(2 * N).map((_, i) => Math.sin(i + seed));
  const observation = new Float32Array(2 * N * 4).map((_, i) => Math.cos(i * 0.1 + seed));
  const nextObservation = new Float32Array(2 * N * 4).map((_, i) => Math.cos(i * 0.1 + seed + 1));
  return {
    reward: tensor(reward, [2, N]),
    done: tensor(new Uint8Array(2 * N), [2, N], "bool"),
    observation: tensor(observation, [2, N, 4]),
    nextObservation: tensor(nextObservation, [2, N, 4]),
  };
}

let learner: RunningServer;
let replica: RunningServer;
const refusing = new RefusingServer();

before(async () => {
  await refusing.start();
  learner = await startServer();
  replica = await startServer(["--follow", learner.target]);
});

after(async () => {
  refusing.stop();
  await replica?.stop();
  await learner?.stop();
});

test("target lists become one ipv4: or ipv6: target", () => {
  assert.equal(channelTarget("localhost:50051"), "localhost:50051");
  assert.equal(channelTarget("dns:///replicas.svc:50051"), "dns:///replicas.svc:50051");
  assert.equal(channelTarget(["10.0.0.7:1", "10.0.0.8:2"]), "ipv4:///10.0.0.7:1,10.0.0.8:2");
  assert.equal(channelTarget(["[::1]:1", "[fe80::2]:3"]), "ipv6:///[::1]:1,[fe80::2]:3");
  assert.throws(() => channelTarget([]), /non-empty list/);
  assert.throws(() => channelTarget(["replica-0.svc:50051"]), /use a "dns:\/\/\/name:port" target/);
  assert.throws(() => channelTarget(["10.0.0.7:1", "[::1]:2"]), /mixes IPv4 and IPv6/);
  const [retried] = DEFAULT_SERVICE_CONFIG.methodConfig;
  assert.deepEqual(retried!.retryPolicy!.retryableStatusCodes, ["UNAVAILABLE"]);
  assert.deepEqual(DEFAULT_SERVICE_CONFIG.loadBalancingConfig, [{ round_robin: {} }]);
});

test("UNAVAILABLE answers are retried on the next server of a list", async () => {
  const client = new AdvantageClient([refusing.target, learner.target], { deadlineMs: 30_000 });
  try {
    for (let seed = 0; seed < 8; seed++) {
      const result = await client.computeAdvantage(advantageArgs(seed));
      assert.deepEqual(result.advantage.shape, [2, N]);
    }
    assert.ok((await client.listModels()).some((m) => m.name === "demo"));
    assert.ok(refusing.calls > 0, "round_robin sent calls to the refusing server too");
  } finally {
    client.close();
  }
  const plain = new AdvantageClient(refusing.target, { deadlineMs: 30_000, serviceConfig: null });
  try {
    await assert.rejects(plain.computeAdvantage(advantageArgs(0)), (err: unknown) => {
      assert.ok(err instanceof AdvantageServiceError && err.code === Status.UNAVAILABLE);
      return true;
    });
  } finally {
    plain.close();
  }
});

test("read-your-writes through a replica with minParameterVersion", async () => {
  const writer = new AdvantageClient(learner.target, { deadlineMs: 30_000 });
  const reader = new AdvantageClient([replica.target], { deadlineMs: 30_000 });
  try {
    // The replica answers UNAVAILABLE until its first copy: wait for it (bounded).
    for (let attempt = 0; ; attempt++) {
      try {
        await reader.getModel();
        await reader.computeAdvantage(advantageArgs(0));
        break;
      } catch (err) {
        if (attempt > 300) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const { tensors, parameterVersion } = await writer.getParameters("demo");
    const moved = Object.fromEntries(
      Object.entries(tensors).map(([name, t]) => [name, { ...t, data: (t.data as Float32Array).map((x) => x + 0.01) }]),
    );
    const written = await writer.setParameters("demo", moved, { expectedVersion: parameterVersion });
    const version = written.parameterVersion;
    const read = await reader.computeAdvantage({ ...advantageArgs(1), minParameterVersion: version });
    assert.equal(read.parameterVersion, version);
    const pulled = await reader.getParameters("demo", { minParameterVersion: version });
    assert.equal(pulled.parameterVersion, version);
    await assert.rejects(writer.computeAdvantage({ ...advantageArgs(2), minParameterVersion: version + 5 }), (err: unknown) => {
      assert.ok(err instanceof AdvantageServiceError && err.code === Status.FAILED_PRECONDITION);
      assert.match(err.details, /not yet at/);
      return true;
    });
    await assert.rejects(
      writer.setParameters("demo", moved).then(() => reader.setParameters("demo", moved)),
      (err: unknown) => {
        assert.ok(err instanceof AdvantageServiceError && err.code === Status.FAILED_PRECONDITION);
        assert.match(err.details, /this server is a replica of .*; send SetParameters to the learner/);
        return true;
      },
    );
    await assert.rejects(reader.computeAdvantage({ ...advantageArgs(0), minParameterVersion: -1 }), RangeError);
  } finally {
    writer.close();
    reader.close();
  }
});
