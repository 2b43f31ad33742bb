// Package advantage is a small typed client of advantage-service (proto package advantage.v1).
//
// Tensors travel as dtype + shape + little-endian row-major bytes (see proto/README.md); Tensor
// holds exactly that, and the constructors Float32s, Float64s, Bools, Int64s encode Go slices.
// Per-step tensors have shape [*B, T]: batch dimensions first, time last, no trailing 1.
package advantage

import (
	"encoding/binary"
	"fmt"
	"math"

	pb "github.com/advantage-service/advantage-service/clients/go/advantagev1"
)

// DType is a tensor's element type (the wire enum advantage.v1.DType).
type DType = pb.DType

// The element types a client usually sends or receives.
const (
	Float32  = pb.DType_DTYPE_FLOAT32
	Float64  = pb.DType_DTYPE_FLOAT64
	Bool     = pb.DType_DTYPE_BOOL
	Int64    = pb.DType_DTYPE_INT64
	Int32    = pb.DType_DTYPE_INT32
	Float16  = pb.DType_DTYPE_FLOAT16
	BFloat16 = pb.DType_DTYPE_BFLOAT16
	Uint8    = pb.DType_DTYPE_UINT8
)

// Itemsize is the number of bytes of one element of dtype (0 for DTYPE_UNSPECIFIED).
func Itemsize(dtype DType) int {
	switch dtype {
	case Float64, Int64:
		return 8
	case Float32, Int32:
		return 4
	case Float16, BFloat16:
		return 2
	case Bool, Uint8:
		return 1
	}
	return 0
}

// Tensor is a dense tensor in the wire encoding: Raw holds prod(Shape) elements of DType,
// little-endian, row-major (last index fastest).
type Tensor struct {
	DType DType
	Shape []int64
	Raw   []byte
}

// Float32s encodes values as a float32 tensor of the given shape (row-major).
func Float32s(values []float32, shape ...int64) Tensor {
	raw := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return Tensor{Float32, shape, raw}
}

// Float64s encodes values as a float64 tensor of the given shape (row-major).
func Float64s(values []float64, shape ...int64) Tensor {
	raw := make([]byte, 8*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(v))
	}
	return Tensor{Float64, shape, raw}
}

// Bools encodes values as a bool tensor (one byte each, 0 or 1).
func Bools(values []bool, shape ...int64) Tensor {
	raw := make([]byte, len(values))
	for i, v := range values {
		if v {
			raw[i] = 1
		}
	}
	return Tensor{Bool, shape, raw}
}

// Int64s encodes values as an int64 tensor (e.g. categorical actions).
func Int64s(values []int64, shape ...int64) Tensor {
	raw := make([]byte, 8*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	return Tensor{Int64, shape, raw}
}

// NumElements is prod(Shape) (1 for a scalar), or an error for a negative dimension.
func (t Tensor) NumElements() (int, error) {
	n := 1
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", t.Shape)
		}
		n *= int(d)
	}
	return n, nil
}

// Check returns an error naming field unless Raw holds exactly prod(Shape) elements of DType.
func (t Tensor) Check(field string) error {
	size := Itemsize(t.DType)
	if size == 0 {
		return fmt.Errorf("%s: dtype %v is not a tensor element type", field, t.DType)
	}
	n, err := t.NumElements()
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if len(t.Raw) != n*size {
		return fmt.Errorf("%s: shape %v of %v needs %d elements (%d bytes), the data has %d bytes",
			field, t.Shape, t.DType, n, n*size, len(t.Raw))
	}
	return nil
}

// Float64s decodes a float32 or float64 tensor into float64 values.
func (t Tensor) Float64s() ([]float64, error) {
	if err := t.Check("tensor"); err != nil {
		return nil, err
	}
	switch t.DType {
	case Float64:
		out := make([]float64, len(t.Raw)/8)
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Raw[8*i:]))
		}
		return out, nil
	case Float32:
		out := make([]float64, len(t.Raw)/4)
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Raw[4*i:])))
		}
		return out, nil
	}
	return nil, fmt.Errorf("tensor: expected float32 or float64, got %v", t.DType)
}

// Float32s decodes a float32 tensor.
func (t Tensor) Float32s() ([]float32, error) {
	if err := t.Check("tensor"); err != nil {
		return nil, err
	}
	if t.DType != Float32 {
		return nil, fmt.Errorf("tensor: expected float32, got %v", t.DType)
	}
	out := make([]float32, len(t.Raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Raw[4*i:]))
	}
	return out, nil
}

// Proto is the wire message of t (the bytes are shared, not copied).
func (t Tensor) Proto() *pb.Tensor {
	return &pb.Tensor{Dtype: t.DType, Shape: append([]int64(nil), t.Shape...), RawData: t.Raw}
}

// encode checks t and returns its wire message; errors name field.
func (t Tensor) encode(field string) (*pb.Tensor, error) {
	if err := t.Check(field); err != nil {
		return nil, err
	}
	return t.Proto(), nil
}

// FromProto is the Tensor of a wire message (nil gives the zero Tensor).
func FromProto(w *pb.Tensor) Tensor {
	if w == nil {
		return Tensor{}
	}
	return Tensor{DType: w.GetDtype(), Shape: w.GetShape(), Raw: w.GetRawData()}
}
