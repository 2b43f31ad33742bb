package advantage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/codes"

	advantage "github.com/advantage-service/advantage-service/clients/go"
)

// The README's usage, compiled by `go test` (examples without an Output comment are not run: it
// needs a server).
func Example() {
	client, err := advantage.Dial("localhost:50051", advantage.Options{Timeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer client.Close()
	ctx := context.Background()

	const B, T = 2, 5 // per-step tensors are [*B, T]: time last, no trailing 1
	rewards, dones, terminateds := make([]float32, B*T), make([]bool, B*T), make([]bool, B*T)
	obs, next := make([]float32, B*T*4), make([]float32, B*T*4)
	terminated := advantage.Bools(terminateds, B, T) // optional; absent = done
	trajectory := advantage.Trajectory{
		Reward:          advantage.Float32s(rewards, B, T),
		Done:            advantage.Bools(dones, B, T),
		Terminated:      &terminated,
		Observation:     map[string]advantage.Tensor{"observation": advantage.Float32s(obs, B, T, 4)},
		NextObservation: map[string]advantage.Tensor{"observation": advantage.Float32s(next, B, T, 4)},
	}
	result, err := client.ComputeAdvantage(ctx, advantage.AdvantageRequest{
		Trajectory: trajectory,
		Estimator:  advantage.GAE{Gamma: advantage.Scalar(0.99), Lmbda: advantage.Scalar(0.95)},
	})
	var failure *advantage.Error
	if errors.As(err, &failure) && failure.Code == codes.InvalidArgument {
		fmt.Println(failure.Message) // names the field
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	advantages, _ := result.Advantage.Float64s() // [B*T], row-major
	fmt.Println(advantages[0], result.ModelName, result.ParameterVersion)

	trajectory.Action = new(advantage.Tensor)
	*trajectory.Action = advantage.Int64s(make([]int64, B*T), B, T)
	logProbs := advantage.Float32s(make([]float32, B*T), B, T)
	trajectory.SampleLogProb = &logProbs
	loss, err := client.ComputeLoss(ctx, advantage.LossRequest{
		Trajectory: trajectory,
		Loss: advantage.ClipPPO{ClipEpsilon: advantage.Float(0.1),
			Options: advantage.LossOptions{EntropyCoeff: advantage.Float(0.01)}},
	})
	if err == nil {
		fmt.Println(loss.Loss, loss.Metrics["loss_objective"])
	}

	models, err := client.ListModels(ctx) // inputs, action spec, Gamma, Lmbda, ...
	if err == nil {
		fmt.Println(len(models), models[0].Name)
	}
	model, err := client.GetModel(ctx, "") // "" = the server's default model
	if err == nil {
		fmt.Println(model.Inputs, model.Gamma)
	}
	params, err := client.GetParameters(ctx, "", advantage.ParameterOptions{Prefixes: []string{"actor_network."}})
	if err == nil {
		weights, _ := params.Tensors["actor_network.0.weight"].Float32s()
		fmt.Println(params.ParameterVersion, len(weights))
		set, err := client.SetParameters(ctx, "demo", params.Tensors, // full shapes, all or nothing
			advantage.SetParametersOptions{ExpectedVersion: advantage.Int(params.ParameterVersion)})
		if err == nil {
			fmt.Println(set.ParameterVersion)
		}
	}
	watch, err := client.WatchModels(ctx, "demo") // current version first, then each new one
	if err == nil {
		defer watch.Close()
		version, err := watch.Next()
		fmt.Println(version.ModelName, version.ParameterVersion, err)
	}
}
