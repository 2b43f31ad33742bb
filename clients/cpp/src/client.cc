#include "advantage/client.h"

#include "compact.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <utility>

namespace advantage {

// The wire format is little-endian IEEE-754; encoding and decoding are plain memcpy.
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "advantage::Tensor copies bytes as they are: a little-endian host is required");
#endif
static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4, "binary32 float");
static_assert(std::numeric_limits<double>::is_iec559 && sizeof(double) == 8, "binary64 double");

namespace {

constexpr int kMaxMessageBytes = 256 * 1024 * 1024;
// Requests up to this size can be retried (gRPC keeps a copy of each until it is answered).
constexpr int kRetryBufferBytes = 16 * 1024 * 1024;

std::string ShapeString(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

template <typename T>
v1::Tensor EncodeRaw(const std::vector<T>& values, const Shape& shape, v1::DType dtype) {
  const int64_t n = Tensor::NumElements(shape);
  if (static_cast<int64_t>(values.size()) != n) {
    throw std::invalid_argument("Tensor::Encode: shape " + ShapeString(shape) + " needs " +
                                std::to_string(n) + " values, got " +
                                std::to_string(values.size()));
  }
  v1::Tensor tensor;
  tensor.set_dtype(dtype);
  for (int64_t d : shape) tensor.add_shape(d);
  tensor.set_raw_data(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
  return tensor;
}

// Checks dtype and byte length; returns the element count.
int64_t CheckRaw(const v1::Tensor& tensor, v1::DType dtype) {
  if (tensor.dtype() != dtype) {
    throw std::invalid_argument("Tensor::Decode: expected dtype " + v1::DType_Name(dtype) +
                                ", got " + v1::DType_Name(tensor.dtype()));
  }
  const int64_t n = Tensor::NumElements(Tensor::ShapeOf(tensor));
  const int64_t itemsize = Tensor::ItemSize(dtype);
  const auto actual = static_cast<uint64_t>(tensor.raw_data().size());
  if (n > std::numeric_limits<int64_t>::max() / itemsize ||
      actual != static_cast<uint64_t>(n * itemsize)) {
    throw std::invalid_argument(
        "Tensor::Decode: shape " + ShapeString(Tensor::ShapeOf(tensor)) + " of " +
        v1::DType_Name(dtype) + " needs " + std::to_string(n) + " x " + std::to_string(itemsize) +
        " bytes, raw_data has " + std::to_string(actual));
  }
  return n;
}

template <typename T>
std::vector<T> DecodeRaw(const v1::Tensor& tensor, v1::DType dtype) {
  const int64_t n = CheckRaw(tensor, dtype);
  std::vector<T> values(static_cast<size_t>(n));
  if (n > 0) std::memcpy(values.data(), tensor.raw_data().data(), values.size() * sizeof(T));
  return values;
}

v1::Coefficient Scalar(double value) {
  v1::Coefficient coefficient;
  coefficient.set_scalar(value);
  return coefficient;
}

// Throws std::invalid_argument naming the first knob given that `owner` does not take.
void Refuse(const std::string& owner, std::initializer_list<std::pair<const char*, bool>> knobs) {
  for (const auto& [knob, given] : knobs) {
    if (given) throw std::invalid_argument(owner + " takes no " + knob);
  }
}

void FillTrajectory(const TrajectoryFields& in, v1::Trajectory* trajectory) {
  *trajectory->mutable_reward() = in.reward;
  *trajectory->mutable_done() = in.done;
  if (in.terminated) *trajectory->mutable_terminated() = *in.terminated;
  if (in.state_value) *trajectory->mutable_state_value() = *in.state_value;
  if (in.next_state_value) *trajectory->mutable_next_state_value() = *in.next_state_value;
  if (in.action) *trajectory->mutable_action() = *in.action;
  if (in.sample_log_prob) *trajectory->mutable_sample_log_prob() = *in.sample_log_prob;
  if (in.log_prob) *trajectory->mutable_log_prob() = *in.log_prob;
  const Form form = WireForm(in);  // kAuto: the compact form when the observations chain
  detail::FillObservations(in, form, trajectory);
  if (in.mask) *trajectory->mutable_mask() = *in.mask;
  for (const auto& [key, tensor] : in.action_heads) {
    (*trajectory->mutable_action_heads())[key] = tensor;
  }
  for (const auto& [key, tensor] : in.sample_log_prob_heads) {
    (*trajectory->mutable_sample_log_prob_heads())[key] = tensor;
  }
  for (const auto& [key, tensor] : in.log_prob_heads) {
    (*trajectory->mutable_log_prob_heads())[key] = tensor;
  }
  trajectory->set_n_agents(in.n_agents);
  trajectory->set_form(form == Form::kCompact ? v1::TRAJECTORY_FORM_COMPACT
                                              : v1::TRAJECTORY_FORM_FULL);
}

// The service's estimator name for any of its names: the service's ("td_lambda") or TorchRL's
// ValueEstimators members ("TDLambda") and classes ("TDLambdaEstimator"), case, '_' and '-'
// ignored; an unknown name is returned as given (and refused by the caller).
std::string CanonicalEstimator(const std::string& name) {
  std::string key;
  for (const char c : name) {
    if (c == '_' || c == '-') continue;
    key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  const std::string suffix = "estimator";
  const size_t stem = key.size() - std::min(key.size(), suffix.size());
  if (stem > 0 && key.compare(stem, suffix.size(), suffix) == 0) key.resize(stem);
  if (key == "gae" || key == "td0" || key == "td1" || key == "vtrace") return key;
  if (key == "tdlambda") return "td_lambda";
  return name;
}

// Sets the `estimator` oneof of a ComputeAdvantageRequest or ComputeLossRequest (nothing for an
// empty name) from the knobs the estimator takes; refuses the others.
template <typename Request>
void FillEstimator(const std::string& given_name, const EstimatorKnobs& knobs, Request* out) {
  const std::string name = CanonicalEstimator(given_name);
  if (name != "vtrace") {
    const std::string owner = name.empty() ? "the server's default estimator (empty name)"
                                           : "estimator '" + name + "'";
    Refuse(owner, {{"rho_thresh", knobs.rho_thresh.has_value()},
                   {"c_thresh", knobs.c_thresh.has_value()},
                   {"rho_pg_thresh", knobs.rho_pg_thresh.has_value()}});
  }
  if (name == "td0" || name == "td1" || name.empty()) {
    const std::string owner = name.empty() ? "the server's default estimator (empty name)"
                                           : "estimator '" + name + "'";
    Refuse(owner, {{"lmbda", knobs.lmbda.has_value()}});
    if (name.empty()) Refuse(owner, {{"gamma", knobs.gamma.has_value()}});
  }
  if (name == "gae") {
    v1::GAE* gae = out->mutable_gae();
    if (knobs.gamma) *gae->mutable_gamma() = Scalar(*knobs.gamma);
    if (knobs.lmbda) *gae->mutable_lmbda() = Scalar(*knobs.lmbda);
  } else if (name == "td0") {
    v1::TD0* td0 = out->mutable_td0();
    if (knobs.gamma) *td0->mutable_gamma() = Scalar(*knobs.gamma);
  } else if (name == "td1") {
    v1::TD1* td1 = out->mutable_td1();
    if (knobs.gamma) *td1->mutable_gamma() = Scalar(*knobs.gamma);
  } else if (name == "td_lambda") {
    v1::TDLambda* td_lambda = out->mutable_td_lambda();
    if (knobs.gamma) *td_lambda->mutable_gamma() = Scalar(*knobs.gamma);
    if (knobs.lmbda) *td_lambda->mutable_lmbda() = Scalar(*knobs.lmbda);
  } else if (name == "vtrace") {
    v1::VTrace* vtrace = out->mutable_vtrace();
    if (knobs.gamma) *vtrace->mutable_gamma() = Scalar(*knobs.gamma);
    if (knobs.rho_thresh) vtrace->set_rho_thresh(*knobs.rho_thresh);
    if (knobs.c_thresh) vtrace->set_c_thresh(*knobs.c_thresh);
    if (knobs.lmbda) vtrace->set_lmbda(*knobs.lmbda);  // VTrace's λ is a plain double
    if (knobs.rho_pg_thresh) vtrace->set_rho_pg_thresh(*knobs.rho_pg_thresh);
  } else if (!name.empty()) {
    throw std::invalid_argument("unknown estimator '" + name +
                                "' (gae, td0, td1, td_lambda, vtrace, TorchRL's names such as "
                                "TDLambda, or empty)");
  }
}

// The PolicyLossOptions knobs, into `message.options` only when one is given.
template <typename Message>
void FillPolicyOptions(const LossKnobs& k, Message* message) {
  if (k.entropy_bonus) message->mutable_options()->set_entropy_bonus(*k.entropy_bonus);
  if (k.entropy_coeff) message->mutable_options()->set_entropy_coeff(*k.entropy_coeff);
  if (k.critic_coeff) message->mutable_options()->set_critic_coeff(*k.critic_coeff);
  if (k.loss_critic_type) message->mutable_options()->set_loss_critic_type(*k.loss_critic_type);
  if (k.normalize_advantage) {
    message->mutable_options()->set_normalize_advantage(*k.normalize_advantage);
  }
  if (k.clip_value) message->mutable_options()->set_clip_value(*k.clip_value);
}

void FillLoss(const std::string& name, const LossKnobs& k, v1::ComputeLossRequest* out) {
  const std::string owner = "loss '" + name + "'";
  const bool policy_family = name == "ppo_clip" || name == "ppo_kl" || name == "ppo" ||
                             name == "a2c" || name == "reinforce";
  if (name != "ppo_clip") {
    Refuse(owner, {{"clip_epsilon", k.clip_epsilon.has_value()},
                   {"clip_epsilon_low", k.clip_epsilon_low.has_value()},
                   {"clip_epsilon_high", k.clip_epsilon_high.has_value()}});
  }
  if (name != "ppo_kl") {
    Refuse(owner, {{"dtarg", k.dtarg.has_value()}, {"beta", k.beta.has_value()},
                   {"increment", k.increment.has_value()}, {"decrement", k.decrement.has_value()}});
  }
  if (name != "impala") {
    Refuse(owner, {{"gamma", k.gamma.has_value()}, {"lmbda", k.lmbda.has_value()},
                   {"rho_thresh", k.rho_thresh.has_value()}, {"c_thresh", k.c_thresh.has_value()},
                   {"rho_pg_thresh", k.rho_pg_thresh.has_value()}});
  }
  if (!policy_family) {
    Refuse(owner, {{"loss_critic_type", k.loss_critic_type.has_value()},
                   {"normalize_advantage", k.normalize_advantage.has_value()},
                   {"clip_value", k.clip_value.has_value()}});
  }
  if (name.empty()) {
    Refuse("the server's default loss (empty name)",
           {{"entropy_bonus", k.entropy_bonus.has_value()},
            {"entropy_coeff", k.entropy_coeff.has_value()},
            {"critic_coeff", k.critic_coeff.has_value()}});
    return;
  }
  if (name == "ppo_clip") {
    v1::ClipPPOLoss* loss = out->mutable_ppo_clip();
    FillPolicyOptions(k, loss);
    if (k.clip_epsilon) loss->set_clip_epsilon(*k.clip_epsilon);
    if (k.clip_epsilon_low) loss->set_clip_epsilon_low(*k.clip_epsilon_low);
    if (k.clip_epsilon_high) loss->set_clip_epsilon_high(*k.clip_epsilon_high);
  } else if (name == "ppo_kl") {
    v1::KLPENPPOLoss* loss = out->mutable_ppo_kl();
    FillPolicyOptions(k, loss);
    if (k.dtarg) loss->set_dtarg(*k.dtarg);
    if (k.beta) loss->set_beta(*k.beta);
    if (k.increment) loss->set_increment(*k.increment);
    if (k.decrement) loss->set_decrement(*k.decrement);
  } else if (name == "ppo") {
    FillPolicyOptions(k, out->mutable_ppo());
  } else if (name == "a2c") {
    FillPolicyOptions(k, out->mutable_a2c());
  } else if (name == "reinforce") {
    FillPolicyOptions(k, out->mutable_reinforce());
  } else if (name == "impala") {
    v1::ImpalaLoss* loss = out->mutable_impala();
    if (k.gamma) loss->set_gamma(*k.gamma);
    if (k.lmbda) loss->set_lmbda(*k.lmbda);
    if (k.rho_thresh) loss->set_rho_thresh(*k.rho_thresh);
    if (k.c_thresh) loss->set_c_thresh(*k.c_thresh);
    if (k.rho_pg_thresh) loss->set_rho_pg_thresh(*k.rho_pg_thresh);
    if (k.entropy_coeff) loss->set_entropy_coeff(*k.entropy_coeff);
    if (k.critic_coeff) loss->set_critic_coeff(*k.critic_coeff);
    if (k.entropy_bonus) loss->set_entropy_bonus(*k.entropy_bonus);
  } else {
    throw std::invalid_argument("unknown loss '" + name +
                                "' (ppo_clip, ppo_kl, ppo, a2c, reinforce, impala, or empty)");
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Error

const char* StatusCodeName(grpc::StatusCode code) noexcept {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN_STATUS_CODE";
  }
}

Error::Error(grpc::StatusCode code, std::string message)
    : std::runtime_error(std::string(StatusCodeName(code)) + ": " + message),
      code_(code),
      message_(std::move(message)) {}

const char* Error::code_name() const noexcept { return StatusCodeName(code_); }

// ---------------------------------------------------------------------------------------------
// Tensor

int64_t Tensor::NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("Tensor: negative dimension in " + ShapeString(shape));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) {
      throw std::invalid_argument("Tensor: element count of " + ShapeString(shape) +
                                  " overflows int64");
    }
    n *= d;
  }
  return n;
}

int64_t Tensor::ItemSize(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FLOAT32: return 4;
    case v1::DTYPE_FLOAT64: return 8;
    case v1::DTYPE_BOOL: return 1;
    case v1::DTYPE_INT64: return 8;
    case v1::DTYPE_INT32: return 4;
    case v1::DTYPE_FLOAT16: return 2;
    case v1::DTYPE_BFLOAT16: return 2;
    case v1::DTYPE_UINT8: return 1;
    default:
      throw std::invalid_argument("Tensor: no itemsize for dtype " + std::to_string(dtype));
  }
}

Shape Tensor::ShapeOf(const v1::Tensor& tensor) {
  return Shape(tensor.shape().begin(), tensor.shape().end());
}

v1::Tensor Tensor::Encode(const std::vector<float>& values, const Shape& shape) {
  return EncodeRaw(values, shape, v1::DTYPE_FLOAT32);
}

v1::Tensor Tensor::Encode(const std::vector<double>& values, const Shape& shape) {
  return EncodeRaw(values, shape, v1::DTYPE_FLOAT64);
}

v1::Tensor Tensor::Encode(const std::vector<int64_t>& values, const Shape& shape) {
  return EncodeRaw(values, shape, v1::DTYPE_INT64);
}

v1::Tensor Tensor::Encode(const std::vector<bool>& values, const Shape& shape) {
  // std::vector<bool> is bit-packed: one byte (0 or 1) per element goes on the wire.
  std::vector<uint8_t> bytes(values.begin(), values.end());
  return EncodeRaw(bytes, shape, v1::DTYPE_BOOL);
}

std::vector<float> Tensor::DecodeFloat32(const v1::Tensor& tensor) {
  return DecodeRaw<float>(tensor, v1::DTYPE_FLOAT32);
}

std::vector<double> Tensor::DecodeFloat64(const v1::Tensor& tensor) {
  return DecodeRaw<double>(tensor, v1::DTYPE_FLOAT64);
}

std::vector<bool> Tensor::DecodeBool(const v1::Tensor& tensor) {
  const auto bytes = DecodeRaw<uint8_t>(tensor, v1::DTYPE_BOOL);
  std::vector<bool> values(bytes.size());
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] > 1) {
      throw std::invalid_argument("Tensor::DecodeBool: byte " + std::to_string(i) + " is " +
                                  std::to_string(bytes[i]) + ", not 0 or 1");
    }
    values[i] = bytes[i] == 1;
  }
  return values;
}

std::vector<int64_t> Tensor::DecodeInt64(const v1::Tensor& tensor) {
  return DecodeRaw<int64_t>(tensor, v1::DTYPE_INT64);
}

std::vector<double> Tensor::DecodeAsDouble(const v1::Tensor& tensor) {
  if (tensor.dtype() == v1::DTYPE_FLOAT32) {
    const auto values = DecodeFloat32(tensor);
    return std::vector<double>(values.begin(), values.end());
  }
  if (tensor.dtype() == v1::DTYPE_FLOAT64) return DecodeFloat64(tensor);
  throw std::invalid_argument("Tensor::DecodeAsDouble: expected DTYPE_FLOAT32 or DTYPE_FLOAT64, got " +
                              v1::DType_Name(tensor.dtype()));
}

// ---------------------------------------------------------------------------------------------
// Request / Client

v1::Trajectory TrajectoryToProto(const TrajectoryFields& fields) {
  v1::Trajectory out;
  FillTrajectory(fields, &out);
  return out;
}

v1::ComputeAdvantageRequest ToProto(const AdvantageRequest& request) {
  v1::ComputeAdvantageRequest out;
  out.set_model_name(request.model_name);
  FillTrajectory(request, out.mutable_trajectory());
  FillEstimator(request.estimator, request, &out);
  if (request.min_parameter_version) out.set_min_parameter_version(*request.min_parameter_version);
  return out;
}

v1::ComputeLossRequest ToProto(const LossRequest& request) {
  v1::ComputeLossRequest out;
  out.set_model_name(request.model_name);
  FillTrajectory(request, out.mutable_trajectory());
  FillEstimator(request.estimator, request, &out);
  FillLoss(request.loss, request.loss_knobs, &out);
  if (request.advantage.has_value() != request.value_target.has_value()) {
    throw std::invalid_argument("give advantage and value_target together, or neither");
  }
  if (request.advantage) *out.mutable_advantage() = *request.advantage;
  if (request.value_target) *out.mutable_value_target() = *request.value_target;
  for (const auto& [key, tensor] : request.behaviour_distribution) {
    (*out.mutable_behaviour_distribution())[key] = tensor;
  }
  out.set_apply_update(request.apply_update);
  if (request.expected_parameter_version) {
    out.set_expected_parameter_version(*request.expected_parameter_version);
  }
  if (request.min_parameter_version) out.set_min_parameter_version(*request.min_parameter_version);
  return out;
}

v1::GetParametersRequest ToProto(const ParametersRequest& request) {
  v1::GetParametersRequest out;
  out.set_model_name(request.model_name);
  out.set_max_chunk_bytes(request.max_chunk_bytes);
  for (const std::string& prefix : request.prefixes) out.add_prefixes(prefix);
  if (request.min_parameter_version) out.set_min_parameter_version(*request.min_parameter_version);
  return out;
}

ModelInfo ModelInfo::FromProto(const v1::ModelInfo& message) {
  ModelInfo info;
  info.name = message.name();
  for (const v1::TensorSpec& spec : message.inputs()) {
    info.inputs.push_back({spec.name(), Shape(spec.shape().begin(), spec.shape().end()),
                           spec.dtype()});
  }
  info.has_value_network = message.has_value_network();
  info.has_actor_network = message.has_actor_network();
  info.action.distribution = message.action().distribution();
  info.action.shape = Shape(message.action().shape().begin(), message.action().shape().end());
  info.action.dtype = message.action().dtype();
  info.action.num_actions = message.action().num_actions();
  info.parameter_version = message.parameter_version();
  info.gamma = message.defaults().gamma();
  info.lmbda = message.defaults().lmbda();
  info.device = message.device();
  info.parameter_dtype = message.parameter_dtype();
  info.n_agents = message.n_agents();
  if (!message.agent_networks().empty()) info.agent_networks = message.agent_networks();
  info.message = message;
  return info;
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream content;
  if (file) content << file.rdbuf();
  if (!file || file.bad()) throw std::runtime_error("cannot read " + path);
  return content.str();
}

std::string DefaultServiceConfig() {
  return R"({
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": "advantage.v1.AdvantageService"},
  "methodConfig": [
    {
      "name": [{"service": "advantage.v1.AdvantageService"}],
      "retryPolicy": {
        "maxAttempts": 5,
        "initialBackoff": "0.05s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]
      }
    },
    {"name": [{"service": "advantage.v1.AdvantageService", "method": "SetParameters"}]}
  ]
})";
}

std::string ChannelTarget(const std::vector<std::string>& targets) {
  if (targets.empty()) throw std::invalid_argument("ChannelTarget: expected a non-empty list");
  if (targets.size() == 1) return targets.front();
  int family = 0;
  std::string joined;
  for (const std::string& address : targets) {
    const size_t colon = address.rfind(':');
    std::string host = colon == std::string::npos ? "" : address.substr(0, colon);
    const std::string port = colon == std::string::npos ? "" : address.substr(colon + 1);
    const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
    if (bracketed) host = host.substr(1, host.size() - 2);
    unsigned char buffer[16];
    const int this_family = bracketed ? (inet_pton(AF_INET6, host.c_str(), buffer) == 1 ? 6 : 0)
                                      : (inet_pton(AF_INET, host.c_str(), buffer) == 1 ? 4 : 0);
    const bool numeric_port =
        !port.empty() && port.find_first_not_of("0123456789") == std::string::npos;
    if (this_family == 0 || !numeric_port) {
      throw std::invalid_argument("ChannelTarget: '" + address +
                                  "' in a list is not 'ip:port' ('[ipv6]:port'); use a "
                                  "'dns:///name:port' target for a name that resolves to every "
                                  "server");
    }
    if (family != 0 && family != this_family) {
      throw std::invalid_argument("ChannelTarget: the list mixes IPv4 and IPv6 addresses");
    }
    family = this_family;
    if (!joined.empty()) joined += ",";
    joined += address;
  }
  return (family == 6 ? "ipv6:///" : "ipv4:///") + joined;
}

namespace {

std::shared_ptr<grpc::Channel> LimitedChannel(
    const std::string& target, const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(kMaxMessageBytes);
  arguments.SetMaxSendMessageSize(kMaxMessageBytes);
  arguments.SetServiceConfigJSON(DefaultServiceConfig());
  arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
  arguments.SetInt(GRPC_ARG_PER_RPC_RETRY_BUFFER_SIZE, kRetryBufferBytes);
  return grpc::CreateCustomChannel(target, credentials, arguments);
}

std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(const TlsOptions& tls) {
  if (tls.private_key.empty() != tls.certificate_chain.empty()) {
    throw std::invalid_argument(
        "TlsOptions: give private_key and certificate_chain together (mutual TLS), or neither");
  }
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = tls.root_certificates;
  options.pem_private_key = tls.private_key;
  options.pem_cert_chain = tls.certificate_chain;
  return grpc::SslCredentials(options);
}

}  // namespace

Client::Client(const std::string& target)
    : channel_(LimitedChannel(target, grpc::InsecureChannelCredentials())),
      stub_(v1::AdvantageService::NewStub(channel_)) {}

Client::Client(const std::string& target, const TlsOptions& tls)
    : channel_(LimitedChannel(target, TlsCredentials(tls))),
      stub_(v1::AdvantageService::NewStub(channel_)) {}

Client::Client(const std::vector<std::string>& targets) : Client(ChannelTarget(targets)) {}

Client::Client(const std::vector<std::string>& targets, const TlsOptions& tls)
    : Client(ChannelTarget(targets), tls) {}

Client::Client(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)), stub_(v1::AdvantageService::NewStub(channel_)) {}

void Client::Prepare(grpc::ClientContext* context, std::chrono::milliseconds deadline) const {
  if (deadline.count() > 0) context->set_deadline(std::chrono::system_clock::now() + deadline);
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
}

AdvantageResult Client::ComputeAdvantage(const AdvantageRequest& request) const {
  const v1::ComputeAdvantageRequest message = ToProto(request);
  grpc::ClientContext context;
  Prepare(&context, request.deadline);
  v1::ComputeAdvantageResponse response;
  const grpc::Status status = stub_->ComputeAdvantage(&context, message, &response);
  if (!status.ok()) throw Error(status.error_code(), status.error_message());

  AdvantageResult result;
  try {
    result.advantage = Tensor::DecodeAsDouble(response.advantage());
    result.value_target = Tensor::DecodeAsDouble(response.value_target());
    if (response.has_state_value()) {
      result.state_value = Tensor::DecodeAsDouble(response.state_value());
    }
    if (response.has_next_state_value()) {
      result.next_state_value = Tensor::DecodeAsDouble(response.next_state_value());
    }
  } catch (const std::invalid_argument& error) {
    throw Error(grpc::StatusCode::INTERNAL,
                std::string("malformed ComputeAdvantage response: ") + error.what());
  }
  result.shape = Tensor::ShapeOf(response.advantage());
  result.dtype = response.advantage().dtype();
  result.model_name = response.model_name();
  result.parameter_version = response.parameter_version();
  return result;
}

LossResult Client::ComputeLoss(const LossRequest& request) const {
  const v1::ComputeLossRequest message = ToProto(request);
  grpc::ClientContext context;
  Prepare(&context, request.deadline);
  v1::ComputeLossResponse response;
  const grpc::Status status = stub_->ComputeLoss(&context, message, &response);
  if (!status.ok()) throw Error(status.error_code(), status.error_message());
  LossResult result;
  result.loss = response.loss();
  result.metrics = std::map<std::string, double>(response.metrics().begin(),
                                                 response.metrics().end());
  result.model_name = response.model_name();
  result.parameter_version = response.parameter_version();
  result.updated = response.updated();
  result.new_parameter_version = response.new_parameter_version();
  result.grad_norm = response.grad_norm();
  return result;
}

std::vector<ModelInfo> Client::ListModels(std::chrono::milliseconds deadline) const {
  grpc::ClientContext context;
  Prepare(&context, deadline);
  v1::ListModelsResponse response;
  const grpc::Status status = stub_->ListModels(&context, v1::ListModelsRequest(), &response);
  if (!status.ok()) throw Error(status.error_code(), status.error_message());
  std::vector<ModelInfo> models;
  for (const v1::ModelInfo& model : response.models()) models.push_back(ModelInfo::FromProto(model));
  return models;
}

ModelInfo Client::GetModel(const std::string& model_name,
                           std::chrono::milliseconds deadline) const {
  grpc::ClientContext context;
  Prepare(&context, deadline);
  v1::GetModelRequest request;
  request.set_model_name(model_name);
  v1::GetModelResponse response;
  const grpc::Status status = stub_->GetModel(&context, request, &response);
  if (!status.ok()) throw Error(status.error_code(), status.error_message());
  return ModelInfo::FromProto(response.model());
}

Parameters Client::GetParameters(const ParametersRequest& request) const {
  grpc::ClientContext context;
  Prepare(&context, request.deadline);
  std::unique_ptr<grpc::ClientReader<v1::ParameterChunk>> reader(
      stub_->GetParameters(&context, ToProto(request)));
  Parameters result;
  std::map<std::string, int64_t> filled;  // elements received per name
  bool first = true;
  v1::ParameterChunk chunk;
  const auto malformed = [&context](const std::string& why) {
    context.TryCancel();
    return Error(grpc::StatusCode::INTERNAL, "malformed GetParameters stream: " + why);
  };
  while (reader->Read(&chunk)) {
    if (first) {
      result.model_name = chunk.model_name();
      result.parameter_version = chunk.parameter_version();
      first = false;
    } else if (chunk.parameter_version() != result.parameter_version) {
      throw malformed("chunks of versions " + std::to_string(result.parameter_version) + " and " +
                      std::to_string(chunk.parameter_version()));
    }
    for (const v1::NamedTensor& piece : chunk.tensors()) {
      const v1::DType dtype = piece.data().dtype();
      int64_t itemsize = 0;
      int64_t total = 0;
      int64_t count = 0;
      try {
        itemsize = Tensor::ItemSize(dtype);
        total = Tensor::NumElements(Shape(piece.shape().begin(), piece.shape().end()));
        count = Tensor::NumElements(Tensor::ShapeOf(piece.data()));
      } catch (const std::invalid_argument& error) {
        throw malformed(piece.name() + ": " + error.what());
      }
      auto [entry, inserted] = result.tensors.try_emplace(piece.name());
      v1::Tensor& full = entry->second;
      if (inserted) {
        full.set_dtype(dtype);
        for (int64_t d : piece.shape()) full.add_shape(d);
        full.mutable_raw_data()->assign(static_cast<size_t>(total * itemsize), '\0');
      }
      const int64_t offset = piece.offset();
      if (full.dtype() != dtype || offset < 0 || offset + count > total ||
          static_cast<int64_t>(piece.data().raw_data().size()) != count * itemsize) {
        throw malformed(piece.name() + ": a piece does not fit (offset " +
                        std::to_string(offset) + ", " + std::to_string(count) + " elements)");
      }
      std::memcpy(&(*full.mutable_raw_data())[static_cast<size_t>(offset * itemsize)],
                  piece.data().raw_data().data(), piece.data().raw_data().size());
      filled[piece.name()] += count;
    }
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) throw Error(status.error_code(), status.error_message());
  for (const auto& [name, tensor] : result.tensors) {
    const int64_t total = Tensor::NumElements(Tensor::ShapeOf(tensor));
    if (filled[name] != total) {
      throw Error(grpc::StatusCode::INTERNAL,
                  "malformed GetParameters stream: " + name + " got " +
                      std::to_string(filled[name]) + " of " + std::to_string(total) + " elements");
    }
  }
  return result;
}

SetParametersResult Client::SetParameters(const std::string& model_name,
                                          const std::map<std::string, v1::Tensor>& tensors,
                                          std::optional<int64_t> expected_version,
                                          int64_t max_chunk_bytes,
                                          std::chrono::milliseconds deadline) const {
  if (max_chunk_bytes <= 0) throw std::invalid_argument("max_chunk_bytes must be > 0");
  // Every chunk is built (and every tensor checked) before the stream opens.
  std::vector<v1::ParameterChunk> chunks(1);
  int64_t chunk_bytes = 0;
  for (const auto& [name, tensor] : tensors) {
    const int64_t itemsize = Tensor::ItemSize(tensor.dtype());
    const int64_t total = Tensor::NumElements(Tensor::ShapeOf(tensor));
    if (static_cast<int64_t>(tensor.raw_data().size()) != total * itemsize) {
      throw std::invalid_argument(name + ": raw_data holds " +
                                  std::to_string(tensor.raw_data().size()) + " bytes, the shape needs " +
                                  std::to_string(total * itemsize));
    }
    const int64_t per_piece = std::max<int64_t>(1, max_chunk_bytes / itemsize);
    int64_t offset = 0;
    do {
      const int64_t count = std::min(per_piece, total - offset);
      const int64_t bytes = count * itemsize;
      if (chunks.back().tensors_size() > 0 && chunk_bytes + bytes > max_chunk_bytes) {
        chunks.emplace_back();
        chunk_bytes = 0;
      }
      v1::NamedTensor* piece = chunks.back().add_tensors();
      piece->set_name(name);
      for (int64_t d : tensor.shape()) piece->add_shape(d);
      piece->set_offset(offset);
      piece->mutable_data()->set_dtype(tensor.dtype());
      piece->mutable_data()->add_shape(count);
      piece->mutable_data()->set_raw_data(tensor.raw_data().substr(
          static_cast<size_t>(offset * itemsize), static_cast<size_t>(bytes)));
      chunk_bytes += bytes;
      offset += count;
    } while (offset < total);
  }
  for (v1::ParameterChunk& chunk : chunks) chunk.set_model_name(model_name);
  if (expected_version) chunks.front().set_parameter_version(*expected_version);

  grpc::ClientContext context;
  Prepare(&context, deadline);
  v1::SetParametersResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::ParameterChunk>> writer(
      stub_->SetParameters(&context, &response));
  for (const v1::ParameterChunk& chunk : chunks) {
    if (!writer->Write(chunk)) break;  // the server answered early; Finish says why
  }
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  if (!status.ok()) throw Error(status.error_code(), status.error_message());
  return {response.model_name(), response.parameter_version(), response.tensors_updated()};
}

void Client::WatchModels(const std::vector<std::string>& model_names,
                         const std::function<bool(const ModelVersion&)>& on_version,
                         std::chrono::milliseconds deadline) const {
  grpc::ClientContext context;
  Prepare(&context, deadline);
  v1::WatchModelsRequest request;
  for (const std::string& name : model_names) request.add_model_names(name);
  std::unique_ptr<grpc::ClientReader<v1::ModelVersion>> reader(
      stub_->WatchModels(&context, request));
  v1::ModelVersion message;
  bool stopped = false;
  while (reader->Read(&message)) {
    if (!on_version({message.model_name(), message.parameter_version()})) {
      stopped = true;
      context.TryCancel();
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  if (stopped) return;  // cancelled by us: CANCELLED is the expected ending
  if (!status.ok()) throw Error(status.error_code(), status.error_message());
}

}  // namespace advantage
