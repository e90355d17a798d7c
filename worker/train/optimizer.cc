#include "worker/train/optimizer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace dpfleet::train {

std::string OptimizerTypeName(OptimizerType type) { return type == OptimizerType::kSgd ? "sgd" : "adam"; }

Optimizer::Optimizer(const OptimizerConfig& config, int64_t num_params, c10::Device device)
    : config_(config), num_params_(num_params) {
  auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  if (config_.type == OptimizerType::kSgd) {
    if (config_.momentum > 0) buf1_ = at::zeros({num_params}, opts);
  } else {
    buf1_ = at::zeros({num_params}, opts);
    buf2_ = at::zeros({num_params}, opts);
    denom_ = at::zeros({num_params}, opts);
  }
}

absl::StatusOr<Optimizer> Optimizer::Create(const OptimizerConfig& config, int64_t num_params,
                                            c10::Device device) {
  if (!(config.learning_rate > 0) || !std::isfinite(config.learning_rate)) {
    return absl::InvalidArgumentError(absl::StrCat("learning_rate must be > 0, got ", config.learning_rate));
  }
  if (num_params <= 0) return absl::InvalidArgumentError("optimizer needs at least one parameter");
  if (config.type == OptimizerType::kSgd) {
    if (!(config.momentum >= 0 && config.momentum < 1)) {
      return absl::InvalidArgumentError(absl::StrCat("momentum must be in [0, 1), got ", config.momentum));
    }
  } else {
    if (!(config.beta1 >= 0 && config.beta1 < 1)) {
      return absl::InvalidArgumentError(absl::StrCat("beta1 must be in [0, 1), got ", config.beta1));
    }
    if (!(config.beta2 >= 0 && config.beta2 < 1)) {
      return absl::InvalidArgumentError(absl::StrCat("beta2 must be in [0, 1), got ", config.beta2));
    }
    if (!(config.eps > 0)) return absl::InvalidArgumentError(absl::StrCat("adam eps must be > 0, got ", config.eps));
  }
  return Optimizer(config, num_params, device);
}

void Optimizer::Step(torch::Tensor& params, const torch::Tensor& grad) {
  c10::InferenceMode guard;
  ++steps_;
  const double lr = config_.learning_rate;
  if (config_.type == OptimizerType::kSgd) {
    if (buf1_.defined()) {
      // buf = momentum * buf + g (torch.optim.SGD, dampening 0; the first
      // step gives buf = g since buf starts at zero).
      buf1_.mul_(config_.momentum).add_(grad);
      params.add_(buf1_, -lr);
    } else {
      params.add_(grad, -lr);
    }
    return;
  }
  const double b1 = config_.beta1, b2 = config_.beta2;
  buf1_.mul_(b1).add_(grad, 1.0 - b1);
  buf2_.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
  const double t = static_cast<double>(steps_);
  const double bias1 = 1.0 - std::pow(b1, t);
  const double bias2 = 1.0 - std::pow(b2, t);
  at::sqrt_out(denom_, buf2_);
  denom_.div_(std::sqrt(bias2)).add_(config_.eps);
  params.addcdiv_(buf1_, denom_, -lr / bias1);
}

std::map<std::string, torch::Tensor> Optimizer::StateDict() const {
  std::map<std::string, torch::Tensor> state;
  state["steps"] = at::scalar_tensor(steps_, at::TensorOptions().dtype(at::kLong));
  if (config_.type == OptimizerType::kSgd) {
    if (buf1_.defined()) state["momentum_buffer"] = buf1_.cpu().clone();
  } else {
    state["exp_avg"] = buf1_.cpu().clone();
    state["exp_avg_sq"] = buf2_.cpu().clone();
  }
  return state;
}

absl::Status Optimizer::LoadStateDict(const std::map<std::string, torch::Tensor>& state) {
  // Validate everything first so that a bad state leaves this optimizer as
  // it was.
  std::vector<std::pair<const torch::Tensor*, torch::Tensor*>> copies;
  auto check = [&](const std::string& name, torch::Tensor* dst) -> absl::Status {
    auto it = state.find(name);
    if (it == state.end()) return absl::InvalidArgumentError(absl::StrCat("optimizer state lacks '", name, "'"));
    if (it->second.numel() != dst->numel() || it->second.scalar_type() != dst->scalar_type()) {
      return absl::InvalidArgumentError(absl::StrCat("optimizer state '", name, "' has the wrong shape or type"));
    }
    copies.emplace_back(&it->second, dst);
    return absl::OkStatus();
  };
  auto steps = state.find("steps");
  if (steps == state.end() || steps->second.numel() != 1) {
    return absl::InvalidArgumentError("optimizer state lacks 'steps'");
  }
  if (config_.type == OptimizerType::kSgd) {
    if (buf1_.defined()) {
      absl::Status s = check("momentum_buffer", &buf1_);
      if (!s.ok()) return s;
    }
  } else {
    absl::Status s = check("exp_avg", &buf1_);
    if (!s.ok()) return s;
    s = check("exp_avg_sq", &buf2_);
    if (!s.ok()) return s;
  }
  c10::InferenceMode guard;
  for (auto& [src, dst] : copies) dst->copy_(src->reshape(dst->sizes()));
  steps_ = steps->second.item<int64_t>();
  return absl::OkStatus();
}

}  // namespace dpfleet::train
