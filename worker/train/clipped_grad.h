// Clipped per-example gradient sums without per-example gradients
// ("book-keeping"): one forward and one backward pass over the batch.
//
// For a Linear layer z = a W^T + b, the gradient of example i's loss is
// dW_i = g_i a_i^T and db_i = g_i, where g_i = dL_i/dz_i. Hence
//   ||dW_i||_F^2 = ||g_i||^2 ||a_i||^2,   ||db_i||^2 = ||g_i||^2,
// and the clipped sum over the batch is one matrix product per layer:
//   sum_i c_i dW_i = G^T diag(c) A,   sum_i c_i db_i = G^T c.
// The engine computes A (activations) forward, G backward (manually, with
// matmuls — no autograd graph), then in ONE fused pass per example (plain
// loops, no ATen dispatch: at small batches the ~25 tiny tensor ops this
// used to take cost more than the arithmetic) the norm from the two formulas
// above, the clip factor, and scales row i of every G_l by c_i in place.
// The clipped sums are then the same two products as the non-private sum,
// G_l^T A_l and G_l^T 1, on the scaled G.
//
// On a GPU the per-example pass is a handful of ATen reductions instead
// (norms in float64, clip factors, one broadcast scaling per layer: a few
// kernel launches, no host round trip); the same ATen pass can be selected
// on the CPU, which is how the tests check it against the fused loop and the
// autograd oracle.
//
// Clip factor: c_i = C / max(||grad_i||, C), which equals min(1, C/||grad_i||)
// exactly and needs no epsilon: C > 0 so there is never a division by zero,
// and a zero gradient gets c_i = 1. (No "+1e-6" stabiliser: it would only
// shrink every factor slightly and is unnecessary.) Every clipped
// contribution has norm <= C up to float32 rounding of the norm itself
// (relative ~1e-6).
//
// This unit computes sums only. It must never divide by a batch size and
// never add noise — that is DpSgdTrainer's job; and it must never be used
// with a layer for which the norm rule above does not hold.
#ifndef DPFLEET_WORKER_TRAIN_CLIPPED_GRAD_H_
#define DPFLEET_WORKER_TRAIN_CLIPPED_GRAD_H_

#include <torch/types.h>

#include <vector>

#include "worker/train/model.h"

namespace dpfleet::train {

// How the per-example clipping pass runs: kAuto = the fused loop on the CPU,
// ATen ops on any other device; kAten forces the ATen ops (tests, and any
// device). kFused on a non-CPU model falls back to kAten.
enum class ClipPass { kAuto, kFused, kAten };

// Which machine-code build of the fused loop runs. Both builds do the same
// lane-wise arithmetic, so they give the same bits; the AVX2 one is faster.
// kAuto picks AVX2 when the CPU has it. The choice is the process's, for
// tests and benchmarks that must run each build where it exists.
enum class ClipKernel { kAuto, kBaseline, kAvx2 };
bool ClipKernelAvailable(ClipKernel kernel);
// The build kAuto resolves to on this CPU, or the forced one.
ClipKernel ActiveClipKernel();
// Forces `kernel` (kAuto: back to the CPU's choice). An unavailable kernel
// is refused (false) and changes nothing.
bool ForceClipKernel(ClipKernel kernel);
const char* ClipKernelName(ClipKernel kernel);

class GradientEngine {
 public:
  // `model` is not owned and must outlive the engine; its parameters are read
  // at every call (so optimizer updates are picked up). Batches must be on
  // the model's device.
  explicit GradientEngine(const Model* model, ClipPass pass = ClipPass::kAuto);

  // out_flat (float32, numel = model->num_parameters(), model layout) <-
  //   sum_i c_i grad L_i(x_i, y_i),  c_i = C / max(||grad L_i||, C).
  // If `norms` is non-null it receives the unclipped per-example norms [n]
  // (float32, on the model's device).
  // x [n, d] float32 contiguous, y [n] float32 in {0, 1}; n may be 0.
  void ClippedSum(const torch::Tensor& x, const torch::Tensor& y, double clip, torch::Tensor& out_flat,
                  torch::Tensor* norms = nullptr);

  // out_flat <- sum_i grad L_i (no clipping; the non-private baseline).
  void Sum(const torch::Tensor& x, const torch::Tensor& y, torch::Tensor& out_flat);

  // The build of the fused loop the last ClippedSum ran (kAuto when it ran
  // the ATen pass or nothing yet): lets a test see which code did the work.
  ClipKernel last_kernel() const { return last_kernel_; }

 private:
  // Forward + backward; fills acts_ (layer inputs) and grads_ (dL_i/dz).
  void ForwardBackward(const torch::Tensor& x, const torch::Tensor& y);
  // Layer l's input activations for the current batch.
  const torch::Tensor& Input(int layer, const torch::Tensor& x) const;
  // The per-example pass (norms, factors, G_l scaled in place), two ways.
  void ClipFused(const torch::Tensor& x, double clip, torch::Tensor* norms);
  void ClipAten(const torch::Tensor& x, double clip, torch::Tensor* norms);

  const Model* model_;
  bool fused_;
  ClipKernel last_kernel_ = ClipKernel::kAuto;
  // Workspaces, reused across calls: resize_ only reallocates when a batch
  // is larger than every previous one, so steady-state steps do not allocate.
  std::vector<torch::Tensor> acts_;   // acts_[l] = input of layer l (l >= 1)
  std::vector<torch::Tensor> grads_;  // grads_[l] = dL_i/dz for layer l's output
};

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_CLIPPED_GRAD_H_
