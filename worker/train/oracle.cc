#include "worker/train/oracle.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <vector>

namespace dpfleet::train {

OracleGradients PerExampleOracle(const Model& model, const torch::Tensor& x, const torch::Tensor& y, double clip) {
  // Autograd must be live here even if a caller disabled it.
  at::AutoGradMode enable_grad(true);
  std::vector<torch::Tensor> params;
  for (const torch::Tensor& p : model.Parameters()) {
    params.push_back(p.to(at::kDouble).detach().requires_grad_(true));
  }
  const int64_t n = x.size(0);
  const int64_t p_total = model.num_parameters();
  auto dopts = at::TensorOptions().dtype(at::kDouble);
  OracleGradients result{at::zeros({p_total}, dopts), at::zeros({p_total}, dopts), at::zeros({n}, dopts)};
  const at::Tensor xd = x.to(at::kDouble);
  const at::Tensor yd = y.to(at::kDouble);
  const int layers = model.num_layers();
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor h = xd.narrow(0, i, 1);
    for (int l = 0; l < layers; ++l) {
      h = at::linear(h, params[2 * l], params[2 * l + 1]);
      if (l + 1 < layers) h = model.activation() == Activation::kRelu ? at::relu(h) : at::tanh(h);
    }
    at::Tensor loss = at::binary_cross_entropy_with_logits(h.view({1}), yd.narrow(0, i, 1), {}, {}, at::Reduction::Sum);
    std::vector<torch::Tensor> grads = torch::autograd::grad({loss}, params);
    std::vector<at::Tensor> flat_parts;
    for (const at::Tensor& g : grads) flat_parts.push_back(g.reshape({-1}));
    at::Tensor g = at::cat(flat_parts);
    const double norm = g.norm().item<double>();
    const double factor = norm > 0 ? std::min(1.0, clip / norm) : 1.0;
    result.norms[i] = norm;
    result.sum.add_(g);
    result.clipped_sum.add_(g, factor);
  }
  return result;
}

}  // namespace dpfleet::train
