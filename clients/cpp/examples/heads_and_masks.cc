// heads_and_masks: a padded batch and a two-head policy over the C++ client.
//
//   heads_and_masks [host:port]   (a server holding the two-head demo model "demo_heads":
//                                  advantage-service export-model DIR/demo_heads --two-heads)
//
// 1. GAE (γ 0.9, λ 0.8) on B=2, T=5 float64 client-sent values with a mask: row 1 has 3 valid
//    steps and NaN padding. Prints `input <b> <t> <reward> <done> <terminated> <state_value>
//    <next_state_value> <mask>` and `result <b> <t> <advantage> <value_target>` lines.
// 2. ComputeLoss (ClipPPO, through stub()) on "demo_heads" with per-head actions ("move" int64,
//    "aim" float32 [2]) and per-head behaviour log-probabilities, with the same mask: prints
//    `loss <loss> entropy <entropy> move_entropy <...> aim_entropy <...>`.
// 3. The same without the "aim" head's actions: prints `missing_head <STATUS_CODE> <message>`.
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "advantage/client.h"

namespace {

constexpr int64_t kB = 2;
constexpr int64_t kT = 5;
constexpr int64_t kValid[kB] = {5, 3};

std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

std::vector<bool> Mask() {
  std::vector<bool> mask;
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t t = 0; t < kT; ++t) mask.push_back(t < kValid[b]);
  }
  return mask;
}

void MaskedGae(const advantage::Client& client) {
  advantage::AdvantageRequest request;
  request.model_name = "demo_heads";
  std::vector<double> reward, value, next_value;
  std::vector<bool> done, terminated;
  const std::vector<bool> mask = Mask();
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t t = 0; t < kT; ++t) {
      const bool valid = mask[b * kT + t];
      const bool ends = b == 0 && t == 2;  // row 0 terminates at t=2; row 1 is cut by padding
      reward.push_back(valid ? 0.3 * static_cast<double>(t + 1) - 0.2 * static_cast<double>(b)
                             : std::nan(""));
      done.push_back(ends);
      terminated.push_back(ends);
      value.push_back(0.4 + 0.1 * static_cast<double>(t) + 0.05 * static_cast<double>(b));
      next_value.push_back(0.5 + 0.1 * static_cast<double>(t) - 0.05 * static_cast<double>(b));
    }
  }
  const advantage::Shape shape{kB, kT};
  request.reward = advantage::Tensor::Encode(reward, shape);
  request.done = advantage::Tensor::Encode(done, shape);
  request.terminated = advantage::Tensor::Encode(terminated, shape);
  request.state_value = advantage::Tensor::Encode(value, shape);
  request.next_state_value = advantage::Tensor::Encode(next_value, shape);
  request.mask = advantage::Tensor::Encode(mask, shape);
  request.estimator = "gae";
  request.gamma = 0.9;
  request.lmbda = 0.8;
  const advantage::AdvantageResult result = client.ComputeAdvantage(request);
  for (int64_t i = 0; i < kB * kT; ++i) {
    std::printf("input %lld %lld %.17g %d %d %.17g %.17g %d\n", static_cast<long long>(i / kT),
                static_cast<long long>(i % kT), reward[i], static_cast<int>(done[i]),
                static_cast<int>(terminated[i]), value[i], next_value[i],
                static_cast<int>(mask[i]));
    std::printf("result %lld %lld %.17g %.17g\n", static_cast<long long>(i / kT),
                static_cast<long long>(i % kT), result.advantage[i], result.value_target[i]);
  }
}

advantage::v1::ComputeLossRequest HeadsLoss(bool with_aim) {
  advantage::AdvantageRequest batch;
  std::vector<float> reward, observation, next_observation, aim, move_log_prob, aim_log_prob;
  std::vector<int64_t> move;
  std::vector<bool> done;
  for (int64_t i = 0; i < kB * kT; ++i) {
    const float x = static_cast<float>(i);
    reward.push_back(std::sin(x));
    done.push_back(false);
    for (int64_t k = 0; k < 4; ++k) {
      observation.push_back(std::cos(x + static_cast<float>(k)));
      next_observation.push_back(std::cos(x + 1.0f + static_cast<float>(k)));
    }
    move.push_back(i % 3);
    aim.push_back(0.5f * std::sin(2.0f * x));
    aim.push_back(-0.4f * std::cos(x));
    move_log_prob.push_back(-1.1f);
    aim_log_prob.push_back(0.2f - 0.1f * std::sin(x));
  }
  const advantage::Shape shape{kB, kT};
  batch.reward = advantage::Tensor::Encode(reward, shape);
  batch.done = advantage::Tensor::Encode(done, shape);
  batch.observation["observation"] = advantage::Tensor::Encode(observation, {kB, kT, 4});
  batch.next_observation["observation"] = advantage::Tensor::Encode(next_observation, {kB, kT, 4});
  batch.action_heads["move"] = advantage::Tensor::Encode(move, shape);
  batch.sample_log_prob_heads["move"] = advantage::Tensor::Encode(move_log_prob, shape);
  batch.sample_log_prob_heads["aim"] = advantage::Tensor::Encode(aim_log_prob, shape);
  if (with_aim) batch.action_heads["aim"] = advantage::Tensor::Encode(aim, {kB, kT, 2});
  batch.mask = advantage::Tensor::Encode(Mask(), shape);
  advantage::v1::ComputeLossRequest request;
  request.set_model_name("demo_heads");
  *request.mutable_trajectory() = advantage::TrajectoryToProto(batch);
  request.mutable_ppo_clip();
  return request;
}

grpc::Status CallLoss(const advantage::Client& client, const advantage::v1::ComputeLossRequest& request,
                      advantage::v1::ComputeLossResponse* response) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  return client.stub().ComputeLoss(&context, request, response);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string target = argc > 1 ? argv[1] : "127.0.0.1:50051";
  try {
    const advantage::Client client(target);
    MaskedGae(client);

    advantage::v1::ComputeLossResponse response;
    grpc::Status status = CallLoss(client, HeadsLoss(true), &response);
    if (!status.ok()) {
      std::printf("loss_error %s %s\n", advantage::StatusCodeName(status.error_code()),
                  OneLine(status.error_message()).c_str());
      return 1;
    }
    const auto& metrics = response.metrics();
    std::printf("loss %.17g entropy %.17g move_entropy %.17g aim_entropy %.17g\n", response.loss(),
                metrics.at("entropy"), metrics.at("composite_entropy.move_entropy"),
                metrics.at("composite_entropy.aim_entropy"));

    status = CallLoss(client, HeadsLoss(false), &response);
    std::printf("missing_head %s %s\n", advantage::StatusCodeName(status.error_code()),
                OneLine(status.error_message()).c_str());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "heads_and_masks: %s\n", error.what());
    return 1;
  }
  return 0;
}
