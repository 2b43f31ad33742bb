// dreamer_step: one DreamerV3 learner step on an advantage-service server's `dreamer-demo`
// model (observation [3], action [1], latents state [16] and belief [16]).
//
//   dreamer_step [host:port] [horizon]     (defaults 127.0.0.1:50051 and 15)
//
// Sends a replay of B=2 sequences of T=6 steps with apply_update and return_posterior, then
// prints machine-readable lines:
//   step <parameter_version> <new_parameter_version> <updated 0|1> <loss>
//   metric <name> <value>                  (one per metric)
//   posterior <name> <shape...>            (one per latent)
// On failure: `error <STATUS_CODE> <message>` and exit status 1.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "advantage/dreamer.h"

int main(int argc, char** argv) {
  const std::string target = argc > 1 ? argv[1] : "127.0.0.1:50051";
  const int64_t horizon = argc > 2 ? std::stoll(argv[2]) : 15;
  constexpr int64_t kB = 2;
  constexpr int64_t kT = 6;
  try {
    advantage::Client client(target);
    advantage::DreamerStepRequest request;
    request.model_name = "dreamer-demo";
    std::vector<float> observation(kB * kT * 3);
    std::vector<float> action(kB * kT);
    std::vector<float> reward(kB * kT);
    std::vector<bool> is_first(kB * kT, false);
    for (size_t i = 0; i < observation.size(); ++i) observation[i] = 0.1f * float(i % 7) - 0.3f;
    for (size_t i = 0; i < action.size(); ++i) {
      action[i] = 0.2f * float(i % 5) - 0.4f;
      reward[i] = float(i % 3) - 1.0f;
    }
    for (int64_t b = 0; b < kB; ++b) is_first[b * kT] = true;
    request.observation["observation"] = advantage::Tensor::Encode(observation, {kB, kT, 3});
    request.action = advantage::Tensor::Encode(action, {kB, kT, 1});
    request.reward = advantage::Tensor::Encode(reward, {kB, kT});
    request.is_first = advantage::Tensor::Encode(is_first, {kB, kT});
    request.loss.mutable_actor()->mutable_imagination()->set_imagination_horizon(horizon);
    request.apply_update = true;
    request.return_posterior = true;
    const advantage::DreamerResult result = advantage::DreamerStep(client, request);
    std::printf("step %lld %lld %d %.9g\n", static_cast<long long>(result.parameter_version),
                static_cast<long long>(result.new_parameter_version), result.updated ? 1 : 0,
                result.loss);
    for (const auto& [name, value] : result.metrics) std::printf("metric %s %.9g\n", name.c_str(), value);
    for (const auto& [name, shape] : result.posterior_shapes) {
      std::printf("posterior %s", name.c_str());
      for (int64_t size : shape) std::printf(" %lld", static_cast<long long>(size));
      std::printf("\n");
    }
  } catch (const advantage::Error& error) {
    std::printf("error %s %s\n", error.code_name(), error.message().c_str());
    return 1;
  } catch (const std::exception& error) {
    std::printf("error CLIENT %s\n", error.what());
    return 1;
  }
  return 0;
}
