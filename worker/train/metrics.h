// Evaluation metrics for a binary classifier from its logits: mean BCE loss,
// accuracy at threshold 0.5, ROC AUC (rank-based Mann-Whitney U with average
// ranks for ties), balanced accuracy and the majority-class rate (the
// accuracy of always guessing the more common class: the baseline to beat).
//
// Metrics that leave the worker must come from the held-out eval split; this
// unit must never be fed training batches for reporting (loss on sampled
// training rows would be an unaccounted release).
#ifndef DPFLEET_WORKER_TRAIN_METRICS_H_
#define DPFLEET_WORKER_TRAIN_METRICS_H_

#include <torch/types.h>

#include <cstdint>

namespace dpfleet::train {

struct EvalMetrics {
  double loss = 0;               // mean binary cross-entropy (natural log)
  double accuracy = 0;           // predict 1 iff sigmoid(logit) >= 0.5
  double auc = 0;                // ROC AUC; 0.5 when only one class is present
  double balanced_accuracy = 0;  // mean per-class recall over present classes
  double majority_rate = 0;      // max(share of positives, share of negatives)
  int64_t rows = 0;
};

// logits [n] (any float dtype), labels [n] in {0, 1} (>= 0.5 counts as 1).
// n == 0 gives all-zero metrics with rows == 0.
EvalMetrics ComputeMetrics(const torch::Tensor& logits, const torch::Tensor& labels);

// ROC AUC of `scores` for binary `labels` (float, >= 0.5 is positive): the
// probability that a random positive outscores a random negative, ties
// counting one half. 0.5 if either class is empty.
double RocAuc(const torch::Tensor& scores, const torch::Tensor& labels);

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_METRICS_H_
