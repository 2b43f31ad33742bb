/**
 * TLS, mutual TLS and the admin (write) token against real Python servers started with
 * --tls-cert/--tls-key (and --tls-client-ca), with certificates generated at test time.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { AdvantageClient, AdvantageServiceError, Status, tensor, tlsCredentials, type Tensor } from "../src";
import { assertClose } from "./helpers";
import { makeCertificates, REPO_ROOT, startServer, type Certificates, type RunningServer } from "./server";

const READ = "ts-read";
const ADMIN = "ts-admin";
let folder: string;
let certs: Certificates;
let tls: RunningServer;
let mtls: RunningServer;

before(async () => {
  folder = mkdtempSync(join(tmpdir(), "advantage-tls-"));
  certs = await makeCertificates(folder);
  const serverFiles = ["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey];
  [tls, mtls] = await Promise.all([
    startServer(serverFiles, { ADVANTAGE_AUTH_TOKEN: READ, ADVANTAGE_ADMIN_TOKEN: ADMIN }),
    startServer([...serverFiles, "--tls-client-ca", certs.ca]),
  ]);
});

after(async () => {
  await Promise.all([tls?.stop(), mtls?.stop()]);
  if (folder) rmSync(folder, { recursive: true, force: true });
});

const pem = (path: string): Buffer => readFileSync(path);

function refusedWith(code: number) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof AdvantageServiceError, String(err));
    assert.equal(err.code, code, err.details);
    return true;
  };
}

async function using<T>(client: AdvantageClient, work: (c: AdvantageClient) => Promise<T>): Promise<T> {
  try {
    return await work(client);
  } finally {
    client.close();
  }
}

test("TLS with the server's CA and the read token reads", async () => {
  const client = new AdvantageClient(tls.target, { deadlineMs: 30_000, tls: { rootCerts: pem(certs.ca) }, token: READ });
  await using(client, async (c) => {
    assert.ok((await c.listModels()).some((m) => m.name === "demo"));
  });
});

test("a plaintext client or an untrusted CA cannot reach a TLS server", async () => {
  for (const options of [{}, { tls: { rootCerts: pem(certs.otherCa) } }]) {
    const client = new AdvantageClient(tls.target, { deadlineMs: 10_000, token: READ, ...options });
    await using(client, (c) => assert.rejects(c.listModels(), refusedWith(Status.UNAVAILABLE)));
  }
});

test("writes need the admin token: PERMISSION_DENIED for the read token", async () => {
  const options = { deadlineMs: 30_000, tls: { rootCerts: pem(certs.ca) } };
  const reader = new AdvantageClient(tls.target, { ...options, token: READ });
  const admin = new AdvantageClient(tls.target, { ...options, token: ADMIN });
  try {
    const before = await reader.getParameters("demo", { prefixes: ["value_network."] });
    const expectedVersion = before.parameterVersion;
    await assert.rejects(
      reader.setParameters("demo", before.tensors, { expectedVersion }),
      refusedWith(Status.PERMISSION_DENIED),
    );
    const set = await admin.setParameters("demo", before.tensors, { expectedVersion });
    assert.equal(set.parameterVersion, expectedVersion + 1);
  } finally {
    reader.close();
    admin.close();
  }
});

test("mutual TLS: a client certificate from the CA is needed", async () => {
  const withCert = new AdvantageClient(mtls.target, {
    deadlineMs: 30_000,
    tls: { rootCerts: pem(certs.ca), privateKey: pem(certs.clientKey), certChain: pem(certs.clientCert) },
  });
  await using(withCert, async (c) => assert.ok((await c.listModels()).length > 0));
  const without = new AdvantageClient(mtls.target, { deadlineMs: 10_000, tls: { rootCerts: pem(certs.ca) } });
  await using(without, (c) => assert.rejects(c.listModels(), refusedWith(Status.UNAVAILABLE)));
});

test("mutual TLS carries a computation: the golden gae_full case gives the golden numbers", async () => {
  // proto/testdata/README.md: a fresh demo server answers these (this one is never written to).
  const cases = JSON.parse(readFileSync(join(REPO_ROOT, "proto", "testdata", "cases.json"), "utf8")).cases;
  const golden = cases.find((c: { name: string }) => c.name === "gae_full");
  type Typed = { dtype: "float32" | "bool"; shape: number[]; values: number[] };
  const typed = (t: Typed): Tensor => tensor(t.values, t.shape, t.dtype);
  const trajectory = golden.input.trajectory;
  const client = new AdvantageClient(mtls.target, {
    deadlineMs: 30_000,
    tls: { rootCerts: pem(certs.ca), privateKey: pem(certs.clientKey), certChain: pem(certs.clientCert) },
  });
  await using(client, async (c) => {
    const result = await c.computeAdvantage({
      estimator: "gae",
      gamma: golden.input.estimator.knobs.gamma,
      lmbda: golden.input.estimator.knobs.lmbda,
      reward: typed(trajectory.reward),
      done: typed(trajectory.done),
      terminated: typed(trajectory.terminated),
      observation: typed(trajectory.observation.observation),
      nextObservation: typed(trajectory.next_observation.observation),
    });
    const { rtol, atol, tensors } = golden.expect;
    assertClose(result.advantage, typed(tensors.advantage), { rtol, atol, what: "advantage" });
    assertClose(result.valueTarget, typed(tensors.value_target), { rtol, atol, what: "value_target" });
  });
});

test("tls options are checked before anything is sent", () => {
  assert.throws(() => tlsCredentials({ privateKey: "key" }), TypeError);
  assert.equal(tlsCredentials(undefined), undefined);
  assert.throws(
    () => new AdvantageClient("127.0.0.1:1", { tls: {}, credentials: grpc.credentials.createInsecure() }),
    TypeError,
  );
});
