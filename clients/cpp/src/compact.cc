// The compact form (TRAJECTORY_FORM_COMPACT, proto/README.md "the two forms"), built on the
// client from full-form observations, and the choice of Form::kAuto. Mirrors the Python client
// (advantage_client/_request.py: compact_observations, _chains) and the TypeScript client
// (src/request.ts: compactObservations, chains).
//
// Full form: observation o_t and next_observation o'_t for every step t of [*B, T].
// Compact form: observation [*B, T + 1] = o_0 … o_{T-1} of each row followed by o'_{T-1}, and
// next_observation [K] = o'_t at the K truncated steps (done and not terminated). The server
// reads o'_t as o_{t+1} at every other step, which holds when the observations chain:
// o'_t == o_{t+1} wherever step t is not done (at a done step the next observation is the true
// final one, not the reset; a terminated step's is never used).
#include "compact.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace advantage {
namespace {

std::string Dims(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

std::string Quoted(const std::string& key) { return "[\"" + key + "\"]"; }

// A wire tensor whose raw_data was checked against its dtype and shape.
struct Raw {
  Shape shape;
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;
  int64_t itemsize = 0;
  const char* data = nullptr;
};

Raw View(const v1::Tensor& tensor, const std::string& name) {
  Raw raw;
  raw.shape = Tensor::ShapeOf(tensor);
  raw.dtype = tensor.dtype();
  try {
    raw.itemsize = Tensor::ItemSize(raw.dtype);
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument(name + ": unknown dtype " + std::to_string(raw.dtype));
  }
  const int64_t count = Tensor::NumElements(raw.shape);
  if (static_cast<uint64_t>(tensor.raw_data().size()) != static_cast<uint64_t>(count * raw.itemsize)) {
    throw std::invalid_argument(name + ": shape " + Dims(raw.shape) + " needs " +
                                std::to_string(count * raw.itemsize) + " bytes, raw_data has " +
                                std::to_string(tensor.raw_data().size()));
  }
  raw.data = tensor.raw_data().data();
  return raw;
}

bool IsFloat(v1::DType dtype) {
  return dtype == v1::DTYPE_FLOAT32 || dtype == v1::DTYPE_FLOAT64 ||
         dtype == v1::DTYPE_FLOAT16 || dtype == v1::DTYPE_BFLOAT16;
}

// Per-element truth of a [*B, T] flag tensor (bool, or any dtype: nonzero is true, −0.0 is not).
std::vector<uint8_t> Flags(const v1::Tensor& tensor, const std::string& name) {
  const Raw raw = View(tensor, name);
  const int64_t n = Tensor::NumElements(raw.shape);
  std::vector<uint8_t> flags(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data + i * raw.itemsize);
    bool set = false;
    for (int64_t j = 0; j < raw.itemsize; ++j) {
      // Little-endian: the sign bit of a float is the top bit of its last byte.
      const uint8_t ignore = IsFloat(raw.dtype) && j == raw.itemsize - 1 ? 0x80 : 0x00;
      set = set || (bytes[j] & ~ignore) != 0;
    }
    flags[static_cast<size_t>(i)] = set ? 1 : 0;
  }
  return flags;
}

// Element equality by value, as the other clients compare: floats by IEEE equality (NaN differs
// from itself, −0.0 equals 0.0), bfloat16 by its bit pattern (the Python client's int16 view),
// everything else byte for byte.
bool SameElement(const char* a, const char* b, v1::DType dtype, int64_t itemsize) {
  if (dtype == v1::DTYPE_FLOAT32) {
    float x, y;
    std::memcpy(&x, a, sizeof x);
    std::memcpy(&y, b, sizeof y);
    return x == y;
  }
  if (dtype == v1::DTYPE_FLOAT64) {
    double x, y;
    std::memcpy(&x, a, sizeof x);
    std::memcpy(&y, b, sizeof y);
    return x == y;
  }
  if (dtype == v1::DTYPE_FLOAT16) {
    uint16_t x, y;
    std::memcpy(&x, a, sizeof x);
    std::memcpy(&y, b, sizeof y);
    const auto nan = [](uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0; };
    if (nan(x) || nan(y)) return false;
    return x == y || ((x | y) & 0x7fff) == 0;
  }
  return std::memcmp(a, b, static_cast<size_t>(itemsize)) == 0;
}

// Leading `n` dimensions of `shape` (all of them when it has fewer).
Shape Leading(const Shape& shape, size_t n) {
  return Shape(shape.begin(), shape.begin() + static_cast<std::ptrdiff_t>(std::min(n, shape.size())));
}

// The [*B, T] grid of a trajectory: `rows` = prod(*B) rows of `steps` = T steps, each step's
// observation `step_bytes` long.
struct Grid {
  int64_t rows = 0;
  int64_t steps = 0;
  int64_t step_bytes = 0;
};

Grid GridOf(const Shape& step, const Raw& obs) {
  Grid grid;
  grid.steps = step.back();
  grid.rows = Tensor::NumElements(Shape(step.begin(), step.end() - 1));
  grid.step_bytes =
      Tensor::NumElements(Shape(obs.shape.begin() + static_cast<std::ptrdiff_t>(step.size()),
                                obs.shape.end())) * obs.itemsize;
  return grid;
}

struct Link {
  int64_t row;
  int64_t step;
};

// The first step (row, t) that is not done and whose next observation differs from the
// following observation (next[t] != obs[t + 1]); none when the observations chain. `obs` and
// `next` are [*B, T, *obs] of one dtype, `done` [*B, T].
std::optional<Link> BrokenLink(const Raw& obs, const Raw& next, const std::vector<uint8_t>& done,
                               const Grid& grid) {
  for (int64_t r = 0; r < grid.rows; ++r) {
    for (int64_t t = 0; t + 1 < grid.steps; ++t) {
      const int64_t i = r * grid.steps + t;
      if (done[static_cast<size_t>(i)]) continue;
      const char* a = next.data + i * grid.step_bytes;
      const char* b = obs.data + (i + 1) * grid.step_bytes;
      for (int64_t offset = 0; offset < grid.step_bytes; offset += obs.itemsize) {
        if (!SameElement(a + offset, b + offset, obs.dtype, obs.itemsize)) return Link{r, t};
      }
    }
  }
  return std::nullopt;
}

// done && !terminated per step (none truncated without `terminated`: it then equals done).
std::vector<uint8_t> Truncated(const v1::Tensor& done, const std::optional<v1::Tensor>& terminated) {
  std::vector<uint8_t> flags = Flags(done, "done");
  if (!terminated) return std::vector<uint8_t>(flags.size(), 0);
  if (Tensor::ShapeOf(*terminated) != Tensor::ShapeOf(done)) {
    throw std::invalid_argument("terminated: expected the done shape " +
                                Dims(Tensor::ShapeOf(done)) + ", got " +
                                Dims(Tensor::ShapeOf(*terminated)));
  }
  const std::vector<uint8_t> ends = Flags(*terminated, "terminated");
  for (size_t i = 0; i < flags.size(); ++i) flags[i] = flags[i] && !ends[i];
  return flags;
}

v1::Tensor WireTensor(v1::DType dtype, const Shape& shape, std::string bytes) {
  v1::Tensor tensor;
  tensor.set_dtype(dtype);
  for (int64_t d : shape) tensor.add_shape(d);
  tensor.set_raw_data(std::move(bytes));
  return tensor;
}

// Whether Form::kAuto may send the compact form (the Python client's _chains): no agents, and
// full-form observations, each key with a next observation of the same shape and dtype, that
// chain. Malformed tensors give false: the full form sends them as given and the server names
// what is wrong.
bool Chains(const TrajectoryFields& in) {
  const Shape step = Tensor::ShapeOf(in.done);
  if (in.n_agents != 0 || in.observation.empty() || step.empty() || step.back() < 1) return false;
  if (in.next_observation.size() != in.observation.size()) return false;
  try {
    const std::vector<uint8_t> done = Flags(in.done, "done");
    for (const auto& [key, observation] : in.observation) {
      const auto found = in.next_observation.find(key);
      if (found == in.next_observation.end()) return false;
      const Raw obs = View(observation, "observation");
      const Raw next = View(found->second, "next_observation");
      if (Leading(obs.shape, step.size()) != step || next.shape != obs.shape ||
          next.dtype != obs.dtype) {
        return false;
      }
      if (BrokenLink(obs, next, done, GridOf(step, obs))) return false;
    }
  } catch (const std::invalid_argument&) {
    return false;
  }
  return true;
}

// `done` and `terminated` with the padded steps (mask false) done and terminated: a segment ends
// before its padding, and padding is never a truncated step.
std::pair<v1::Tensor, v1::Tensor> MaskedFlags(const v1::Tensor& done,
                                              const std::optional<v1::Tensor>& terminated,
                                              const v1::Tensor& mask) {
  const Shape shape = Tensor::ShapeOf(done);
  if (Tensor::ShapeOf(mask) != shape) {
    throw std::invalid_argument("mask: expected the done shape " + Dims(shape) + ", got " +
                                Dims(Tensor::ShapeOf(mask)));
  }
  const std::vector<uint8_t> d = Flags(done, "done");
  const std::vector<uint8_t> t = terminated ? Flags(*terminated, "terminated") : d;
  if (t.size() != d.size()) {
    throw std::invalid_argument("terminated: expected the done shape " + Dims(shape) + ", got " +
                                Dims(Tensor::ShapeOf(*terminated)));
  }
  const std::vector<uint8_t> valid = Flags(mask, "mask");
  std::vector<bool> done_out(d.size()), terminated_out(d.size());
  for (size_t i = 0; i < d.size(); ++i) {
    done_out[i] = d[i] || !valid[i];
    terminated_out[i] = t[i] || !valid[i];
  }
  return {Tensor::Encode(done_out, shape), Tensor::Encode(terminated_out, shape)};
}

}  // namespace

CompactObservation CompactObservations(const v1::Tensor& observation,
                                       const v1::Tensor& next_observation, const v1::Tensor& done,
                                       const std::optional<v1::Tensor>& terminated,
                                       const std::string& key) {
  const Shape step = Tensor::ShapeOf(done);
  if (step.empty()) {
    throw std::invalid_argument("done must have at least the time dimension, got a scalar");
  }
  const Raw obs = View(observation, "observation" + Quoted(key));
  if (Leading(obs.shape, step.size()) != step) {
    throw std::invalid_argument("observation" + Quoted(key) + ": expected a leading [*B, T] = " +
                                Dims(step) + ", got shape " + Dims(obs.shape));
  }
  const Raw next = View(next_observation, "next_observation" + Quoted(key));
  if (next.shape != obs.shape || next.dtype != obs.dtype) {
    throw std::invalid_argument("next_observation" + Quoted(key) +
                                ": expected the observation's shape " + Dims(obs.shape) +
                                " and dtype " + v1::DType_Name(obs.dtype) + ", got " +
                                Dims(next.shape) + " " + v1::DType_Name(next.dtype));
  }
  const Grid grid = GridOf(step, obs);
  if (grid.steps < 1) {
    throw std::invalid_argument("observation" + Quoted(key) +
                                ": the compact form needs at least one step (T = 0)");
  }
  const std::vector<uint8_t> done_flags = Flags(done, "done");
  if (const std::optional<Link> broken = BrokenLink(obs, next, done_flags, grid)) {
    throw std::invalid_argument(
        "next_observation" + Quoted(key) +
        ": the compact form needs next_observation[t] == observation[t + 1] wherever step t is "
        "not done; they differ at row " + std::to_string(broken->row) + ", step " +
        std::to_string(broken->step) + ". Send Form::kFull for such data.");
  }
  // observation [*B, T + 1]: each row's T observations, then its last step's next observation.
  const size_t row_bytes = static_cast<size_t>(grid.steps * grid.step_bytes);
  const size_t step_bytes = static_cast<size_t>(grid.step_bytes);
  std::string compact;
  compact.reserve(static_cast<size_t>(grid.rows) * (row_bytes + step_bytes));
  for (int64_t r = 0; r < grid.rows; ++r) {
    compact.append(obs.data + r * grid.steps * grid.step_bytes, row_bytes);
    compact.append(next.data + ((r + 1) * grid.steps - 1) * grid.step_bytes, step_bytes);
  }
  // next_observation [K]: the truncated steps' next observations, row-major.
  const std::vector<uint8_t> truncated = Truncated(done, terminated);
  std::string kept;
  int64_t k = 0;
  for (size_t i = 0; i < truncated.size(); ++i) {
    if (!truncated[i]) continue;
    kept.append(next.data + static_cast<int64_t>(i) * grid.step_bytes, step_bytes);
    ++k;
  }
  const Shape features(obs.shape.begin() + static_cast<std::ptrdiff_t>(step.size()),
                       obs.shape.end());
  Shape compact_shape(step.begin(), step.end() - 1);
  compact_shape.push_back(grid.steps + 1);
  compact_shape.insert(compact_shape.end(), features.begin(), features.end());
  Shape kept_shape{k};
  kept_shape.insert(kept_shape.end(), features.begin(), features.end());
  return {WireTensor(obs.dtype, compact_shape, std::move(compact)),
          WireTensor(obs.dtype, kept_shape, std::move(kept))};
}

Form WireForm(const TrajectoryFields& fields) {
  if (fields.form != Form::kAuto) return fields.form;
  return Chains(fields) ? Form::kCompact : Form::kFull;
}

namespace detail {

void FillObservations(const TrajectoryFields& in, Form form, v1::Trajectory* out) {
  auto& observations = *out->mutable_observation();
  auto& next_observations = *out->mutable_next_observation();
  // The full form, and the agent layout in either form (its compact observations are sent as
  // given: the client converts only [*B, T] grids).
  if (form != Form::kCompact || in.n_agents != 0) {
    for (const auto& [key, tensor] : in.observation) observations[key] = tensor;
    for (const auto& [key, tensor] : in.next_observation) next_observations[key] = tensor;
    return;
  }
  for (const auto& [key, tensor] : in.next_observation) {
    if (!in.observation.count(key)) {
      throw std::invalid_argument("next_observation" + Quoted(key) +
                                  " has no observation of that key");
    }
  }
  // The flags the conversion uses, computed once when a key needs them.
  std::optional<std::pair<v1::Tensor, std::optional<v1::Tensor>>> flags;
  const auto compact_flags = [&]() -> const std::pair<v1::Tensor, std::optional<v1::Tensor>>& {
    if (!flags) {
      if (in.mask) {
        auto [done, terminated] = MaskedFlags(in.done, in.terminated, *in.mask);
        flags.emplace(std::move(done), std::move(terminated));
      } else {
        flags.emplace(in.done, in.terminated);
      }
    }
    return *flags;
  };
  const Shape step = Tensor::ShapeOf(in.done);
  Shape compact_step = step;
  if (!compact_step.empty()) compact_step.back() += 1;
  for (const auto& [key, observation] : in.observation) {
    const Shape shape = Tensor::ShapeOf(observation);
    const auto next = in.next_observation.find(key);
    const bool has_next = next != in.next_observation.end();
    if (!step.empty() && Leading(shape, step.size()) == step) {  // full form: convert
      if (!has_next) {
        throw std::invalid_argument("Form::kCompact from full-form observations needs "
                                    "next_observation" + Quoted(key));
      }
      const auto& [done, terminated] = compact_flags();
      CompactObservation compact =
          CompactObservations(observation, next->second, done, terminated, key);
      observations[key] = std::move(compact.observation);
      next_observations[key] = std::move(compact.next_observation);
    } else if (!step.empty() && Leading(shape, step.size()) == compact_step) {  // already compact
      observations[key] = observation;
      if (has_next) {
        next_observations[key] = next->second;
        continue;
      }
      const auto& [done, terminated] = compact_flags();
      int64_t k = 0;
      for (uint8_t truncated : Truncated(done, terminated)) k += truncated;
      if (k) {
        throw std::invalid_argument("next_observation" + Quoted(key) + " is needed at the " +
                                    std::to_string(k) + " truncated steps");
      }
      Shape empty{0};
      empty.insert(empty.end(), shape.begin() + static_cast<std::ptrdiff_t>(step.size()),
                   shape.end());
      next_observations[key] = WireTensor(observation.dtype(), empty, std::string());
    } else {
      throw std::invalid_argument("observation" + Quoted(key) + ": expected a leading " +
                                  Dims(step) + " (full form) or " + Dims(compact_step) +
                                  " (compact form), got shape " + Dims(shape));
    }
  }
}

}  // namespace detail
}  // namespace advantage
