#include "worker/train/clipped_grad.h"

#include <ATen/ATen.h>

namespace dpfleet::train {
namespace {

at::Tensor EmptyFloat() { return at::empty({0}, at::TensorOptions().dtype(at::kFloat)); }

// Squared L2 norm of every row of `m` into `out` [rows].
void RowSquaredNorms(const at::Tensor& m, at::Tensor& out) {
  // Out tensors are resized explicitly: ATen warns (slowly, every call) when
  // an out= op has to resize a non-empty tensor itself.
  out.resize_({m.size(0)});
  at::linalg_vector_norm_out(out, m, 2, at::IntArrayRef{1});
  out.square_();
}

}  // namespace

GradientEngine::GradientEngine(const Model* model) : model_(model) {
  const int layers = model_->num_layers();
  for (int l = 0; l < layers; ++l) {
    acts_.push_back(EmptyFloat());
    grads_.push_back(EmptyFloat());
  }
  norm2_ = EmptyFloat();
  gsq_ = EmptyFloat();
  asq_ = EmptyFloat();
  clip_factor_ = EmptyFloat();
  scaled_ = EmptyFloat();
}

const torch::Tensor& GradientEngine::Input(int layer, const torch::Tensor& x) const {
  return layer == 0 ? x : acts_[layer];
}

void GradientEngine::ForwardBackward(const torch::Tensor& x, const torch::Tensor& y) {
  const int layers = model_->num_layers();
  const int64_t m = x.size(0);
  const auto& widths = model_->widths();
  const bool relu = model_->activation() == Activation::kRelu;

  // Forward: hidden layers write straight into acts_[l + 1] and apply the
  // activation in place; the last layer's output (the logit) goes into
  // grads_[last], which the loss gradient then overwrites in place.
  for (int l = 0; l < layers; ++l) {
    at::Tensor& out = (l + 1 < layers) ? acts_[l + 1] : grads_[l];
    out.resize_({m, widths[l + 1]});
    at::addmm_out(out, model_->bias(l), Input(l, x), model_->weight(l).t());
    if (l + 1 < layers) {
      if (relu) {
        out.clamp_min_(0);
      } else {
        out.tanh_();
      }
    }
  }
  // dL_i/dlogit_i for BCE-with-logits: sigmoid(z_i) - y_i.
  at::Tensor& top = grads_[layers - 1];
  top.sigmoid_().sub_(y.view({m, 1}));
  // Backward through the hidden layers: dL/da_l = G_l W_l, then the
  // activation's derivative evaluated at its (stored) output.
  for (int l = layers - 1; l >= 1; --l) {
    at::Tensor& below = grads_[l - 1];
    below.resize_({m, widths[l]});
    at::mm_out(below, grads_[l], model_->weight(l));
    if (relu) {
      at::threshold_backward_out(below, below, acts_[l], 0);
    } else {
      at::tanh_backward_out(below, below, acts_[l]);
    }
  }
}

void GradientEngine::ClippedSum(const torch::Tensor& x, const torch::Tensor& y, double clip,
                                torch::Tensor& out_flat, torch::Tensor* norms) {
  c10::InferenceMode guard;
  const int64_t m = x.size(0);
  if (m == 0) {
    out_flat.zero_();
    if (norms != nullptr) *norms = at::empty({0}, at::TensorOptions().dtype(at::kFloat));
    return;
  }
  ForwardBackward(x, y);
  const int layers = model_->num_layers();
  const auto& widths = model_->widths();

  // Per-example squared norm: sum over layers of ||g_i||^2 (||a_i||^2 + 1).
  norm2_.resize_({m}).zero_();
  for (int l = 0; l < layers; ++l) {
    RowSquaredNorms(grads_[l], gsq_);
    RowSquaredNorms(Input(l, x), asq_);
    asq_.add_(1.0);
    norm2_.addcmul_(gsq_, asq_);
  }
  norm2_.sqrt_();  // now the norms
  if (norms != nullptr) *norms = norm2_.clone();
  // c_i = C / max(norm_i, C)  ==  min(1, C / norm_i), no epsilon needed.
  clip_factor_.resize_({m});
  at::clamp_min_out(clip_factor_, norm2_, clip);
  clip_factor_.reciprocal_().mul_(clip);
  const at::Tensor c_col = clip_factor_.view({m, 1});

  std::vector<torch::Tensor> views = model_->Views(out_flat);
  for (int l = 0; l < layers; ++l) {
    const at::Tensor& a = Input(l, x);
    const at::Tensor& g = grads_[l];
    at::Tensor& grad_w = views[2 * l];
    at::Tensor& grad_b = views[2 * l + 1];
    // G^T diag(c) A: scale whichever factor is narrower (fewer multiplies).
    if (widths[l + 1] <= widths[l]) {
      scaled_.resize_({m, widths[l + 1]});
      at::mul_out(scaled_, g, c_col);
      at::mm_out(grad_w, scaled_.t(), a);
      at::sum_out(grad_b, scaled_, at::IntArrayRef{0});
    } else {
      scaled_.resize_({m, widths[l]});
      at::mul_out(scaled_, a, c_col);
      at::mm_out(grad_w, g.t(), scaled_);
      at::mv_out(grad_b, g.t(), clip_factor_);
    }
  }
}

void GradientEngine::Sum(const torch::Tensor& x, const torch::Tensor& y, torch::Tensor& out_flat) {
  c10::InferenceMode guard;
  const int64_t m = x.size(0);
  if (m == 0) {
    out_flat.zero_();
    return;
  }
  ForwardBackward(x, y);
  std::vector<torch::Tensor> views = model_->Views(out_flat);
  for (int l = 0; l < model_->num_layers(); ++l) {
    at::mm_out(views[2 * l], grads_[l].t(), Input(l, x));
    at::sum_out(views[2 * l + 1], grads_[l], at::IntArrayRef{0});
  }
}

}  // namespace dpfleet::train
