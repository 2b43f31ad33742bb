package advantage_test

// The golden vectors (proto/testdata, format in its README) through the typed API: each case's
// request is built from its `input` with this client's types and methods; an interceptor on the
// channel records the message the client sends, which must equal the golden request as a message
// (proto.Equal) and as bytes (serialised by the channel's own codec, the bytes that go out); the
// answer must match the golden numbers. protobuf-go writes a message's oneof members after its
// other fields (an order protobuf allows; the golden bytes follow field numbers), so the top-level
// fields of the sent bytes are put back in field-number order before the comparison: every
// field's bytes must be identical.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	advantage "github.com/advantage-service/advantage-service/clients/go"
	pb "github.com/advantage-service/advantage-service/clients/go/advantagev1"
)

type goldenTensor struct {
	DType  string            `json:"dtype"`
	Shape  []int64           `json:"shape"`
	Values []json.RawMessage `json:"values"`
}

func (g goldenTensor) tensor(t *testing.T) advantage.Tensor {
	return jsonTensor{DType: g.DType, Shape: g.Shape, Data: g.Values}.tensor(t)
}

type goldenCase struct {
	Name    string                     `json:"name"`
	RPC     string                     `json:"rpc"`
	Request string                     `json:"request"`
	Input   map[string]json.RawMessage `json:"input"`
	Expect  map[string]json.RawMessage `json:"expect"`
}

// recorder keeps the last request message the client put on the wire, and its bytes as grpc's
// proto codec (the one the channel uses) serialises them.
type recorder struct {
	mu    sync.Mutex
	sent  proto.Message
	bytes []byte
	err   error
}

func (r *recorder) keep(message interface{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = proto.Clone(message.(proto.Message))
	r.bytes, r.err = encoding.GetCodec("proto").Marshal(message)
}

type recordingStream struct {
	grpc.ClientStream
	r *recorder
}

func (s recordingStream) SendMsg(m interface{}) error {
	s.r.keep(m)
	return s.ClientStream.SendMsg(m)
}

func (r *recorder) options() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply interface{},
			cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			r.keep(req)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc,
			cc *grpc.ClientConn, method string, streamer grpc.Streamer,
			opts ...grpc.CallOption) (grpc.ClientStream, error) {
			stream, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, err
			}
			return recordingStream{stream, r}, nil
		}),
	}
}

func decode(t *testing.T, raw json.RawMessage, into interface{}) {
	t.Helper()
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
}

func goldenTrajectory(t *testing.T, input map[string]json.RawMessage) advantage.Trajectory {
	var form string
	decode(t, input["form"], &form)
	var parts map[string]json.RawMessage
	decode(t, input["trajectory"], &parts)
	var trajectory jsonTrajectory
	for key, raw := range parts {
		switch key {
		case "observation", "next_observation":
			var keyed map[string]goldenTensor
			decode(t, raw, &keyed)
			converted := map[string]jsonTensor{}
			for k, g := range keyed {
				converted[k] = jsonTensor{g.DType, g.Shape, g.Values}
			}
			if key == "observation" {
				trajectory.Observation = converted
			} else {
				trajectory.NextObservation = converted
			}
		default:
			var g goldenTensor
			decode(t, raw, &g)
			j := jsonTensor{g.DType, g.Shape, g.Values}
			fields := map[string]**jsonTensor{
				"terminated": &trajectory.Terminated, "state_value": &trajectory.StateValue,
				"next_state_value": &trajectory.NextStateValue, "action": &trajectory.Action,
				"sample_log_prob": &trajectory.SampleLogProb, "log_prob": &trajectory.LogProb,
			}
			switch key {
			case "reward":
				trajectory.Reward = j
			case "done":
				trajectory.Done = j
			default:
				field, ok := fields[key]
				if !ok {
					t.Fatalf("trajectory key %q", key)
				}
				*field = &j
			}
		}
	}
	out := trajectory.trajectory(t)
	switch form {
	case "full":
		out.Form = advantage.FormFull
	case "compact":
		out.Form = advantage.FormCompact
	default:
		t.Fatalf("form %q", form)
	}
	return out
}

type kindKnobs struct {
	Kind  string                     `json:"kind"`
	Knobs map[string]json.RawMessage `json:"knobs"`
}

// takeKnobs reads knobs by name and fails on any knob left over (a knob this test ignored).
type takeKnobs struct {
	t     *testing.T
	knobs map[string]json.RawMessage
}

func (k takeKnobs) number(name string) *float64 {
	v := number(k.t, k.knobs, name)
	delete(k.knobs, name)
	return v
}

func (k takeKnobs) coefficient(name string) *advantage.Coefficient {
	v := coefficient(k.t, k.knobs, name)
	delete(k.knobs, name)
	return v
}

func (k takeKnobs) flag(name string) *bool {
	raw, ok := k.knobs[name]
	if !ok {
		return nil
	}
	delete(k.knobs, name)
	var v bool
	decode(k.t, raw, &v)
	return &v
}

func (k takeKnobs) done() {
	if len(k.knobs) > 0 {
		k.t.Fatalf("knobs this test does not map: %v", k.knobs)
	}
}

func goldenEstimator(t *testing.T, raw json.RawMessage) advantage.Estimator {
	if raw == nil {
		return nil
	}
	var e kindKnobs
	decode(t, raw, &e)
	k := takeKnobs{t, e.Knobs}
	if k.knobs == nil {
		k.knobs = map[string]json.RawMessage{}
	}
	defer k.done()
	flag := func(name string) bool { v := k.flag(name); return v != nil && *v }
	switch e.Kind {
	case "td0":
		return advantage.TD0{Gamma: k.coefficient("gamma"), AverageRewards: flag("average_rewards")}
	case "td1":
		return advantage.TD1{Gamma: k.coefficient("gamma"), AverageRewards: flag("average_rewards")}
	case "td_lambda":
		return advantage.TDLambda{Gamma: k.coefficient("gamma"), Lmbda: k.coefficient("lmbda"),
			AverageRewards: flag("average_rewards")}
	case "gae":
		return advantage.GAE{Gamma: k.coefficient("gamma"), Lmbda: k.coefficient("lmbda"),
			AverageGAE: flag("average_gae")}
	case "vtrace":
		return advantage.VTrace{Gamma: k.coefficient("gamma"), RhoThresh: k.number("rho_thresh"),
			CThresh: k.number("c_thresh"), Lmbda: k.number("lmbda"),
			RhoPgThresh: k.number("rho_pg_thresh"), AverageAdv: flag("average_adv")}
	}
	t.Fatalf("estimator %q", e.Kind)
	return nil
}

func goldenLoss(t *testing.T, raw json.RawMessage) advantage.Loss {
	var l kindKnobs
	decode(t, raw, &l)
	k := takeKnobs{t, l.Knobs}
	if k.knobs == nil {
		k.knobs = map[string]json.RawMessage{}
	}
	defer k.done()
	if l.Kind == "impala" {
		return advantage.Impala{
			Gamma: k.number("gamma"), Lmbda: k.number("lmbda"), RhoThresh: k.number("rho_thresh"),
			CThresh: k.number("c_thresh"), RhoPgThresh: k.number("rho_pg_thresh"),
			EntropyCoeff: k.number("entropy_coeff"), CriticCoeff: k.number("critic_coeff"),
			EntropyBonus: k.flag("entropy_bonus"),
		}
	}
	options := advantage.LossOptions{
		EntropyBonus: k.flag("entropy_bonus"), EntropyCoeff: k.number("entropy_coeff"),
		CriticCoeff: k.number("critic_coeff"), ClipValue: k.number("clip_value"),
	}
	if v := k.flag("normalize_advantage"); v != nil {
		options.NormalizeAdvantage = *v
	}
	if raw, ok := k.knobs["loss_critic_type"]; ok {
		delete(k.knobs, "loss_critic_type")
		var name string
		decode(t, raw, &name)
		types := map[string]advantage.CriticLoss{
			"l1": advantage.CriticL1, "l2": advantage.CriticL2, "smooth_l1": advantage.CriticSmoothL1,
		}
		critic, ok := types[strings.ToLower(strings.TrimPrefix(name, "CRITIC_LOSS_"))]
		if !ok {
			t.Fatalf("loss_critic_type %q", name)
		}
		options.CriticLoss = critic
	}
	switch l.Kind {
	case "ppo_clip":
		return advantage.ClipPPO{Options: options, ClipEpsilon: k.number("clip_epsilon"),
			ClipEpsilonLow: k.number("clip_epsilon_low"), ClipEpsilonHigh: k.number("clip_epsilon_high")}
	case "ppo_kl":
		return advantage.KLPenPPO{Options: options, Dtarg: k.number("dtarg"), Beta: k.number("beta"),
			Increment: k.number("increment"), Decrement: k.number("decrement")}
	case "ppo":
		return advantage.PPO{Options: options}
	case "a2c":
		return advantage.A2C{Options: options}
	case "reinforce":
		return advantage.Reinforce{Options: options}
	}
	t.Fatalf("loss %q", l.Kind)
	return nil
}

func goldenString(t *testing.T, input map[string]json.RawMessage, key string) string {
	var s string
	if raw, ok := input[key]; ok {
		decode(t, raw, &s)
	}
	return s
}

// within is numpy's isclose: |actual − expected| ≤ atol + rtol·|expected|.
func within(t *testing.T, what string, got, want, rtol, atol float64) {
	t.Helper()
	if math.Abs(got-want) > atol+rtol*math.Abs(want) {
		t.Fatalf("%s = %.17g, want %.17g (rtol %g, atol %g)", what, got, want, rtol, atol)
	}
}

func requireTensor(t *testing.T, what string, got advantage.Tensor, want goldenTensor, rtol, atol float64) {
	t.Helper()
	expected := want.tensor(t)
	if got.DType != expected.DType || fmt.Sprint(got.Shape) != fmt.Sprint(expected.Shape) {
		t.Fatalf("%s: %v %v, want %v %v", what, got.DType, got.Shape, expected.DType, expected.Shape)
	}
	g, w := floats(t, got), floats(t, expected)
	for i := range w {
		within(t, fmt.Sprintf("%s[%d]", what, i), g[i], w[i], rtol, atol)
	}
}

// modelJSON is a ModelInfo in the proto's field names and enum names, as cases.json lists it.
func modelJSON(m advantage.ModelInfo) map[string]interface{} {
	inputs := []interface{}{}
	for _, s := range m.Inputs {
		inputs = append(inputs, map[string]interface{}{"name": s.Name, "shape": s.Shape, "dtype": s.DType.String()})
	}
	out := map[string]interface{}{
		"name": m.Name, "inputs": inputs, "has_value_network": m.HasValueNetwork,
		"has_actor_network": m.HasActorNetwork,
		"action": map[string]interface{}{
			"distribution": m.Action.Distribution.String(), "shape": m.Action.Shape,
			"dtype": m.Action.DType.String(), "num_actions": m.Action.NumActions,
		},
		"parameter_version": m.ParameterVersion,
		"defaults":          map[string]interface{}{"gamma": m.Gamma, "lmbda": m.Lmbda},
		"device":            m.Device, "parameter_dtype": m.ParameterDType.String(),
	}
	// Through JSON, so that numbers and lists compare like the ones read from cases.json.
	text, _ := json.Marshal(out)
	var normalised map[string]interface{}
	_ = json.Unmarshal(text, &normalised)
	for key, value := range normalised {
		if value == nil {
			normalised[key] = []interface{}{} // an empty shape
		}
	}
	return normalised
}

func requireModel(t *testing.T, got advantage.ModelInfo, raw json.RawMessage) {
	t.Helper()
	var want map[string]interface{}
	decode(t, raw, &want)
	have := modelJSON(got)
	for key, value := range want { // unlisted fields (device) are not compared
		if !reflect.DeepEqual(normaliseEmpty(have[key]), normaliseEmpty(value)) {
			t.Fatalf("model %s: %v, want %v", key, have[key], value)
		}
	}
}

// normaliseEmpty makes a JSON null and [] equal (an empty shape) at any depth.
func normaliseEmpty(v interface{}) interface{} {
	switch x := v.(type) {
	case nil:
		return []interface{}{}
	case map[string]interface{}:
		out := map[string]interface{}{}
		for k, e := range x {
			out[k] = normaliseEmpty(e)
		}
		return out
	case []interface{}:
		out := make([]interface{}, len(x))
		for i, e := range x {
			out[i] = normaliseEmpty(e)
		}
		return out
	}
	return v
}

// inFieldOrder returns the serialised message with its top-level fields stably sorted by field
// number (each field's bytes untouched).
func inFieldOrder(message []byte) ([]byte, error) {
	type field struct {
		number protowire.Number
		bytes  []byte
	}
	var fields []field
	for rest := message; len(rest) > 0; {
		number, kind, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(number, kind, rest[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		fields = append(fields, field{number, rest[:n+m]})
		rest = rest[n+m:]
	}
	sort.SliceStable(fields, func(i, j int) bool { return fields[i].number < fields[j].number })
	var out []byte
	for _, f := range fields {
		out = append(out, f.bytes...)
	}
	return out, nil
}

// goldenRequest is the case's golden request, parsed, and its bytes.
func goldenRequest(t *testing.T, folder string, c goldenCase) (proto.Message, []byte) {
	messages := map[string]proto.Message{
		"ComputeAdvantage": &pb.ComputeAdvantageRequest{}, "ComputeLoss": &pb.ComputeLossRequest{},
		"ListModels": &pb.ListModelsRequest{}, "GetModel": &pb.GetModelRequest{},
		"GetParameters": &pb.GetParametersRequest{},
	}
	message, ok := messages[c.RPC]
	if !ok {
		t.Fatalf("rpc %q", c.RPC)
	}
	raw, err := os.ReadFile(filepath.Join(folder, c.Request))
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(raw, message); err != nil {
		t.Fatal(err)
	}
	return message, raw
}

func TestGolden(t *testing.T) {
	folder := env(t, "ADVANTAGE_TEST_GOLDEN")
	text, err := os.ReadFile(filepath.Join(folder, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var document struct {
		Format int          `json:"format"`
		Cases  []goldenCase `json:"cases"`
	}
	decode(t, text, &document)
	if document.Format != 1 || len(document.Cases) == 0 {
		t.Fatalf("format %d, %d cases", document.Format, len(document.Cases))
	}
	sent := &recorder{}
	client := dial(t, env(t, "ADVANTAGE_TEST_TARGET"), advantage.Options{DialOptions: sent.options()})
	for _, c := range document.Cases {
		c := c
		t.Run(c.Name, func(t *testing.T) { runGolden(t, client, sent, folder, c) })
	}
}

func runGolden(t *testing.T, client *advantage.Client, sent *recorder, folder string, c goldenCase) {
	ctx := context.Background()
	in := c.Input
	sent.mu.Lock()
	sent.sent, sent.bytes, sent.err = nil, nil, nil // what this case sends, nothing older
	sent.mu.Unlock()
	var answer interface{}
	var err error
	switch c.RPC {
	case "ComputeAdvantage":
		answer, err = client.ComputeAdvantage(ctx, advantage.AdvantageRequest{
			Model: goldenString(t, in, "model"), Trajectory: goldenTrajectory(t, in),
			Estimator: goldenEstimator(t, in["estimator"]),
		})
	case "ComputeLoss":
		request := advantage.LossRequest{
			Model: goldenString(t, in, "model"), Trajectory: goldenTrajectory(t, in),
			Estimator: goldenEstimator(t, in["estimator"]), Loss: goldenLoss(t, in["loss"]),
		}
		if raw, ok := in["behaviour_distribution"]; ok {
			var keyed map[string]goldenTensor
			decode(t, raw, &keyed)
			request.BehaviourDistribution = map[string]advantage.Tensor{}
			for k, g := range keyed {
				request.BehaviourDistribution[k] = g.tensor(t)
			}
		}
		if raw, ok := in["apply_update"]; ok {
			decode(t, raw, &request.ApplyUpdate)
		}
		if raw, ok := in["expected_parameter_version"]; ok {
			var version int64
			decode(t, raw, &version)
			request.ExpectedParameterVersion = &version
		}
		answer, err = client.ComputeLoss(ctx, request)
	case "ListModels":
		answer, err = client.ListModels(ctx)
	case "GetModel":
		answer, err = client.GetModel(ctx, goldenString(t, in, "model"))
	case "GetParameters":
		options := advantage.ParameterOptions{}
		if raw, ok := in["prefixes"]; ok {
			decode(t, raw, &options.Prefixes)
		}
		if raw, ok := in["max_chunk_bytes"]; ok {
			decode(t, raw, &options.MaxChunkBytes)
		}
		answer, err = client.GetParameters(ctx, goldenString(t, in, "model"), options)
	default:
		t.Fatalf("rpc %q", c.RPC)
	}
	// What the client sent is the golden request.
	want, wantBytes := goldenRequest(t, folder, c)
	sent.mu.Lock()
	got, gotBytes, codecErr := sent.sent, sent.bytes, sent.err
	sent.mu.Unlock()
	if got == nil || !proto.Equal(got, want) {
		t.Fatalf("sent a request that differs from %s:\n got %v\nwant %v", c.Request, got, want)
	}
	ordered, orderErr := inFieldOrder(gotBytes)
	if codecErr != nil || orderErr != nil || string(ordered) != string(wantBytes) {
		t.Fatalf("sent bytes differ from %s (%v %v):\n got % x\nwant % x", c.Request, codecErr,
			orderErr, ordered, wantBytes)
	}
	var status string
	decode(t, c.Expect["status"], &status)
	if status != "OK" {
		var fragments []string
		decode(t, c.Expect["message_contains"], &fragments)
		if err == nil {
			t.Fatalf("answered OK, want %s", status)
		}
		failure, ok := err.(*advantage.Error)
		if !ok || advantage.CodeName(failure.Code) != status {
			t.Fatalf("got %v, want %s", err, status)
		}
		for _, fragment := range fragments {
			if !strings.Contains(failure.Message, fragment) {
				t.Fatalf("message %q lacks %q", failure.Message, fragment)
			}
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var rtol, atol float64
	if raw, ok := c.Expect["rtol"]; ok {
		decode(t, raw, &rtol)
		decode(t, c.Expect["atol"], &atol)
	}
	exact := func(key string, got interface{}) {
		raw, ok := c.Expect[key]
		if !ok {
			return
		}
		want := reflect.New(reflect.TypeOf(got))
		decode(t, raw, want.Interface())
		if !reflect.DeepEqual(got, want.Elem().Interface()) {
			t.Fatalf("%s = %v, want %v", key, got, want.Elem().Interface())
		}
	}
	switch result := answer.(type) {
	case *advantage.AdvantageResult:
		exact("model_name", result.ModelName)
		exact("parameter_version", result.ParameterVersion)
		var tensors map[string]goldenTensor
		decode(t, c.Expect["tensors"], &tensors)
		fields := map[string]*advantage.Tensor{
			"advantage": &result.Advantage, "value_target": &result.ValueTarget,
			"state_value": result.StateValue, "next_state_value": result.NextStateValue,
		}
		for name, tensor := range tensors {
			got, ok := fields[name]
			if !ok || got == nil {
				t.Fatalf("no %s in the answer", name)
			}
			requireTensor(t, name, *got, tensor, rtol, atol)
		}
		var absent []string
		if raw, ok := c.Expect["absent"]; ok {
			decode(t, raw, &absent)
		}
		for _, name := range absent {
			if fields[name] != nil {
				t.Fatalf("%s should be absent", name)
			}
		}
	case *advantage.LossResult:
		exact("model_name", result.ModelName)
		exact("parameter_version", result.ParameterVersion)
		exact("updated", result.Updated)
		var loss float64
		decode(t, c.Expect["loss"], &loss)
		within(t, "loss", result.Loss, loss, rtol, atol)
		var metrics map[string]float64
		decode(t, c.Expect["metrics"], &metrics)
		names := make([]string, 0, len(metrics))
		for name := range metrics {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			got, ok := result.Metrics[name]
			if !ok {
				t.Fatalf("no metric %s in %v", name, result.Metrics)
			}
			within(t, name, got, metrics[name], rtol, atol)
		}
	case []advantage.ModelInfo:
		var models []json.RawMessage
		decode(t, c.Expect["models"], &models)
		if len(models) != len(result) {
			t.Fatalf("%d models, want %d", len(result), len(models))
		}
		for i := range models {
			requireModel(t, result[i], models[i])
		}
	case *advantage.ModelInfo:
		requireModel(t, *result, c.Expect["model"])
	case *advantage.Parameters:
		exact("parameter_version", result.ParameterVersion)
		var parameters map[string]goldenTensor
		decode(t, c.Expect["parameters"], &parameters)
		if len(parameters) != len(result.Tensors) {
			t.Fatalf("%d parameters, want %d", len(result.Tensors), len(parameters))
		}
		for name, tensor := range parameters {
			got, ok := result.Tensors[name]
			if !ok {
				t.Fatalf("no parameter %s", name)
			}
			requireTensor(t, name, got, tensor, rtol, atol)
		}
	default:
		t.Fatalf("answer %T", answer)
	}
}
