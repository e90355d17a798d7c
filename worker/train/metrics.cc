#include "worker/train/metrics.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace dpfleet::train {

double RocAuc(const torch::Tensor& scores, const torch::Tensor& labels) {
  const at::Tensor s = scores.detach().to(at::kDouble).contiguous().view({-1});
  const at::Tensor y = labels.detach().to(at::kDouble).contiguous().view({-1});
  const int64_t n = s.numel();
  const double* sp = s.data_ptr<double>();
  const double* yp = y.data_ptr<double>();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [sp](int64_t a, int64_t b) { return sp[a] < sp[b]; });
  // Sum of (1-based, tie-averaged) ranks of the positives.
  double positive_rank_sum = 0;
  int64_t positives = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j < n && sp[order[j]] == sp[order[i]]) ++j;
    const double average_rank = 0.5 * static_cast<double>(i + 1 + j);  // mean of i+1 .. j
    for (int64_t k = i; k < j; ++k) {
      if (yp[order[k]] >= 0.5) {
        positive_rank_sum += average_rank;
        ++positives;
      }
    }
    i = j;
  }
  const int64_t negatives = n - positives;
  if (positives == 0 || negatives == 0) return 0.5;
  const double p = static_cast<double>(positives);
  const double u = positive_rank_sum - p * (p + 1) / 2;  // Mann-Whitney U of the positives
  return u / (p * static_cast<double>(negatives));
}

EvalMetrics ComputeMetrics(const torch::Tensor& logits, const torch::Tensor& labels) {
  EvalMetrics m;
  const at::Tensor z = logits.detach().to(at::kDouble).contiguous().view({-1});
  const at::Tensor y = labels.detach().to(at::kDouble).contiguous().view({-1});
  const int64_t n = z.numel();
  m.rows = n;
  if (n == 0) return m;
  const double* zp = z.data_ptr<double>();
  const double* yp = y.data_ptr<double>();
  double loss = 0;
  int64_t correct = 0, positives = 0, true_positives = 0, true_negatives = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double zi = zp[i];
    const bool label = yp[i] >= 0.5;
    const double target = label ? 1.0 : 0.0;
    // BCE with logits, stable: max(z, 0) - z*y + log(1 + exp(-|z|)).
    loss += std::max(zi, 0.0) - zi * target + std::log1p(std::exp(-std::fabs(zi)));
    const bool predicted = zi >= 0;  // sigmoid(z) >= 0.5
    if (predicted == label) ++correct;
    if (label) {
      ++positives;
      if (predicted) ++true_positives;
    } else if (!predicted) {
      ++true_negatives;
    }
  }
  const int64_t negatives = n - positives;
  const double dn = static_cast<double>(n);
  m.loss = loss / dn;
  m.accuracy = static_cast<double>(correct) / dn;
  m.majority_rate = static_cast<double>(std::max(positives, negatives)) / dn;
  double recall_sum = 0;
  int classes = 0;
  if (positives > 0) {
    recall_sum += static_cast<double>(true_positives) / static_cast<double>(positives);
    ++classes;
  }
  if (negatives > 0) {
    recall_sum += static_cast<double>(true_negatives) / static_cast<double>(negatives);
    ++classes;
  }
  m.balanced_accuracy = recall_sum / classes;
  m.auc = RocAuc(z, y);
  return m;
}

}  // namespace dpfleet::train
