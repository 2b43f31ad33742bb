/**
 * Spawns the real Python server for the end-to-end tests:
 *   $ADVANTAGE_PYTHON -m service.cli serve --host 127.0.0.1 --port 0 --rest-port 0
 * (ADVANTAGE_PYTHON defaults to ../../.venv/bin/python relative to clients/typescript), waits for
 * "listening on 127.0.0.1:PORT" on stderr and stops it with SIGTERM (SIGKILL after a grace
 * period). ADVANTAGE_TARGET=host:port uses an already running server instead (for the tests
 * that need no server flags or environment of their own). From a git worktree without its own
 * .venv, point ADVANTAGE_PYTHON at another one (e.g. /path/to/main/.venv/bin/python): the server
 * runs from this checkout's service/ (the working directory is the repository root).
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { resolve } from "node:path";

/** clients/typescript (this file is compiled to dist/test/server.js). */
export const PACKAGE_ROOT = resolve(__dirname, "..", "..");
export const REPO_ROOT = resolve(PACKAGE_ROOT, "..", "..");

export interface RunningServer {
  target: string;
  /** Everything the server wrote to stderr so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

const STARTUP_MS = Number(process.env["ADVANTAGE_STARTUP_MS"] ?? 120_000);

/** The Python that runs the server ($ADVANTAGE_PYTHON, else the repository's .venv). */
export function pythonPath(): string {
  const python = resolve(PACKAGE_ROOT, process.env["ADVANTAGE_PYTHON"] ?? "../../.venv/bin/python");
  if (!existsSync(python)) {
    throw new Error(`Python not found at ${python}; set ADVANTAGE_PYTHON (or ADVANTAGE_TARGET=host:port)`);
  }
  return python;
}

/** Paths of the PEM files tests/support/tls_certs.py writes (a CA, server and client certificates, and
 * an unrelated CA). */
export interface Certificates {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  otherCa: string;
}

/** Generate test certificates into `folder` with the server's Python (`cryptography`). */
export async function makeCertificates(folder: string): Promise<Certificates> {
  await new Promise<void>((done, fail) => {
    execFile(pythonPath(), ["-m", "tests.support.tls_certs", folder], { cwd: REPO_ROOT }, (err, _out, stderr) =>
      err ? fail(new Error(`tests.support.tls_certs failed: ${err.message}\n${stderr}`)) : done(),
    );
  });
  const at = (name: string): string => resolve(folder, name);
  return {
    ca: at("ca.crt"),
    serverCert: at("server.crt"),
    serverKey: at("server.key"),
    clientCert: at("client.crt"),
    clientKey: at("client.key"),
    otherCa: at("other-ca.crt"),
  };
}

export async function startServer(
  extraArgs: string[] = [],
  extraEnv: Record<string, string> = {},
): Promise<RunningServer> {
  const existing = process.env["ADVANTAGE_TARGET"];
  if (existing && extraArgs.length === 0 && Object.keys(extraEnv).length === 0) {
    return { target: existing, log: () => "", stop: async () => {} };
  }

  const python = pythonPath();
  const args = ["-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--rest-port", "0",
    "--grace-seconds", "1", ...extraArgs];
  const child: ChildProcess = spawn(python, args, {
    cwd: REPO_ROOT,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, PYTHONUNBUFFERED: "1", ...extraEnv },
  });
  let stderr = "";
  const killOnExit = (): void => {
    child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);

  const target = await new Promise<string>((resolvePort, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not report its port within ${STARTUP_MS} ms; stderr:\n${stderr}`));
    }, STARTUP_MS);
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (text: string) => {
      stderr += text;
      const m = /listening on ([\w.\-\[\]:]+):(\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolvePort(`${m[1]}:${m[2]}`);
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited (code ${code}, signal ${signal}) before listening; stderr:\n${stderr}`));
    });
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });

  return {
    target,
    log: () => stderr,
    stop: async () => {
      process.removeListener("exit", killOnExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
