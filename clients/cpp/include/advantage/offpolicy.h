// Off-policy losses on server-held Q-networks, target networks and SAC's temperature
// (ComputeLoss with a dqn / sac / discrete_sac / ddpg / td3 loss; proto/README.md "Off-policy
// losses"). A request carries N = prod(*B) transitions; build its tensors with Tensor::Encode
// (and EncodeInt64 for discrete action indices).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "advantage/v1/advantage.pb.h"

namespace advantage {

// An int64 wire tensor (discrete action indices, [*B]).
v1::Tensor EncodeInt64(const std::vector<int64_t>& values, const std::vector<int64_t>& shape);

struct OffPolicyRequest {
  std::string model_name;  // empty = the server's default model
  // "dqn", "sac", "discrete_sac", "ddpg", "td3", "td3_bc", "iql", "discrete_iql", "cql",
  // "discrete_cql", "redq" or "crossq".
  std::string loss = "sac";
  // Network inputs keyed by the model's input names, [*B, *obs] each.
  std::map<std::string, v1::Tensor> observation;
  std::map<std::string, v1::Tensor> next_observation;
  v1::Tensor action;  // [*B, *action] float (sac, ddpg, td3) or [*B] int64 (dqn, discrete_sac)
  v1::Tensor reward;  // [*B] float32 or float64 (the computation's dtype)
  v1::Tensor done;    // [*B] bool
  std::optional<v1::Tensor> terminated;  // [*B] bool; absent = done

  // Knobs (absent = TorchRL's default; gamma: the model's). Each applies to the losses whose
  // message has the field of the same name; setting one the loss lacks throws
  // std::invalid_argument.
  std::optional<double> gamma;
  std::optional<std::string> loss_function;  // "l1", "l2", "smooth_l1"
  std::optional<bool> delay_value;           // dqn, ddpg
  std::optional<bool> double_dqn;            // dqn
  std::optional<double> alpha_init;          // sac, discrete_sac
  std::optional<bool> fixed_alpha;           // sac, discrete_sac
  std::optional<double> target_entropy;      // sac, discrete_sac (absent = "auto")
  std::optional<uint64_t> seed;              // sac, td3, cql: the server's sampler for this call

  bool apply_update = false;
  std::optional<int64_t> expected_parameter_version;
  bool return_td_error = false;
  std::optional<double> tau;             // this call's soft target rule
  std::optional<int64_t> hard_interval;  // this call's hard target rule
  std::chrono::milliseconds deadline{std::chrono::seconds(30)};
};

struct OffPolicyResult {
  double loss = 0.0;                      // the minimised total (sum of the loss_* metrics)
  std::map<std::string, double> metrics;  // loss_qvalue, loss_actor, loss_alpha, alpha, ...
  std::vector<double> td_error;           // [*B] with return_td_error, else empty
  std::string model_name;
  int64_t parameter_version = 0;
  int64_t new_parameter_version = 0;
  bool updated = false;
  bool targets_updated = false;  // the update moved the target networks
  double grad_norm = 0.0;
};

// Builds the wire request (throws std::invalid_argument for an unknown loss, a knob the loss
// does not take, or both tau and hard_interval).
v1::ComputeLossRequest ToProto(const OffPolicyRequest& request);

}  // namespace advantage
