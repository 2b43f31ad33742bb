/**
 * Bearer-token auth against a real Python server started with ADVANTAGE_AUTH_TOKEN.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { AdvantageClient, AdvantageServiceError, Status } from "../src";
import { startServer, type RunningServer } from "./server";

const TOKEN = "ts-s3cret";
let server: RunningServer;

before(async () => {
  server = await startServer([], { ADVANTAGE_AUTH_TOKEN: TOKEN });
});

after(async () => {
  await server?.stop();
});

test("calls without the token are UNAUTHENTICATED", async () => {
  const client = new AdvantageClient(server.target, { deadlineMs: 30_000 });
  try {
    await assert.rejects(client.listModels(), (err: unknown) => {
      assert.ok(err instanceof AdvantageServiceError);
      assert.equal(err.code, Status.UNAUTHENTICATED);
      assert.match(err.details, /authorization/);
      return true;
    });
  } finally {
    client.close();
  }
});

test("the client's token is sent with every call", async () => {
  const client = new AdvantageClient(server.target, { deadlineMs: 30_000, token: TOKEN });
  try {
    const models = await client.listModels();
    assert.ok(models.some((m) => m.name === "demo"));
    const { tensors } = await client.getParameters("demo", { prefixes: ["actor_network."] });
    assert.ok(Object.keys(tensors).length > 0);
  } finally {
    client.close();
  }
});
