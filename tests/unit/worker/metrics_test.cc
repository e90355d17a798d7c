// Tests for evaluation metrics: AUC with ties against brute force, loss
// against ATen's BCE, accuracy/balanced accuracy/majority rate by hand.
#include "worker/train/metrics.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace dpfleet::train {
namespace {

at::Tensor F(std::vector<float> v) { return at::tensor(v); }

TEST(RocAucTest, PerfectInvertedAndAllTied) {
  EXPECT_DOUBLE_EQ(RocAuc(F({0.1f, 0.2f, 0.8f, 0.9f}), F({0, 0, 1, 1})), 1.0);
  EXPECT_DOUBLE_EQ(RocAuc(F({0.9f, 0.8f, 0.2f, 0.1f}), F({0, 0, 1, 1})), 0.0);
  EXPECT_DOUBLE_EQ(RocAuc(F({0.5f, 0.5f, 0.5f, 0.5f}), F({0, 1, 0, 1})), 0.5);
}

TEST(RocAucTest, TiesCountOneHalf) {
  // Pairs (pos, neg): (0.5 vs 0.5) = 1/2, (0.5 vs 0.1) = 1, (0.9 vs 0.5) = 1,
  // (0.9 vs 0.1) = 1  ->  3.5 / 4.
  EXPECT_DOUBLE_EQ(RocAuc(F({0.1f, 0.5f, 0.5f, 0.9f}), F({0, 0, 1, 1})), 3.5 / 4);
}

TEST(RocAucTest, OneClassIsOneHalf) {
  EXPECT_DOUBLE_EQ(RocAuc(F({0.1f, 0.7f}), F({1, 1})), 0.5);
  EXPECT_DOUBLE_EQ(RocAuc(F({}), F({})), 0.5);
}

TEST(RocAucTest, MatchesBruteForceWithManyTies) {
  at::manual_seed(4);
  const int64_t n = 700;
  at::Tensor scores = at::randint(0, 20, {n}).to(at::kFloat);  // heavy ties
  at::Tensor labels = (at::rand({n}) < scores / 25).to(at::kFloat);
  double wins = 0, pairs = 0;
  auto s = scores.accessor<float, 1>();
  auto y = labels.accessor<float, 1>();
  for (int64_t i = 0; i < n; ++i) {
    if (y[i] < 0.5) continue;
    for (int64_t j = 0; j < n; ++j) {
      if (y[j] >= 0.5) continue;
      pairs += 1;
      wins += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
    }
  }
  EXPECT_NEAR(RocAuc(scores, labels), wins / pairs, 1e-12);
}

TEST(ComputeMetricsTest, HandExample) {
  // logits: >= 0 predicts 1.
  at::Tensor logits = F({2.0f, -1.0f, 0.5f, -3.0f, 1.0f});
  at::Tensor labels = F({1, 1, 0, 0, 1});
  EvalMetrics m = ComputeMetrics(logits, labels);
  EXPECT_EQ(m.rows, 5);
  // Correct: idx 0, 3, 4 -> 3/5.
  EXPECT_DOUBLE_EQ(m.accuracy, 0.6);
  // Recall of positives 2/3, of negatives 1/2.
  EXPECT_DOUBLE_EQ(m.balanced_accuracy, (2.0 / 3 + 0.5) / 2);
  EXPECT_DOUBLE_EQ(m.majority_rate, 0.6);
  const double want_loss = at::binary_cross_entropy_with_logits(logits.to(at::kDouble), labels.to(at::kDouble))
                               .item<double>();
  EXPECT_NEAR(m.loss, want_loss, 1e-12);
  // Pairs: pos {2, -1, 1} vs neg {0.5, -3}: 2>both (2), -1: >-3 (1), 1>both (2) -> 5/6.
  EXPECT_DOUBLE_EQ(m.auc, 5.0 / 6);
}

TEST(ComputeMetricsTest, LossIsStableForExtremeLogits) {
  EvalMetrics m = ComputeMetrics(F({100.0f, -100.0f}), F({0, 1}));
  EXPECT_NEAR(m.loss, 100.0, 1e-9);
  m = ComputeMetrics(F({100.0f, -100.0f}), F({1, 0}));
  EXPECT_NEAR(m.loss, 0.0, 1e-30 + 1e-40);
}

TEST(ComputeMetricsTest, SingleClassAndEmpty) {
  EvalMetrics m = ComputeMetrics(F({1.0f, -1.0f, 2.0f}), F({0, 0, 0}));
  EXPECT_DOUBLE_EQ(m.majority_rate, 1.0);
  EXPECT_DOUBLE_EQ(m.balanced_accuracy, 1.0 / 3);  // only negatives: their recall
  EXPECT_DOUBLE_EQ(m.auc, 0.5);
  EvalMetrics e = ComputeMetrics(F({}), F({}));
  EXPECT_EQ(e.rows, 0);
  EXPECT_EQ(e.accuracy, 0);
}

}  // namespace
}  // namespace dpfleet::train
