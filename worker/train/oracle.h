// Test oracle for the book-keeping engine: per-example gradients by one
// autograd backward per example (float64), clipped one by one and summed.
//
// Slow (n backward passes) and obviously correct; it exists so tests can pin
// the fast path in clipped_grad.h. It must never be used on the training
// path.
#ifndef DPFLEET_WORKER_TRAIN_ORACLE_H_
#define DPFLEET_WORKER_TRAIN_ORACLE_H_

#include <torch/types.h>

#include "worker/train/model.h"

namespace dpfleet::train {

struct OracleGradients {
  torch::Tensor clipped_sum;  // [P] float64: sum_i min(1, C/||g_i||) g_i
  torch::Tensor sum;          // [P] float64: sum_i g_i
  torch::Tensor norms;        // [n] float64: ||g_i||
};

// Per-example gradients of BCE-with-logits(logit(x_i), y_i) with respect to
// the flat parameter vector (model layout), via torch autograd.
OracleGradients PerExampleOracle(const Model& model, const torch::Tensor& x, const torch::Tensor& y, double clip);

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_ORACLE_H_
