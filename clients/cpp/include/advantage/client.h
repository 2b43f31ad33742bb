// C++ client of advantage-service (proto/advantage/v1/advantage.proto).
//
// A thin typed layer over the generated stubs: tensor encode/decode helpers and blocking typed
// calls for every RPC (ComputeAdvantage, ComputeLoss, ListModels, GetModel, GetParameters,
// SetParameters, WatchModels). The generated stub stays reachable through `Client::stub()`.
// A client balances its calls round-robin over every server of its target (a list of
// "ip:port", or a "dns:///name:port" that resolves to several replicas) and retries a call
// answered UNAVAILABLE on the next server: DefaultServiceConfig().
// Tensors on the wire are dtype + shape + raw little-endian row-major bytes (proto/README.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
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
  static v1::Tensor Encode(const std::vector<int64_t>& values, const Shape& shape); // INT64

  static std::vector<float> DecodeFloat32(const v1::Tensor& tensor);
  static std::vector<double> DecodeFloat64(const v1::Tensor& tensor);
  static std::vector<bool> DecodeBool(const v1::Tensor& tensor);
  static std::vector<int64_t> DecodeInt64(const v1::Tensor& tensor);
  // FLOAT32 (widened exactly) or FLOAT64 as doubles.
  static std::vector<double> DecodeAsDouble(const v1::Tensor& tensor);

  // prod(shape); 1 for a scalar (empty shape). Throws on a negative dimension or overflow.
  static int64_t NumElements(const Shape& shape);
  // Bytes per element of a dtype; throws for DTYPE_UNSPECIFIED or an unknown value.
  static int64_t ItemSize(v1::DType dtype);
  // The shape of a wire tensor as a vector.
  static Shape ShapeOf(const v1::Tensor& tensor);
};

// Observation layout (see TrajectoryForm in the .proto and proto/README.md, "the two forms").
// kFull sends the observations as given. kCompact sends each observation once: full-form
// observations [*B, T, *obs] are converted (CompactObservations) and refused with
// std::invalid_argument when they do not chain; observations that already have T + 1 steps are
// sent as given. kAuto (the default) sends the compact form when the data allows it (no agents;
// every observation key has a next observation of the same shape and dtype; the observations
// chain), else the full form: the server's numbers are the same either way, and the compact
// form is about half the observation bytes.
enum class Form { kFull, kCompact, kAuto };

// The trajectory of a ComputeAdvantage or ComputeLoss call. Per-step tensors are [*B, T] (time
// last); build them with Tensor::Encode. `reward`'s dtype (float32/float64) is the computation's
// dtype.
struct TrajectoryFields {
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
  // For V-trace and the losses: [*B, T] int64 (categorical) or [*B, T, *action] float.
  std::optional<v1::Tensor> action;
  std::optional<v1::Tensor> sample_log_prob;  // behaviour policy's log-probability, [*B, T]
  std::optional<v1::Tensor> log_prob;         // current policy's (V-trace without the actor)
  // A composite policy (ModelInfo.action.heads): one action per head, [*B, T, *head_shape]
  // (int64 for categorical heads), instead of `action`; behaviour (and current) log-probabilities
  // per head, [*B, T] each, instead of the aggregated ones (TorchRL's non-aggregate mode).
  std::map<std::string, v1::Tensor> action_heads;
  std::map<std::string, v1::Tensor> sample_log_prob_heads;
  std::map<std::string, v1::Tensor> log_prob_heads;
  // [*B, T] bool, false at padded steps (TorchRL's ("collector", "mask")): they get 0, and a
  // valid step followed by padding ends its segment.
  std::optional<v1::Tensor> mask;
  // Agents per step (0 = none): per-agent tensors are [*B, T, n_agents, ...] (proto/README.md).
  uint32_t n_agents = 0;

  Form form = Form::kAuto;
};

// The form ToProto sends for `fields` (kFull or kCompact): kAuto resolved as described at Form.
Form WireForm(const TrajectoryFields& fields);

// One observation key in the compact form (CompactObservations).
struct CompactObservation {
  v1::Tensor observation;       // [*B, T + 1, *obs]
  v1::Tensor next_observation;  // [K, *obs]
};

// Full-form observations → the compact form (TRAJECTORY_FORM_COMPACT), as the Python and
// TypeScript clients' compact_observations: `observation` and `next_observation` are
// [*B, T, *obs] of one dtype, `done` (and `terminated`, absent = done) [*B, T] bool. Returns the
// T observations of each row followed by the next observation of its last step, [*B, T + 1, *obs],
// and the next observations of the K truncated steps (done and not terminated), in row-major
// order of their [*B, T] index, [K, *obs]. Throws std::invalid_argument naming `key` for
// mismatched shapes or dtypes, and when next_observation[t] != observation[t + 1] (compared by
// value) at a step t that is not done: the compact form cannot carry such data.
CompactObservation CompactObservations(const v1::Tensor& observation,
                                       const v1::Tensor& next_observation, const v1::Tensor& done,
                                       const std::optional<v1::Tensor>& terminated = std::nullopt,
                                       const std::string& key = "observation");

// The estimator of a request and its knobs (each absent knob: the model's default, or the
// estimator's). Knobs an estimator does not take are refused with std::invalid_argument.
struct EstimatorKnobs {
  std::optional<double> gamma;          // every estimator
  std::optional<double> lmbda;          // td_lambda, gae, vtrace (V-trace's is a plain double)
  std::optional<double> rho_thresh;     // vtrace: ρ̄
  std::optional<double> c_thresh;       // vtrace: c̄
  std::optional<double> rho_pg_thresh;  // vtrace: ρ̄_pg
};

// One ComputeAdvantage call.
struct AdvantageRequest : TrajectoryFields, EstimatorKnobs {
  std::string model_name;                   // empty = the server's default model
  // "gae", "td0", "td1", "td_lambda", "vtrace", or TorchRL's names for them (ValueEstimators
  // members "GAE", "TDLambda", …, classes "TDLambdaEstimator", …; case, '_' and '-' ignored);
  // empty = the server's default (GAE with the model's γ and λ).
  std::string estimator = "gae";
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

// The knobs of the losses (absent = TorchRL's defaults). ToProto puts the PolicyLossOptions ones
// into the loss message's `options` (not for impala, whose knobs are all its own) and refuses a
// knob the chosen loss does not take.
struct LossKnobs {
  // PolicyLossOptions: ppo_clip, ppo_kl, ppo, a2c, reinforce (impala: entropy_bonus,
  // entropy_coeff, critic_coeff as its own fields).
  std::optional<bool> entropy_bonus;
  std::optional<double> entropy_coeff;
  std::optional<double> critic_coeff;
  std::optional<v1::CriticLoss> loss_critic_type;
  std::optional<bool> normalize_advantage;
  std::optional<double> clip_value;
  // ppo_clip
  std::optional<double> clip_epsilon;
  std::optional<double> clip_epsilon_low;
  std::optional<double> clip_epsilon_high;
  // ppo_kl
  std::optional<double> dtarg;
  std::optional<double> beta;
  std::optional<double> increment;
  std::optional<double> decrement;
  // impala
  std::optional<double> gamma;
  std::optional<double> lmbda;
  std::optional<double> rho_thresh;
  std::optional<double> c_thresh;
  std::optional<double> rho_pg_thresh;
};

// One ComputeLoss call: the trajectory needs observation, action and sample_log_prob.
struct LossRequest : TrajectoryFields, EstimatorKnobs {
  std::string model_name;  // empty = the server's default model
  // The advantage's estimator, as AdvantageRequest::estimator; empty (the default here) = the
  // server's GAE with the model's γ, λ. Not for impala, which computes its own targets.
  std::string estimator;
  // "ppo_clip", "ppo_kl", "ppo", "a2c", "reinforce", "impala"; empty = the server's default
  // (ppo_clip with TorchRL's defaults, no knobs allowed).
  std::string loss = "ppo_clip";
  LossKnobs loss_knobs;
  // Precomputed advantage and value target, [*B, T] (both or neither: the estimator is skipped).
  std::optional<v1::Tensor> advantage;
  std::optional<v1::Tensor> value_target;
  // ppo_kl: the behaviour policy's distribution parameters ("logits", or "loc" and "scale").
  std::map<std::string, v1::Tensor> behaviour_distribution;
  // Take one optimizer step on the server's networks.
  bool apply_update = false;
  // Refuse (FAILED_PRECONDITION) unless the model is at this version.
  std::optional<int64_t> expected_parameter_version;
  std::optional<int64_t> min_parameter_version;  // as AdvantageRequest's
  std::chrono::milliseconds deadline{std::chrono::seconds(30)};
};

struct LossResult {
  double loss = 0;                        // the sum of the loss_* metrics
  std::map<std::string, double> metrics;  // TorchRL's names (loss_objective, entropy, ...)
  std::string model_name;
  int64_t parameter_version = 0;      // the version the loss was computed with
  bool updated = false;               // whether an optimizer step was applied
  int64_t new_parameter_version = 0;  // the version after the call
  double grad_norm = 0;               // before clipping, when updated
};

// Builds the wire request (throws std::invalid_argument for an unknown estimator or loss, or a
// knob the chosen one does not take).
v1::ComputeLossRequest ToProto(const LossRequest& request);

// One network input of a model: its key, per-step shape and dtype.
struct InputSpec {
  std::string name;
  Shape shape;
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;
};

// The actor's policy (distribution DISTRIBUTION_UNSPECIFIED without an actor network).
struct ActionSpec {
  v1::Distribution distribution = v1::DISTRIBUTION_UNSPECIFIED;
  Shape shape;
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;
  int64_t num_actions = 0;
};

// Description of a server-held model (ListModels, GetModel).
struct ModelInfo {
  std::string name;
  std::vector<InputSpec> inputs;
  bool has_value_network = false;
  bool has_actor_network = false;
  ActionSpec action;
  int64_t parameter_version = 0;
  double gamma = 0;  // the model's default γ
  double lmbda = 0;  // the model's default λ
  std::string device;
  v1::DType parameter_dtype = v1::DTYPE_UNSPECIFIED;
  uint32_t n_agents = 0;                   // agents per step the networks serve (0 = any)
  std::string agent_networks = "shared";   // "shared" or "per_agent" (proto ModelInfo)
  // The whole message, for what has no typed field here: a composite actor's heads
  // (message.action().heads()), the world model, the Q-networks and their target rule.
  v1::ModelInfo message;

  static ModelInfo FromProto(const v1::ModelInfo& message);
};

// One GetParameters call.
struct ParametersRequest {
  std::string model_name;              // empty = the server's default model
  std::vector<std::string> prefixes;   // only names starting with one of these; empty = all
  int64_t max_chunk_bytes = 0;         // largest raw_data per chunk; 0 = the server's (1 MiB)
  std::optional<int64_t> min_parameter_version;
  std::chrono::milliseconds deadline{std::chrono::seconds(60)};
};

v1::GetParametersRequest ToProto(const ParametersRequest& request);

// A model's parameters, reassembled from the stream: name → the full tensor (its dtype, shape
// and raw bytes; read them with Tensor::DecodeFloat32 etc.).
struct Parameters {
  std::string model_name;
  int64_t parameter_version = 0;
  std::map<std::string, v1::Tensor> tensors;
};

struct SetParametersResult {
  std::string model_name;
  int64_t parameter_version = 0;  // the version after the update
  int64_t tensors_updated = 0;
};

// A model's version, as WatchModels streams it.
struct ModelVersion {
  std::string model_name;
  int64_t parameter_version = 0;
};

// The trajectory part of a request alone (heads, mask, agents included), as ToProto builds it:
// for a message sent through Client::stub().
v1::Trajectory TrajectoryToProto(const TrajectoryFields& fields);

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

  // Every call throws advantage::Error with the status code and message on failure (and
  // std::invalid_argument for a request that cannot be built).
  AdvantageResult ComputeAdvantage(const AdvantageRequest& request) const;
  // A loss on the server's networks; with apply_update also one optimizer step.
  LossResult ComputeLoss(const LossRequest& request) const;
  // Every model the server holds, sorted by name.
  std::vector<ModelInfo> ListModels(
      std::chrono::milliseconds deadline = std::chrono::seconds(30)) const;
  // One model ("" = the server's default); NOT_FOUND for an unknown name.
  ModelInfo GetModel(const std::string& model_name = "",
                     std::chrono::milliseconds deadline = std::chrono::seconds(30)) const;
  // A consistent snapshot of a model's parameters (every chunk of one version), reassembled.
  Parameters GetParameters(const ParametersRequest& request) const;
  // Replace some or all of a model's parameters, all or nothing (full shapes and dtypes, as
  // GetParameters returns them), sent in chunks of at most `max_chunk_bytes` of raw data. With
  // `expected_version`, FAILED_PRECONDITION unless the model is at that version.
  SetParametersResult SetParameters(const std::string& model_name,
                                    const std::map<std::string, v1::Tensor>& tensors,
                                    std::optional<int64_t> expected_version = std::nullopt,
                                    int64_t max_chunk_bytes = 1 << 20,
                                    std::chrono::milliseconds deadline = std::chrono::seconds(60)) const;
  // Stream the versions of `model_names` (empty = every model): first each one's current
  // version, then one call of `on_version` per new version. Returns when `on_version` returns
  // false (the stream is then cancelled), when the server ends the stream, or at the deadline
  // (zero = none), which throws Error(DEADLINE_EXCEEDED).
  void WatchModels(const std::vector<std::string>& model_names,
                   const std::function<bool(const ModelVersion&)>& on_version,
                   std::chrono::milliseconds deadline = std::chrono::milliseconds(0)) const;

  // An off-policy loss (include/advantage/offpolicy.h) and, with apply_update, one step that
  // also moves the server's target networks. Throws as ComputeAdvantage.
  OffPolicyResult ComputeOffPolicyLoss(const OffPolicyRequest& request) const;


  // Bearer token for a server started with an auth token: every typed call sends it as the
  // "authorization" metadata. For calls through stub(), add it to your grpc::ClientContext.
  void set_token(std::string token) { token_ = std::move(token); }
  const std::string& token() const noexcept { return token_; }

  // The generated stub, for the other RPCs (GetModel, ComputeLoss, GetParameters, ...).
  v1::AdvantageService::Stub& stub() const { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  // A context with the deadline (zero or negative: none) and the token.
  void Prepare(grpc::ClientContext* context, std::chrono::milliseconds deadline) const;

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AdvantageService::Stub> stub_;
  std::string token_;
};

}  // namespace advantage
