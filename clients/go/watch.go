package advantage

import (
	"context"

	pb "github.com/advantage-service/advantage-service/clients/go/advantagev1"
)

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
