/** Small test utilities: a seeded RNG and array comparisons. */
import assert from "node:assert/strict";
import type { Tensor } from "../src";

/** mulberry32: deterministic floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Assert |a - b| ≤ atol + rtol·|b| elementwise, same shape; reports the worst element. */
export function assertClose(
  actual: Tensor | ArrayLike<number>,
  expected: Tensor | ArrayLike<number>,
  { atol = 0, rtol = 0, what = "" }: { atol?: number; rtol?: number; what?: string } = {},
): void {
  const a = "data" in actual ? (actual.data as ArrayLike<number>) : actual;
  const b = "data" in expected ? (expected.data as ArrayLike<number>) : expected;
  if ("shape" in actual && "shape" in expected) {
    assert.deepEqual(actual.shape, expected.shape, `${what}: shapes differ`);
  }
  assert.equal(a.length, b.length, `${what}: lengths differ`);
  let worst = -1;
  let worstErr = 0;
  for (let i = 0; i < a.length; i++) {
    const err = Math.abs(a[i]! - b[i]!);
    if (!(err <= atol + rtol * Math.abs(b[i]!)) && !(err <= worstErr)) {
      worst = i;
      worstErr = err;
    }
  }
  assert.ok(
    worst < 0,
    `${what}: element ${worst} differs: ${a[worst]} vs ${b[worst]} (|Δ| = ${worstErr}, atol ${atol}, rtol ${rtol})`,
  );
}

/** Bytes of a Uint8Array as "00 01 …" (readable assertion failures). */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}
