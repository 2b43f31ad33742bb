/** Tensor codec: round trips, zero-copy views, length checks, the worked example of proto/README.md. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  decodeTensor,
  DTYPE_CODES,
  encodeTensor,
  loadProto,
  tensor,
  type DType,
  type Tensor,
  type WireTensor,
} from "../src";
import { hex } from "./helpers";

const WORKED_RAW = "00 00 80 3f 00 00 00 40 00 00 40 40 00 00 80 40";

describe("worked example (proto/README.md)", () => {
  const m = tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);

  test("float32 [[1, 2], [3, 4]] encodes to dtype 1, shape [2, 2] and 16 raw bytes", () => {
    const w = encodeTensor(m);
    assert.equal(w.dtype, 1);
    assert.deepEqual(w.shape, [2, 2]);
    assert.equal(hex(w.raw_data), WORKED_RAW);
  });

  test("the Tensor message is the 24 wire bytes, inside a real ComputeAdvantage request", () => {
    const { Service } = loadProto();
    const serialize = Service.service["ComputeAdvantage"]!.requestSerialize;
    const bytes = serialize({ trajectory: { reward: encodeTensor(m) } });
    const tensorMessage = `08 01 12 02 02 02 1a 10 ${WORKED_RAW}`;
    assert.equal(tensorMessage.split(" ").length, 24);
    // ComputeAdvantageRequest.trajectory (field 2, 26 bytes) → Trajectory.reward (field 3, 24 bytes).
    assert.equal(hex(bytes), `12 1a 1a 18 ${tensorMessage}`);
  });

  test("the wire bytes decode back through the response deserializer", () => {
    const { Service } = loadProto();
    const deserialize = Service.service["ComputeAdvantage"]!.responseDeserialize;
    // ComputeAdvantageResponse.advantage (field 1) = the worked example's Tensor.
    const raw = Buffer.from(`0a 18 08 01 12 02 02 02 1a 10 ${WORKED_RAW}`.replace(/ /g, ""), "hex");
    const res = deserialize(raw) as { advantage: WireTensor };
    const t = decodeTensor(res.advantage, "advantage");
    assert.equal(t.dtype, "float32");
    assert.deepEqual(t.shape, [2, 2]);
    assert.ok(t.data instanceof Float32Array);
    assert.deepEqual(Array.from(t.data as Float32Array), [1, 2, 3, 4]);
  });

  test("bool done = [[false, true]] is dtype 3, shape [1, 2], raw 00 01", () => {
    const w = encodeTensor(tensor([false, true], [1, 2]));
    assert.equal(w.dtype, DTYPE_CODES.bool);
    assert.deepEqual(w.shape, [1, 2]);
    assert.equal(hex(w.raw_data), "00 01");
  });

  test("int64 is little-endian two's complement", () => {
    const w = encodeTensor(tensor(new BigInt64Array([-1n, 258n]), [2]));
    assert.equal(hex(w.raw_data), "ff ff ff ff ff ff ff ff 02 01 00 00 00 00 00 00");
  });
});

describe("round trips", () => {
  const cases: Array<[DType, Tensor]> = [
    ["float32", tensor(new Float32Array([1.5, -2, Infinity, 3e-38, 0, -0]), [2, 3])],
    ["float64", tensor(new Float64Array([Math.PI, -1e300, 5e-324, NaN]), [4])],
    ["bool", tensor([true, false, false, true, true, false], [3, 2])],
    ["int64", tensor(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n]), [3, 1])],
    ["int32", tensor(new Int32Array([-(2 ** 31), 2 ** 31 - 1]), [1, 2])],
    ["uint8", tensor(new Uint8Array([0, 7, 255]), [3], "uint8")],
    ["float16", tensor(new Uint16Array([0x3c00, 0xc000]), [2], "float16")],
    ["bfloat16", tensor(new Uint16Array([0x3f80, 0x4000]), [2], "bfloat16")],
    ["float32", tensor(new Float32Array([42]), [])], // scalar
    ["float64", tensor(new Float64Array(0), [0, 3])], // empty
  ];
  for (const [dtype, t] of cases) {
    test(`${dtype} [${t.shape.join(", ")}]`, () => {
      const w = encodeTensor(t);
      assert.equal(w.dtype, DTYPE_CODES[dtype]);
      const back = decodeTensor(w);
      assert.equal(back.dtype, dtype);
      assert.deepEqual(back.shape, t.shape);
      assert.equal(back.data.constructor, t.data.constructor);
      assert.deepEqual(Array.from(back.data as ArrayLike<number>), Array.from(t.data as ArrayLike<number>));
    });
  }

  test("decoding accepts the enum by name too (proto-loader's enums: String)", () => {
    const w = encodeTensor(tensor(new Float64Array([1, 2]), [2]));
    const t = decodeTensor({ ...w, dtype: "DTYPE_FLOAT64" });
    assert.deepEqual(Array.from(t.data as Float64Array), [1, 2]);
  });
});

describe("zero copy", () => {
  test("encode gives a view of the typed array's bytes", () => {
    const backing = new Float32Array(10);
    const data = backing.subarray(2, 8);
    const w = encodeTensor({ data, shape: [2, 3] });
    assert.equal(w.raw_data.buffer, backing.buffer);
    assert.equal(w.raw_data.byteOffset, 8);
    assert.equal(w.raw_data.byteLength, 24);
  });

  test("decode of aligned bytes is a view; unaligned bytes are copied", () => {
    const src = new Float64Array([1.25, -2.5, 3.75]);
    const bytes = new Uint8Array(src.buffer);
    const aligned = Buffer.alloc(8 + 24);
    aligned.set(bytes, 8);
    const view = decodeTensor({ dtype: 2, shape: [3], raw_data: aligned.subarray(8) });
    assert.equal(view.data.buffer, aligned.buffer);
    assert.deepEqual(Array.from(view.data as Float64Array), [1.25, -2.5, 3.75]);

    const unaligned = Buffer.alloc(3 + 24);
    unaligned.set(bytes, 3);
    const copy = decodeTensor({ dtype: 2, shape: [3], raw_data: unaligned.subarray(3) });
    assert.notEqual(copy.data.buffer, unaligned.buffer);
    assert.deepEqual(Array.from(copy.data as Float64Array), [1.25, -2.5, 3.75]);
  });
});

describe("checks", () => {
  test("decode refuses a byte length other than prod(shape) × itemsize, naming the field", () => {
    const raw = new Uint8Array(12);
    assert.throws(
      () => decodeTensor({ dtype: 1, shape: [2, 2], raw_data: raw }, "advantage"),
      (err: Error) =>
        err instanceof RangeError && /advantage: raw_data has 12 bytes/.test(err.message) && /= 16/.test(err.message),
    );
  });

  test("decode refuses DTYPE_UNSPECIFIED and negative shapes", () => {
    assert.throws(() => decodeTensor({ dtype: 0, shape: [], raw_data: new Uint8Array(0) }), TypeError);
    assert.throws(() => decodeTensor({ dtype: 1, shape: [-1], raw_data: new Uint8Array(0) }), RangeError);
  });

  test("encode refuses data.length ≠ prod(shape)", () => {
    assert.throws(
      () => encodeTensor({ data: new Float32Array(5), shape: [2, 3] }, "reward"),
      /reward: shape \[2, 3\] has 6 elements, the data has 5/,
    );
  });

  test("encode refuses an array type that does not match the dtype", () => {
    assert.throws(() => encodeTensor({ data: new Float32Array(2), shape: [2], dtype: "float64" }), TypeError);
    assert.throws(() => encodeTensor({ data: new Uint16Array(2), shape: [2] }), /float16/);
    assert.throws(() => encodeTensor({ data: [1, 2] as unknown as Float32Array, shape: [2] }), TypeError);
  });

  test("encode refuses bool bytes other than 0 and 1", () => {
    assert.throws(() => encodeTensor({ data: new Uint8Array([0, 2]), shape: [2] }, "done"), /done: a bool tensor/);
  });

  test("tensor() builds typed arrays from JS arrays", () => {
    assert.deepEqual(tensor([1, 2, 3]), { data: new Float32Array([1, 2, 3]), shape: [3], dtype: "float32" });
    assert.equal(tensor([1, 2], [2], "float64").data.constructor, Float64Array);
    assert.equal(tensor([1, 2], [1, 2], "int64").data.constructor, BigInt64Array);
    assert.throws(() => tensor([1, 2, 3], [2, 2]), RangeError);
  });
});
