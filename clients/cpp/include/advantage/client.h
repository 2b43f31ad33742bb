// C++ client of advantage-service (proto/advantage/v1/advantage.proto).
//
// A thin typed layer over the generated stubs: tensor encode/decode helpers and a blocking
// `Client::ComputeAdvantage`. Every other RPC is reachable through `Client::stub()`.
// A client balances its calls round-robin over every server of its target (a list of
// "ip:port", or a "dns:///name:port" that resolves to several replicas) and retries a call
// answered UNAVAILABLE on the next server: DefaultServiceConfig().
// Tensors on the wire are dtype + shape + raw little-endian row-major bytes (proto/README.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "advantage/offpolicy.h"
#include "advantage/v1/advantage.grpc.pb.h"

namespace advantage {

using Shape = std::vector<int64_t>;

// A failed call: the gRPC status code and the server's message (which names the offending
// field for INVALID_ARGUMENT, e.g. "trajectory.reward ...").
class Error : public std::runtime_error {
 public:
  Error(grpc::StatusCode code, std::string message);
  grpc::StatusCode code() const noexcept { return code_; }
  // "INVALID_ARGUMENT", "NOT_FOUND", ... (the canonical upper-case name).
  const char* code_name() const noexcept;
  // The status message alone (what() is "<CODE_NAME>: <message>").
  const std::string& message() const noexcept { return message_; }

 private:
  grpc::StatusCode code_;
  std::string message_;
};

// Canonical name of a status code ("OK", "INVALID_ARGUMENT", ...).
const char* StatusCodeName(grpc::StatusCode code) noexcept;

// Encode/decode helpers between std::vector and the wire Tensor. Encoding copies the values'
// bytes as they are (the host must be little-endian, checked at compile time where the compiler
// tells); decoding checks dtype and that raw_data holds exactly prod(shape) × itemsize bytes.
// Both throw std::invalid_argument on a mismatch.
struct Tensor {
  static v1::Tensor Encode(const std::vector<float>& values, const Shape& shape);   // FLOAT32
  static v1::Tensor Encode(const std::vector<double>& values, const Shape& shape);  // FLOAT64
  static v1::Tensor Encode(const std::vector<bool>& values, const Shape& shape);    // BOOL

  static std::vector<float> DecodeFloat32(const v1::Tensor& tensor);
  static std::vector<double> DecodeFloat64(const v1::Tensor& tensor);
  static std::vector<bool> DecodeBool(const v1::Tensor& tensor);
  // FLOAT32 (widened exactly) or FLOAT64 as doubles.
  static std::vector<double> DecodeAsDouble(const v1::Tensor& tensor);

  // prod(shape); 1 for a scalar (empty shape). Throws on a negative dimension or overflow.
  static int64_t NumElements(const Shape& shape);
  // Bytes per element of a dtype; throws for DTYPE_UNSPECIFIED or an unknown value.
  static int64_t ItemSize(v1::DType dtype);
  // The shape of a wire tensor as a vector.
  static Shape ShapeOf(const v1::Tensor& tensor);
};

// Observation layout (see TrajectoryForm in the .proto).
enum class Form { kFull, kCompact };

// One ComputeAdvantage call. Per-step tensors are [*B, T] (time last); build them with
// Tensor::Encode. `reward`'s dtype (float32/float64) is the computation's dtype.
struct AdvantageRequest {
  std::string model_name;                   // empty = the server's default model
  v1::Tensor reward;                        // [*B, T] float32 or float64
  v1::Tensor done;                          // [*B, T] bool
  std::optional<v1::Tensor> terminated;     // [*B, T] bool; absent = done
  // Send both to skip the server's value network (reward's dtype, [*B, T]).
  std::optional<v1::Tensor> state_value;
  std::optional<v1::Tensor> next_state_value;
  // Network inputs keyed by the model's input names: [*B, T, *obs] (full form) or
  // [*B, T + 1, *obs] and [K, *obs] (compact form).
  std::map<std::string, v1::Tensor> observation;
  std::map<std::string, v1::Tensor> next_observation;
  // For V-trace.
  std::optional<v1::Tensor> action;
  std::optional<v1::Tensor> sample_log_prob;
  std::optional<v1::Tensor> log_prob;

  // "gae", "td0", "td1", "td_lambda", "vtrace"; empty = the server's default (GAE with the
  // model's γ and λ).
  std::string estimator = "gae";
  std::optional<double> gamma;  // absent = the model's default
  std::optional<double> lmbda;  // absent = the model's default (not used by td0/td1)
  Form form = Form::kFull;
  // Read-your-writes: compute with this parameter version or a later one. A replica that does
  // not hold it yet waits briefly, then answers UNAVAILABLE (retried on the next server); the
  // learner answers FAILED_PRECONDITION for a version it has not reached.
  std::optional<int64_t> min_parameter_version;
  // Per-call deadline; zero or negative = none.
  std::chrono::milliseconds deadline{std::chrono::seconds(30)};
};

struct AdvantageResult {
  std::vector<double> advantage;     // row-major [*B, T], widened to double if float32
  std::vector<double> value_target;  // row-major [*B, T]
  // V(s_t), V(s_{t+1}) as the server computed them; empty when the request sent them.
  std::vector<double> state_value;
  std::vector<double> next_state_value;
  Shape shape;                       // [*B, T]
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;  // the reward's dtype
  std::string model_name;
  int64_t parameter_version = 0;
};

// Builds the wire request (throws std::invalid_argument for an unknown estimator name).
v1::ComputeAdvantageRequest ToProto(const AdvantageRequest& request);

// TLS for a server started with --tls-cert: PEM contents (not paths; see ReadFile).
struct TlsOptions {
  // CA certificate(s) that signed the server's certificate; empty = the system's roots.
  std::string root_certificates;
  // Mutual TLS (a server started with --tls-client-ca): this client's private key and its
  // certificate chain, signed by that CA. Both or neither.
  std::string private_key;
  std::string certificate_chain;
};

// The whole content of a file (e.g. a PEM file); throws std::runtime_error naming the path if it
// cannot be read.
std::string ReadFile(const std::string& path);

// The gRPC service config of the Client's channels (JSON): round_robin over every address of
// the target, only to servers whose gRPC health is SERVING, and up to 5 attempts of a call
// answered UNAVAILABLE, each on the next server (SetParameters is never retried; give an
// apply_update ComputeLoss expected_parameter_version so that a retried step cannot apply twice).
std::string DefaultServiceConfig();

// The gRPC target for a list of servers: one "ipv4:///a:p,b:q" (or "ipv6:///[a]:p,...")
// target; a list of one is returned as it is. Throws std::invalid_argument for an empty list, an
// entry that is not "ip:port" ("[ipv6]:port"; use a "dns:///name:port" target for names) or a
// list mixing IPv4 and IPv6.
std::string ChannelTarget(const std::vector<std::string>& targets);

class Client {
 public:
  // Plaintext channel to `target` ("host:port", or "dns:///name:port"), with 256 MiB
  // send/receive limits (as the Python client) and DefaultServiceConfig().
  explicit Client(const std::string& target);
  // TLS channel (grpc::SslCredentials) to `target`, with the same limits. Throws
  // std::invalid_argument when only one of private_key and certificate_chain is given.
  Client(const std::string& target, const TlsOptions& tls);
  // The same over a list of servers ("ip:port" each, see ChannelTarget), balanced round-robin.
  explicit Client(const std::vector<std::string>& targets);
  Client(const std::vector<std::string>& targets, const TlsOptions& tls);
  // Any channel (TLS, custom arguments, ...).
  explicit Client(std::shared_ptr<grpc::Channel> channel);

  // Throws advantage::Error with the status code and message on failure (and
  // std::invalid_argument for a request that cannot be built).
  AdvantageResult ComputeAdvantage(const AdvantageRequest& request) const;

  // An off-policy loss (include/advantage/offpolicy.h) and, with apply_update, one step that
  // also moves the server's target networks. Throws as ComputeAdvantage.
  OffPolicyResult ComputeOffPolicyLoss(const OffPolicyRequest& request) const;

  // Bearer token for a server started with an auth token: ComputeAdvantage sends it as the
  // "authorization" metadata. For calls through stub(), add it to your grpc::ClientContext.
  void set_token(std::string token) { token_ = std::move(token); }

  // The generated stub, for the other RPCs (GetModel, ComputeLoss, GetParameters, ...).
  v1::AdvantageService::Stub& stub() const { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AdvantageService::Stub> stub_;
  std::string token_;
};

}  // namespace advantage
