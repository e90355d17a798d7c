// Tests for the audit's statistics: AUC with ties, TPR at a low FPR on a
// hand-built ROC, Clopper–Pearson bounds against closed forms and the
// binomial CDF, and the ε lower bound at its two extremes; the one-run
// audit's p-value against the binomial tail, its bound against the closed
// form, its δ term, its guesses, and its validity and power on simulated
// ε-randomised response.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "worker/audit/statistics.h"

namespace dpfleet::audit {
namespace {

// Pairwise definition of AUC (the quantity Mann–Whitney computes by ranks).
double PairwiseAuc(const std::vector<double>& in, const std::vector<double>& out) {
  double wins = 0;
  for (double a : in)
    for (double b : out) wins += a > b ? 1.0 : (a == b ? 0.5 : 0.0);
  return wins / (static_cast<double>(in.size()) * static_cast<double>(out.size()));
}

TEST(AuditAucTest, PerfectReversedAndTies) {
  EXPECT_DOUBLE_EQ(Auc({3, 4}, {1, 2}), 1.0);
  EXPECT_DOUBLE_EQ(Auc({1, 2}, {3, 4}), 0.0);
  EXPECT_DOUBLE_EQ(Auc({1, 2}, {1, 2}), 0.5);  // (1,1) and (2,2) tie: 0.5 + 0 + 1 + 0.5 of 4
  EXPECT_DOUBLE_EQ(Auc({2, 3}, {1, 2}), 0.875);
  EXPECT_DOUBLE_EQ(Auc({5, 5, 5}, {5, 5}), 0.5);
  EXPECT_DOUBLE_EQ(Auc({}, {1}), 0.5);
}

TEST(AuditAucTest, MatchesPairwiseCountWithManyTies) {
  // Integer scores in 0..4 so that most pairs tie somewhere.
  std::vector<double> in, out;
  for (int i = 0; i < 37; ++i) in.push_back((i * 7) % 5);
  for (int i = 0; i < 23; ++i) out.push_back((i * 3) % 4);
  EXPECT_NEAR(Auc(in, out), PairwiseAuc(in, out), 1e-12);
}

TEST(AuditTprAtFprTest, HandBuiltRoc) {
  // 1000 non-members at 0..999; 100 members: 10 above every non-member, 20
  // at 995.5, 70 below everything. FPR <= 0.1 % allows one false positive
  // (threshold 999: the 10 top members); FPR <= 1 % allows ten (threshold
  // 990: the 10 + 20).
  std::vector<double> out, in;
  for (int i = 0; i < 1000; ++i) out.push_back(i);
  for (int i = 0; i < 10; ++i) in.push_back(2000 + i);
  for (int i = 0; i < 20; ++i) in.push_back(995.5);
  for (int i = 0; i < 70; ++i) in.push_back(-1);
  EXPECT_DOUBLE_EQ(TprAtFpr(in, out, 0.001), 0.10);
  EXPECT_DOUBLE_EQ(TprAtFpr(in, out, 0.01), 0.30);
  EXPECT_DOUBLE_EQ(TprAtFpr(in, out, 1.0), 1.0);
  // A tie is never split: with a non-member at the members' score, the
  // threshold cannot take the members without it.
  EXPECT_DOUBLE_EQ(TprAtFpr({5, 5}, {5, 0, 0, 0}, 0.0), 0.0);
  EXPECT_DOUBLE_EQ(TprAtFpr({5, 5}, {5, 0, 0, 0}, 0.25), 1.0);
}

TEST(AuditClopperPearsonTest, ClosedFormsAtTheEnds) {
  // k = 0: P(Bin(n, p) = 0) = (1 - p)^n = alpha gives upper = 1 - alpha^(1/n)
  // (the exact case behind the "rule of three"); k = n mirrors it.
  EXPECT_NEAR(ClopperPearsonUpper(0, 10, 0.05), 1 - std::pow(0.05, 0.1), 1e-10);
  EXPECT_NEAR(ClopperPearsonUpper(0, 10, 0.05), 0.2589, 1e-4);
  EXPECT_NEAR(ClopperPearsonLower(10, 10, 0.05), std::pow(0.05, 0.1), 1e-10);
  EXPECT_DOUBLE_EQ(ClopperPearsonLower(0, 10, 0.05), 0.0);
  EXPECT_DOUBLE_EQ(ClopperPearsonUpper(10, 10, 0.05), 1.0);
  EXPECT_DOUBLE_EQ(ClopperPearsonLower(0, 0, 0.05), 0.0);
  EXPECT_DOUBLE_EQ(ClopperPearsonUpper(0, 0, 0.05), 1.0);
  // The textbook two-sided 95 % interval for 5 of 10 is [0.1871, 0.8129].
  EXPECT_NEAR(ClopperPearsonLower(5, 10, 0.025), 0.1871, 1e-4);
  EXPECT_NEAR(ClopperPearsonUpper(5, 10, 0.025), 0.8129, 1e-4);
}

// P(Bin(n, p) <= k), summed directly.
double BinomialCdf(int64_t k, int64_t n, double p) {
  double sum = 0;
  for (int64_t i = 0; i <= k; ++i) {
    const double log_term = std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) + i * std::log(p) +
                            (n - i) * std::log1p(-p);
    sum += std::exp(log_term);
  }
  return sum;
}

TEST(AuditClopperPearsonTest, BoundsSolveTheBinomialTailEquations) {
  // Definition (Clopper and Pearson 1934): the upper bound u solves
  // P(Bin(n, u) <= k) = alpha, the lower bound l solves P(Bin(n, l) >= k) =
  // alpha.
  for (auto [k, n] : std::vector<std::pair<int64_t, int64_t>>{{1, 10}, {7, 50}, {120, 400}, {3, 1000}}) {
    for (double alpha : {0.05, 0.00625}) {
      const double u = ClopperPearsonUpper(k, n, alpha), l = ClopperPearsonLower(k, n, alpha);
      EXPECT_NEAR(BinomialCdf(k, n, u), alpha, 1e-8) << k << "/" << n;
      EXPECT_NEAR(1 - BinomialCdf(k - 1, n, l), alpha, 1e-8) << k << "/" << n;
      EXPECT_LT(l, static_cast<double>(k) / n);
      EXPECT_GT(u, static_cast<double>(k) / n);
    }
  }
}

TEST(AuditEpsilonTest, IndistinguishableScoresProveNothing) {
  // The same multiset of scores on both sides: every test flags the same
  // share of members and non-members, so TPR_lo < TPR = FPR < FPR_hi and
  // both logs are negative.
  std::vector<double> scores;
  for (int i = 0; i < 400; ++i) scores.push_back((i * 37) % 101);
  EXPECT_DOUBLE_EQ(EpsilonLowerBound(scores, scores, scores, scores, 1e-5, 0.0125), 0.0);
  const std::vector<double> same(400, 1.0);
  EXPECT_DOUBLE_EQ(EpsilonLowerBound(same, same, same, same, 1e-5, 0.0125), 0.0);
  EXPECT_DOUBLE_EQ(EpsilonLowerBound({}, scores, scores, scores, 1e-5, 0.0125), 0.0);
}

TEST(AuditEpsilonTest, PerfectSeparationGivesTheClosedForm) {
  // Every member above every non-member, 500 per side in the evaluation
  // half: tp = 500, fp = 0, so TPR_lo = a^(1/500) and FPR_hi = 1 - a^(1/500)
  // (the closed forms above), and ε = log((TPR_lo - δ) / FPR_hi). The
  // second inequality gives the same value by symmetry.
  const double alpha = 0.0125, delta = 1e-5;
  const std::vector<double> in(500, 1.0), out(500, 0.0);
  const double r = std::pow(alpha, 1.0 / 500);
  const double want = std::log((r - delta) / (1 - r));
  EXPECT_NEAR(EpsilonLowerBound(in, out, in, out, delta, alpha), want, 1e-9);
  EXPECT_GT(want, 4.0);
  // The direction is chosen on the selection half: reversed scores prove
  // the same.
  EXPECT_NEAR(EpsilonLowerBound(out, in, out, in, delta, alpha), want, 1e-9);
  // A test chosen on a selection half that says the opposite of the
  // evaluation half proves nothing there.
  EXPECT_DOUBLE_EQ(EpsilonLowerBound(in, out, out, in, delta, alpha), 0.0);
}

TEST(AuditEpsilonTest, FromCountsUsesBothInequalities) {
  // tp = 50 of 100, fp = 0 of 100: the first inequality is log(TPR_lo /
  // FPR_hi); the second log((1 - FPR_hi) / (1 - TPR_lo)) is smaller here.
  const double alpha = 0.025;
  const double tpr_lo = ClopperPearsonLower(50, 100, alpha), fpr_hi = ClopperPearsonUpper(0, 100, alpha);
  EXPECT_NEAR(EpsilonFromCounts(50, 100, 0, 100, 0.0, alpha), std::log(tpr_lo / fpr_hi), 1e-12);
  // Mirror: tp = 100, fp = 50 — now only the second inequality proves
  // something: log(TNR_lo / FNR_hi) with TNR_lo = 1 - FPR_hi(50), FNR_hi =
  // 1 - TPR_lo(100).
  const double tnr_lo = 1 - ClopperPearsonUpper(50, 100, alpha), fnr_hi = 1 - ClopperPearsonLower(100, 100, alpha);
  EXPECT_NEAR(EpsilonFromCounts(100, 100, 50, 100, 0.0, alpha), std::log(tnr_lo / fnr_hi), 1e-12);
  // δ is subtracted: a δ above TPR_lo leaves nothing.
  EXPECT_DOUBLE_EQ(EpsilonFromCounts(50, 100, 0, 100, 0.99, alpha), 0.0);
}

// --- The one-run audit (Steinke, Nasr, Jagielski 2023) ---

double BinomialTail(int64_t r, int64_t v, double q) {  // P[Binomial(r, q) >= v], by summing the pmf
  double sum = 0;
  for (int64_t j = v; j <= r; ++j) {
    sum += std::exp(std::lgamma(r + 1.0) - std::lgamma(j + 1.0) - std::lgamma(r - j + 1.0) + j * std::log(q) +
                    (r - j) * std::log1p(-q));
  }
  return sum;
}

TEST(AuditOneRunTest, PureDpPValueIsTheBinomialTail) {
  for (double eps : {0.0, 0.5, 2.0}) {
    const double q = std::exp(eps) / (1 + std::exp(eps));
    EXPECT_NEAR(OneRunPValue(100, 40, 30, eps, 0.0), BinomialTail(40, 30, q), 1e-12) << eps;
    EXPECT_NEAR(OneRunPValue(100, 10, 10, eps, 0.0), std::pow(q, 10), 1e-12) << eps;
  }
  EXPECT_DOUBLE_EQ(OneRunPValue(100, 10, 0, 1.0, 0.0), 1.0);  // "at least 0 right" always holds
  EXPECT_DOUBLE_EQ(OneRunPValue(100, 0, 0, 1.0, 1e-3), 1.0);  // no guesses prove nothing
}

TEST(AuditOneRunTest, AllRightGivesTheClosedFormBound) {
  // v = r and δ = 0: p(ε) = q^r, so the bound solves q^r = alpha:
  // q = alpha^(1/r), ε = log(q / (1 - q)).
  for (int64_t r : {10, 50, 200}) {
    const double alpha = 0.05, q = std::pow(alpha, 1.0 / static_cast<double>(r));
    EXPECT_NEAR(OneRunEpsilonLowerBound(1000, r, r, 0.0, alpha), std::log(q / (1 - q)), 1e-5) << r;
  }
  // Too few guesses: even all right at ε = 0 has probability 2^-4 > 0.05.
  EXPECT_DOUBLE_EQ(OneRunEpsilonLowerBound(1000, 4, 4, 0.0, 0.05), 0.0);
  // Chance accuracy proves nothing.
  EXPECT_DOUBLE_EQ(OneRunEpsilonLowerBound(1000, 500, 250, 0.0, 0.05), 0.0);
  EXPECT_DOUBLE_EQ(OneRunEpsilonLowerBound(1000, 500, 240, 1e-5, 0.05), 0.0);
}

TEST(AuditOneRunTest, DeltaTermWeakensTheBound) {
  // 2 m δ max_i P[v - i <= X < v] / i: here with i = 1 alone, 2 m δ P[X = v - 1].
  const int64_t m = 1000, r = 100, v = 80;
  const double eps = 1.0, q = std::exp(eps) / (1 + std::exp(eps));
  const double pure = OneRunPValue(m, r, v, eps, 0.0);
  const double approx = OneRunPValue(m, r, v, eps, 1e-4);
  const double pmf_below = BinomialTail(r, v - 1, q) - BinomialTail(r, v, q);
  EXPECT_GE(approx - pure, 2 * m * 1e-4 * pmf_below - 1e-12);              // the max is at least its i = 1 term
  EXPECT_LE(approx - pure, 2 * m * 1e-4 * BinomialTail(r, 0, q) + 1e-12);  // a share of P[X < v] <= 1
  // Exactly the theorem's term: the max over every i of (f(v - i) - f(v)) / i.
  double best = 0;
  for (int64_t i = 1; i <= m; ++i) {
    const double f_below = v - i <= 0 ? 1.0 : BinomialTail(r, v - i, q);
    best = std::max(best, (f_below - BinomialTail(r, v, q)) / static_cast<double>(i));
  }
  EXPECT_NEAR(approx - pure, 2 * m * 1e-4 * best, 1e-9);
  const double b0 = OneRunEpsilonLowerBound(m, r, v, 0.0, 0.05);
  const double b1 = OneRunEpsilonLowerBound(m, r, v, 1e-4, 0.05);
  EXPECT_GT(b0, 0.5);
  EXPECT_LT(b1, b0);
  // A δ with 2 m δ = 20 leaves nothing to prove: at ε = 0 the window
  // i = v holds P[X < v] ~ 1, so the δ term alone is about 20 / 80.
  EXPECT_DOUBLE_EQ(OneRunEpsilonLowerBound(m, r, v, 1e-2, 0.05), 0.0);
}

TEST(AuditOneRunTest, GuessesTopAsInAndBottomAsOut) {
  const std::vector<double> scores = {0.9, 0.1, 0.8, 0.2, 0.7, 0.3};
  const std::vector<bool> truth = {true, false, true, false, true, false};
  OneRunGuesses g = GuessTopAndBottom(scores, truth, 2);
  EXPECT_EQ(g.guesses, 4);
  EXPECT_EQ(g.correct, 4);
  const std::vector<bool> reversed = {false, true, false, true, false, true};
  EXPECT_EQ(GuessTopAndBottom(scores, reversed, 2).correct, 0);
  g = GuessTopAndBottom(scores, truth, 10);  // cut to m / 2 = 3
  EXPECT_EQ(g.guesses, 6);
  EXPECT_EQ(g.correct, 6);
  // Equal scores go by position: the first k "in", the last k "out".
  const std::vector<double> flat(6, 0.5);
  EXPECT_EQ(GuessTopAndBottom(flat, {true, false, false, false, false, false}, 1).correct, 2);
  // A diverged model's NaN scores rank lowest: guessed "out".
  const std::vector<double> nan_last = {0.9, std::nan(""), 0.8, 0.2};
  EXPECT_EQ(GuessTopAndBottom(nan_last, {true, false, true, true}, 1).correct, 2);
}

// Simulated ε0-DP guesses: every canary's guess is right with probability
// e^ε0 / (1 + e^ε0), independently (ε0-randomised response, the worst case
// the theorem allows). The bound must exceed ε0 in at most an alpha share
// of trials, and a clearly larger ε0 must be detected.
TEST(AuditOneRunTest, ValidAndPowerfulOnRandomisedResponse) {
  std::mt19937_64 gen(20231);  // test-only randomness
  const int64_t m = 400;
  const double alpha = 0.05;
  const int trials = 300;
  auto run = [&](double eps0) {
    std::bernoulli_distribution right(std::exp(eps0) / (1 + std::exp(eps0)));
    int64_t v = 0;
    for (int64_t i = 0; i < m; ++i) v += right(gen) ? 1 : 0;
    return OneRunEpsilonLowerBound(m, m, v, 0.0, alpha);
  };
  int exceeded = 0;
  double sum_strong = 0;
  for (int t = 0; t < trials; ++t) {
    exceeded += run(1.0) > 1.0 ? 1 : 0;
    sum_strong += run(2.0);
  }
  // At most alpha = 5 % of 300 = 15 in expectation (Binomial sd 3.8): 30
  // is 4 sd above; a bound that ignores its confidence exceeds in ~half.
  EXPECT_LE(exceeded, 30);
  // ε0 = 2 with 400 guesses: 88 % right, the 95 % bound about 1.7.
  EXPECT_GT(sum_strong / trials, 1.4);
  EXPECT_LT(sum_strong / trials, 2.0);
}

}  // namespace
}  // namespace dpfleet::audit
