// DreamerV3's one-call learner step (see advantage/dreamer.h).
#include "advantage/dreamer.h"

#include <stdexcept>
#include <string>

namespace advantage {

v1::ComputeLossRequest ToProto(const DreamerStepRequest& request) {
  v1::ComputeLossRequest message;
  message.set_model_name(request.model_name);
  *message.mutable_dreamer_v3() = request.loss;
  v1::DreamerV3Replay* replay = message.mutable_replay();
  for (const auto& [name, tensor] : request.observation) {
    (*replay->mutable_observation())[name] = tensor;
  }
  *replay->mutable_action() = request.action;
  *replay->mutable_reward() = request.reward;
  *replay->mutable_is_first() = request.is_first;
  if (request.terminated) *replay->mutable_terminated() = *request.terminated;
  message.set_return_posterior(request.return_posterior);
  message.set_apply_update(request.apply_update);
  if (request.expected_parameter_version) {
    message.set_expected_parameter_version(*request.expected_parameter_version);
  }
  return message;
}

DreamerResult DreamerStep(const Client& client, const DreamerStepRequest& request) {
  const v1::ComputeLossRequest message = ToProto(request);
  grpc::ClientContext context;
  if (request.deadline.count() > 0) {
    context.set_deadline(std::chrono::system_clock::now() + request.deadline);
  }
  if (!client.token().empty()) context.AddMetadata("authorization", "Bearer " + client.token());
  v1::ComputeLossResponse response;
  const grpc::Status status = client.stub().ComputeLoss(&context, message, &response);
  if (!status.ok()) throw Error(status.error_code(), status.error_message());

  DreamerResult result;
  result.loss = response.loss();
  for (const auto& [name, value] : response.metrics()) result.metrics[name] = value;
  result.model_name = response.model_name();
  result.parameter_version = response.parameter_version();
  result.new_parameter_version = response.new_parameter_version();
  result.updated = response.updated();
  result.grad_norm = response.grad_norm();
  try {
    for (const auto& [name, tensor] : response.posterior_latents()) {
      result.posterior_latents[name] = Tensor::DecodeAsDouble(tensor);
      result.posterior_shapes[name] = Tensor::ShapeOf(tensor);
    }
  } catch (const std::invalid_argument& error) {
    throw Error(grpc::StatusCode::INTERNAL,
                std::string("malformed ComputeLoss response: ") + error.what());
  }
  return result;
}

}  // namespace advantage
