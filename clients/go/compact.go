package advantage

// The compact observation form (proto/README.md, "the two forms"), built from full-form data.
//
// Full form: observation and next_observation both [*B, T, *obs]. Compact form: observation
// [*B, T + 1, *obs] (the T observations before each step plus next_observation of the last
// step) and next_observation [K, *obs], the next observations of the K truncated steps (done and
// not terminated) in row-major order of their [*B, T] index. It drops next_observation[t] of
// every step that is not done, so it says the same only where those equal observation[t + 1]
// ("the observations chain"); at a done step the next observation is the episode's last and
// observation[t + 1] the next episode's first, and the compact form keeps what it needs there.
// The server answers both forms with the same numbers; the compact one is about half the
// observation bytes.

import (
	"bytes"
	"fmt"
	"sort"
)

// stepGrid is the [*B, T] layout of the per-step tensors, read from Done.
type stepGrid struct {
	shape []int64 // done's shape [*B, T]
	rows  int     // prod(*B)
	steps int     // T
	done  []bool  // [rows * steps], row-major
}

// grid reads done (bool, [*B, T] with T >= 1); an error names what is wrong.
func grid(done Tensor) (stepGrid, error) {
	if err := done.Check("trajectory.done"); err != nil {
		return stepGrid{}, err
	}
	if done.DType != Bool {
		return stepGrid{}, fmt.Errorf("trajectory.done: expected DTYPE_BOOL, got %v", done.DType)
	}
	if len(done.Shape) == 0 || done.Shape[len(done.Shape)-1] == 0 {
		return stepGrid{}, fmt.Errorf(
			"trajectory.done: the compact form needs [*B, T] with T >= 1, got shape %v", done.Shape)
	}
	n, _ := done.NumElements()
	steps := int(done.Shape[len(done.Shape)-1])
	flags := make([]bool, n)
	for i, b := range done.Raw {
		flags[i] = b != 0
	}
	return stepGrid{done.Shape, n / steps, steps, flags}, nil
}

// truncated is [rows * steps]: done and not terminated (none when terminated is nil, which means
// terminated = done).
func (g stepGrid) truncated(terminated *Tensor) ([]bool, error) {
	out := make([]bool, len(g.done))
	if terminated == nil {
		return out, nil
	}
	if err := terminated.Check("trajectory.terminated"); err != nil {
		return nil, err
	}
	if terminated.DType != Bool || !sameShape(terminated.Shape, g.shape) {
		return nil, fmt.Errorf("trajectory.terminated: expected DTYPE_BOOL %v (done's shape), got %v %v",
			g.shape, terminated.DType, terminated.Shape)
	}
	for i, b := range terminated.Raw {
		out[i] = g.done[i] && b == 0
	}
	return out, nil
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// isFullForm reports whether observation has the full form's leading [*B, T].
func (g stepGrid) isFullForm(observation Tensor) bool {
	return len(observation.Shape) >= len(g.shape) && sameShape(observation.Shape[:len(g.shape)], g.shape)
}

// rowBytes is the size of one step's observation (prod(*obs) elements).
func (g stepGrid) rowBytes(observation Tensor) int {
	n, _ := observation.NumElements()
	return n / (g.rows * g.steps) * Itemsize(observation.DType)
}

// pairError says why observation and next (one key, full form) cannot be made compact, or nil.
func (g stepGrid) pairError(key string, observation Tensor, next *Tensor) error {
	field := fmt.Sprintf("trajectory.observation[%q]", key)
	if err := observation.Check(field); err != nil {
		return err
	}
	nextField := fmt.Sprintf("trajectory.next_observation[%q]", key)
	if next == nil {
		return fmt.Errorf("%s: the compact form built from full-form observations needs it", nextField)
	}
	if err := next.Check(nextField); err != nil {
		return err
	}
	if next.DType != observation.DType || !sameShape(next.Shape, observation.Shape) {
		return fmt.Errorf("%s: expected the observation's %v %v, got %v %v", nextField,
			observation.DType, observation.Shape, next.DType, next.Shape)
	}
	return nil
}

// brokenChain is the first step [row, t] that is not done and whose next observation differs
// (bit for bit) from observation[t + 1], or nil when the observations chain.
func (g stepGrid) brokenChain(observation, next Tensor) []int {
	size := g.rowBytes(observation)
	for r := 0; r < g.rows; r++ {
		for t := 0; t+1 < g.steps; t++ {
			i := r*g.steps + t
			if g.done[i] {
				continue
			}
			if !bytes.Equal(next.Raw[i*size:(i+1)*size], observation.Raw[(i+1)*size:(i+2)*size]) {
				return []int{r, t}
			}
		}
	}
	return nil
}

// compact is one key's compact pair: observation [*B, T + 1, *obs] (each row's T observations,
// then its last step's next observation) and next_observation [K, *obs] (the truncated steps').
func (g stepGrid) compact(observation, next Tensor, truncated []bool) (Tensor, Tensor) {
	size := g.rowBytes(observation)
	inner := observation.Shape[len(g.shape):]
	raw := make([]byte, 0, g.rows*(g.steps+1)*size)
	for r := 0; r < g.rows; r++ {
		first, last := r*g.steps*size, (r+1)*g.steps*size
		raw = append(raw, observation.Raw[first:last]...)
		raw = append(raw, next.Raw[last-size:last]...)
	}
	shape := append(append([]int64(nil), g.shape...), inner...)
	shape[len(g.shape)-1]++
	var kept []byte
	k := int64(0)
	for i, cut := range truncated {
		if cut {
			kept = append(kept, next.Raw[i*size:(i+1)*size]...)
			k++
		}
	}
	nextShape := append([]int64{k}, inner...)
	return Tensor{observation.DType, shape, raw}, Tensor{observation.DType, nextShape, kept}
}

// chainError is the error of an explicit FormCompact on observations that do not chain.
func chainError(key string, step []int) error {
	return fmt.Errorf("trajectory.next_observation[%q]: the compact form needs next_observation[t] "+
		"== observation[t + 1] wherever step t is not done; they differ at step %v ([*B, T] index). "+
		"Send FormFull (or FormAuto) for such data", key, step)
}

// chains reports whether FormAuto may send t in the compact form: no agent layout, at least one
// observation, every observation key full-form with a next observation of the same key, shape
// and dtype, a well-formed done (and terminated), and observations that chain.
func (t Trajectory) chains() bool {
	if t.NAgents != 0 || len(t.Observation) == 0 || len(t.NextObservation) != len(t.Observation) {
		return false
	}
	g, err := grid(t.Done)
	if err != nil {
		return false
	}
	if _, err := g.truncated(t.Terminated); err != nil {
		return false
	}
	for key, observation := range t.Observation {
		next, ok := t.NextObservation[key]
		if !ok || g.pairError(key, observation, &next) != nil || !g.isFullForm(observation) {
			return false
		}
		if g.brokenChain(observation, next) != nil {
			return false
		}
	}
	return true
}

// toCompact builds the compact form of every full-form observation key (checked: an error names
// the key and the first step that does not chain); keys already compact (or any other shape,
// which the server judges) are sent as given, as are all keys with an agent layout.
func (t Trajectory) toCompact() (map[string]Tensor, map[string]Tensor, error) {
	if t.NAgents != 0 || len(t.Observation) == 0 {
		return t.Observation, t.NextObservation, nil
	}
	g, err := grid(t.Done)
	if err != nil { // a malformed done (the server names it) or T = 0: nothing to convert
		return t.Observation, t.NextObservation, nil
	}
	var truncated []bool
	observations := make(map[string]Tensor, len(t.Observation))
	nexts := make(map[string]Tensor, len(t.NextObservation))
	for key, next := range t.NextObservation {
		nexts[key] = next
	}
	for _, key := range sortedKeys(t.Observation) {
		observation := t.Observation[key]
		observations[key] = observation
		if observation.Check("") != nil || !g.isFullForm(observation) {
			continue // compact already, or malformed: sent as given
		}
		var next *Tensor
		if n, ok := t.NextObservation[key]; ok {
			next = &n
		}
		if err := g.pairError(key, observation, next); err != nil {
			return nil, nil, err
		}
		if step := g.brokenChain(observation, *next); step != nil {
			return nil, nil, chainError(key, step)
		}
		if truncated == nil {
			if truncated, err = g.truncated(t.Terminated); err != nil {
				return nil, nil, err
			}
		}
		observations[key], nexts[key] = g.compact(observation, *next, truncated)
	}
	return observations, nexts, nil
}

// wireForm is the form t is sent in and its observations in that form's layout: FormAuto
// becomes FormCompact when chains() allows it, else FormFull; FormCompact converts full-form
// observations (toCompact); FormFull (and any other value) sends them as given.
func (t Trajectory) wireForm() (Form, map[string]Tensor, map[string]Tensor, error) {
	switch t.Form {
	case FormAuto:
		if !t.chains() {
			return FormFull, t.Observation, t.NextObservation, nil
		}
		fallthrough
	case FormCompact:
		observations, nexts, err := t.toCompact()
		return FormCompact, observations, nexts, err
	}
	return t.Form, t.Observation, t.NextObservation, nil
}

func sortedKeys(tensors map[string]Tensor) []string {
	keys := make([]string, 0, len(tensors))
	for k := range tensors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
