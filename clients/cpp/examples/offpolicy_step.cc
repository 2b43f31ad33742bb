// offpolicy_step: one DQN and one SAC learner step on a server with the off-policy demo models
// (`advantage-service serve --offpolicy-demos`, as `make serve` runs it).
//
//   offpolicy_step [host:port]        (default 127.0.0.1:50051)
//
// Prints, machine-readable:
//   dqn loss <loss> version <before> <after> targets <0|1> td_error <e_0> ... <e_3>
//   sac loss <loss> version <before> <after> targets <0|1> <metric>=<value> ...
//   error <STATUS_CODE> <message>          (a DQN action index outside [0, 2))
// The transitions are fixed (B = 4), so another client can send the very same batch.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "advantage/client.h"

namespace {

constexpr int64_t kB = 4;

std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

std::vector<float> Observations(int64_t size, float shift) {
  std::vector<float> values;
  for (int64_t i = 0; i < kB * size; ++i) {
    values.push_back(0.1f * static_cast<float>(i % 7) - 0.3f + shift);
  }
  return values;
}

void Fill(advantage::OffPolicyRequest& request, int64_t size) {
  using advantage::Tensor;
  request.observation["observation"] = Tensor::Encode(Observations(size, 0.0f), {kB, size});
  request.next_observation["observation"] = Tensor::Encode(Observations(size, 0.05f), {kB, size});
  request.reward = Tensor::Encode(std::vector<float>{1.0f, -0.5f, 0.25f, 0.0f}, {kB});
  request.done = Tensor::Encode(std::vector<bool>{false, true, false, true}, {kB});
  request.terminated = Tensor::Encode(std::vector<bool>{false, true, false, false}, {kB});
}

}  // namespace

int main(int argc, char** argv) {
  const std::string target = argc > 1 ? argv[1] : "127.0.0.1:50051";
  advantage::Client client(target);
  try {
    advantage::OffPolicyRequest dqn;
    dqn.model_name = "demo_dqn";
    dqn.loss = "dqn";
    Fill(dqn, 4);
    dqn.action = advantage::EncodeInt64({0, 1, 1, 0}, {kB});
    dqn.double_dqn = true;
    dqn.gamma = 0.9;
    dqn.apply_update = true;
    dqn.expected_parameter_version = 0;
    dqn.hard_interval = 0;
    dqn.return_td_error = true;
    const advantage::OffPolicyResult step = client.ComputeOffPolicyLoss(dqn);
    std::printf("dqn loss %.17g version %lld %lld targets %d td_error", step.loss,
                static_cast<long long>(step.parameter_version),
                static_cast<long long>(step.new_parameter_version), step.targets_updated ? 1 : 0);
    for (double e : step.td_error) std::printf(" %.17g", e);
    std::printf("\n");

    advantage::OffPolicyRequest sac;
    sac.model_name = "demo_sac";
    sac.loss = "sac";
    Fill(sac, 3);
    sac.action = advantage::Tensor::Encode(std::vector<float>{0.5f, -0.25f, 0.0f, 0.75f}, {kB, 1});
    sac.seed = 5;
    sac.alpha_init = 0.5;
    sac.apply_update = true;
    sac.tau = 0.5;
    const advantage::OffPolicyResult sac_step = client.ComputeOffPolicyLoss(sac);
    std::printf("sac loss %.17g version %lld %lld targets %d", sac_step.loss,
                static_cast<long long>(sac_step.parameter_version),
                static_cast<long long>(sac_step.new_parameter_version),
                sac_step.targets_updated ? 1 : 0);
    for (const auto& [key, value] : sac_step.metrics) std::printf(" %s=%.17g", key.c_str(), value);
    std::printf("\n");
  } catch (const std::exception& error) {
    std::printf("failed %s\n", OneLine(error.what()).c_str());
    return 1;
  }
  try {
    advantage::OffPolicyRequest bad;
    bad.model_name = "demo_dqn";
    bad.loss = "dqn";
    Fill(bad, 4);
    bad.action = advantage::EncodeInt64({0, 1, 7, 0}, {kB});
    bad.apply_update = true;
    client.ComputeOffPolicyLoss(bad);
    std::printf("error none\n");
  } catch (const advantage::Error& error) {
    std::printf("error %s %s\n", error.code_name(), OneLine(error.message()).c_str());
  }
  return 0;
}
