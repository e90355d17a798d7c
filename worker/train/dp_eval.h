// DP evaluation: the per-epoch eval metrics as one Gaussian release
// (job spec privacy.eval; docs/PRIVACY.md "Releases").
//
// The eval split is private data like the training split, so what rank 0
// reports about it must be charged. One release: bin the model's score
// p = sigmoid(logit) of every eval record into K equal-width bins of [0, 1]
// per label (2K counts), add N(0, sigma_e^2) to each count, and compute every
// metric from those noisy counts alone. Adding or removing one eval record
// moves exactly one count by one, so the L2 sensitivity is 1 and the release
// is the Gaussian mechanism with noise multiplier sigma_e: for the accountant
// a Poisson-subsampled Gaussian with q = 1 and one step. The metrics are
// post-processing of the noisy counts and cost nothing more.
//
// K is even, so 0.5 is a bin edge: a bin's records all get the same
// prediction and accuracy, balanced accuracy and majority rate carry no
// binning error, only noise. AUC counts pairs in the same bin as ties (one
// half); the loss is each bin's mean cross-entropy for scores spread
// uniformly over the bin. Both therefore carry a binning error besides the
// noise (docs/PRIVACY.md gives both at the defaults).
//
// This unit must never let an exact count or an exact metric out (the exact
// histogram lives only inside NoisyHistogram), draw its noise from anything
// but a getrandom(2) key, or use a (key, nonce) pair twice (the nonce is the
// release number).
#ifndef DPFLEET_WORKER_TRAIN_DP_EVAL_H_
#define DPFLEET_WORKER_TRAIN_DP_EVAL_H_

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/metrics.h"
#include "worker/train/model.h"
#include "worker/train/rng.h"

namespace dpfleet::testing {
class DpSgdTrainerTestPeer;
}  // namespace dpfleet::testing

namespace dpfleet::train {

// Counts of eval records per score bin and label (K = negative.size() =
// positive.size() bins of width 1/K over p = sigmoid(logit)).
struct ScoreHistogram {
  std::vector<double> negative;  // label 0
  std::vector<double> positive;  // label 1
  int bins() const { return static_cast<int>(negative.size()); }
};

// The bin of a logit among `bins` (even) bins: floor(sigmoid(z) * bins),
// adjusted so that the bin is >= bins/2 exactly when z >= 0 (the
// threshold ComputeMetrics predicts with).
int ScoreBin(double logit, int bins);

// Exact counts of logits [n] with labels [n] (>= 0.5 is positive). Exposed
// for tests; in the product only NoisyHistogram calls it.
ScoreHistogram HistogramOfScores(const torch::Tensor& logits, const torch::Tensor& labels, int bins);

// Every metric of EvalMetrics from a (noisy) histogram. Negative counts are
// read as 0; rows is the rounded total. A class whose total is 0 counts as
// absent (AUC 0.5, balanced accuracy over the classes present), an empty
// histogram gives all-zero metrics.
EvalMetrics MetricsFromHistogram(const ScoreHistogram& histogram);

class EvalReleaser {
 public:
  // sigma_e > 0 (finite), bins even in [2, 1000]; the noise key comes from
  // getrandom(2).
  static absl::StatusOr<EvalReleaser> Create(double noise_multiplier, int bins);

  // The DP release itself: the histogram of `model`'s scores on (x, y)
  // (validated like Model::CheckBatch) with fresh N(0, sigma_e^2) noise on
  // every count.
  absl::StatusOr<ScoreHistogram> NoisyHistogram(const Model& model, const torch::Tensor& x, const torch::Tensor& y);
  // MetricsFromHistogram(NoisyHistogram(...)).
  absl::StatusOr<EvalMetrics> Release(const Model& model, const torch::Tensor& x, const torch::Tensor& y);

  double noise_multiplier() const { return noise_multiplier_; }
  int bins() const { return bins_; }

 private:
  // Installs a reproducible key; test code only (tests/testing).
  friend class ::dpfleet::testing::DpSgdTrainerTestPeer;

  EvalReleaser(double noise_multiplier, int bins, ChaChaKey key)
      : noise_multiplier_(noise_multiplier), bins_(bins), key_(key) {}

  double noise_multiplier_;
  int bins_;
  ChaChaKey key_;
  uint64_t releases_ = 0;  // the next release's nonce
};

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_DP_EVAL_H_
