// DreamerV3 on the server: the one-call learner step (`dreamer_v3` in ComputeLoss).
//
// The world model learns on replay sequences [*B, T]; the actor and the critic on rollouts the
// server imagines from every posterior latent; with apply_update, the three optimizers step and
// the parameter version increases once. Unset knobs take TorchRL 0.14.1's defaults (γ and λ:
// the model's). Other DreamerV3 forms (actor or critic alone, client-imagined rollouts) are
// reachable through Client::stub() with v1::ComputeLossRequest.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "advantage/client.h"

namespace advantage {

struct DreamerStepRequest {
  std::string model_name;  // empty = the server's default model
  // Replay [*B, T] (Tensor::Encode): observations by name ([*B, T, *obs] float32), the action
  // before each observation [*B, T, action_size] float32, reward [*B, T] float32, is_first and
  // (optional) terminated [*B, T] bool.
  std::map<std::string, v1::Tensor> observation;
  v1::Tensor action;
  v1::Tensor reward;
  v1::Tensor is_first;
  std::optional<v1::Tensor> terminated;
  // The knobs (proto messages; e.g. loss.mutable_actor()->mutable_imagination()
  // ->set_imagination_horizon(15)).
  v1::DreamerV3Loss loss;
  bool return_posterior = false;
  bool apply_update = false;
  std::optional<int64_t> expected_parameter_version;
  std::chrono::milliseconds deadline{std::chrono::seconds(120)};
};

struct DreamerResult {
  double loss = 0.0;                       // Σ of the loss_* metrics
  std::map<std::string, double> metrics;   // TorchRL's names: loss_model_kl, loss_actor, ...
  std::string model_name;
  int64_t parameter_version = 0;
  int64_t new_parameter_version = 0;
  bool updated = false;
  double grad_norm = 0.0;
  // With return_posterior: "state", "belief" → row-major values and their shape [*B, T, n].
  std::map<std::string, std::vector<double>> posterior_latents;
  std::map<std::string, Shape> posterior_shapes;
};

// Builds the wire request.
v1::ComputeLossRequest ToProto(const DreamerStepRequest& request);

// One learner step on `client`'s server. Throws advantage::Error with the status on failure.
DreamerResult DreamerStep(const Client& client, const DreamerStepRequest& request);

}  // namespace advantage
