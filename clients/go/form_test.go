package advantage_test

// The trajectory form a request is sent in: FormAuto (the zero value) sends the compact form when
// the observations chain and the full form otherwise; both give the server's same numbers.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	advantage "github.com/advantage-service/advantage-service/clients/go"
	pb "github.com/advantage-service/advantage-service/clients/go/advantagev1"
)

// Two rows of five steps, 4-dim float32 observations. Row 0 terminates after step 1; row 1 is
// truncated after steps 2 and 4 (done, not terminated). Within an episode next_observation[t] is
// observation[t + 1]; after a done step it is the episode's final observation, which differs from
// observation[t + 1] (the next episode's first): that is allowed, the compact form keeps the
// truncated ones.
const formRows, formSteps, formObs = 2, 5, 4

var (
	formDone       = []bool{false, true, false, false, false, false, false, true, false, true}
	formTerminated = []bool{false, true, false, false, false, false, false, false, false, false}
)

// formState is the observation o[row][t] (t = formSteps: after the last step); final ones
// (the observation an episode ended in) are negative, so they differ from every o.
func formState(row, t int, final bool) []float32 {
	out := make([]float32, formObs)
	for j := range out {
		out[j] = float32(100*row+10*t+j) / 8
		if final {
			out[j] = -out[j] - 1
		}
	}
	return out
}

// formObservations is the full form: observation[r][t] = o[r][t]; next_observation[r][t] =
// o[r][t + 1], or the final observation at a done step.
func formObservations() (observation, next []float32) {
	for r := 0; r < formRows; r++ {
		for t := 0; t < formSteps; t++ {
			observation = append(observation, formState(r, t, false)...)
			next = append(next, formState(r, t+1, formDone[r*formSteps+t])...)
		}
	}
	return observation, next
}

func formTrajectory(observation, next []float32, form advantage.Form) advantage.Trajectory {
	rewards := make([]float32, formRows*formSteps)
	for i := range rewards {
		rewards[i] = float32(i%3) - 0.5
	}
	terminated := advantage.Bools(formTerminated, formRows, formSteps)
	return advantage.Trajectory{
		Reward:     advantage.Float32s(rewards, formRows, formSteps),
		Done:       advantage.Bools(formDone, formRows, formSteps),
		Terminated: &terminated,
		Observation: map[string]advantage.Tensor{
			"observation": advantage.Float32s(observation, formRows, formSteps, formObs)},
		NextObservation: map[string]advantage.Tensor{
			"observation": advantage.Float32s(next, formRows, formSteps, formObs)},
		Form: form,
	}
}

func wireTrajectory(t *testing.T, trajectory advantage.Trajectory) *pb.Trajectory {
	t.Helper()
	w, err := advantage.AdvantageRequest{Trajectory: trajectory}.Proto()
	if err != nil {
		t.Fatal(err)
	}
	return w.Trajectory
}

func requireWireTensor(t *testing.T, what string, got *pb.Tensor, want advantage.Tensor) {
	t.Helper()
	if !proto.Equal(got, want.Proto()) {
		t.Fatalf("%s: got %v %v (%d bytes), want %v %v", what, got.GetDtype(), got.GetShape(),
			len(got.GetRawData()), want.DType, want.Shape)
	}
}

// sameAnswers compares what the server answers for two trajectories: GAE and TD(1) advantages,
// value targets and the values it computed, and an A2C loss (tolerance 1e-6, as the Python
// client's compact-equals-full test).
func sameAnswers(t *testing.T, a, b advantage.Trajectory) {
	t.Helper()
	client := demo(t)
	ctx := context.Background()
	for _, estimator := range []advantage.Estimator{advantage.GAE{}, advantage.TD1{}} {
		var results [2]*advantage.AdvantageResult
		for i, trajectory := range []advantage.Trajectory{a, b} {
			result, err := client.ComputeAdvantage(ctx, advantage.AdvantageRequest{
				Trajectory: trajectory, Estimator: estimator})
			if err != nil {
				t.Fatal(err)
			}
			if result.StateValue == nil || result.NextStateValue == nil {
				t.Fatal("the server computed no values")
			}
			results[i] = result
		}
		what := fmt.Sprintf("%T ", estimator)
		requireClose(t, what+"advantage", floats(t, results[0].Advantage), floats(t, results[1].Advantage), 1e-6)
		requireClose(t, what+"value_target", floats(t, results[0].ValueTarget), floats(t, results[1].ValueTarget), 1e-6)
		requireClose(t, what+"state_value", floats(t, *results[0].StateValue), floats(t, *results[1].StateValue), 1e-6)
		requireClose(t, what+"next_state_value", floats(t, *results[0].NextStateValue),
			floats(t, *results[1].NextStateValue), 1e-6)
	}
	var losses [2]float64
	for i, trajectory := range []advantage.Trajectory{a, b} {
		actions := make([]int64, formRows*formSteps)
		logProbs := make([]float32, formRows*formSteps)
		for j := range actions {
			actions[j] = int64(j % 2)
			logProbs[j] = -0.7
		}
		action := advantage.Int64s(actions, formRows, formSteps)
		logProb := advantage.Float32s(logProbs, formRows, formSteps)
		trajectory.Action, trajectory.SampleLogProb = &action, &logProb
		result, err := client.ComputeLoss(ctx, advantage.LossRequest{Trajectory: trajectory, Loss: advantage.A2C{}})
		if err != nil {
			t.Fatal(err)
		}
		losses[i] = result.Loss
	}
	requireClose(t, "a2c loss", losses[:1], losses[1:], 1e-6)
}

// Chained observations: the zero Form sends the compact form, built here by hand from the
// layout of proto/README.md (each row's five observations, then its last next observation; the
// next observations of the two truncated steps), and the answers equal the full form's.
func TestAutoFormSendsCompactWhenObservationsChain(t *testing.T) {
	observation, next := formObservations()
	w := wireTrajectory(t, formTrajectory(observation, next, advantage.FormAuto))
	if w.Form != pb.TrajectoryForm_TRAJECTORY_FORM_COMPACT {
		t.Fatalf("form %v, want compact", w.Form)
	}
	var compact, truncated []float32
	for r := 0; r < formRows; r++ {
		compact = append(compact, observation[r*formSteps*formObs:(r+1)*formSteps*formObs]...)
		// the last step's next observation: row 0's step 4 is not done, row 1's is (truncated)
		compact = append(compact, formState(r, formSteps, r == 1)...)
	}
	truncated = append(formState(1, 3, true), formState(1, 5, true)...) // steps [1 2] and [1 4]
	requireWireTensor(t, "observation", w.Observation["observation"],
		advantage.Float32s(compact, formRows, formSteps+1, formObs))
	requireWireTensor(t, "next_observation", w.NextObservation["observation"],
		advantage.Float32s(truncated, 2, formObs))
	explicit := wireTrajectory(t, formTrajectory(observation, next, advantage.FormCompact))
	if !proto.Equal(w, explicit) {
		t.Fatal("FormAuto and FormCompact build different requests from chained observations")
	}
	if full := wireTrajectory(t, formTrajectory(observation, next, advantage.FormFull)); full.Form !=
		pb.TrajectoryForm_TRAJECTORY_FORM_FULL || len(full.Observation["observation"].RawData) != 4*formRows*formSteps*formObs {
		t.Fatalf("FormFull sent %v %v", full.Form, full.Observation["observation"].GetShape())
	}
	sameAnswers(t, formTrajectory(observation, next, advantage.FormAuto),
		formTrajectory(observation, next, advantage.FormFull))
}

// A step that is not done whose next observation differs from the following observation: the
// compact form would lose it, so the zero Form sends the full form, as given; same numbers as an
// explicit FormFull. Without next observations (or with values only) it is full too.
func TestAutoFormSendsFullWhenObservationsDoNotChain(t *testing.T) {
	observation, next := formObservations()
	next[(0*formSteps+2)*formObs+1] += 0.25 // row 0, step 2 (not done): o[0][3] differs
	auto := formTrajectory(observation, next, advantage.FormAuto)
	w := wireTrajectory(t, auto)
	if w.Form != pb.TrajectoryForm_TRAJECTORY_FORM_FULL {
		t.Fatalf("form %v, want full", w.Form)
	}
	requireWireTensor(t, "observation", w.Observation["observation"], auto.Observation["observation"])
	requireWireTensor(t, "next_observation", w.NextObservation["observation"], auto.NextObservation["observation"])
	full := formTrajectory(observation, next, advantage.FormFull)
	if !proto.Equal(w, wireTrajectory(t, full)) {
		t.Fatal("FormAuto on unchained observations differs from FormFull")
	}
	sameAnswers(t, auto, full)

	chained, _ := formObservations()
	withoutNext := formTrajectory(chained, chained, advantage.FormAuto)
	withoutNext.NextObservation = nil
	if form := wireTrajectory(t, withoutNext).Form; form != pb.TrajectoryForm_TRAJECTORY_FORM_FULL {
		t.Fatalf("no next observation: form %v, want full", form)
	}
	hand := smallTrajectory(2, 4) // values only, no observation
	if form := wireTrajectory(t, hand).Form; form != pb.TrajectoryForm_TRAJECTORY_FORM_FULL {
		t.Fatalf("values only: form %v, want full", form)
	}
}

// The agent layout (NAgents 2: observations [B, T, 2, 4], rewards [B, T, 2], a shared done):
// chained observations, yet the zero Form sends the full form, with n_agents; the server
// answers it as it answers an explicit FormFull.
func TestAutoFormWithAgentsSendsFull(t *testing.T) {
	const agents = 2
	var observation, next []float32
	rewards := make([]float32, formRows*formSteps*agents)
	for r := 0; r < formRows; r++ {
		for s := 0; s < formSteps; s++ {
			for a := 0; a < agents; a++ {
				observation = append(observation, formState(r+2*a, s, false)...)
				next = append(next, formState(r+2*a, s+1, formDone[r*formSteps+s])...)
				rewards[(r*formSteps+s)*agents+a] = float32(a) - float32(s%2)/2
			}
		}
	}
	trajectory := func(form advantage.Form) advantage.Trajectory {
		return advantage.Trajectory{
			Reward: advantage.Float32s(rewards, formRows, formSteps, agents),
			Done:   advantage.Bools(formDone, formRows, formSteps),
			Observation: map[string]advantage.Tensor{
				"observation": advantage.Float32s(observation, formRows, formSteps, agents, formObs)},
			NextObservation: map[string]advantage.Tensor{
				"observation": advantage.Float32s(next, formRows, formSteps, agents, formObs)},
			NAgents: agents,
			Form:    form,
		}
	}
	w := wireTrajectory(t, trajectory(advantage.FormAuto))
	if w.Form != pb.TrajectoryForm_TRAJECTORY_FORM_FULL || w.NAgents != agents {
		t.Fatalf("form %v, n_agents %d; want full, %d", w.Form, w.NAgents, agents)
	}
	requireWireTensor(t, "observation", w.Observation["observation"],
		advantage.Float32s(observation, formRows, formSteps, agents, formObs))
	client := demo(t)
	var answers [2][]float64
	for i, form := range []advantage.Form{advantage.FormAuto, advantage.FormFull} {
		result, err := client.ComputeAdvantage(context.Background(),
			advantage.AdvantageRequest{Trajectory: trajectory(form)})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(result.Advantage.Shape) != fmt.Sprint([]int64{formRows, formSteps, agents}) {
			t.Fatalf("advantage shape %v", result.Advantage.Shape)
		}
		answers[i] = append(floats(t, result.Advantage), floats(t, result.ValueTarget)...)
	}
	requireClose(t, "advantage and value_target", answers[0], answers[1], 0)
}

// An explicit FormCompact on observations that do not chain is refused before anything is sent,
// naming the key and the step; on chained full-form ones it builds the compact form (above).
func TestCompactFormRefusesObservationsThatDoNotChain(t *testing.T) {
	observation, next := formObservations()
	next[(1*formSteps+3)*formObs] = 42 // row 1, step 3 (not done)
	trajectory := formTrajectory(observation, next, advantage.FormCompact)
	_, err := advantage.AdvantageRequest{Trajectory: trajectory}.Proto()
	want := []string{`trajectory.next_observation["observation"]`, "step [1 3]", "FormFull"}
	requireMessage := func(err error) {
		t.Helper()
		var failure *advantage.Error
		if err == nil || errors.As(err, &failure) {
			t.Fatalf("want a client-side error, got %v", err)
		}
		for _, fragment := range want {
			if !strings.Contains(err.Error(), fragment) {
				t.Fatalf("error %q lacks %q", err, fragment)
			}
		}
	}
	requireMessage(err)
	_, err = demo(t).ComputeAdvantage(context.Background(), advantage.AdvantageRequest{Trajectory: trajectory})
	requireMessage(err)
	_, err = advantage.LossRequest{Trajectory: trajectory}.Proto()
	requireMessage(err)
	// A next observation of another shape is named too.
	trajectory.NextObservation["observation"] = advantage.Float32s(next[:formObs], 1, formObs)
	_, err = advantage.AdvantageRequest{Trajectory: trajectory}.Proto()
	if err == nil || !strings.Contains(err.Error(), `trajectory.next_observation["observation"]: expected`) {
		t.Fatalf("mismatched next observation: %v", err)
	}
}
