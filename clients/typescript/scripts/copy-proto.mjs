// Copies the contract (../../proto, the single source of truth) into dist/proto so that the
// built package finds it next to its code; src/proto.ts also falls back to the repo's copy.
import { cpSync, existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(pkg, "..", "..", "proto", "advantage");
if (!existsSync(join(src, "v1", "advantage.proto"))) {
  console.error(`copy-proto: ${src}/v1/advantage.proto not found`);
  process.exit(1);
}
cpSync(src, join(pkg, "dist", "proto", "advantage"), {
  recursive: true,
  filter: (p) => statSync(p).isDirectory() || p.endsWith(".proto"),
});
