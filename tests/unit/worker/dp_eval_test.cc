// Tests for the DP eval release: the histogram's bins and sensitivity, the
// metrics computed from it against the exact ones, and the noise (scale,
// freshness, keys).
#include "worker/train/dp_eval.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/testing/dp_sgd_test_peer.h"
#include "worker/train/metrics.h"
#include "worker/train/model.h"

namespace dpfleet::train {
namespace {

double Total(const ScoreHistogram& h) {
  double n = 0;
  for (int k = 0; k < h.bins(); ++k) n += h.negative[k] + h.positive[k];
  return n;
}

// Logits spread over the whole score range, labels correlated with them.
std::pair<at::Tensor, at::Tensor> Scores(int64_t n, uint64_t seed) {
  at::manual_seed(seed);
  at::Tensor z = at::randn({n}, at::kDouble) * 2.5;
  at::Tensor y = (at::rand({n}, at::kDouble) < at::sigmoid(z)).to(at::kFloat);
  return {z, y};
}

TEST(ScoreBinTest, TheHalfwayScoreIsABinEdge) {
  for (int bins : {2, 10, 20, 1000}) {
    EXPECT_EQ(ScoreBin(0.0, bins), bins / 2) << bins;
    EXPECT_EQ(ScoreBin(-1e-300, bins), bins / 2 - 1) << bins;
    EXPECT_EQ(ScoreBin(-1e-17, bins), bins / 2 - 1) << bins;
    EXPECT_EQ(ScoreBin(1e-17, bins), bins / 2) << bins;
    EXPECT_EQ(ScoreBin(50.0, bins), bins - 1) << bins;
    EXPECT_EQ(ScoreBin(-50.0, bins), 0) << bins;
  }
  // Bins are equal-width in the score: sigmoid(z) = 0.37 lies in [0.3, 0.4).
  EXPECT_EQ(ScoreBin(std::log(0.37 / 0.63), 10), 3);
}

// The accounting rests on this: one record more or less moves one count by
// exactly one (L2 sensitivity 1).
TEST(ScoreHistogramTest, OneRecordMovesOneCountByOne) {
  auto [z, y] = Scores(500, 1);
  const ScoreHistogram all = HistogramOfScores(z, y, 20);
  EXPECT_DOUBLE_EQ(Total(all), 500);
  for (int64_t drop : {0, 17, 499}) {
    at::Tensor keep = at::ones({500}, at::kBool);
    keep[drop] = false;
    const ScoreHistogram less = HistogramOfScores(z.index({keep}), y.index({keep}), 20);
    double l2 = 0;
    for (int k = 0; k < 20; ++k) {
      l2 += std::pow(all.negative[k] - less.negative[k], 2) + std::pow(all.positive[k] - less.positive[k], 2);
    }
    EXPECT_DOUBLE_EQ(l2, 1.0) << drop;
  }
}

TEST(MetricsFromHistogramTest, ExactCountsGiveTheExactThresholdMetrics) {
  auto [z, y] = Scores(4000, 2);
  const EvalMetrics exact = ComputeMetrics(z, y);
  for (int bins : {2, 10, 20, 100}) {
    SCOPED_TRACE(bins);
    const EvalMetrics m = MetricsFromHistogram(HistogramOfScores(z, y, bins));
    EXPECT_EQ(m.rows, 4000);
    // 0.5 is a bin edge: no binning error in these.
    EXPECT_NEAR(m.accuracy, exact.accuracy, 1e-12);
    EXPECT_NEAR(m.balanced_accuracy, exact.balanced_accuracy, 1e-12);
    EXPECT_NEAR(m.majority_rate, exact.majority_rate, 1e-12);
    // AUC of the binned scores, with in-bin pairs as ties, computed directly.
    std::vector<float> bin_of(4000);
    for (int64_t i = 0; i < 4000; ++i) bin_of[i] = static_cast<float>(ScoreBin(z[i].item<double>(), bins));
    EXPECT_NEAR(m.auc, RocAuc(at::tensor(bin_of), y), 1e-12);
  }
  // Finer bins bring AUC and the binned loss towards the exact values.
  const EvalMetrics fine = MetricsFromHistogram(HistogramOfScores(z, y, 1000));
  EXPECT_NEAR(fine.auc, exact.auc, 2e-3);
  EXPECT_NEAR(fine.loss, exact.loss, 0.02);
}

TEST(MetricsFromHistogramTest, NegativeNoisyCountsAreZeroAndEmptyIsZero) {
  ScoreHistogram h;
  h.negative = {5, -3};
  h.positive = {-2, 15};
  const EvalMetrics m = MetricsFromHistogram(h);
  EXPECT_EQ(m.rows, 20);
  EXPECT_DOUBLE_EQ(m.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(m.majority_rate, 0.75);
  EXPECT_DOUBLE_EQ(m.auc, 1.0);
  ScoreHistogram empty;
  empty.negative = {-1, -1};
  empty.positive = {-1, -1};
  const EvalMetrics e = MetricsFromHistogram(empty);
  EXPECT_EQ(e.rows, 0);
  EXPECT_DOUBLE_EQ(e.accuracy, 0.0);
  // One class only: AUC one half, balanced accuracy over the class present.
  ScoreHistogram one;
  one.negative = {0, 0};
  one.positive = {3, 9};
  EXPECT_DOUBLE_EQ(MetricsFromHistogram(one).auc, 0.5);
  EXPECT_DOUBLE_EQ(MetricsFromHistogram(one).balanced_accuracy, 0.75);
}

class EvalReleaserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelConfig c;
    c.type = ModelType::kLogistic;
    auto m = Model::Create(c, 4, 3);
    ASSERT_TRUE(m.ok());
    model_ = std::make_unique<Model>(std::move(*m));
    at::manual_seed(9);
    x_ = at::randn({300, 4}) * 3;
    y_ = (at::rand({300}) < 0.4).to(at::kFloat);
    exact_ = HistogramOfScores(model_->Logits(x_), y_, 10);
  }
  std::unique_ptr<Model> model_;
  at::Tensor x_, y_;
  ScoreHistogram exact_;
};

TEST_F(EvalReleaserTest, EveryCountGetsFreshGaussianNoiseOfSigma) {
  auto releaser = EvalReleaser::Create(4.0, 10);
  ASSERT_TRUE(releaser.ok());
  const int releases = 2000;
  std::vector<double> sum(20, 0), sum_sq(20, 0);
  std::vector<double> first;
  for (int r = 0; r < releases; ++r) {
    auto h = releaser->NoisyHistogram(*model_, x_, y_);
    ASSERT_TRUE(h.ok()) << h.status();
    for (int k = 0; k < 10; ++k) {
      const double dn = h->negative[k] - exact_.negative[k], dp = h->positive[k] - exact_.positive[k];
      sum[k] += dn;
      sum_sq[k] += dn * dn;
      sum[10 + k] += dp;
      sum_sq[10 + k] += dp * dp;
    }
    if (r == 0) first = h->negative;
    if (r == 1) EXPECT_NE(h->negative, first) << "every release draws fresh noise";
  }
  double pooled = 0;
  for (int c = 0; c < 20; ++c) {
    // Mean noise 0: within 5 standard errors (sigma / sqrt(releases)).
    EXPECT_NEAR(sum[c] / releases, 0.0, 5 * 4.0 / std::sqrt(releases)) << c;
    pooled += sum_sq[c];
  }
  // Pooled variance over 40k draws: relative standard error ~0.7%.
  EXPECT_NEAR(pooled / (20.0 * releases) / 16.0, 1.0, 0.04);
}

TEST_F(EvalReleaserTest, KeysComeFromGetrandomAndTestKeysReproduce) {
  auto a = EvalReleaser::Create(4.0, 10);
  auto b = EvalReleaser::Create(4.0, 10);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(testing::DpSgdTrainerTestPeer::Key(*a), testing::DpSgdTrainerTestPeer::Key(*b));
  EXPECT_NE(a->NoisyHistogram(*model_, x_, y_)->negative, b->NoisyHistogram(*model_, x_, y_)->negative);
  auto c = EvalReleaser::Create(4.0, 10);
  auto d = EvalReleaser::Create(4.0, 10);
  testing::DpSgdTrainerTestPeer::UseSeededStream(*c, 7);
  testing::DpSgdTrainerTestPeer::UseSeededStream(*d, 7);
  EXPECT_EQ(c->NoisyHistogram(*model_, x_, y_)->positive, d->NoisyHistogram(*model_, x_, y_)->positive);
}

TEST_F(EvalReleaserTest, ReleaseIsTheMetricsOfTheNoisyHistogram) {
  auto a = EvalReleaser::Create(2.0, 10);
  auto b = EvalReleaser::Create(2.0, 10);
  testing::DpSgdTrainerTestPeer::UseSeededStream(*a, 3);
  testing::DpSgdTrainerTestPeer::UseSeededStream(*b, 3);
  auto m = a->Release(*model_, x_, y_);
  auto h = b->NoisyHistogram(*model_, x_, y_);
  ASSERT_TRUE(m.ok() && h.ok());
  const EvalMetrics want = MetricsFromHistogram(*h);
  EXPECT_DOUBLE_EQ(m->accuracy, want.accuracy);
  EXPECT_DOUBLE_EQ(m->auc, want.auc);
  EXPECT_DOUBLE_EQ(m->loss, want.loss);
  const EvalMetrics exact = MetricsFromHistogram(exact_);
  EXPECT_NE(m->accuracy, exact.accuracy) << "the exact value never leaves";
  EXPECT_NEAR(m->accuracy, exact.accuracy, 0.2);
}

TEST_F(EvalReleaserTest, BadParametersAndBatchesAreRefused) {
  EXPECT_EQ(EvalReleaser::Create(0, 10).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EvalReleaser::Create(NAN, 10).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EvalReleaser::Create(1, 9).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EvalReleaser::Create(1, 0).status().code(), absl::StatusCode::kInvalidArgument);
  auto r = EvalReleaser::Create(1, 10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->Release(*model_, at::zeros({5, 3}), at::zeros({5})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r->Release(*model_, at::zeros({5, 4}), at::zeros({4})).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dpfleet::train
