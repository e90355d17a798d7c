#include "worker/train/model.h"

#include <ATen/ATen.h>

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/train/rng.h"

namespace dpfleet::train {
namespace {

// Init stream purpose: distinct from the sample/noise purposes in rng.h.
constexpr uint32_t kInitPurpose = 3;
// Rows per chunk in Logits(): bounds eval activations to a few tens of MB.
constexpr int64_t kLogitsChunkRows = 16384;

}  // namespace

std::string ModelTypeName(ModelType type) {
  return type == ModelType::kLogistic ? "logistic" : "mlp";
}

std::string ActivationName(Activation activation) {
  return activation == Activation::kRelu ? "relu" : "tanh";
}

Model::Model(ModelConfig config, std::vector<int64_t> widths)
    : config_(std::move(config)), widths_(std::move(widths)) {
  int64_t total = 0;
  for (int l = 0; l + 1 < static_cast<int>(widths_.size()); ++l) {
    total += widths_[l + 1] * widths_[l] + widths_[l + 1];
  }
  flat_ = at::zeros({total}, at::TensorOptions().dtype(at::kFloat));
  BindViews();
}

void Model::BindViews() {
  weights_.clear();
  biases_.clear();
  std::vector<torch::Tensor> views = Views(flat_);
  for (size_t i = 0; i < views.size(); i += 2) {
    weights_.push_back(views[i]);
    biases_.push_back(views[i + 1]);
  }
}

void Model::PlaceOn(c10::Device device) {
  flat_ = flat_.to(device).contiguous();
  BindViews();
}

absl::StatusOr<Model> Model::Create(const ModelConfig& config, int64_t input_dim, uint64_t init_seed,
                                    c10::Device device) {
  if (input_dim <= 0) return absl::InvalidArgumentError(absl::StrCat("input_dim must be > 0, got ", input_dim));
  std::vector<int64_t> widths = {input_dim};
  if (config.type == ModelType::kMlp) {
    for (int64_t h : config.hidden) {
      if (h <= 0) return absl::InvalidArgumentError(absl::StrCat("hidden layer width must be > 0, got ", h));
      widths.push_back(h);
    }
  }
  widths.push_back(1);
  ModelConfig normalised = config;
  if (config.type == ModelType::kLogistic) normalised.hidden.clear();
  Model model(std::move(normalised), std::move(widths));

  // Uniform(-bound, bound) with bound = 1/sqrt(fan_in), as torch.nn.Linear.
  ChaChaKey key = DeriveSeededKey(init_seed, 0, 0, static_cast<StreamPurpose>(kInitPurpose));
  ChaCha20Stream stream(key, /*nonce=*/0);
  float* p = model.flat_.data_ptr<float>();
  int64_t offset = 0;
  for (int l = 0; l < model.num_layers(); ++l) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(model.widths_[l]));
    const int64_t count = model.widths_[l + 1] * model.widths_[l] + model.widths_[l + 1];
    for (int64_t i = 0; i < count; ++i) {
      const double u = (static_cast<double>(stream.NextU32()) + 0.5) / 4294967296.0;  // (0, 1)
      p[offset + i] = static_cast<float>((2.0 * u - 1.0) * bound);
    }
    offset += count;
  }
  if (!device.is_cpu()) model.PlaceOn(device);
  return model;
}

std::vector<torch::Tensor> Model::Views(const torch::Tensor& flat) const {
  std::vector<torch::Tensor> views;
  views.reserve(2 * (widths_.size() - 1));
  int64_t offset = 0;
  for (int l = 0; l + 1 < static_cast<int>(widths_.size()); ++l) {
    const int64_t in = widths_[l], out = widths_[l + 1];
    views.push_back(flat.narrow(0, offset, out * in).view({out, in}));
    offset += out * in;
    views.push_back(flat.narrow(0, offset, out));
    offset += out;
  }
  return views;
}

std::vector<torch::Tensor> Model::Parameters() const {
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& v : Views(flat_)) out.push_back(v.clone());
  return out;
}

absl::Status Model::CheckBatch(const torch::Tensor& x, const torch::Tensor* y) const {
  if (!x.defined() || x.dim() != 2 || x.size(1) != input_dim()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "features must be [n, ", input_dim(), "], got ", x.defined() ? c10::str(x.sizes()) : "undefined"));
  }
  if (x.scalar_type() != at::kFloat || x.device() != device()) {
    return absl::InvalidArgumentError(absl::StrCat("features must be float32 on ", device().str(), ", got ",
                                                   c10::toString(x.scalar_type()), " on ", x.device().str()));
  }
  if (y != nullptr) {
    if (!y->defined() || y->dim() != 1 || y->size(0) != x.size(0)) {
      return absl::InvalidArgumentError(absl::StrCat("labels must be [", x.size(0), "], got ",
                                                     y->defined() ? c10::str(y->sizes()) : "undefined"));
    }
    if (y->scalar_type() != at::kFloat || y->device() != device()) {
      return absl::InvalidArgumentError(absl::StrCat("labels must be float32 on ", device().str(), ", got ",
                                                     c10::toString(y->scalar_type()), " on ", y->device().str()));
    }
  }
  return absl::OkStatus();
}

torch::Tensor Model::Logits(const torch::Tensor& x) const {
  c10::InferenceMode guard;
  const int64_t n = x.size(0);
  at::Tensor out = at::empty({n}, flat_.options());
  for (int64_t start = 0; start < n; start += kLogitsChunkRows) {
    const int64_t rows = std::min(kLogitsChunkRows, n - start);
    at::Tensor h = x.narrow(0, start, rows);
    for (int l = 0; l < num_layers(); ++l) {
      h = at::addmm(biases_[l], h, weights_[l].t());
      if (l + 1 < num_layers()) {
        if (config_.activation == Activation::kRelu) {
          h.clamp_min_(0);
        } else {
          h.tanh_();
        }
      }
    }
    out.narrow(0, start, rows).copy_(h.view({-1}));
  }
  return out;
}

}  // namespace dpfleet::train
