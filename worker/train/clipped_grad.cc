#include "worker/train/clipped_grad.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "worker/train/parallel.h"

namespace dpfleet::train {
namespace {

at::Tensor EmptyFloat(c10::Device device) {
  return at::empty({0}, at::TensorOptions().dtype(at::kFloat).device(device));
}

typedef float V8f __attribute__((vector_size(32)));

// Work per parallel task in the per-example pass (floats read or scaled):
// below ~100k a fork/join costs more than it saves.
constexpr int64_t kFloatsPerTask = 1 << 17;

// sum_j v[j]^2 with eight float lanes (GCC vector code: the same lane-wise
// arithmetic, hence the same result, in every build of the loop; always
// inlined so that each build gets its own machine code for it). Float
// accumulation is ample for rows of a few hundred entries; the caller
// combines the layers in double.
inline __attribute__((always_inline)) float SquaredNorm(const float* v, int64_t n) {
  V8f acc = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    V8f t;
    std::memcpy(&t, v + j, sizeof(t));
    acc += t * t;
  }
  float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; j < n; ++j) sum += v[j] * v[j];
  return sum;
}

inline __attribute__((always_inline)) void ScaleRow(float* v, int64_t n, float c) {
  const V8f cv = {c, c, c, c, c, c, c, c};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    V8f t;
    std::memcpy(&t, v + j, sizeof(t));
    t *= cv;
    std::memcpy(v + j, &t, sizeof(t));
  }
  for (; j < n; ++j) v[j] *= c;
}

// Rows [begin, end) of the fused per-example pass (see ClippedSum). Compiled
// twice below — for AVX2 and for baseline x86-64, where the 8-lane vectors
// are split and spilled — and picked per call (ActiveClipKernel), so that
// each build can be run and tested on a CPU that has it.
inline __attribute__((always_inline)) void ClipRowsBody(int64_t begin, int64_t end, int layers,
                                                        const int64_t* widths, const float* const* a_rows,
                                                        float* const* g_rows, double clip, float* norms_out) {
  for (int64_t i = begin; i < end; ++i) {
    double norm2 = 0;
    for (int l = 0; l < layers; ++l) {
      const double gsq = SquaredNorm(g_rows[l] + i * widths[l + 1], widths[l + 1]);
      const double asq = SquaredNorm(a_rows[l] + i * widths[l], widths[l]);
      norm2 += gsq * (asq + 1.0);
    }
    const double norm = std::sqrt(norm2);
    if (norms_out != nullptr) norms_out[i] = static_cast<float>(norm);
    // c_i = C / max(norm_i, C)  ==  min(1, C / norm_i), no epsilon needed.
    const float c = static_cast<float>(clip / std::max(norm, clip));
    if (c != 1.0f) {
      for (int l = 0; l < layers; ++l) ScaleRow(g_rows[l] + i * widths[l + 1], widths[l + 1], c);
    }
  }
}

using ClipRowsFn = void (*)(int64_t, int64_t, int, const int64_t*, const float* const*, float* const*, double,
                            float*);

void ClipRowsBaseline(int64_t begin, int64_t end, int layers, const int64_t* widths, const float* const* a_rows,
                      float* const* g_rows, double clip, float* norms_out) {
  ClipRowsBody(begin, end, layers, widths, a_rows, g_rows, clip, norms_out);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) void ClipRowsAvx2(int64_t begin, int64_t end, int layers, const int64_t* widths,
                                                  const float* const* a_rows, float* const* g_rows, double clip,
                                                  float* norms_out) {
  ClipRowsBody(begin, end, layers, widths, a_rows, g_rows, clip, norms_out);
}
bool CpuHasAvx2() { return __builtin_cpu_supports("avx2"); }
#else
bool CpuHasAvx2() { return false; }
#endif

std::atomic<ClipKernel> forced_kernel{ClipKernel::kAuto};

ClipRowsFn ClipRowsFor(ClipKernel kernel) {
#if defined(__x86_64__)
  if (kernel == ClipKernel::kAvx2) return ClipRowsAvx2;
#endif
  return ClipRowsBaseline;
}

}  // namespace

bool ClipKernelAvailable(ClipKernel kernel) { return kernel != ClipKernel::kAvx2 || CpuHasAvx2(); }

ClipKernel ActiveClipKernel() {
  const ClipKernel forced = forced_kernel.load();
  if (forced != ClipKernel::kAuto) return forced;
  return CpuHasAvx2() ? ClipKernel::kAvx2 : ClipKernel::kBaseline;
}

bool ForceClipKernel(ClipKernel kernel) {
  if (!ClipKernelAvailable(kernel)) return false;
  forced_kernel.store(kernel);
  return true;
}

const char* ClipKernelName(ClipKernel kernel) {
  switch (kernel) {
    case ClipKernel::kAuto:
      return "auto";
    case ClipKernel::kBaseline:
      return "baseline x86-64";
    case ClipKernel::kAvx2:
      return "AVX2";
  }
  return "unknown";
}

GradientEngine::GradientEngine(const Model* model, ClipPass pass)
    : model_(model), fused_(pass != ClipPass::kAten && model->device().is_cpu()) {
  const int layers = model_->num_layers();
  for (int l = 0; l < layers; ++l) {
    acts_.push_back(EmptyFloat(model_->device()));
    grads_.push_back(EmptyFloat(model_->device()));
  }
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

void GradientEngine::ClipFused(const torch::Tensor& x, double clip, torch::Tensor* norms) {
  const int64_t m = x.size(0);
  const int layers = model_->num_layers();
  const auto& widths = model_->widths();

  // Raw row pointers of every layer's input A_l and output gradient G_l
  // (all contiguous [m, width]).
  std::vector<const float*> a_rows(layers);
  std::vector<float*> g_rows(layers);
  for (int l = 0; l < layers; ++l) {
    a_rows[l] = Input(l, x).data_ptr<float>();
    g_rows[l] = grads_[l].data_ptr<float>();
  }
  if (norms != nullptr) *norms = at::empty({m}, at::TensorOptions().dtype(at::kFloat));
  float* norms_out = norms != nullptr ? norms->data_ptr<float>() : nullptr;

  // One pass per example, fused so that it costs no ATen dispatch and reads
  // each row once while it is in cache:
  //   norm_i^2 = sum_l ||g_il||^2 (||a_il||^2 + 1)   (accumulated in double),
  //   c_i = C / max(norm_i, C)  ==  min(1, C / norm_i), no epsilon needed,
  //   g_il <- c_i g_il  for every layer (G_l is dead after this call, so it
  //   is scaled in place: then G_l^T A_l = sum_i c_i dW_i).
  // Rows are independent, so splitting them over threads changes nothing.
  int64_t floats_per_row = 0;
  for (int l = 0; l < layers; ++l) floats_per_row += widths[l] + 2 * widths[l + 1];
  const int64_t rows_per_task = std::max<int64_t>(16, kFloatsPerTask / floats_per_row);
  last_kernel_ = ActiveClipKernel();
  const ClipRowsFn clip_rows = ClipRowsFor(last_kernel_);
  ParallelRange(m, rows_per_task, [&](int64_t begin, int64_t end) {
    clip_rows(begin, end, layers, widths.data(), a_rows.data(), g_rows.data(), clip, norms_out);
  });
}

void GradientEngine::ClipAten(const torch::Tensor& x, double clip, torch::Tensor* norms) {
  // The same formulas as ClipRows, as whole-batch ops on the model's device:
  //   norm_i^2 = sum_l ||g_il||^2 (||a_il||^2 + 1)  in float64,
  //   c_i = C / max(norm_i, C),   G_l <- diag(c) G_l.
  // Nothing here waits for the device.
  const int layers = model_->num_layers();
  at::Tensor norm2;
  for (int l = 0; l < layers; ++l) {
    at::Tensor gsq = at::linalg_vector_norm(grads_[l], 2, at::IntArrayRef{1}, false, at::kDouble).square_();
    at::Tensor asq = at::linalg_vector_norm(Input(l, x), 2, at::IntArrayRef{1}, false, at::kDouble).square_();
    at::Tensor term = gsq.mul_(asq.add_(1.0));
    norm2 = l == 0 ? term : norm2.add_(term);
  }
  at::Tensor norm = norm2.sqrt_();
  if (norms != nullptr) *norms = norm.to(at::kFloat);
  const at::Tensor factor = norm.clamp_min(clip).reciprocal_().mul_(clip).to(at::kFloat).unsqueeze(1);
  for (int l = 0; l < layers; ++l) grads_[l].mul_(factor);
}

void GradientEngine::ClippedSum(const torch::Tensor& x_in, const torch::Tensor& y, double clip,
                                torch::Tensor& out_flat, torch::Tensor* norms) {
  c10::InferenceMode guard;
  const int64_t m = x_in.size(0);
  if (m == 0) {
    out_flat.zero_();
    if (norms != nullptr) *norms = EmptyFloat(model_->device());
    return;
  }
  const at::Tensor x = x_in.contiguous();  // no-op for the trainer's batches
  ForwardBackward(x, y);
  last_kernel_ = ClipKernel::kAuto;
  if (fused_) {
    ClipFused(x, clip, norms);
  } else {
    ClipAten(x, clip, norms);
  }
  const int layers = model_->num_layers();
  // Clipped sums: exactly the non-private products on the scaled G.
  std::vector<torch::Tensor> views = model_->Views(out_flat);
  for (int l = 0; l < layers; ++l) {
    at::mm_out(views[2 * l], grads_[l].t(), Input(l, x));
    at::sum_out(views[2 * l + 1], grads_[l], at::IntArrayRef{0});
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
