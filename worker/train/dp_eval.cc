#include "worker/train/dp_eval.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <exception>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace dpfleet::train {

int ScoreBin(double logit, int bins) {
  const int half = bins / 2;
  const double p = 1.0 / (1.0 + std::exp(-logit));
  int k = static_cast<int>(std::floor(p * bins));
  k = std::clamp(k, 0, bins - 1);
  // Rounding in p or p * bins must never move a record across the 0.5 edge:
  // the edge is decided by the logit's sign, as in ComputeMetrics.
  if (logit >= 0) return std::max(k, half);
  return std::min(k, half - 1);
}

ScoreHistogram HistogramOfScores(const torch::Tensor& logits, const torch::Tensor& labels, int bins) {
  ScoreHistogram h;
  h.negative.assign(static_cast<size_t>(bins), 0.0);
  h.positive.assign(static_cast<size_t>(bins), 0.0);
  const at::Tensor z = logits.detach().to(at::kCPU, at::kDouble).contiguous().view({-1});
  const at::Tensor y = labels.detach().to(at::kCPU, at::kDouble).contiguous().view({-1});
  const double* zp = z.data_ptr<double>();
  const double* yp = y.data_ptr<double>();
  for (int64_t i = 0; i < z.numel(); ++i) {
    std::vector<double>& side = yp[i] >= 0.5 ? h.positive : h.negative;
    side[static_cast<size_t>(ScoreBin(zp[i], bins))] += 1.0;
  }
  return h;
}

namespace {

// The mean of -ln(p) over p uniform in [a, b] (0 <= a < b <= 1): with
// F(p) = p - p ln p (F' = -ln p, F(0) = 0), (F(b) - F(a)) / (b - a).
double MeanNegLog(double a, double b) {
  auto f = [](double p) { return p > 0 ? p - p * std::log(p) : 0.0; };
  return (f(b) - f(a)) / (b - a);
}

}  // namespace

EvalMetrics MetricsFromHistogram(const ScoreHistogram& histogram) {
  EvalMetrics m;
  const int bins = histogram.bins();
  const int half = bins / 2;
  std::vector<double> neg(histogram.negative), pos(histogram.positive);
  for (double& c : neg) c = std::max(c, 0.0);
  for (double& c : pos) c = std::max(c, 0.0);
  double negatives = 0, positives = 0, true_negatives = 0, true_positives = 0, loss = 0, pairs = 0;
  for (int k = 0; k < bins; ++k) {
    negatives += neg[k];
    positives += pos[k];
    if (k < half) {
      true_negatives += neg[k];
    } else {
      true_positives += pos[k];
    }
    // Binary cross-entropy averaged over the bin's scores, taken as uniform
    // in [lo, hi]: less biased than the midpoint's (-ln is convex, so the
    // midpoint always under-states the loss, most in the outer bins).
    const double lo = static_cast<double>(k) / bins, hi = static_cast<double>(k + 1) / bins;
    loss += pos[k] * MeanNegLog(lo, hi) + neg[k] * MeanNegLog(1.0 - hi, 1.0 - lo);
  }
  const double n = negatives + positives;
  m.rows = std::llround(n);
  if (!(n > 0)) return m;
  m.loss = loss / n;
  m.accuracy = (true_negatives + true_positives) / n;
  m.majority_rate = std::max(negatives, positives) / n;
  double recall_sum = 0;
  int classes = 0;
  if (positives > 0) {
    recall_sum += true_positives / positives;
    ++classes;
  }
  if (negatives > 0) {
    recall_sum += true_negatives / negatives;
    ++classes;
  }
  m.balanced_accuracy = recall_sum / classes;
  // Mann-Whitney over bins: a positive beats every negative in a lower bin
  // and ties (one half) with those in its own.
  if (positives > 0 && negatives > 0) {
    double below = 0;
    for (int k = 0; k < bins; ++k) {
      pairs += pos[k] * (below + 0.5 * neg[k]);
      below += neg[k];
    }
    m.auc = pairs / (positives * negatives);
  } else {
    m.auc = 0.5;
  }
  return m;
}

absl::StatusOr<EvalReleaser> EvalReleaser::Create(double noise_multiplier, int bins) {
  if (!(noise_multiplier > 0) || !std::isfinite(noise_multiplier)) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval noise_multiplier must be positive, got ", noise_multiplier));
  }
  if (bins < 2 || bins > 1000 || bins % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("eval bins must be even in [2, 1000], got ", bins));
  }
  ASSIGN_OR_RETURN(const ChaChaKey key, SecureRandomKey());
  return EvalReleaser(noise_multiplier, bins, key);
}

absl::StatusOr<ScoreHistogram> EvalReleaser::NoisyHistogram(const Model& model, const torch::Tensor& x,
                                                            const torch::Tensor& y) {
  RETURN_IF_ERROR(model.CheckBatch(x, &y));
  ScoreHistogram h;
  try {
    c10::InferenceMode guard;
    h = HistogramOfScores(model.Logits(x), y, bins_);
    // One N(0, sigma_e^2) draw per count, negatives first, from this
    // release's own stream.
    ChaCha20Stream stream(key_, releases_++);
    torch::Tensor noise = at::empty({2 * bins_}, at::TensorOptions().dtype(at::kFloat));
    NormalScratch scratch;
    FillNormal(stream, noise_multiplier_, noise, scratch);
    const float* e = noise.data_ptr<float>();
    for (int k = 0; k < bins_; ++k) {
      h.negative[k] += e[k];
      h.positive[k] += e[bins_ + k];
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("eval release: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("eval release: ", e.what()));
  }
  return h;
}

absl::StatusOr<EvalMetrics> EvalReleaser::Release(const Model& model, const torch::Tensor& x,
                                                  const torch::Tensor& y) {
  ASSIGN_OR_RETURN(const ScoreHistogram h, NoisyHistogram(model, x, y));
  return MetricsFromHistogram(h);
}

}  // namespace dpfleet::train
