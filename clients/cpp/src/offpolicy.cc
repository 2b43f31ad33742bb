// Off-policy requests and Client::ComputeOffPolicyLoss (include/advantage/offpolicy.h).
#include "advantage/offpolicy.h"

#include <stdexcept>

#include "advantage/client.h"

namespace advantage {

namespace {

const google::protobuf::FieldDescriptor* Field(const google::protobuf::Message& message,
                                               const std::string& loss, const char* name) {
  const auto* field = message.GetDescriptor()->FindFieldByName(name);
  if (field == nullptr) {
    throw std::invalid_argument("OffPolicyRequest: loss \"" + loss + "\" takes no " + name);
  }
  return field;
}

v1::CriticLoss Distance(const std::string& name) {
  if (name == "l1") return v1::CRITIC_LOSS_L1;
  if (name == "l2") return v1::CRITIC_LOSS_L2;
  if (name == "smooth_l1") return v1::CRITIC_LOSS_SMOOTH_L1;
  throw std::invalid_argument("OffPolicyRequest.loss_function: expected l1, l2 or smooth_l1, got " +
                              name);
}

}  // namespace

v1::Tensor EncodeInt64(const std::vector<int64_t>& values, const std::vector<int64_t>& shape) {
  if (static_cast<int64_t>(values.size()) != Tensor::NumElements(shape)) {
    throw std::invalid_argument("EncodeInt64: the shape and the number of values disagree");
  }
  v1::Tensor tensor;
  tensor.set_dtype(v1::DTYPE_INT64);
  for (int64_t d : shape) tensor.add_shape(d);
  tensor.set_raw_data(reinterpret_cast<const char*>(values.data()),
                      values.size() * sizeof(int64_t));
  return tensor;
}

v1::ComputeLossRequest ToProto(const OffPolicyRequest& request) {
  v1::ComputeLossRequest message;
  message.set_model_name(request.model_name);
  auto* trajectory = message.mutable_trajectory();
  for (const auto& [key, tensor] : request.observation) {
    (*trajectory->mutable_observation())[key] = tensor;
  }
  for (const auto& [key, tensor] : request.next_observation) {
    (*trajectory->mutable_next_observation())[key] = tensor;
  }
  *trajectory->mutable_action() = request.action;
  *trajectory->mutable_reward() = request.reward;
  *trajectory->mutable_done() = request.done;
  if (request.terminated) *trajectory->mutable_terminated() = *request.terminated;

  const auto* oneof = message.GetDescriptor()->FindOneofByName("loss");
  const google::protobuf::FieldDescriptor* member = nullptr;
  for (int i = 0; i < oneof->field_count(); ++i) {
    if (oneof->field(i)->name() == request.loss) member = oneof->field(i);
  }
  const bool offpolicy = request.loss == "dqn" || request.loss == "sac" ||
                         request.loss == "discrete_sac" || request.loss == "ddpg" ||
                         request.loss == "td3" || request.loss == "td3_bc" || request.loss == "iql" ||
                         request.loss == "discrete_iql" || request.loss == "cql" ||
                         request.loss == "discrete_cql" || request.loss == "redq" ||
                         request.loss == "crossq";
  if (member == nullptr || !offpolicy) {
    throw std::invalid_argument("OffPolicyRequest.loss: expected dqn, sac, discrete_sac, ddpg, "
                                "td3, td3_bc, iql, discrete_iql, cql, discrete_cql, redq or crossq, got \"" + request.loss + "\"");
  }
  auto* loss = message.GetReflection()->MutableMessage(&message, member);
  const auto* reflection = loss->GetReflection();
  if (request.gamma) reflection->SetDouble(loss, Field(*loss, request.loss, "gamma"), *request.gamma);
  if (request.loss_function) {
    reflection->SetEnumValue(loss, Field(*loss, request.loss, "loss_function"),
                             Distance(*request.loss_function));
  }
  const std::pair<const char*, std::optional<bool>> bools[] = {
      {"delay_value", request.delay_value},
      {"double_dqn", request.double_dqn},
      {"fixed_alpha", request.fixed_alpha}};
  for (const auto& [name, value] : bools) {
    if (value) reflection->SetBool(loss, Field(*loss, request.loss, name), *value);
  }
  const std::pair<const char*, std::optional<double>> doubles[] = {
      {"alpha_init", request.alpha_init}, {"target_entropy", request.target_entropy}};
  for (const auto& [name, value] : doubles) {
    if (value) reflection->SetDouble(loss, Field(*loss, request.loss, name), *value);
  }
  if (request.seed) reflection->SetUInt64(loss, Field(*loss, request.loss, "seed"), *request.seed);

  message.set_apply_update(request.apply_update);
  if (request.expected_parameter_version) {
    message.set_expected_parameter_version(*request.expected_parameter_version);
  }
  message.set_return_td_error(request.return_td_error);
  if (request.tau && request.hard_interval) {
    throw std::invalid_argument("OffPolicyRequest: set tau or hard_interval, not both");
  }
  if (request.tau) message.mutable_target_update()->set_tau(*request.tau);
  if (request.hard_interval) message.mutable_target_update()->set_hard_interval(*request.hard_interval);
  return message;
}

OffPolicyResult Client::ComputeOffPolicyLoss(const OffPolicyRequest& request) const {
  const v1::ComputeLossRequest message = ToProto(request);
  grpc::ClientContext context;
  if (request.deadline.count() > 0) {
    context.set_deadline(std::chrono::system_clock::now() + request.deadline);
  }
  if (!token_.empty()) context.AddMetadata("authorization", "Bearer " + token_);
  v1::ComputeLossResponse response;
  const grpc::Status status = stub_->ComputeLoss(&context, message, &response);
  if (!status.ok()) throw Error(status.error_code(), status.error_message());
  OffPolicyResult result;
  result.loss = response.loss();
  for (const auto& [key, value] : response.metrics()) result.metrics[key] = value;
  if (response.has_td_error()) {
    try {
      result.td_error = Tensor::DecodeAsDouble(response.td_error());
    } catch (const std::invalid_argument& error) {
      throw Error(grpc::StatusCode::INTERNAL,
                  std::string("malformed ComputeLoss response: ") + error.what());
    }
  }
  result.model_name = response.model_name();
  result.parameter_version = response.parameter_version();
  result.new_parameter_version = response.new_parameter_version();
  result.updated = response.updated();
  result.targets_updated = response.targets_updated();
  result.grad_norm = response.grad_norm();
  return result;
}

}  // namespace advantage
