// Optimizers applied to the privatised gradient: SGD (with heavy-ball
// momentum) and Adam, with PyTorch's update rules (torch.optim.SGD with
// dampening 0 / no Nesterov; torch.optim.Adam without weight decay).
//
// They work on the model's flat parameter buffer and a flat gradient of the
// same layout, so one step is a few fused vector ops and the whole state is
// a few tensors (serialisable for checkpoint/resume).
//
// Post-processing only: an optimizer sees nothing but the already-noised,
// already-averaged gradient. It must never look at data, per-example
// gradients or the actual batch size — that keeps the privacy guarantee
// independent of the optimizer choice.
#ifndef DPFLEET_WORKER_TRAIN_OPTIMIZER_H_
#define DPFLEET_WORKER_TRAIN_OPTIMIZER_H_

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dpfleet::train {

enum class OptimizerType { kSgd, kAdam };

std::string OptimizerTypeName(OptimizerType type);

struct OptimizerConfig {
  OptimizerType type = OptimizerType::kSgd;
  double learning_rate = 0.1;
  double momentum = 0.0;  // SGD only
  double beta1 = 0.9;     // Adam only
  double beta2 = 0.999;   // Adam only
  double eps = 1e-8;      // Adam only
};

class Optimizer {
 public:
  // Validates the hyper-parameters; num_params is the flat buffer's length.
  // State buffers live on `device` (the parameters' device).
  static absl::StatusOr<Optimizer> Create(const OptimizerConfig& config, int64_t num_params,
                                          c10::Device device = c10::Device(c10::kCPU));

  // params <- update(params, grad). Both float32 contiguous [num_params].
  void Step(torch::Tensor& params, const torch::Tensor& grad);

  int64_t steps() const { return steps_; }
  const OptimizerConfig& config() const { return config_; }

  // State for checkpoints: "steps" (int64 scalar) plus "momentum_buffer"
  // (SGD with momentum) or "exp_avg" / "exp_avg_sq" (Adam).
  std::map<std::string, torch::Tensor> StateDict() const;
  // Restores a StateDict() of an optimizer with the same type and size.
  absl::Status LoadStateDict(const std::map<std::string, torch::Tensor>& state);

 private:
  Optimizer(const OptimizerConfig& config, int64_t num_params, c10::Device device);

  OptimizerConfig config_;
  int64_t num_params_;
  int64_t steps_ = 0;
  torch::Tensor buf1_;   // momentum buffer or exp_avg
  torch::Tensor buf2_;   // exp_avg_sq
  torch::Tensor denom_;  // Adam workspace, so steps do not allocate
};

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_OPTIMIZER_H_
