package advantage

import (
	"fmt"
	"sort"

	pb "github.com/advantage-service/advantage-service/clients/go/advantagev1"
)

// Float returns a pointer to v, for optional knobs: GAE{Gamma: Scalar(0.99)}, VTrace{RhoThresh:
// Float(1.0)}.
func Float(v float64) *float64 { return &v }

// Int returns a pointer to v, for optional versions (MinParameterVersion, ...).
func Int(v int64) *int64 { return &v }

// Flag returns a pointer to v, for optional switches (LossOptions.EntropyBonus).
func Flag(v bool) *bool { return &v }

// Form is the observation layout a Trajectory is sent in (see proto/README.md, "the two forms").
type Form = pb.TrajectoryForm

const (
	// FormAuto (the zero value, the default): the compact form when the data allows it, else the
	// full form. Allowed when there is no agent layout (NAgents 0) and every observation key is
	// full-form [*B, T, *obs] with a next observation of the same key, shape and dtype that
	// chains: next_observation[t] == observation[t + 1], bit for bit, wherever step t is not done.
	// The server gives the same numbers for both forms; the compact one is about half the
	// observation bytes. Never sent as such: the request carries the form chosen.
	FormAuto = pb.TrajectoryForm_TRAJECTORY_FORM_UNSPECIFIED
	// FormFull: observation and next_observation both [*B, T, *obs], sent as given.
	FormFull = pb.TrajectoryForm_TRAJECTORY_FORM_FULL
	// FormCompact: observation [*B, T + 1, *obs]; next_observation [K, *obs] at the K
	// truncated steps (done and not terminated). Full-form observations [*B, T, *obs] are
	// converted (an error names the first step that is not done whose next observation differs
	// from the following observation); compact ones, and any with an agent layout, are sent as
	// given.
	FormCompact = pb.TrajectoryForm_TRAJECTORY_FORM_COMPACT
)

// Trajectory is a batch of trajectory segments, per-step tensors [*B, T] (time last).
// Send StateValue and NextStateValue (reward's dtype) to skip the value network, else
// Observation/NextObservation keyed by the model's input keys.
type Trajectory struct {
	Observation     map[string]Tensor
	NextObservation map[string]Tensor
	Reward          Tensor  // float32 or float64: the computation's dtype
	Done            Tensor  // bool
	Terminated      *Tensor // bool; nil = equal to Done
	StateValue      *Tensor
	NextStateValue  *Tensor
	Action          *Tensor
	SampleLogProb   *Tensor // behaviour policy's log-probability of Action (V-trace, losses)
	LogProb         *Tensor // current policy's (V-trace without an actor network)
	Form            Form    // zero value: FormAuto (compact when the observations chain)
	// Agents per step (0 = none): per-agent tensors are [*B, T, NAgents, ...], time before
	// agents; done and terminated [*B, T] (shared) or [*B, T, NAgents] (see proto/README.md).
	NAgents uint32
}

func encodeMap(field string, tensors map[string]Tensor) (map[string]*pb.Tensor, error) {
	if len(tensors) == 0 {
		return nil, nil
	}
	keys := make([]string, 0, len(tensors))
	for k := range tensors {
		keys = append(keys, k)
	}
	sort.Strings(keys) // errors name the first bad key in a stable order
	out := make(map[string]*pb.Tensor, len(tensors))
	for _, k := range keys {
		w, err := tensors[k].encode(fmt.Sprintf("%s[%q]", field, k))
		if err != nil {
			return nil, err
		}
		out[k] = w
	}
	return out, nil
}

func encodeOptional(field string, t *Tensor) (*pb.Tensor, error) {
	if t == nil {
		return nil, nil
	}
	return t.encode(field)
}

// Proto is the wire Trajectory in the form Form chooses (FormAuto: compact when the observations
// chain, else full); an error names the first malformed tensor or, for FormCompact, the first step
// whose observations do not chain.
func (t Trajectory) Proto() (*pb.Trajectory, error) {
	form, observation, nextObservation, err := t.wireForm()
	if err != nil {
		return nil, err
	}
	w := &pb.Trajectory{Form: form, NAgents: t.NAgents}
	if w.Observation, err = encodeMap("trajectory.observation", observation); err != nil {
		return nil, err
	}
	if w.NextObservation, err = encodeMap("trajectory.next_observation", nextObservation); err != nil {
		return nil, err
	}
	if w.Reward, err = t.Reward.encode("trajectory.reward"); err != nil {
		return nil, err
	}
	if w.Done, err = t.Done.encode("trajectory.done"); err != nil {
		return nil, err
	}
	optional := []struct {
		field string
		in    *Tensor
		out   **pb.Tensor
	}{
		{"trajectory.terminated", t.Terminated, &w.Terminated},
		{"trajectory.state_value", t.StateValue, &w.StateValue},
		{"trajectory.next_state_value", t.NextStateValue, &w.NextStateValue},
		{"trajectory.action", t.Action, &w.Action},
		{"trajectory.sample_log_prob", t.SampleLogProb, &w.SampleLogProb},
		{"trajectory.log_prob", t.LogProb, &w.LogProb},
	}
	for _, o := range optional {
		if *o.out, err = encodeOptional(o.field, o.in); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Coefficient is γ or λ: one number for every step (Scalar) or one per step (PerStep).
type Coefficient struct {
	scalar  float64
	perStep *Tensor
}

// Scalar is a coefficient with the same value at every step, in [0, 1].
func Scalar(v float64) *Coefficient { return &Coefficient{scalar: v} }

// PerStep is a coefficient with one value per step, [*B, T] in the reward's dtype.
func PerStep(t Tensor) *Coefficient { return &Coefficient{perStep: &t} }

func (c *Coefficient) encode(field string) (*pb.Coefficient, error) {
	if c == nil {
		return nil, nil
	}
	if c.perStep != nil {
		w, err := c.perStep.encode(field + ".per_step")
		if err != nil {
			return nil, err
		}
		return &pb.Coefficient{Value: &pb.Coefficient_PerStep{PerStep: w}}, nil
	}
	return &pb.Coefficient{Value: &pb.Coefficient_Scalar{Scalar: c.scalar}}, nil
}

// Estimator is one of TD0, TD1, TDLambda, GAE, VTrace; nil = GAE with the model's defaults.
// Knobs left nil take the model's defaults (GetModel → ModelInfo.Gamma, Lmbda).
type Estimator interface {
	estimator() (*estimatorWire, error)
}

// estimatorWire is the estimator oneof, shared by ComputeAdvantage and ComputeLoss requests.
type estimatorWire struct {
	td0      *pb.TD0
	td1      *pb.TD1
	tdLambda *pb.TDLambda
	gae      *pb.GAE
	vtrace   *pb.VTrace
}

// TD0 is TorchRL's TD0Estimator.
type TD0 struct {
	Gamma          *Coefficient
	AverageRewards bool
}

// TD1 is TorchRL's TD1Estimator.
type TD1 struct {
	Gamma          *Coefficient
	AverageRewards bool
}

// TDLambda is TorchRL's TDLambdaEstimator.
type TDLambda struct {
	Gamma, Lmbda   *Coefficient
	AverageRewards bool
}

// GAE is TorchRL's GAE.
type GAE struct {
	Gamma, Lmbda *Coefficient
	AverageGAE   bool
}

// VTrace is TorchRL's VTrace plus rlax/DI-engine's λ and ρ̄_pg. Needs Trajectory.SampleLogProb,
// and LogProb or a model with an actor network (plus Action).
type VTrace struct {
	Gamma                                  *Coefficient
	RhoThresh, CThresh, Lmbda, RhoPgThresh *float64
	AverageAdv                             bool
}

func (e TD0) estimator() (*estimatorWire, error) {
	g, err := e.Gamma.encode("td0.gamma")
	return &estimatorWire{td0: &pb.TD0{Gamma: g, AverageRewards: e.AverageRewards}}, err
}

func (e TD1) estimator() (*estimatorWire, error) {
	g, err := e.Gamma.encode("td1.gamma")
	return &estimatorWire{td1: &pb.TD1{Gamma: g, AverageRewards: e.AverageRewards}}, err
}

func (e TDLambda) estimator() (*estimatorWire, error) {
	g, err := e.Gamma.encode("td_lambda.gamma")
	if err != nil {
		return nil, err
	}
	l, err := e.Lmbda.encode("td_lambda.lmbda")
	w := &pb.TDLambda{Gamma: g, Lmbda: l, AverageRewards: e.AverageRewards}
	return &estimatorWire{tdLambda: w}, err
}

func (e GAE) estimator() (*estimatorWire, error) {
	g, err := e.Gamma.encode("gae.gamma")
	if err != nil {
		return nil, err
	}
	l, err := e.Lmbda.encode("gae.lmbda")
	return &estimatorWire{gae: &pb.GAE{Gamma: g, Lmbda: l, AverageGae: e.AverageGAE}}, err
}

func (e VTrace) estimator() (*estimatorWire, error) {
	g, err := e.Gamma.encode("vtrace.gamma")
	w := &pb.VTrace{
		Gamma: g, RhoThresh: e.RhoThresh, CThresh: e.CThresh, Lmbda: e.Lmbda,
		RhoPgThresh: e.RhoPgThresh, AverageAdv: e.AverageAdv,
	}
	return &estimatorWire{vtrace: w}, err
}

func encodeEstimator(e Estimator) (*estimatorWire, error) {
	if e == nil {
		return &estimatorWire{}, nil
	}
	return e.estimator()
}

// AdvantageRequest is a ComputeAdvantage call.
type AdvantageRequest struct {
	Model      string // "" = the server's default model
	Trajectory Trajectory
	Estimator  Estimator // nil = GAE with the model's defaults
	// Read-your-writes: answer with this parameter version or a later one (nil = any).
	MinParameterVersion *int64
}

// Proto is the wire request; an error names the first malformed field.
func (r AdvantageRequest) Proto() (*pb.ComputeAdvantageRequest, error) {
	trajectory, err := r.Trajectory.Proto()
	if err != nil {
		return nil, err
	}
	e, err := encodeEstimator(r.Estimator)
	if err != nil {
		return nil, err
	}
	w := &pb.ComputeAdvantageRequest{
		ModelName: r.Model, Trajectory: trajectory, MinParameterVersion: r.MinParameterVersion,
	}
	switch {
	case e.td0 != nil:
		w.Estimator = &pb.ComputeAdvantageRequest_Td0{Td0: e.td0}
	case e.td1 != nil:
		w.Estimator = &pb.ComputeAdvantageRequest_Td1{Td1: e.td1}
	case e.tdLambda != nil:
		w.Estimator = &pb.ComputeAdvantageRequest_TdLambda{TdLambda: e.tdLambda}
	case e.gae != nil:
		w.Estimator = &pb.ComputeAdvantageRequest_Gae{Gae: e.gae}
	case e.vtrace != nil:
		w.Estimator = &pb.ComputeAdvantageRequest_Vtrace{Vtrace: e.vtrace}
	}
	return w, nil
}

// CriticLoss is how the critic's prediction is compared with the value target.
type CriticLoss = pb.CriticLoss

const (
	CriticSmoothL1 = pb.CriticLoss_CRITIC_LOSS_SMOOTH_L1 // TorchRL's default
	CriticL1       = pb.CriticLoss_CRITIC_LOSS_L1
	CriticL2       = pb.CriticLoss_CRITIC_LOSS_L2
)

// LossOptions are the knobs shared by the TorchRL-derived losses; nil/zero = TorchRL's defaults.
type LossOptions struct {
	EntropyBonus       *bool
	EntropyCoeff       *float64
	CriticCoeff        *float64
	CriticLoss         CriticLoss
	NormalizeAdvantage bool
	ClipValue          *float64
}

// proto is the options message, nil when every knob is left at its default (not sent).
func (o LossOptions) proto() *pb.PolicyLossOptions {
	if o == (LossOptions{}) {
		return nil
	}
	return &pb.PolicyLossOptions{
		EntropyBonus: o.EntropyBonus, EntropyCoeff: o.EntropyCoeff, CriticCoeff: o.CriticCoeff,
		LossCriticType: o.CriticLoss, NormalizeAdvantage: o.NormalizeAdvantage,
		ClipValue: o.ClipValue,
	}
}

// Loss is one of ClipPPO, KLPenPPO, PPO, A2C, Reinforce, Impala; nil = ClipPPO with TorchRL's
// defaults.
type Loss interface {
	apply(w *pb.ComputeLossRequest)
}

// ClipPPO is TorchRL's ClipPPOLoss (ε 0.2 unless set; ε_low and ε_high together).
type ClipPPO struct {
	Options                                      LossOptions
	ClipEpsilon, ClipEpsilonLow, ClipEpsilonHigh *float64
}

// KLPenPPO is TorchRL's KLPENPPOLoss; needs LossRequest.BehaviourDistribution.
type KLPenPPO struct {
	Options                           LossOptions
	Dtarg, Beta, Increment, Decrement *float64
}

// PPO is TorchRL's PPOLoss (no clipping).
type PPO struct{ Options LossOptions }

// A2C is TorchRL's A2CLoss.
type A2C struct{ Options LossOptions }

// Reinforce is TorchRL's ReinforceLoss.
type Reinforce struct{ Options LossOptions }

// Impala is DI-engine's vtrace_error; its V-trace replaces the request's estimator.
type Impala struct {
	Gamma, Lmbda, RhoThresh, CThresh, RhoPgThresh, EntropyCoeff, CriticCoeff *float64
	EntropyBonus                                                             *bool
}

func (l ClipPPO) apply(w *pb.ComputeLossRequest) {
	w.Loss = &pb.ComputeLossRequest_PpoClip{PpoClip: &pb.ClipPPOLoss{
		Options: l.Options.proto(), ClipEpsilon: l.ClipEpsilon,
		ClipEpsilonLow: l.ClipEpsilonLow, ClipEpsilonHigh: l.ClipEpsilonHigh,
	}}
}

func (l KLPenPPO) apply(w *pb.ComputeLossRequest) {
	w.Loss = &pb.ComputeLossRequest_PpoKl{PpoKl: &pb.KLPENPPOLoss{
		Options: l.Options.proto(), Dtarg: l.Dtarg, Beta: l.Beta, Increment: l.Increment,
		Decrement: l.Decrement,
	}}
}

func (l PPO) apply(w *pb.ComputeLossRequest) {
	w.Loss = &pb.ComputeLossRequest_Ppo{Ppo: &pb.PPOLoss{Options: l.Options.proto()}}
}

func (l A2C) apply(w *pb.ComputeLossRequest) {
	w.Loss = &pb.ComputeLossRequest_A2C{A2C: &pb.A2CLoss{Options: l.Options.proto()}}
}

func (l Reinforce) apply(w *pb.ComputeLossRequest) {
	w.Loss = &pb.ComputeLossRequest_Reinforce{Reinforce: &pb.ReinforceLoss{Options: l.Options.proto()}}
}

func (l Impala) apply(w *pb.ComputeLossRequest) {
	w.Loss = &pb.ComputeLossRequest_Impala{Impala: &pb.ImpalaLoss{
		Gamma: l.Gamma, Lmbda: l.Lmbda, RhoThresh: l.RhoThresh, CThresh: l.CThresh,
		RhoPgThresh: l.RhoPgThresh, EntropyCoeff: l.EntropyCoeff, CriticCoeff: l.CriticCoeff,
		EntropyBonus: l.EntropyBonus,
	}}
}

// LossRequest is a ComputeLoss call. The trajectory needs Observation, Action and SampleLogProb.
type LossRequest struct {
	Model      string
	Trajectory Trajectory
	Estimator  Estimator // nil = GAE with the model's γ, λ (unless Advantage is sent)
	Loss       Loss      // nil = ClipPPO with TorchRL's defaults
	// Precomputed advantage and value target, [*B, T]; both or neither (skips the estimator).
	Advantage, ValueTarget *Tensor
	// KLPenPPO: the behaviour policy's distribution parameters ("logits", or "loc" and "scale").
	BehaviourDistribution map[string]Tensor
	// Take one optimizer step on the server's networks.
	ApplyUpdate bool
	// With ApplyUpdate: FAILED_PRECONDITION unless the model is at this version.
	ExpectedParameterVersion *int64
	// Read-your-writes, as AdvantageRequest.MinParameterVersion.
	MinParameterVersion *int64
}

// Proto is the wire request; an error names the first malformed field.
func (r LossRequest) Proto() (*pb.ComputeLossRequest, error) {
	if (r.Advantage == nil) != (r.ValueTarget == nil) {
		return nil, fmt.Errorf("advantage, value_target: send both or neither")
	}
	trajectory, err := r.Trajectory.Proto()
	if err != nil {
		return nil, err
	}
	e, err := encodeEstimator(r.Estimator)
	if err != nil {
		return nil, err
	}
	w := &pb.ComputeLossRequest{
		ModelName: r.Model, Trajectory: trajectory, ApplyUpdate: r.ApplyUpdate,
		ExpectedParameterVersion: r.ExpectedParameterVersion,
		MinParameterVersion:      r.MinParameterVersion,
	}
	switch {
	case e.td0 != nil:
		w.Estimator = &pb.ComputeLossRequest_Td0{Td0: e.td0}
	case e.td1 != nil:
		w.Estimator = &pb.ComputeLossRequest_Td1{Td1: e.td1}
	case e.tdLambda != nil:
		w.Estimator = &pb.ComputeLossRequest_TdLambda{TdLambda: e.tdLambda}
	case e.gae != nil:
		w.Estimator = &pb.ComputeLossRequest_Gae{Gae: e.gae}
	case e.vtrace != nil:
		w.Estimator = &pb.ComputeLossRequest_Vtrace{Vtrace: e.vtrace}
	}
	if r.Loss != nil {
		r.Loss.apply(w)
	}
	if w.Advantage, err = encodeOptional("advantage", r.Advantage); err != nil {
		return nil, err
	}
	if w.ValueTarget, err = encodeOptional("value_target", r.ValueTarget); err != nil {
		return nil, err
	}
	if w.BehaviourDistribution, err = encodeMap("behaviour_distribution", r.BehaviourDistribution); err != nil {
		return nil, err
	}
	return w, nil
}
