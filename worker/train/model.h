// Model: the networks DP-SGD trains here — logistic regression or an MLP of
// Linear layers with ReLU/tanh, ending in one logit (binary classification,
// BCE-with-logits loss).
//
// All parameters live in ONE contiguous float32 buffer (layer by layer:
// W0 [out,in] row-major, b0 [out], W1, b1, ...); the per-layer weights and
// biases are views into it. That makes the gradient all-reduce a single
// buffer, the optimizer a handful of vector ops, and save/load/export one
// tensor plus the layer widths.
//
// The model must never contain a layer that mixes examples (no BatchNorm):
// per-example gradients — and so the clipping bound — rely on every example's
// loss depending on that example alone. Initialisation depends only on the
// job seed (never on rank or attempt), so all ranks start identical without a
// collective.
#ifndef DPFLEET_WORKER_TRAIN_MODEL_H_
#define DPFLEET_WORKER_TRAIN_MODEL_H_

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dpfleet::train {

enum class ModelType { kLogistic, kMlp };
enum class Activation { kRelu, kTanh };

struct ModelConfig {
  ModelType type = ModelType::kMlp;
  std::vector<int64_t> hidden = {64, 32};  // ignored for kLogistic
  Activation activation = Activation::kRelu;
};

std::string ModelTypeName(ModelType type);
std::string ActivationName(Activation activation);

class Model {
 public:
  // Initialises like torch.nn.Linear: W, b ~ U(-1/sqrt(in), 1/sqrt(in)), from
  // a ChaCha20 stream keyed by `init_seed` only (drawn on the CPU, then
  // placed on `device`, so every device starts from the same values).
  static absl::StatusOr<Model> Create(const ModelConfig& config, int64_t input_dim, uint64_t init_seed,
                                      c10::Device device = c10::Device(c10::kCPU));

  Model(Model&&) = default;
  Model& operator=(Model&&) = default;
  // Copies would silently share parameter storage; clone explicitly instead.
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  Activation activation() const { return config_.activation; }
  int64_t input_dim() const { return widths_.front(); }
  // Layer widths [input_dim, h1, ..., 1]; layer l maps widths[l] -> widths[l+1].
  const std::vector<int64_t>& widths() const { return widths_; }
  int num_layers() const { return static_cast<int>(widths_.size()) - 1; }
  int64_t num_parameters() const { return flat_.numel(); }

  c10::Device device() const { return flat_.device(); }
  // The flat parameter buffer (float32, contiguous, on device()).
  const torch::Tensor& flat() const { return flat_; }
  torch::Tensor& mutable_flat() { return flat_; }
  const torch::Tensor& weight(int layer) const { return weights_[layer]; }
  const torch::Tensor& bias(int layer) const { return biases_[layer]; }

  // Per-layer views [W0, b0, W1, b1, ...] into any flat buffer with this
  // model's layout (e.g. the gradient buffer).
  std::vector<torch::Tensor> Views(const torch::Tensor& flat) const;
  // Copies of [W0, b0, W1, b1, ...] (on device()).
  std::vector<torch::Tensor> Parameters() const;

  // Validates a batch: x [n, input_dim] float32 on device(); y (if given) [n].
  absl::Status CheckBatch(const torch::Tensor& x, const torch::Tensor* y) const;
  // Inference-mode forward pass; returns the logits [n] (on device()). Input must pass
  // CheckBatch. Chunked so that huge eval sets do not allocate huge
  // activations.
  torch::Tensor Logits(const torch::Tensor& x) const;

 private:
  Model(ModelConfig config, std::vector<int64_t> widths);
  // (Re)creates weights_/biases_ as views of flat_.
  void BindViews();
  // Moves the parameters to `device` (views rebound).
  void PlaceOn(c10::Device device);

  ModelConfig config_;
  std::vector<int64_t> widths_;
  torch::Tensor flat_;
  std::vector<torch::Tensor> weights_;
  std::vector<torch::Tensor> biases_;
};

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_MODEL_H_
