// compute_gae: calls ComputeAdvantage on an advantage-service server three ways.
//
//   compute_gae [host:port]        (default 127.0.0.1:50051)
//   compute_gae ip:port,ip:port    (several servers, balanced round-robin, UNAVAILABLE retried)
//
// Environment: ADVANTAGE_AUTH_TOKEN (bearer token); ADVANTAGE_TLS_CA (PEM file of the server's
// CA: connect with TLS); ADVANTAGE_TLS_CLIENT_CERT and ADVANTAGE_TLS_CLIENT_KEY (PEM files: mutual
// TLS).
//
// 1. GAE on a small trajectory (B=2, T=5) with client-sent float64 state values, so the result
//    depends on nothing held by the server. Prints one line per step, machine-readable:
//      input  <b> <t> <reward> <done> <terminated> <state_value> <next_state_value>
//      result <b> <t> <advantage> <value_target>
//    after a header line `gae <gamma> <lmbda> <B> <T>`.
// 2. A malformed request (reward of the wrong shape): prints `error <STATUS_CODE> <message>`.
// 3. The same trajectory with observations instead of values (the server's value network):
//    prints `server_values model <name> version <parameter_version> shape <B> <T>`.
// 4. The same again with min_parameter_version = that version (read-your-writes): prints
//    `min_version <asked> served <parameter_version>`.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "advantage/client.h"

namespace {

constexpr int64_t kB = 2;
constexpr int64_t kT = 5;
constexpr double kGamma = 0.9;
constexpr double kLambda = 0.8;

// Single-line form of a status message (the server's messages may span lines).
std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

struct Trajectory {
  std::vector<double> reward, state_value, next_state_value;
  std::vector<bool> done, terminated;
};

// Row 0 terminates at t=1 and runs on to the segment's end (bootstrapped from V(s_5)).
// Row 1 is truncated at t=2 (done, not terminated: bootstraps from V(next_observation)) and
// terminates at its last step, t=4.
Trajectory MakeTrajectory() {
  Trajectory trajectory;
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t t = 0; t < kT; ++t) {
      const bool terminated = (b == 0 && t == 1) || (b == 1 && t == 4);
      const bool truncated = b == 1 && t == 2;
      trajectory.reward.push_back(0.25 * static_cast<double>(t + 1) - 0.3 * static_cast<double>(b));
      trajectory.done.push_back(terminated || truncated);
      trajectory.terminated.push_back(terminated);
      const double value = 0.5 + 0.1 * static_cast<double>(t) - 0.2 * static_cast<double>(b);
      trajectory.state_value.push_back(value);
      // V(s_{t+1}): the next step's value inside an episode, a fresh one after a truncation or
      // at the segment's end, and NaN where the episode terminated (the bootstrap is unused
      // there, and the contract allows NaN exactly at terminated steps).
      trajectory.next_state_value.push_back(terminated ? std::nan("") : value + 0.1 + 0.05 * b);
    }
  }
  return trajectory;
}

std::string EnvFile(const char* name) {
  const char* path = std::getenv(name);
  return path != nullptr && *path != '\0' ? advantage::ReadFile(path) : std::string();
}

// "a,b,c" → {"a", "b", "c"}.
std::vector<std::string> Split(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    parts.push_back(text.substr(start, comma - start));
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}

// Plaintext, or TLS when any ADVANTAGE_TLS_* file is given; one server or a comma-separated list.
advantage::Client MakeClient(const std::string& target) {
  advantage::TlsOptions tls;
  tls.root_certificates = EnvFile("ADVANTAGE_TLS_CA");
  tls.certificate_chain = EnvFile("ADVANTAGE_TLS_CLIENT_CERT");
  tls.private_key = EnvFile("ADVANTAGE_TLS_CLIENT_KEY");
  const std::vector<std::string> targets = Split(target);
  if (tls.root_certificates.empty() && tls.certificate_chain.empty() && tls.private_key.empty()) {
    return advantage::Client(targets);
  }
  return advantage::Client(targets, tls);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string target = argc > 1 ? argv[1] : "127.0.0.1:50051";
  try {
    advantage::Client client = MakeClient(target);
    if (const char* token = std::getenv("ADVANTAGE_AUTH_TOKEN")) client.set_token(token);
    const Trajectory data = MakeTrajectory();
    const advantage::Shape shape{kB, kT};

    // 1. GAE with client-sent values.
    advantage::AdvantageRequest request;
    request.reward = advantage::Tensor::Encode(data.reward, shape);
    request.done = advantage::Tensor::Encode(data.done, shape);
    request.terminated = advantage::Tensor::Encode(data.terminated, shape);
    request.state_value = advantage::Tensor::Encode(data.state_value, shape);
    request.next_state_value = advantage::Tensor::Encode(data.next_state_value, shape);
    request.estimator = "gae";
    request.gamma = kGamma;
    request.lmbda = kLambda;
    const advantage::AdvantageResult result = client.ComputeAdvantage(request);

    std::printf("gae %.17g %.17g %lld %lld\n", kGamma, kLambda, static_cast<long long>(kB),
                static_cast<long long>(kT));
    for (int64_t b = 0; b < kB; ++b) {
      for (int64_t t = 0; t < kT; ++t) {
        const size_t i = static_cast<size_t>(b * kT + t);
        std::printf("input %lld %lld %.17g %d %d %.17g %.17g\n", static_cast<long long>(b),
                    static_cast<long long>(t), data.reward[i], data.done[i] ? 1 : 0,
                    data.terminated[i] ? 1 : 0, data.state_value[i], data.next_state_value[i]);
      }
    }
    for (int64_t b = 0; b < kB; ++b) {
      for (int64_t t = 0; t < kT; ++t) {
        const size_t i = static_cast<size_t>(b * kT + t);
        std::printf("result %lld %lld %.17g %.17g\n", static_cast<long long>(b),
                    static_cast<long long>(t), result.advantage[i], result.value_target[i]);
      }
    }

    // 2. A reward of the wrong shape: the server answers INVALID_ARGUMENT naming the field that
    //    disagrees with it (here "trajectory.done: expected shape [2, 4] ...").
    advantage::AdvantageRequest bad = request;
    bad.reward = advantage::Tensor::Encode(std::vector<double>(kB * (kT - 1), 1.0), {kB, kT - 1});
    try {
      client.ComputeAdvantage(bad);
      std::fprintf(stderr, "compute_gae: the malformed request was accepted\n");
      return 1;
    } catch (const advantage::Error& error) {
      std::printf("error %s %s\n", error.code_name(), OneLine(error.message()).c_str());
    }

    // 3. Server-held values: the demo model's value network reads a float32 observation [4].
    advantage::AdvantageRequest held;
    held.reward = request.reward;
    held.done = request.done;
    held.terminated = request.terminated;
    std::vector<float> observation, next_observation;
    for (int64_t i = 0; i < kB * kT * 4; ++i) {
      observation.push_back(0.01f * static_cast<float>(i));
      next_observation.push_back(0.01f * static_cast<float>(i + 4));
    }
    held.observation["observation"] = advantage::Tensor::Encode(observation, {kB, kT, 4});
    held.next_observation["observation"] = advantage::Tensor::Encode(next_observation, {kB, kT, 4});
    held.estimator = "GAE";  // TorchRL's name works too; the model's default γ and λ
    const advantage::AdvantageResult served = client.ComputeAdvantage(held);
    std::printf("server_values model %s version %lld shape %lld %lld\n", served.model_name.c_str(),
                static_cast<long long>(served.parameter_version),
                static_cast<long long>(served.shape.at(0)),
                static_cast<long long>(served.shape.at(1)));

    // 4. Read-your-writes: this version or a later one (a replica waits for it briefly).
    held.min_parameter_version = served.parameter_version;
    const advantage::AdvantageResult again = client.ComputeAdvantage(held);
    std::printf("min_version %lld served %lld\n",
                static_cast<long long>(*held.min_parameter_version),
                static_cast<long long>(again.parameter_version));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "compute_gae: %s\n", error.what());
    return 1;
  }
  return 0;
}
