/**
 * Tensors and their wire encoding (proto/README.md, "Tensor encoding"): dtype enum + shape + the
 * row-major, little-endian bytes of prod(shape) elements.
 *
 * Encoding hands the typed array's own bytes to protobuf (a Buffer view, no copy). Decoding
 * returns a typed-array view of the response bytes when they are aligned for the element type,
 * else one copy. On a big-endian host both directions copy and byte-swap.
 */
import { endianness } from "node:os";

/** Element types of the contract (advantage.v1.DType without the DTYPE_ prefix, lower case). */
export type DType =
  | "float32"
  | "float64"
  | "bool"
  | "int64"
  | "int32"
  | "float16"
  | "bfloat16"
  | "uint8";

/** Typed arrays a Tensor can hold. float16/bfloat16 travel as their bit patterns (Uint16Array). */
export type TensorData =
  | Float32Array
  | Float64Array
  | Uint8Array
  | BigInt64Array
  | Int32Array
  | Uint16Array;

/**
 * A dense row-major tensor: `data.length` must equal prod(shape); a scalar has shape [].
 *
 * `dtype` may be left out: it is inferred from the array (Float32Array → float32, Float64Array →
 * float64, Uint8Array → bool, BigInt64Array → int64, Int32Array → int32). Set it for uint8
 * (Uint8Array) and float16/bfloat16 (Uint16Array). Decoded tensors always carry it.
 */
export interface Tensor<D extends TensorData = TensorData> {
  data: D;
  shape: number[];
  dtype?: DType;
}

/** The protobuf object form of advantage.v1.Tensor, as @grpc/proto-loader reads and writes it. */
export interface WireTensor {
  dtype: number | string;
  shape: Array<number | string>;
  raw_data: Uint8Array;
}

type TypedArrayCtor = {
  new (length: number): TensorData;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData;
  readonly BYTES_PER_ELEMENT: number;
};

/** advantage.v1.DType enum values. */
export const DTYPE_CODES: Readonly<Record<DType, number>> = Object.freeze({
  float32: 1,
  float64: 2,
  bool: 3,
  int64: 4,
  int32: 5,
  float16: 6,
  bfloat16: 7,
  uint8: 8,
});

const ARRAY_TYPES: Readonly<Record<DType, TypedArrayCtor>> = {
  float32: Float32Array,
  float64: Float64Array,
  bool: Uint8Array,
  int64: BigInt64Array,
  int32: Int32Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  uint8: Uint8Array,
} as Record<DType, TypedArrayCtor>;

const DTYPES_BY_CODE = new Map<number, DType>(
  Object.entries(DTYPE_CODES).map(([name, code]) => [code, name as DType]),
);

const LITTLE_ENDIAN = endianness() === "LE";

/** Bytes per element of a dtype. */
export function itemsize(dtype: DType): number {
  return ARRAY_TYPES[dtype].BYTES_PER_ELEMENT;
}

/** The typed-array constructor that holds a dtype. */
export function arrayTypeOf(dtype: DType): TypedArrayCtor {
  return ARRAY_TYPES[dtype];
}

/** DType from an enum value (number, or the "DTYPE_FLOAT32" name); null for unspecified/unknown. */
export function dtypeFromWire(value: number | string | null | undefined): DType | null {
  if (typeof value === "number") return DTYPES_BY_CODE.get(value) ?? null;
  if (typeof value === "string" && value.startsWith("DTYPE_")) {
    const name = value.slice("DTYPE_".length).toLowerCase();
    return name in DTYPE_CODES ? (name as DType) : null;
  }
  return null;
}

/** Number of elements of a shape (1 for a scalar); throws on a negative or fractional size. */
export function numel(shape: readonly number[], name = "tensor"): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new RangeError(`${name}: shape entries must be integers ≥ 0, got [${shape.join(", ")}]`);
    }
    n *= d;
  }
  return n;
}

/** The dtype of a tensor: its `dtype`, else the one its array type implies. */
export function dtypeOf(t: Tensor, name = "tensor"): DType {
  const data = t.data;
  if (t.dtype !== undefined) {
    const ctor = ARRAY_TYPES[t.dtype];
    if (ctor === undefined) throw new TypeError(`${name}: unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!(data instanceof ctor)) {
      throw new TypeError(
        `${name}: dtype ${t.dtype} needs a ${ctor.name}, got ${describe(data)}`,
      );
    }
    return t.dtype;
  }
  if (data instanceof Float32Array) return "float32";
  if (data instanceof Float64Array) return "float64";
  if (data instanceof Uint8Array) return "bool";
  if (data instanceof BigInt64Array) return "int64";
  if (data instanceof Int32Array) return "int32";
  if (data instanceof Uint16Array) {
    throw new TypeError(`${name}: a Uint16Array needs dtype "float16" or "bfloat16"`);
  }
  throw new TypeError(
    `${name}: data must be a Float32Array, Float64Array, Uint8Array, BigInt64Array, Int32Array ` +
      `or Uint16Array, got ${describe(data)}`,
  );
}

function describe(x: unknown): string {
  if (x === null) return "null";
  if (typeof x !== "object") return typeof x;
  return (x as object).constructor?.name ?? "object";
}

/** True when `x` looks like a Tensor ({data: typed array, shape: number[]}). */
export function isTensor(x: unknown): x is Tensor {
  return (
    typeof x === "object" &&
    x !== null &&
    ArrayBuffer.isView((x as Tensor).data) &&
    Array.isArray((x as Tensor).shape)
  );
}

/**
 * Build a Tensor from a typed array or a flat JS array.
 *
 * `shape` defaults to [values.length]. From a JS array the dtype defaults to bool for booleans,
 * int64 for bigints and float32 otherwise; pass `dtype` to choose (e.g. "float64").
 */
export function tensor(
  values: TensorData | ArrayLike<number> | ArrayLike<boolean> | ArrayLike<bigint>,
  shape?: readonly number[],
  dtype?: DType,
): Tensor {
  const dims = shape === undefined ? [values.length] : [...shape];
  let t: Tensor;
  if (ArrayBuffer.isView(values)) {
    t = { data: values as TensorData, shape: dims };
    if (dtype !== undefined) t.dtype = dtype;
    t.dtype = dtypeOf(t);
  } else {
    const first = values.length > 0 ? values[0] : undefined;
    const dt: DType =
      dtype ?? (typeof first === "boolean" ? "bool" : typeof first === "bigint" ? "int64" : "float32");
    const ctor = ARRAY_TYPES[dt];
    if (ctor === undefined) throw new TypeError(`unknown dtype ${JSON.stringify(dt)}`);
    const out = new ctor(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = values[i] as number | boolean | bigint;
      if (dt === "int64") (out as BigInt64Array)[i] = BigInt(v);
      else if (dt === "bool") (out as Uint8Array)[i] = v ? 1 : 0;
      else (out as Float64Array)[i] = Number(v);
    }
    t = { data: out, shape: dims, dtype: dt };
  }
  const n = numel(t.shape);
  if (n !== t.data.length) {
    throw new RangeError(
      `shape [${t.shape.join(", ")}] has ${n} elements, the data has ${t.data.length}`,
    );
  }
  return t;
}

function swapBytes(bytes: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let i = 0; i < bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const tmp = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = tmp;
    }
  }
}

/**
 * Tensor → wire form. The raw bytes are a view of `t.data` (no copy on little-endian hosts).
 *
 * Checks the array type against the dtype, data.length = prod(shape), and bool values in {0, 1};
 * errors name the field (`name`).
 */
export function encodeTensor(t: Tensor, name = "tensor"): WireTensor {
  if (!isTensor(t)) {
    throw new TypeError(`${name}: expected a Tensor {data: typed array, shape: number[]}, got ${describe(t)}`);
  }
  const dtype = dtypeOf(t, name);
  const n = numel(t.shape, name);
  const data = t.data;
  if (data.length !== n) {
    throw new RangeError(
      `${name}: shape [${t.shape.join(", ")}] has ${n} elements, the data has ${data.length}`,
    );
  }
  if (dtype === "bool") {
    const u8 = data as Uint8Array;
    for (let i = 0; i < u8.length; i++) {
      if (u8[i]! > 1) {
        throw new RangeError(`${name}: a bool tensor holds only 0 and 1, got ${u8[i]} at index ${i}`);
      }
    }
  }
  let raw: Uint8Array = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (!LITTLE_ENDIAN) {
    raw = Buffer.from(raw); // copy, then swap to little-endian
    swapBytes(raw, itemsize(dtype));
  }
  return { dtype: DTYPE_CODES[dtype], shape: [...t.shape], raw_data: raw };
}

/**
 * Wire form → Tensor. Checks that the byte length is prod(shape) × itemsize. The data is a view
 * of the message bytes when they are suitably aligned (always for 1-byte dtypes), else a copy.
 */
export function decodeTensor(w: WireTensor, name = "tensor"): Tensor {
  if (w === null || w === undefined) throw new TypeError(`${name}: missing tensor`);
  const dtype = dtypeFromWire(w.dtype);
  if (dtype === null) throw new TypeError(`${name}: unsupported dtype ${JSON.stringify(w.dtype)}`);
  const shape = (w.shape ?? []).map(Number);
  const n = numel(shape, name);
  const size = itemsize(dtype);
  const raw = w.raw_data ?? new Uint8Array(0);
  if (raw.byteLength !== n * size) {
    throw new RangeError(
      `${name}: raw_data has ${raw.byteLength} bytes, expected prod([${shape.join(", ")}]) × ` +
        `${size} (${dtype}) = ${n * size}`,
    );
  }
  const ctor = ARRAY_TYPES[dtype];
  let data: TensorData;
  if (LITTLE_ENDIAN && raw.byteOffset % size === 0) {
    data = new ctor(raw.buffer, raw.byteOffset, n);
  } else {
    data = new ctor(n);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    bytes.set(raw);
    if (!LITTLE_ENDIAN) swapBytes(bytes, size);
  }
  return { data, shape, dtype };
}
