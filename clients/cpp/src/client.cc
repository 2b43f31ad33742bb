#include "advantage/client.h"

#include <arpa/inet.h>

#include <cstring>
#include <fstream>
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

// Sets gamma (and lmbda when the message has one) on an estimator message.
template <typename Message>
void SetGamma(Message* message, const AdvantageRequest& request) {
  if (request.gamma) *message->mutable_gamma() = Scalar(*request.gamma);
}

template <typename Message>
void SetGammaLambda(Message* message, const AdvantageRequest& request) {
  SetGamma(message, request);
  if (request.lmbda) *message->mutable_lmbda() = Scalar(*request.lmbda);
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

v1::Trajectory TrajectoryToProto(const AdvantageRequest& request) {
  v1::Trajectory out;
  v1::Trajectory* trajectory = &out;
  *trajectory->mutable_reward() = request.reward;
  *trajectory->mutable_done() = request.done;
  if (request.terminated) *trajectory->mutable_terminated() = *request.terminated;
  if (request.state_value) *trajectory->mutable_state_value() = *request.state_value;
  if (request.next_state_value) *trajectory->mutable_next_state_value() = *request.next_state_value;
  if (request.action) *trajectory->mutable_action() = *request.action;
  if (request.sample_log_prob) *trajectory->mutable_sample_log_prob() = *request.sample_log_prob;
  if (request.log_prob) *trajectory->mutable_log_prob() = *request.log_prob;
  if (request.mask) *trajectory->mutable_mask() = *request.mask;
  for (const auto& [key, tensor] : request.observation) {
    (*trajectory->mutable_observation())[key] = tensor;
  }
  for (const auto& [key, tensor] : request.next_observation) {
    (*trajectory->mutable_next_observation())[key] = tensor;
  }
  for (const auto& [key, tensor] : request.action_heads) {
    (*trajectory->mutable_action_heads())[key] = tensor;
  }
  for (const auto& [key, tensor] : request.sample_log_prob_heads) {
    (*trajectory->mutable_sample_log_prob_heads())[key] = tensor;
  }
  for (const auto& [key, tensor] : request.log_prob_heads) {
    (*trajectory->mutable_log_prob_heads())[key] = tensor;
  }
  trajectory->set_n_agents(request.n_agents);
  trajectory->set_form(request.form == Form::kCompact ? v1::TRAJECTORY_FORM_COMPACT
                                                      : v1::TRAJECTORY_FORM_FULL);
  return out;
}

v1::ComputeAdvantageRequest ToProto(const AdvantageRequest& request) {
  v1::ComputeAdvantageRequest out;
  out.set_model_name(request.model_name);
  *out.mutable_trajectory() = TrajectoryToProto(request);
  const std::string& name = request.estimator;
  const bool has_lmbda = name == "gae" || name == "td_lambda" || name == "vtrace";
  if (request.min_parameter_version) out.set_min_parameter_version(*request.min_parameter_version);
  if (request.lmbda && !has_lmbda) {
    throw std::invalid_argument("estimator '" + name + "' takes no lmbda");
  }
  if (name == "gae") {
    SetGammaLambda(out.mutable_gae(), request);
  } else if (name == "td0") {
    SetGamma(out.mutable_td0(), request);
  } else if (name == "td1") {
    SetGamma(out.mutable_td1(), request);
  } else if (name == "td_lambda") {
    SetGammaLambda(out.mutable_td_lambda(), request);
  } else if (name == "vtrace") {
    v1::VTrace* vtrace = out.mutable_vtrace();
    SetGamma(vtrace, request);
    if (request.lmbda) vtrace->set_lmbda(*request.lmbda);  // VTrace's λ is a plain double
  } else if (name.empty()) {
    if (request.gamma) throw std::invalid_argument("gamma needs an estimator name");
  } else {
    throw std::invalid_argument("unknown estimator '" + name +
                                "' (gae, td0, td1, td_lambda, vtrace, or empty)");
  }
  return out;
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

AdvantageResult Client::ComputeAdvantage(const AdvantageRequest& request) const {
  const v1::ComputeAdvantageRequest message = ToProto(request);
  grpc::ClientContext context;
  if (request.deadline.count() > 0) {
    context.set_deadline(std::chrono::system_clock::now() + request.deadline);
  }
  if (!token_.empty()) context.AddMetadata("authorization", "Bearer " + token_);
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

}  // namespace advantage
