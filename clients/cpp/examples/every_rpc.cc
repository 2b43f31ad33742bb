// every_rpc: calls each RPC of advantage-service once through the typed C++ client.
//
//   every_rpc [host:port]     (default 127.0.0.1:50051; ADVANTAGE_AUTH_TOKEN: bearer token)
//
// It CHANGES the server's default model (one SetParameters): run it against a test server.
// Prints machine-readable lines, in this order:
//   models <count> first <name> version <v> input <key> <dims...>      ListModels
//   model <name> version <v> actor <DISTRIBUTION_...> actions <n> gamma <γ> lmbda <λ>
//         agents <n> networks <shared|per_agent> heads <n> world_model <0|1> qvalue <0|1>  GetModel
//   error GetModel <CODE> <message>                                    GetModel of an unknown name
//   advantage <model> version <v> <advantage[0]> ...                   ComputeAdvantage (GAE)
//   loss <loss> terms <sum of loss_* metrics> version <v> updated <0|1>  ComputeLoss (A2C)
//   parameters version <v> tensors <count> elements <total>           GetParameters
//   watch <model> <version>                                           WatchModels (a thread)
//   set version <v> tensors <k>                                        SetParameters (+1 to one tensor)
//   changed <name> <first value before> <first value after>           GetParameters again
//   stale <CODE> <message>                                             SetParameters, stale version
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "advantage/client.h"

namespace {

namespace v1 = advantage::v1;

constexpr int64_t kB = 2;
constexpr int64_t kT = 4;
constexpr int64_t kObs = 4;  // the demo model's observation size

std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

// A small trajectory for the demo model: observations chain, row 1 terminates at its last step.
advantage::TrajectoryFields Trajectory() {
  advantage::TrajectoryFields trajectory;
  std::vector<float> reward, observation, next_observation, sample_log_prob;
  std::vector<bool> done;
  std::vector<int64_t> action;
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t t = 0; t < kT; ++t) {
      reward.push_back(0.5f * static_cast<float>(t) - 0.25f * static_cast<float>(b));
      done.push_back(b == 1 && t == kT - 1);
      action.push_back((b + t) % 2);
      sample_log_prob.push_back(-0.6931472f);  // log ½: a uniform behaviour policy
      for (int64_t k = 0; k < kObs; ++k) {
        observation.push_back(0.1f * static_cast<float>(t + k) - 0.2f * static_cast<float>(b));
        next_observation.push_back(0.1f * static_cast<float>(t + 1 + k) -
                                   0.2f * static_cast<float>(b));
      }
    }
  }
  trajectory.reward = advantage::Tensor::Encode(reward, {kB, kT});
  trajectory.done = advantage::Tensor::Encode(done, {kB, kT});
  trajectory.action = advantage::Tensor::Encode(action, {kB, kT});
  trajectory.sample_log_prob = advantage::Tensor::Encode(sample_log_prob, {kB, kT});
  trajectory.observation["observation"] = advantage::Tensor::Encode(observation, {kB, kT, kObs});
  trajectory.next_observation["observation"] =
      advantage::Tensor::Encode(next_observation, {kB, kT, kObs});
  return trajectory;
}

int Run(const advantage::Client& client) {
  const std::vector<advantage::ModelInfo> models = client.ListModels();
  const advantage::ModelInfo& first = models.at(0);
  std::printf("models %zu first %s version %lld input %s", models.size(), first.name.c_str(),
              static_cast<long long>(first.parameter_version), first.inputs.at(0).name.c_str());
  for (int64_t d : first.inputs.at(0).shape) std::printf(" %lld", static_cast<long long>(d));
  std::printf("\n");

  const advantage::ModelInfo model = client.GetModel();
  std::printf(
      "model %s version %lld actor %s actions %lld gamma %.17g lmbda %.17g agents %u "
      "networks %s heads %d world_model %d qvalue %d\n",
      model.name.c_str(), static_cast<long long>(model.parameter_version),
      v1::Distribution_Name(model.action.distribution).c_str(),
      static_cast<long long>(model.action.num_actions), model.gamma, model.lmbda,
      model.n_agents, model.agent_networks.c_str(), model.message.action().heads_size(),
      model.message.has_world_model() ? 1 : 0, model.message.has_qvalue_network() ? 1 : 0);
  try {
    client.GetModel("no-such-model");
    std::printf("error GetModel OK\n");
  } catch (const advantage::Error& error) {
    std::printf("error GetModel %s %s\n", error.code_name(), OneLine(error.message()).c_str());
  }

  advantage::AdvantageRequest advantage_request;
  static_cast<advantage::TrajectoryFields&>(advantage_request) = Trajectory();
  advantage_request.gamma = 0.9;
  advantage_request.lmbda = 0.8;
  const advantage::AdvantageResult advantage = client.ComputeAdvantage(advantage_request);
  std::printf("advantage %s version %lld", advantage.model_name.c_str(),
              static_cast<long long>(advantage.parameter_version));
  for (double x : advantage.advantage) std::printf(" %.9g", x);
  std::printf("\n");

  advantage::LossRequest loss_request;
  static_cast<advantage::TrajectoryFields&>(loss_request) = Trajectory();
  loss_request.estimator = "gae";
  loss_request.loss = "a2c";
  loss_request.loss_knobs.entropy_coeff = 0.02;
  const advantage::LossResult loss = client.ComputeLoss(loss_request);
  double terms = 0;
  for (const auto& [name, value] : loss.metrics) {
    if (name.rfind("loss_", 0) == 0) terms += value;
  }
  std::printf("loss %.17g terms %.17g version %lld updated %d\n", loss.loss, terms,
              static_cast<long long>(loss.parameter_version), loss.updated ? 1 : 0);

  const advantage::Parameters before = client.GetParameters({});
  int64_t elements = 0;
  for (const auto& [name, tensor] : before.tensors) {
    elements += advantage::Tensor::NumElements(advantage::Tensor::ShapeOf(tensor));
  }
  std::printf("parameters version %lld tensors %zu elements %lld\n",
              static_cast<long long>(before.parameter_version), before.tensors.size(),
              static_cast<long long>(elements));

  // Watch the model while its parameters change: its current version first, then the new one.
  std::promise<void> subscribed;
  std::thread watcher([&client, &before, &model, &subscribed] {
    bool first_seen = false;
    try {
      client.WatchModels(
        {model.name},
        [&](const advantage::ModelVersion& version) {
          std::printf("watch %s %lld\n", version.model_name.c_str(),
                      static_cast<long long>(version.parameter_version));
          std::fflush(stdout);
          if (!first_seen) {
            first_seen = true;
            subscribed.set_value();
          }
          return version.parameter_version <= before.parameter_version;  // stop after a change
        },
        std::chrono::seconds(60));
    } catch (const std::exception& error) {
      std::printf("watch_error %s\n", OneLine(error.what()).c_str());
      if (!first_seen) subscribed.set_value();
    }
  });
  subscribed.get_future().wait();

  // One tensor, +1 everywhere (float32 parameters, as the demo model's).
  const auto& [name, tensor] = *before.tensors.begin();
  std::vector<float> values = advantage::Tensor::DecodeFloat32(tensor);
  const float first_before = values.at(0);
  for (float& x : values) x += 1.0f;
  const advantage::SetParametersResult set = client.SetParameters(
      model.name, {{name, advantage::Tensor::Encode(values, advantage::Tensor::ShapeOf(tensor))}},
      before.parameter_version, /*max_chunk_bytes=*/64);
  watcher.join();
  std::printf("set version %lld tensors %lld\n", static_cast<long long>(set.parameter_version),
              static_cast<long long>(set.tensors_updated));

  advantage::ParametersRequest again;
  again.prefixes = {name};
  const advantage::Parameters after = client.GetParameters(again);
  std::printf("changed %s %.9g %.9g\n", name.c_str(), static_cast<double>(first_before),
              static_cast<double>(advantage::Tensor::DecodeFloat32(after.tensors.at(name)).at(0)));

  try {
    client.SetParameters(model.name, {{name, tensor}}, before.parameter_version);
    std::printf("stale OK\n");
  } catch (const advantage::Error& error) {
    std::printf("stale %s %s\n", error.code_name(), OneLine(error.message()).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string target = argc > 1 ? argv[1] : "127.0.0.1:50051";
  try {
    advantage::Client client(target);
    const char* token = std::getenv("ADVANTAGE_AUTH_TOKEN");
    if (token != nullptr && *token != '\0') client.set_token(token);
    return Run(client);
  } catch (const advantage::Error& error) {
    std::fprintf(stderr, "every_rpc: %s\n", error.what());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "every_rpc: %s\n", error.what());
  }
  return 1;
}
