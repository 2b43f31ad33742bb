package advantage

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// The worked example of proto/README.md: float32 [[1, 2], [3, 4]] and its 24 wire bytes.
func TestTensorEncodingIsTheContractsWorkedExample(t *testing.T) {
	tensor := Float32s([]float32{1, 2, 3, 4}, 2, 2)
	raw := []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40}
	if !bytes.Equal(tensor.Raw, raw) {
		t.Fatalf("raw_data % x, want % x", tensor.Raw, raw)
	}
	wire, err := proto.Marshal(tensor.Proto())
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0x08, 0x01, 0x12, 0x02, 0x02, 0x02, 0x1a, 0x10}, raw...)
	if !bytes.Equal(wire, want) {
		t.Fatalf("wire % x, want % x", wire, want)
	}
	done, err := proto.Marshal(Bools([]bool{false, true}, 1, 2).Proto())
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x08, 0x03, 0x12, 0x02, 0x01, 0x02, 0x1a, 0x02, 0x00, 0x01}; !bytes.Equal(done, want) {
		t.Fatalf("bool wire % x, want % x", done, want)
	}
}

func TestTensorRoundTripsAndWidensFloat32(t *testing.T) {
	values, err := Float64s([]float64{0.1, -2.5e300, 3}, 3).Float64s()
	if err != nil || values[0] != 0.1 || values[1] != -2.5e300 || values[2] != 3 {
		t.Fatalf("float64 round trip: %v %v", values, err)
	}
	widened, err := Float32s([]float32{0.1}, 1).Float64s()
	if err != nil || widened[0] != float64(float32(0.1)) {
		t.Fatalf("float32 widened: %v %v", widened, err)
	}
	if _, err := Bools([]bool{true}, 1).Float64s(); err == nil {
		t.Fatal("a bool tensor decoded as floats")
	}
}

func TestMalformedTensorIsRefusedNamingTheField(t *testing.T) {
	request := AdvantageRequest{Trajectory: Trajectory{
		Reward: Float64s([]float64{1, 2, 3}, 2, 2), // 3 values for 4 elements
		Done:   Bools([]bool{false, false, false, true}, 2, 2),
	}}
	_, err := request.Proto()
	if err == nil || !strings.HasPrefix(err.Error(), "trajectory.reward: shape [2 2]") {
		t.Fatalf("got %v", err)
	}
	negative := Tensor{DType: Float32, Shape: []int64{-1}}
	if err := negative.Check("x"); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("got %v", err)
	}
	gamma := GAE{Gamma: PerStep(Float64s([]float64{0.9}, 2))}
	_, err = AdvantageRequest{Trajectory: Trajectory{
		Reward: Float64s([]float64{1, 2}, 2), Done: Bools([]bool{false, true}, 2),
	}, Estimator: gamma}.Proto()
	if err == nil || !strings.HasPrefix(err.Error(), "gae.gamma.per_step:") {
		t.Fatalf("got %v", err)
	}
}

func TestChannelTarget(t *testing.T) {
	got, err := ChannelTarget([]string{"10.0.0.7:50051", "10.0.0.8:50052"})
	if err != nil || got != "ipv4:///10.0.0.7:50051,10.0.0.8:50052" {
		t.Fatalf("got %q %v", got, err)
	}
	got, err = ChannelTarget([]string{"[::1]:1", "[::2]:2"})
	if err != nil || got != "ipv6:///[::1]:1,[::2]:2" {
		t.Fatalf("got %q %v", got, err)
	}
	for _, bad := range [][]string{{"localhost:1"}, {"10.0.0.1:1", "[::1]:2"}, {}} {
		if _, err := ChannelTarget(bad); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
}
