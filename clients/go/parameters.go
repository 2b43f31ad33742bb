package advantage

import (
	"context"
	"fmt"
	"io"
	"sort"

	pb "github.com/advantage-service/advantage-service/clients/go/advantagev1"
)

// ParameterOptions select what GetParameters streams.
type ParameterOptions struct {
	// Only names starting with one of these (e.g. "actor_network."); empty = all.
	Prefixes []string
	// Largest raw_data per chunk, in bytes; 0 = the server's default and maximum (1 MiB).
	MaxChunkBytes int64
	// Read-your-writes: this version or a later one (nil = any).
	MinParameterVersion *int64
}

// GetParameters returns a consistent snapshot of a model's parameters ("" = the default
// model), reassembled from the chunked stream.
func (c *Client) GetParameters(ctx context.Context, model string, options ParameterOptions) (*Parameters, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	stream, err := c.stub.GetParameters(ctx, &pb.GetParametersRequest{
		ModelName: model, MaxChunkBytes: options.MaxChunkBytes, Prefixes: options.Prefixes,
		MinParameterVersion: options.MinParameterVersion,
	})
	if err != nil {
		return nil, wrap(err)
	}
	out := &Parameters{ModelName: model, Tensors: map[string]Tensor{}}
	filled := map[string]int{}
	first := true
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, wrap(err)
		}
		if chunk.GetModelName() != "" {
			out.ModelName = chunk.GetModelName()
		}
		if chunk.ParameterVersion != nil {
			if first {
				out.ParameterVersion, first = *chunk.ParameterVersion, false
			} else if *chunk.ParameterVersion != out.ParameterVersion {
				return nil, fmt.Errorf("GetParameters: chunks of versions %d and %d in one stream",
					out.ParameterVersion, *chunk.ParameterVersion)
			}
		}
		for _, nt := range chunk.GetTensors() {
			piece := FromProto(nt.GetData())
			if err := piece.Check("parameter " + nt.GetName()); err != nil {
				return nil, err
			}
			full, seen := out.Tensors[nt.GetName()]
			if !seen {
				full = Tensor{DType: piece.DType, Shape: nt.GetShape()}
				n, err := full.NumElements()
				if err != nil {
					return nil, fmt.Errorf("parameter %s: %w", nt.GetName(), err)
				}
				full.Raw = make([]byte, n*Itemsize(piece.DType))
			}
			size := Itemsize(full.DType)
			start := int(nt.GetOffset()) * size
			if piece.DType != full.DType || start < 0 || start+len(piece.Raw) > len(full.Raw) {
				return nil, fmt.Errorf("GetParameters: a piece of %s does not fit (offset %d, %d bytes)",
					nt.GetName(), nt.GetOffset(), len(piece.Raw))
			}
			copy(full.Raw[start:], piece.Raw)
			filled[nt.GetName()] += len(piece.Raw)
			out.Tensors[nt.GetName()] = full
		}
	}
	for name, t := range out.Tensors {
		if filled[name] != len(t.Raw) {
			return nil, fmt.Errorf("GetParameters: %s got %d of %d bytes", name, filled[name], len(t.Raw))
		}
	}
	return out, nil
}

// MaxChunkBytes is the largest raw_data of one parameter chunk (the server's maximum too).
const MaxChunkBytes = 1 << 20

// SetParametersOptions shape a SetParameters stream.
type SetParametersOptions struct {
	// Compare-and-set: FAILED_PRECONDITION unless the model is at this version (nil = no check).
	ExpectedVersion *int64
	// Largest raw_data per chunk sent, in bytes; 0 = MaxChunkBytes.
	MaxChunkBytes int
}

// SetParametersResult is the answer of SetParameters.
type SetParametersResult struct {
	ModelName        string
	ParameterVersion int64 // after the update
	TensorsUpdated   int64
}

// parameterChunks splits tensors (full shapes) into the chunks of a SetParameters stream: each
// tensor in flat pieces of at most maxBytes, pieces packed into chunks of at most maxBytes; the
// first chunk names the model and carries the expected version.
func parameterChunks(model string, tensors map[string]Tensor, options SetParametersOptions) ([]*pb.ParameterChunk, error) {
	maxBytes := options.MaxChunkBytes
	if maxBytes <= 0 || maxBytes > MaxChunkBytes {
		maxBytes = MaxChunkBytes
	}
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	chunks := []*pb.ParameterChunk{{ModelName: model, ParameterVersion: options.ExpectedVersion}}
	used := 0
	for _, name := range names {
		t := tensors[name]
		if err := t.Check(name); err != nil {
			return nil, err
		}
		size := Itemsize(t.DType)
		per := maxBytes / size
		if per < 1 {
			per = 1
		}
		n := len(t.Raw) / size
		for offset := 0; offset < n || (n == 0 && offset == 0); offset += per {
			end := offset + per
			if end > n {
				end = n
			}
			piece := t.Raw[offset*size : end*size]
			current := chunks[len(chunks)-1]
			if len(current.Tensors) > 0 && used+len(piece) > maxBytes {
				current = &pb.ParameterChunk{ModelName: model}
				chunks = append(chunks, current)
				used = 0
			}
			current.Tensors = append(current.Tensors, &pb.NamedTensor{
				Name: name, Shape: append([]int64(nil), t.Shape...), Offset: int64(offset),
				Data: &pb.Tensor{Dtype: t.DType, Shape: []int64{int64(end - offset)}, RawData: piece},
			})
			used += len(piece)
			if n == 0 {
				break
			}
		}
	}
	return chunks, nil
}

// SetParameters replaces the named parameters of a model ("" = the default) with tensors of their
// full shapes and dtypes (as GetParameters returns them), all or nothing; the version increases by
// one. On a server with an admin token it needs that token.
func (c *Client) SetParameters(ctx context.Context, model string, tensors map[string]Tensor,
	options SetParametersOptions) (*SetParametersResult, error) {
	chunks, err := parameterChunks(model, tensors, options)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	stream, err := c.stub.SetParameters(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	for _, chunk := range chunks {
		if err := stream.Send(chunk); err != nil {
			break // the server ended the call; CloseAndRecv returns its status
		}
	}
	res, err := stream.CloseAndRecv()
	if err != nil {
		return nil, wrap(err)
	}
	return &SetParametersResult{res.GetModelName(), res.GetParameterVersion(), res.GetTensorsUpdated()}, nil
}

// String describes the result.
func (r SetParametersResult) String() string {
	return fmt.Sprintf("%s at version %d (%d tensors updated)", r.ModelName, r.ParameterVersion,
		r.TensorsUpdated)
}
