/**
 * Loads proto/advantage/v1/advantage.proto at runtime with @grpc/proto-loader (pure JS: no protoc,
 * no generated code). The build copies the contract to dist/proto; a source checkout falls back to
 * the repository's proto/ folder. `ADVANTAGE_PROTO` or the client's `protoPath` option override.
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** Path of the .proto file inside the proto root. */
export const PROTO_FILE = join("advantage", "v1", "advantage.proto");

/** How protobuf messages map to JS objects (snake_case field names as in the .proto). */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: false,
  arrays: true,
  objects: true,
  oneofs: true,
};

/** Candidate .proto paths, most specific first. */
export function protoCandidates(explicit?: string): string[] {
  const out: string[] = [];
  if (explicit) out.push(resolve(explicit));
  if (process.env["ADVANTAGE_PROTO"]) out.push(resolve(process.env["ADVANTAGE_PROTO"]));
  // The packaged copy: dist/src/proto.js → dist/proto/….
  out.push(join(__dirname, "..", "proto", PROTO_FILE));
  // The repository's: from dist/src (compiled) or src (run by ts-node/tsx) up to the repo root.
  for (const up of [["..", "..", "..", ".."], ["..", "..", ".."]]) {
    out.push(join(__dirname, ...up, "proto", PROTO_FILE));
  }
  return out;
}

/** The first existing candidate; throws listing where it looked. */
export function findProto(explicit?: string): string {
  const candidates = protoCandidates(explicit);
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new Error(`advantage.proto not found; looked in:\n  ${candidates.join("\n  ")}`);
  }
  return found;
}

export interface LoadedProto {
  path: string;
  packageDefinition: protoLoader.PackageDefinition;
  Service: grpc.ServiceClientConstructor;
}

const cache = new Map<string, LoadedProto>();

/** Load (once per path) the contract and return the AdvantageService client constructor. */
export function loadProto(explicit?: string): LoadedProto {
  const path = findProto(explicit);
  let loaded = cache.get(path);
  if (loaded === undefined) {
    const root = resolve(dirname(path), "..", "..");
    const packageDefinition = protoLoader.loadSync(PROTO_FILE, {
      ...LOADER_OPTIONS,
      includeDirs: [root],
    });
    const grpcObject = grpc.loadPackageDefinition(packageDefinition);
    const v1 = (grpcObject["advantage"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject;
    const Service = v1["AdvantageService"] as grpc.ServiceClientConstructor;
    loaded = { path, packageDefinition, Service };
    cache.set(path, loaded);
  }
  return loaded;
}
