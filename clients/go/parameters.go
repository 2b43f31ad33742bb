package advantage

import (
	"context"
	"fmt"
	"sort"

	pb "github.com/advantage-service/advantage-service/clients/go/advantagev1"
)

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

// ModelVersion is one message of a WatchModels stream: a model's parameter version now.
type ModelVersion struct {
	ModelName        string
	ParameterVersion int64
}

// Watch is an open WatchModels stream; Close it when done.
type Watch struct {
	stream pb.AdvantageService_WatchModelsClient
	cancel context.CancelFunc
}

// WatchModels streams the versions of the named models (none = every model): first each one's
// current version, then one message per new version committed (a slow reader gets the latest,
// not every intermediate one). The stream stays open until ctx is cancelled or Close is called;
// the client's Timeout does not apply to it.
func (c *Client) WatchModels(ctx context.Context, models ...string) (*Watch, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.stub.WatchModels(ctx, &pb.WatchModelsRequest{ModelNames: models})
	if err != nil {
		cancel()
		return nil, wrap(err)
	}
	return &Watch{stream, cancel}, nil
}

// Next blocks until the next version arrives; a failed or closed stream returns an error
// (*Error with CANCELLED after Close, NOT_FOUND for an unknown model).
func (w *Watch) Next() (ModelVersion, error) {
	message, err := w.stream.Recv()
	if err != nil {
		return ModelVersion{}, wrap(err)
	}
	return ModelVersion{message.GetModelName(), message.GetParameterVersion()}, nil
}

// Close cancels the stream.
func (w *Watch) Close() { w.cancel() }
