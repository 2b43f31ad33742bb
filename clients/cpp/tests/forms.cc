// forms: the trajectory forms the C++ client sends (Form::kAuto, the default, kFull, kCompact),
// for tests/clients/test_cpp_client.py, which checks the requests against the Python client and
// a conversion written in the test, and the answers against each other.
//
//   forms <host:port>
//
// A B=2, T=6 batch for the demo model (observation float32 [4]) whose observations chain: the next
// observation of a step that is not done is the following observation; at a done step it is a
// fresh one (the true final observation). Row 0 terminates at t=2 and is truncated at t=4; row 1
// is truncated at t=3 and at its last step. Cases:
//   chained    the batch                                     auto, full, compact
//   unchained  next_observation[0, 1] changed (not done)     auto, full; compact is refused
//   masked     the batch, row 1 padded from t=4              auto, full, compact
//   agents     the batch as n_agents=1, [2, 6, 1, 4]          auto (no call)
//   values     client values, no observations                auto (no call)
//   nan        a chained NaN observation                      auto (no call)
//   no_next    no next observations                           auto, compact (no call)
//   prebuilt[_untruncated]  compact-layout observations without next observations, with (without)
//              truncated steps                                 compact (no call)
// Prints, per case and form:
//   request <case> <form> <hex of the serialised ComputeAdvantageRequest>
//   advantage <case> <form> <advantage values, row-major>       (chained, unchained, masked)
//   refused <case> <form> <std::invalid_argument message>
#include <cmath>
#include <cstdio>
#include <exception>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "advantage/client.h"

namespace {

constexpr int64_t kB = 2;
constexpr int64_t kT = 6;
constexpr int64_t kObs = 4;

std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

std::string Hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// Deterministic values in [-1, 1): a linear congruential generator.
struct Values {
  uint32_t state = 12345;
  float Next() {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(state >> 8) / static_cast<float>(1 << 23) - 1.0f;
  }
};

advantage::AdvantageRequest Chained() {
  const std::vector<bool> done = {false, false, true, false, true, false,
                                  false, false, false, true, false, true};
  const std::vector<bool> terminated = {false, false, true, false, false, false,
                                        false, false, false, false, false, false};
  Values values;
  std::vector<float> reward, observation(kB * kT * kObs), next_observation(kB * kT * kObs);
  for (float& x : observation) x = values.Next();
  for (int64_t i = 0; i < kB * kT; ++i) {
    reward.push_back(values.Next());
    const bool follows = !done[i] && i % kT < kT - 1;
    for (int64_t f = 0; f < kObs; ++f) {
      next_observation[i * kObs + f] = follows ? observation[(i + 1) * kObs + f] : values.Next();
    }
  }
  advantage::AdvantageRequest request;
  request.reward = advantage::Tensor::Encode(reward, {kB, kT});
  request.done = advantage::Tensor::Encode(done, {kB, kT});
  request.terminated = advantage::Tensor::Encode(terminated, {kB, kT});
  request.observation["observation"] = advantage::Tensor::Encode(observation, {kB, kT, kObs});
  request.next_observation["observation"] =
      advantage::Tensor::Encode(next_observation, {kB, kT, kObs});
  request.estimator = "gae";
  request.gamma = 0.9;
  request.lmbda = 0.8;
  return request;
}

const std::map<advantage::Form, const char*> kForms = {
    {advantage::Form::kAuto, "auto"},
    {advantage::Form::kFull, "full"},
    {advantage::Form::kCompact, "compact"}};

void Run(const advantage::Client* client, const std::string& name,
         advantage::AdvantageRequest request, const std::vector<advantage::Form>& forms) {
  for (const advantage::Form form : forms) {
    request.form = form;
    const char* label = kForms.at(form);
    std::string bytes;
    try {
      bytes = advantage::ToProto(request).SerializeAsString();
    } catch (const std::invalid_argument& error) {
      std::printf("refused %s %s %s\n", name.c_str(), label, OneLine(error.what()).c_str());
      continue;
    }
    std::printf("request %s %s %s\n", name.c_str(), label, Hex(bytes).c_str());
    if (client == nullptr) continue;
    const advantage::AdvantageResult result = client->ComputeAdvantage(request);
    std::printf("advantage %s %s", name.c_str(), label);
    for (double a : result.advantage) std::printf(" %.17g", a);
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: forms <host:port>\n");
    return 2;
  }
  try {
    const advantage::Client client(argv[1]);
    using advantage::Form;
    Run(&client, "chained", Chained(), {Form::kAuto, Form::kFull, Form::kCompact});

    advantage::AdvantageRequest unchained = Chained();
    std::vector<float> next = advantage::Tensor::DecodeFloat32(unchained.next_observation["observation"]);
    next[(0 * kT + 1) * kObs + 2] += 0.25f;  // step (0, 1) is not done
    unchained.next_observation["observation"] = advantage::Tensor::Encode(next, {kB, kT, kObs});
    Run(&client, "unchained", unchained, {Form::kAuto, Form::kFull, Form::kCompact});

    advantage::AdvantageRequest masked = Chained();
    std::vector<bool> mask;
    for (int64_t i = 0; i < kB * kT; ++i) mask.push_back(i < kT || i % kT < 4);
    masked.mask = advantage::Tensor::Encode(mask, {kB, kT});
    Run(&client, "masked", masked, {Form::kAuto, Form::kFull, Form::kCompact});

    advantage::AdvantageRequest agents = Chained();
    for (auto* map : {&agents.observation, &agents.next_observation}) {
      const std::vector<float> values = advantage::Tensor::DecodeFloat32((*map)["observation"]);
      (*map)["observation"] = advantage::Tensor::Encode(values, {kB, kT, 1, kObs});
    }
    agents.n_agents = 1;
    Run(nullptr, "agents", agents, {Form::kAuto});

    // NaN differs from itself: a NaN observation that a running step's next observation repeats
    // does not chain (as the other clients compare).
    advantage::AdvantageRequest nan = Chained();
    std::vector<float> obs = advantage::Tensor::DecodeFloat32(nan.observation["observation"]);
    next = advantage::Tensor::DecodeFloat32(nan.next_observation["observation"]);
    obs[(0 * kT + 1) * kObs] = next[(0 * kT + 0) * kObs] = std::nanf("");
    nan.observation["observation"] = advantage::Tensor::Encode(obs, {kB, kT, kObs});
    nan.next_observation["observation"] = advantage::Tensor::Encode(next, {kB, kT, kObs});
    Run(nullptr, "nan", nan, {Form::kAuto});

    advantage::AdvantageRequest no_next = Chained();
    no_next.next_observation.clear();
    Run(nullptr, "no_next", no_next, {Form::kAuto, Form::kCompact});

    // Observations already in the compact layout [B, T + 1, 4], without next observations: refused
    // while there are truncated steps, an empty [0, 4] once nothing is truncated.
    advantage::AdvantageRequest prebuilt = Chained();
    prebuilt.observation["observation"] =
        advantage::Tensor::Encode(std::vector<float>(kB * (kT + 1) * kObs, 0.5f), {kB, kT + 1, kObs});
    prebuilt.next_observation.clear();
    Run(nullptr, "prebuilt", prebuilt, {Form::kCompact});
    prebuilt.terminated.reset();  // terminated = done: no truncated step
    Run(nullptr, "prebuilt_untruncated", prebuilt, {Form::kCompact});

    advantage::AdvantageRequest values = Chained();
    values.observation.clear();
    values.next_observation.clear();
    values.state_value = values.reward;
    values.next_state_value = values.reward;
    Run(nullptr, "values", values, {Form::kAuto});
  } catch (const std::exception& error) {
    std::fprintf(stderr, "forms: %s\n", error.what());
    return 1;
  }
  return 0;
}
