package advantage

import (
	pb "github.com/advantage-service/advantage-service/clients/go/advantagev1"
)

// Timing is the server-side time breakdown of one call, in milliseconds.
type Timing struct {
	DecodeMs, NetworkMs, EstimatorMs, EncodeMs float64
}

func timingFromProto(w *pb.Timing) Timing {
	return Timing{w.GetDecodeMs(), w.GetNetworkMs(), w.GetEstimatorMs(), w.GetEncodeMs()}
}

// AdvantageResult is a ComputeAdvantage answer; tensors have the reward's shape and dtype.
type AdvantageResult struct {
	Advantage   Tensor
	ValueTarget Tensor
	// V(s_t) and V(s_{t+1}) the server computed; nil when the request carried state values.
	StateValue, NextStateValue *Tensor
	ModelName                  string
	ParameterVersion           int64
	Timing                     Timing
}

func advantageFromProto(w *pb.ComputeAdvantageResponse) *AdvantageResult {
	out := &AdvantageResult{
		Advantage:        FromProto(w.GetAdvantage()),
		ValueTarget:      FromProto(w.GetValueTarget()),
		ModelName:        w.GetModelName(),
		ParameterVersion: w.GetParameterVersion(),
		Timing:           timingFromProto(w.GetTiming()),
	}
	if w.StateValue != nil && w.NextStateValue != nil {
		v, nv := FromProto(w.StateValue), FromProto(w.NextStateValue)
		out.StateValue, out.NextStateValue = &v, &nv
	}
	return out
}

// LossResult is a ComputeLoss answer.
type LossResult struct {
	Loss                float64            // sum of the loss_* metrics
	Metrics             map[string]float64 // TorchRL's names: loss_objective, entropy, ...
	ModelName           string
	ParameterVersion    int64
	Updated             bool
	NewParameterVersion int64
	GradNorm            float64
	Timing              Timing
}

func lossFromProto(w *pb.ComputeLossResponse) *LossResult {
	metrics := make(map[string]float64, len(w.GetMetrics()))
	for k, v := range w.GetMetrics() {
		metrics[k] = v
	}
	return &LossResult{
		Loss: w.GetLoss(), Metrics: metrics, ModelName: w.GetModelName(),
		ParameterVersion: w.GetParameterVersion(), Updated: w.GetUpdated(),
		NewParameterVersion: w.GetNewParameterVersion(), GradNorm: w.GetGradNorm(),
		Timing: timingFromProto(w.GetTiming()),
	}
}

// InputSpec is one network input: its key, per-step shape (without [*B, T]) and dtype.
type InputSpec struct {
	Name  string
	Shape []int64
	DType DType
}

// Distribution is an actor network's action distribution.
type Distribution = pb.Distribution

const (
	NoActor     = pb.Distribution_DISTRIBUTION_UNSPECIFIED
	Categorical = pb.Distribution_DISTRIBUTION_CATEGORICAL
	Normal      = pb.Distribution_DISTRIBUTION_NORMAL
	TanhNormal  = pb.Distribution_DISTRIBUTION_TANH_NORMAL
)

// ActionSpec describes the actor's policy.
type ActionSpec struct {
	Distribution Distribution
	Shape        []int64
	DType        DType
	NumActions   int64
}

// ModelInfo describes a server-held model.
type ModelInfo struct {
	Name             string
	Inputs           []InputSpec
	HasValueNetwork  bool
	HasActorNetwork  bool
	Action           ActionSpec
	ParameterVersion int64
	// Defaults used when a request leaves γ or λ unset.
	Gamma, Lmbda   float64
	Device         string
	ParameterDType DType
}

func modelFromProto(w *pb.ModelInfo) ModelInfo {
	inputs := make([]InputSpec, 0, len(w.GetInputs()))
	for _, s := range w.GetInputs() {
		inputs = append(inputs, InputSpec{s.GetName(), s.GetShape(), s.GetDtype()})
	}
	a := w.GetAction()
	return ModelInfo{
		Name: w.GetName(), Inputs: inputs, HasValueNetwork: w.GetHasValueNetwork(),
		HasActorNetwork:  w.GetHasActorNetwork(),
		Action:           ActionSpec{a.GetDistribution(), a.GetShape(), a.GetDtype(), a.GetNumActions()},
		ParameterVersion: w.GetParameterVersion(), Gamma: w.GetDefaults().GetGamma(),
		Lmbda: w.GetDefaults().GetLmbda(), Device: w.GetDevice(),
		ParameterDType: w.GetParameterDtype(),
	}
}

// Parameters is a model's parameter snapshot, reassembled from the GetParameters stream.
type Parameters struct {
	ModelName        string
	ParameterVersion int64
	// "value_network.<name>" / "actor_network.<name>" → the full tensor.
	Tensors map[string]Tensor
}
