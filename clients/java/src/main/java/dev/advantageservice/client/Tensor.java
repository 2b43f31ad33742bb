package dev.advantageservice.client;

import com.google.protobuf.ByteString;
import dev.advantageservice.v1.DType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A dense tensor in the wire encoding: {@code raw} holds prod(shape) elements of {@code dtype},
 * little-endian, row-major (last index fastest). Per-step tensors have shape [*B, T]: batch
 * dimensions first, time last, no trailing 1. Build one with {@link #float32}, {@link #float64},
 * {@link #bools} or {@link #int64}; read one with {@link #toDoubles} or {@link #toFloats}.
 */
public final class Tensor {
  private final DType dtype;
  private final long[] shape;
  private final byte[] raw;

  /** A tensor of {@code dtype} and {@code shape} over {@code raw} (not copied). */
  public Tensor(DType dtype, long[] shape, byte[] raw) {
    this.dtype = dtype;
    this.shape = shape.clone();
    this.raw = raw;
  }

  public static Tensor float32(float[] values, long... shape) {
    ByteBuffer buffer = ByteBuffer.allocate(4 * values.length).order(ByteOrder.LITTLE_ENDIAN);
    buffer.asFloatBuffer().put(values);
    return new Tensor(DType.DTYPE_FLOAT32, shape, buffer.array());
  }

  public static Tensor float64(double[] values, long... shape) {
    ByteBuffer buffer = ByteBuffer.allocate(8 * values.length).order(ByteOrder.LITTLE_ENDIAN);
    buffer.asDoubleBuffer().put(values);
    return new Tensor(DType.DTYPE_FLOAT64, shape, buffer.array());
  }

  /** One byte per element, 0 or 1. */
  public static Tensor bools(boolean[] values, long... shape) {
    byte[] raw = new byte[values.length];
    for (int i = 0; i < values.length; i++) {
      raw[i] = (byte) (values[i] ? 1 : 0);
    }
    return new Tensor(DType.DTYPE_BOOL, shape, raw);
  }

  public static Tensor int64(long[] values, long... shape) {
    ByteBuffer buffer = ByteBuffer.allocate(8 * values.length).order(ByteOrder.LITTLE_ENDIAN);
    buffer.asLongBuffer().put(values);
    return new Tensor(DType.DTYPE_INT64, shape, buffer.array());
  }

  public DType dtype() {
    return dtype;
  }

  public long[] shape() {
    return shape.clone();
  }

  /** The raw little-endian bytes (not copied). */
  public byte[] raw() {
    return raw;
  }

  /** Bytes of one element of {@code dtype}; 0 for an unspecified or unknown dtype. */
  public static int itemsize(DType dtype) {
    switch (dtype) {
      case DTYPE_FLOAT64:
      case DTYPE_INT64:
        return 8;
      case DTYPE_FLOAT32:
      case DTYPE_INT32:
        return 4;
      case DTYPE_FLOAT16:
      case DTYPE_BFLOAT16:
        return 2;
      case DTYPE_BOOL:
      case DTYPE_UINT8:
        return 1;
      default:
        return 0;
    }
  }

  /** prod(shape), 1 for a scalar. */
  public long numElements() {
    long n = 1;
    for (long d : shape) {
      if (d < 0) {
        throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
      }
      n *= d;
    }
    return n;
  }

  /** Throws IllegalArgumentException naming {@code field} unless raw holds prod(shape) elements. */
  public void check(String field) {
    int size = itemsize(dtype);
    if (size == 0) {
      throw new IllegalArgumentException(field + ": dtype " + dtype + " is not a tensor element type");
    }
    long n;
    try {
      n = numElements();
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(field + ": " + e.getMessage());
    }
    if (raw.length != n * size) {
      throw new IllegalArgumentException(String.format(
          "%s: shape %s of %s needs %d elements (%d bytes), the data has %d bytes",
          field, Arrays.toString(shape), dtype, n, n * size, raw.length));
    }
  }

  /** A float32 or float64 tensor's values as doubles. */
  public double[] toDoubles() {
    check("tensor");
    ByteBuffer buffer = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
    double[] out;
    if (dtype == DType.DTYPE_FLOAT64) {
      out = new double[raw.length / 8];
      buffer.asDoubleBuffer().get(out);
    } else if (dtype == DType.DTYPE_FLOAT32) {
      out = new double[raw.length / 4];
      for (int i = 0; i < out.length; i++) {
        out[i] = buffer.getFloat(4 * i);
      }
    } else {
      throw new IllegalStateException("tensor: expected float32 or float64, got " + dtype);
    }
    return out;
  }

  /** A float32 tensor's values. */
  public float[] toFloats() {
    check("tensor");
    if (dtype != DType.DTYPE_FLOAT32) {
      throw new IllegalStateException("tensor: expected float32, got " + dtype);
    }
    float[] out = new float[raw.length / 4];
    ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
    return out;
  }

  /** The wire message (after {@link #check}, naming {@code field} when malformed). */
  public dev.advantageservice.v1.Tensor toProto(String field) {
    check(field);
    dev.advantageservice.v1.Tensor.Builder builder =
        dev.advantageservice.v1.Tensor.newBuilder().setDtype(dtype).setRawData(ByteString.copyFrom(raw));
    for (long d : shape) {
      builder.addShape(d);
    }
    return builder.build();
  }

  public static Tensor fromProto(dev.advantageservice.v1.Tensor wire) {
    long[] shape = wire.getShapeList().stream().mapToLong(Long::longValue).toArray();
    return new Tensor(wire.getDtype(), shape, wire.getRawData().toByteArray());
  }

  @Override
  public String toString() {
    return "Tensor(" + dtype + ", " + Arrays.toString(shape) + ")";
  }
}
