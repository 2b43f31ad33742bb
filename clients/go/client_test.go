package advantage_test

// Tests against a real advantage-service server; tests/clients/test_go_client.py starts the
// servers and sets the variables below. By hand: start `make serve` and run
//   ADVANTAGE_TEST_TARGET=127.0.0.1:50051 ./go-offline.sh test -run 'Models|HandWorked|Invalid' .
//
// ADVANTAGE_TEST_TARGET        a server with the demo model (plaintext, no token)
// ADVANTAGE_TEST_CASES         the reference cases (tests/support/client_cases.py): TorchRL's numbers
// ADVANTAGE_TEST_TOKEN_TARGET  a server started with auth token ADVANTAGE_TEST_TOKEN
// ADVANTAGE_TEST_TLS_TARGET    a TLS server; ADVANTAGE_TEST_CERTS holds ca.crt, other-ca.crt, ...
// ADVANTAGE_TEST_MTLS_TARGET   a TLS server that wants client certificates signed by ca.crt
// ADVANTAGE_TEST_GOLDEN        proto/testdata (golden requests and answers)
// ADVANTAGE_TEST_REFUSING_TARGET  a server SERVING by health that answers every call UNAVAILABLE
//                                 (run with GRPC_GO_RETRY=on: grpc-go 1.33 retries only then)
// A test whose variable is missing fails: none is skipped.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	advantage "github.com/advantage-service/advantage-service/clients/go"
	pb "github.com/advantage-service/advantage-service/clients/go/advantagev1"
)

func env(t *testing.T, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set (see the top of client_test.go)", name)
	}
	return value
}

func dial(t *testing.T, target string, options advantage.Options) *advantage.Client {
	t.Helper()
	if options.Timeout == 0 {
		options.Timeout = 60 * time.Second
	}
	client, err := advantage.Dial(target, options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func demo(t *testing.T) *advantage.Client {
	return dial(t, env(t, "ADVANTAGE_TEST_TARGET"), advantage.Options{})
}

// requireCode fails unless err is an *advantage.Error with code and a message holding every
// fragment.
func requireCode(t *testing.T, err error, code codes.Code, fragments ...string) {
	t.Helper()
	var failure *advantage.Error
	if !errors.As(err, &failure) {
		t.Fatalf("want %s, got %v", advantage.CodeName(code), err)
	}
	if failure.Code != code || status.Code(err) != code {
		t.Fatalf("want %s, got %v", advantage.CodeName(code), err)
	}
	for _, fragment := range fragments {
		if !strings.Contains(failure.Message, fragment) {
			t.Fatalf("message %q lacks %q", failure.Message, fragment)
		}
	}
}

func floats(t *testing.T, tensor advantage.Tensor) []float64 {
	t.Helper()
	values, err := tensor.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return values
}

func requireClose(t *testing.T, what string, got, want []float64, tolerance float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > tolerance {
			t.Fatalf("%s[%d] = %.17g, want %.17g (tolerance %g)", what, i, got[i], want[i], tolerance)
		}
	}
}

// ---- models and parameters ----------------------------------------------------------------

func TestListModelsAndGetModel(t *testing.T) {
	client := demo(t)
	models, err := client.ListModels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 1 || models[0].Name != "demo" {
		t.Fatalf("models %+v", models)
	}
	model, err := client.GetModel(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	// The demo model: CartPole-sized networks, 4 float32 inputs, 2 categorical actions.
	if model.Name != "demo" || !model.HasValueNetwork || !model.HasActorNetwork ||
		len(model.Inputs) != 1 || model.Inputs[0].Name != "observation" ||
		fmt.Sprint(model.Inputs[0].Shape) != "[4]" || model.Inputs[0].DType != advantage.Float32 ||
		model.Action.Distribution != advantage.Categorical || model.Action.NumActions != 2 ||
		model.Gamma != 0.99 || model.Lmbda != 0.95 || model.ParameterDType != advantage.Float32 {
		t.Fatalf("demo model %+v", model)
	}
	_, err = client.GetModel(context.Background(), "no-such-model")
	requireCode(t, err, codes.NotFound, "no-such-model", "demo")
}

func TestGetParametersReassemblesChunks(t *testing.T) {
	client := demo(t)
	whole, err := client.GetParameters(context.Background(), "", advantage.ParameterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if whole.ModelName != "demo" {
		t.Fatalf("model %q", whole.ModelName)
	}
	// demo_networks(): value 4→64→64→1 and actor 4→64→2 (nn.Linear weights are [out, in]).
	shapes := map[string]string{
		"value_network.0.weight": "[64 4]", "value_network.2.weight": "[64 64]",
		"value_network.4.bias": "[1]", "actor_network.0.weight": "[64 4]",
		"actor_network.2.weight": "[2 64]", "actor_network.2.bias": "[2]",
	}
	for name, shape := range shapes {
		tensor, ok := whole.Tensors[name]
		if !ok || fmt.Sprint(tensor.Shape) != shape || tensor.DType != advantage.Float32 {
			t.Fatalf("%s: %+v (want %s float32)", name, tensor.Shape, shape)
		}
	}
	if len(whole.Tensors) != 10 {
		t.Fatalf("%d tensors", len(whole.Tensors))
	}
	// 100-byte chunks split every weight into many pieces; the reassembled bytes are the same.
	pieces, err := client.GetParameters(context.Background(), "demo",
		advantage.ParameterOptions{MaxChunkBytes: 100, Prefixes: []string{"actor_network."}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pieces.Tensors) != 4 || pieces.ParameterVersion != whole.ParameterVersion {
		t.Fatalf("%d actor tensors, version %d", len(pieces.Tensors), pieces.ParameterVersion)
	}
	for name, tensor := range pieces.Tensors {
		if string(tensor.Raw) != string(whole.Tensors[name].Raw) {
			t.Fatalf("%s differs when chunked", name)
		}
	}
}

// SetParameters on the token server (the demo server's version must stay 0 for the golden
// cases): the parameters read back, sent in 100-byte pieces with compare-and-set, come back
// bit-identical at the next version; a stale version and a wrong shape change nothing.
func TestSetParametersRoundTrip(t *testing.T) {
	client := dial(t, env(t, "ADVANTAGE_TEST_TOKEN_TARGET"), advantage.Options{Token: env(t, "ADVANTAGE_TEST_TOKEN")})
	ctx := context.Background()
	before, err := client.GetParameters(ctx, "demo", advantage.ParameterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Halve the actor's last bias, so the write is visible.
	bias := before.Tensors["actor_network.2.bias"]
	values, err := bias.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	for i := range values {
		values[i] /= 2
	}
	changed := map[string]advantage.Tensor{}
	for name, tensor := range before.Tensors {
		changed[name] = tensor
	}
	changed["actor_network.2.bias"] = advantage.Float32s(values, bias.Shape...)
	version := before.ParameterVersion
	result, err := client.SetParameters(ctx, "demo", changed,
		advantage.SetParametersOptions{ExpectedVersion: advantage.Int(version), MaxChunkBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	if result.ModelName != "demo" || result.ParameterVersion != version+1 || result.TensorsUpdated != 10 {
		t.Fatalf("answer %v", result)
	}
	after, err := client.GetParameters(ctx, "demo", advantage.ParameterOptions{})
	if err != nil || after.ParameterVersion != version+1 {
		t.Fatalf("read back: %v %v", after, err)
	}
	for name, tensor := range changed {
		if string(after.Tensors[name].Raw) != string(tensor.Raw) {
			t.Fatalf("%s differs after the write", name)
		}
	}
	_, err = client.SetParameters(ctx, "demo", changed,
		advantage.SetParametersOptions{ExpectedVersion: advantage.Int(version)})
	requireCode(t, err, codes.FailedPrecondition)
	wrong := map[string]advantage.Tensor{"actor_network.2.bias": advantage.Float32s([]float32{1, 2, 3}, 3)}
	_, err = client.SetParameters(ctx, "demo", wrong, advantage.SetParametersOptions{})
	requireCode(t, err, codes.InvalidArgument, "actor_network.2.bias")
	final, err := client.GetModel(ctx, "demo")
	if err != nil || final.ParameterVersion != version+1 {
		t.Fatalf("version %d after refused writes: %v", final.ParameterVersion, err)
	}
}

// WatchModels on the token server: the current version first, then the one a write commits; an
// unknown model is NOT_FOUND; Close ends the stream.
func TestWatchModelsSeesAWrite(t *testing.T) {
	client := dial(t, env(t, "ADVANTAGE_TEST_TOKEN_TARGET"), advantage.Options{Token: env(t, "ADVANTAGE_TEST_TOKEN")})
	ctx := context.Background()
	params, err := client.GetParameters(ctx, "demo", advantage.ParameterOptions{Prefixes: []string{"value_network.4."}})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := client.WatchModels(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	now, err := watch.Next()
	if err != nil || now != (advantage.ModelVersion{ModelName: "demo", ParameterVersion: params.ParameterVersion}) {
		t.Fatalf("first message %+v %v (version %d)", now, err, params.ParameterVersion)
	}
	if _, err := client.SetParameters(ctx, "demo", params.Tensors,
		advantage.SetParametersOptions{ExpectedVersion: advantage.Int(params.ParameterVersion)}); err != nil {
		t.Fatal(err)
	}
	next, err := watch.Next()
	if err != nil || next.ParameterVersion != params.ParameterVersion+1 {
		t.Fatalf("after the write %+v %v", next, err)
	}
	watch.Close()
	_, err = watch.Next()
	requireCode(t, err, codes.Canceled)
	unknown, err := client.WatchModels(ctx, "no-such-model")
	if err == nil {
		defer unknown.Close()
		_, err = unknown.Next()
	}
	requireCode(t, err, codes.NotFound, "no-such-model")
}

// ---- ComputeAdvantage ---------------------------------------------------------------------

// GAE by hand, γ = 0.5, λ = 0.5 (γλ = 0.25), one row of three steps, the last one terminated:
//
//	δ2 = 1 − 3 = −2                         (terminated: no bootstrap)
//	δ1 = 0 + 0.5·3 − 2 = −0.5,  A1 = −0.5 + 0.25·(−2) = −1
//	δ0 = 2 + 0.5·2 − 1 = 2,     A0 = 2 + 0.25·(−1) = 1.75
//
// value_target = A + V = [2.75, 1, 1].
func TestComputeAdvantageHandWorked(t *testing.T) {
	client := demo(t)
	value := advantage.Float64s([]float64{1, 2, 3}, 1, 3)
	nextValue := advantage.Float64s([]float64{2, 3, 100}, 1, 3) // 100: never read
	terminated := advantage.Bools([]bool{false, false, true}, 1, 3)
	result, err := client.ComputeAdvantage(context.Background(), advantage.AdvantageRequest{
		Trajectory: advantage.Trajectory{
			Reward:     advantage.Float64s([]float64{2, 0, 1}, 1, 3),
			Done:       advantage.Bools([]bool{false, false, true}, 1, 3),
			Terminated: &terminated, StateValue: &value, NextStateValue: &nextValue,
		},
		Estimator: advantage.GAE{Gamma: advantage.Scalar(0.5), Lmbda: advantage.Scalar(0.5)},
	})
	if err != nil {
		t.Fatal(err)
	}
	requireClose(t, "advantage", floats(t, result.Advantage), []float64{1.75, -1, -2}, 0)
	requireClose(t, "value_target", floats(t, result.ValueTarget), []float64{2.75, 1, 1}, 0)
	if result.Advantage.DType != advantage.Float64 || fmt.Sprint(result.Advantage.Shape) != "[1 3]" {
		t.Fatalf("advantage %v %v", result.Advantage.DType, result.Advantage.Shape)
	}
	if result.ModelName != "demo" || result.StateValue != nil {
		t.Fatalf("model %q, state value %v", result.ModelName, result.StateValue)
	}
}

func smallTrajectory(rewardShape ...int64) advantage.Trajectory {
	n := int64(1)
	for _, d := range rewardShape {
		n *= d
	}
	value := advantage.Float64s(make([]float64, 8), 2, 4)
	return advantage.Trajectory{
		Reward:     advantage.Float64s(make([]float64, n), rewardShape...),
		Done:       advantage.Bools(make([]bool, 8), 2, 4),
		StateValue: &value, NextStateValue: &value,
	}
}

func TestInvalidArgumentNamesTheField(t *testing.T) {
	client := demo(t)
	ctx := context.Background()
	_, err := client.ComputeAdvantage(ctx, advantage.AdvantageRequest{Trajectory: smallTrajectory(2, 5)})
	requireCode(t, err, codes.InvalidArgument, "trajectory.", "[2, 4]", "[2, 5]")
	_, err = client.ComputeAdvantage(ctx, advantage.AdvantageRequest{
		Trajectory: smallTrajectory(2, 4), Estimator: advantage.GAE{Gamma: advantage.Scalar(1.5)},
	})
	requireCode(t, err, codes.InvalidArgument, "gae.gamma", "1.5")
	_, err = client.ComputeAdvantage(ctx, advantage.AdvantageRequest{
		Trajectory: smallTrajectory(2, 4),
		Estimator:  advantage.VTrace{RhoThresh: advantage.Float(-1)},
	})
	requireCode(t, err, codes.InvalidArgument, "vtrace.rho_thresh")
	_, err = client.ComputeAdvantage(ctx, advantage.AdvantageRequest{
		Model: "no-such-model", Trajectory: smallTrajectory(2, 4),
	})
	requireCode(t, err, codes.NotFound, "no-such-model")
}

func TestVersionsAreChecked(t *testing.T) {
	client := demo(t)
	ctx := context.Background()
	_, err := client.ComputeAdvantage(ctx, advantage.AdvantageRequest{
		Trajectory: smallTrajectory(2, 4), MinParameterVersion: advantage.Int(1 << 40),
	})
	requireCode(t, err, codes.FailedPrecondition)
	model, err := client.GetModel(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	again, err := client.ComputeAdvantage(ctx, advantage.AdvantageRequest{
		Trajectory: smallTrajectory(2, 4), MinParameterVersion: advantage.Int(model.ParameterVersion),
	})
	if err != nil || again.ParameterVersion < model.ParameterVersion {
		t.Fatalf("read at version %d: %v %v", model.ParameterVersion, again, err)
	}
	// A compare-and-set update at a version the model is not at is refused; nothing changes.
	request := lossRequest(t, "a2c")
	request.ApplyUpdate = true
	request.ExpectedParameterVersion = advantage.Int(model.ParameterVersion + 1000)
	_, err = client.ComputeLoss(ctx, request)
	requireCode(t, err, codes.FailedPrecondition)
	after, err := client.GetModel(ctx, "demo")
	if err != nil || after.ParameterVersion != model.ParameterVersion {
		t.Fatalf("version %d after a refused update (was %d): %v", after.ParameterVersion,
			model.ParameterVersion, err)
	}
}

func TestUnreachableServerIsUnavailable(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := listener.Addr().String()
	listener.Close() // nobody listens there now
	client := dial(t, target, advantage.Options{ServiceConfig: "{}"})
	_, err = client.ListModels(context.Background())
	requireCode(t, err, codes.Unavailable)
}

// A list of two servers, one refusing every call: round_robin sends calls to both, and the
// default service config retries each refused one on the other server (the test's driver checks
// that the refusing server was called). With gRPC's defaults (pick_first on the first address,
// no retries) the refusal reaches the caller.
func TestListOfServersIsBalancedAndUnavailableRetried(t *testing.T) {
	refusing, serving := env(t, "ADVANTAGE_TEST_REFUSING_TARGET"), env(t, "ADVANTAGE_TEST_TARGET")
	target, err := advantage.ChannelTarget([]string{refusing, serving})
	if err != nil {
		t.Fatal(err)
	}
	balanced := dial(t, target, advantage.Options{})
	for i := 0; i < 10; i++ {
		models, err := balanced.ListModels(context.Background())
		if err != nil || len(models) != 1 {
			t.Fatalf("call %d: %v %v", i, models, err)
		}
	}
	_, err = dial(t, target, advantage.Options{ServiceConfig: "{}"}).ListModels(context.Background())
	requireCode(t, err, codes.Unavailable, "refusing server")
}

// ---- TorchRL's numbers (ADVANTAGE_TEST_CASES) ---------------------------------------------

type jsonTensor struct {
	DType string            `json:"dtype"`
	Shape []int64           `json:"shape"`
	Data  []json.RawMessage `json:"data"`
}

func (j jsonTensor) tensor(t *testing.T) advantage.Tensor {
	t.Helper()
	switch j.DType {
	case "float32", "float64":
		values := make([]float64, len(j.Data))
		for i, raw := range j.Data {
			if err := json.Unmarshal(raw, &values[i]); err != nil {
				t.Fatal(err)
			}
		}
		if j.DType == "float64" {
			return advantage.Float64s(values, j.Shape...)
		}
		narrow := make([]float32, len(values))
		for i, v := range values {
			narrow[i] = float32(v)
		}
		return advantage.Float32s(narrow, j.Shape...)
	case "bool":
		values := make([]bool, len(j.Data))
		for i, raw := range j.Data {
			if err := json.Unmarshal(raw, &values[i]); err != nil {
				t.Fatal(err)
			}
		}
		return advantage.Bools(values, j.Shape...)
	case "int64":
		values := make([]int64, len(j.Data))
		for i, raw := range j.Data {
			if err := json.Unmarshal(raw, &values[i]); err != nil {
				t.Fatal(err)
			}
		}
		return advantage.Int64s(values, j.Shape...)
	}
	t.Fatalf("dtype %q", j.DType)
	return advantage.Tensor{}
}

type jsonTrajectory struct {
	Observation     map[string]jsonTensor `json:"observation"`
	NextObservation map[string]jsonTensor `json:"next_observation"`
	Reward          jsonTensor            `json:"reward"`
	Done            jsonTensor            `json:"done"`
	Terminated      *jsonTensor           `json:"terminated"`
	StateValue      *jsonTensor           `json:"state_value"`
	NextStateValue  *jsonTensor           `json:"next_state_value"`
	Action          *jsonTensor           `json:"action"`
	SampleLogProb   *jsonTensor           `json:"sample_log_prob"`
	LogProb         *jsonTensor           `json:"log_prob"`
}

func (j jsonTrajectory) trajectory(t *testing.T) advantage.Trajectory {
	optional := func(x *jsonTensor) *advantage.Tensor {
		if x == nil {
			return nil
		}
		tensor := x.tensor(t)
		return &tensor
	}
	keyed := func(m map[string]jsonTensor) map[string]advantage.Tensor {
		out := map[string]advantage.Tensor{}
		for k, v := range m {
			out[k] = v.tensor(t)
		}
		return out
	}
	return advantage.Trajectory{
		Observation: keyed(j.Observation), NextObservation: keyed(j.NextObservation),
		Reward: j.Reward.tensor(t), Done: j.Done.tensor(t), Terminated: optional(j.Terminated),
		StateValue: optional(j.StateValue), NextStateValue: optional(j.NextStateValue),
		Action: optional(j.Action), SampleLogProb: optional(j.SampleLogProb),
		LogProb: optional(j.LogProb),
	}
}

type advantageCase struct {
	Name       string                     `json:"name"`
	Estimator  string                     `json:"estimator"`
	Knobs      map[string]json.RawMessage `json:"knobs"`
	Trajectory jsonTrajectory             `json:"trajectory"`
	Expected   map[string][]float64       `json:"expected"`
	Tolerance  float64                    `json:"tolerance"`
}

type lossCase struct {
	Name       string         `json:"name"`
	Loss       string         `json:"loss"`
	Trajectory jsonTrajectory `json:"trajectory"`
	Expected   struct {
		Loss    float64            `json:"loss"`
		Metrics map[string]float64 `json:"metrics"`
	} `json:"expected"`
	Rel float64 `json:"rel"`
	Abs float64 `json:"abs"`
}

type referenceCases struct {
	Advantage []advantageCase `json:"advantage"`
	Loss      []lossCase      `json:"loss"`
}

func loadCases(t *testing.T) referenceCases {
	t.Helper()
	text, err := os.ReadFile(env(t, "ADVANTAGE_TEST_CASES"))
	if err != nil {
		t.Fatal(err)
	}
	var cases referenceCases
	if err := json.Unmarshal(text, &cases); err != nil {
		t.Fatal(err)
	}
	return cases
}

// coefficient reads a knob that is a number or {"per_step": tensor}; nil when absent.
func coefficient(t *testing.T, knobs map[string]json.RawMessage, name string) *advantage.Coefficient {
	raw, ok := knobs[name]
	if !ok {
		return nil
	}
	var scalar float64
	if json.Unmarshal(raw, &scalar) == nil {
		return advantage.Scalar(scalar)
	}
	var perStep struct {
		PerStep jsonTensor `json:"per_step"`
	}
	if err := json.Unmarshal(raw, &perStep); err != nil {
		t.Fatal(err)
	}
	return advantage.PerStep(perStep.PerStep.tensor(t))
}

func number(t *testing.T, knobs map[string]json.RawMessage, name string) *float64 {
	raw, ok := knobs[name]
	if !ok {
		return nil
	}
	var value float64
	if err := json.Unmarshal(raw, &value); err != nil {
		t.Fatal(err)
	}
	return &value
}

// estimatorOf builds the typed estimator of a case (the Go user's way to write it).
func estimatorOf(t *testing.T, name string, knobs map[string]json.RawMessage) advantage.Estimator {
	gamma, lmbda := coefficient(t, knobs, "gamma"), coefficient(t, knobs, "lmbda")
	switch name {
	case "td0":
		return advantage.TD0{Gamma: gamma}
	case "td1":
		return advantage.TD1{Gamma: gamma}
	case "td_lambda":
		return advantage.TDLambda{Gamma: gamma, Lmbda: lmbda}
	case "gae":
		return advantage.GAE{Gamma: gamma, Lmbda: lmbda}
	case "vtrace":
		return advantage.VTrace{
			Gamma: gamma, RhoThresh: number(t, knobs, "rho_thresh"),
			CThresh: number(t, knobs, "c_thresh"), Lmbda: number(t, knobs, "lmbda"),
			RhoPgThresh: number(t, knobs, "rho_pg_thresh"),
		}
	}
	t.Fatalf("estimator %q", name)
	return nil
}

func TestReferenceAdvantage(t *testing.T) {
	client := demo(t)
	cases := loadCases(t)
	if len(cases.Advantage) == 0 {
		t.Fatal("no advantage cases")
	}
	for _, c := range cases.Advantage {
		c := c
		t.Run(c.Name, func(t *testing.T) {
			result, err := client.ComputeAdvantage(context.Background(), advantage.AdvantageRequest{
				Trajectory: c.Trajectory.trajectory(t), Estimator: estimatorOf(t, c.Estimator, c.Knobs),
			})
			if err != nil {
				t.Fatal(err)
			}
			requireClose(t, "advantage", floats(t, result.Advantage), c.Expected["advantage"], c.Tolerance)
			requireClose(t, "value_target", floats(t, result.ValueTarget), c.Expected["value_target"],
				c.Tolerance)
			if want, ok := c.Expected["state_value"]; ok {
				if result.StateValue == nil {
					t.Fatal("no state_value in the answer")
				}
				requireClose(t, "state_value", floats(t, *result.StateValue), want, c.Tolerance)
			}
		})
	}
}

func lossOf(t *testing.T, name string) advantage.Loss {
	switch name {
	case "ppo_clip":
		return advantage.ClipPPO{}
	case "ppo":
		return advantage.PPO{}
	case "a2c":
		return advantage.A2C{}
	case "reinforce":
		return advantage.Reinforce{}
	}
	t.Fatalf("loss %q", name)
	return nil
}

// lossRequest is the reference case `name` as a LossRequest.
func lossRequest(t *testing.T, name string) advantage.LossRequest {
	for _, c := range loadCases(t).Loss {
		if c.Name == name {
			return advantage.LossRequest{Trajectory: c.Trajectory.trajectory(t), Loss: lossOf(t, c.Loss)}
		}
	}
	t.Fatalf("no loss case %q", name)
	return advantage.LossRequest{}
}

func TestReferenceLoss(t *testing.T) {
	client := demo(t)
	cases := loadCases(t)
	if len(cases.Loss) == 0 {
		t.Fatal("no loss cases")
	}
	for _, c := range cases.Loss {
		c := c
		t.Run(c.Name, func(t *testing.T) {
			result, err := client.ComputeLoss(context.Background(), lossRequest(t, c.Name))
			if err != nil {
				t.Fatal(err)
			}
			close := func(what string, got, want float64) {
				if math.Abs(got-want) > c.Abs+c.Rel*math.Abs(want) {
					t.Fatalf("%s = %.9g, want %.9g", what, got, want)
				}
			}
			close("loss", result.Loss, c.Expected.Loss)
			names := make([]string, 0, len(c.Expected.Metrics))
			for name := range c.Expected.Metrics {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				got, ok := result.Metrics[name]
				if !ok {
					t.Fatalf("no metric %q in %v", name, result.Metrics)
				}
				close(name, got, c.Expected.Metrics[name])
			}
			if result.Updated || result.ModelName != "demo" {
				t.Fatalf("updated %v, model %q", result.Updated, result.ModelName)
			}
		})
	}
}

// ---- auth and TLS -------------------------------------------------------------------------

func TestTokenIsSentWithEveryCall(t *testing.T) {
	target, token := env(t, "ADVANTAGE_TEST_TOKEN_TARGET"), env(t, "ADVANTAGE_TEST_TOKEN")
	_, err := dial(t, target, advantage.Options{}).ListModels(context.Background())
	requireCode(t, err, codes.Unauthenticated)
	_, err = dial(t, target, advantage.Options{Token: token + "x"}).ListModels(context.Background())
	requireCode(t, err, codes.Unauthenticated)
	client := dial(t, target, advantage.Options{Token: token})
	if _, err := client.ListModels(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The generated stub on the same channel carries the token too (unary and streaming).
	if _, err := client.Stub().GetModel(context.Background(), &pb.GetModelRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetParameters(context.Background(), "", advantage.ParameterOptions{}); err != nil {
		t.Fatal(err)
	}
}

func pem(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env(t, "ADVANTAGE_TEST_CERTS"), name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestTLS(t *testing.T) {
	target := env(t, "ADVANTAGE_TEST_TLS_TARGET")
	trusted := dial(t, target, advantage.Options{TLS: &advantage.TLS{RootCertificates: pem(t, "ca.crt")}})
	if _, err := trusted.GetModel(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	for _, options := range []advantage.Options{
		{}, // plaintext to a TLS server
		{TLS: &advantage.TLS{RootCertificates: pem(t, "other-ca.crt")}}, // an untrusted CA
	} {
		options.ServiceConfig = "{}"
		_, err := dial(t, target, options).GetModel(context.Background(), "")
		requireCode(t, err, codes.Unavailable)
	}
}

func TestMutualTLS(t *testing.T) {
	target := env(t, "ADVANTAGE_TEST_MTLS_TARGET")
	with := &advantage.TLS{
		RootCertificates: pem(t, "ca.crt"), CertificateChain: pem(t, "client.crt"),
		PrivateKey: pem(t, "client.key"),
	}
	if _, err := dial(t, target, advantage.Options{TLS: with}).GetModel(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	without := advantage.Options{TLS: &advantage.TLS{RootCertificates: pem(t, "ca.crt")}, ServiceConfig: "{}"}
	_, err := dial(t, target, without).GetModel(context.Background(), "")
	requireCode(t, err, codes.Unavailable)
	_, err = advantage.Dial(target, advantage.Options{TLS: &advantage.TLS{PrivateKey: pem(t, "client.key")}})
	if err == nil || !strings.Contains(err.Error(), "together (mutual TLS), or neither") {
		t.Fatalf("half a key pair: %v", err)
	}
}
