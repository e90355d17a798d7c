// Statistics of a membership attack: ROC AUC, TPR at a low FPR, one-sided
// Clopper–Pearson bounds, and the empirical ε lower bound an attack's
// outcome implies (docs/AUDIT.md).
//
// An attack gives every challenge point a score; a higher score means "more
// likely a member". Every function here is pure (no randomness, no torch):
// the audit splits the challenge points into a selection half and an
// evaluation half with the OS CSPRNG and hands both halves in.
//
// The ε lower bound. For an (ε, δ)-DP training run, every test that tells a
// member from a non-member satisfies
//   TPR <= e^ε FPR + δ   and   TNR <= e^ε FNR + δ
// (the hypothesis-testing view of DP, Kairouz, Oh, Viswanath 2015; used for
// auditing by Jagielski, Ullman, Oprea 2020 and Nasr et al. 2021). So with a one-sided lower bound
// TPR_lo on TPR and an upper bound FPR_hi on FPR that hold jointly,
//   ε >= max(0, log((TPR_lo - δ) / FPR_hi), log((TNR_lo - δ) / FNR_hi)),
// where TNR_lo = 1 - FPR_hi and FNR_hi = 1 - TPR_lo (the same two events).
// The threshold and its direction are chosen on the selection half and the
// bound is evaluated on the other half, so the choice does not bias it.
//
// Caveat: the challenge points of one audit share ONE training run of the
// model, so their membership outcomes are not independent trials of the DP
// guarantee. The bound is the conventional single-run estimate used in the
// membership-inference literature, not a proof over independent runs.
#ifndef DPFLEET_WORKER_AUDIT_STATISTICS_H_
#define DPFLEET_WORKER_AUDIT_STATISTICS_H_

#include <cstdint>
#include <vector>

namespace dpfleet::audit {

// ROC AUC: the probability that a random member outscores a random
// non-member, ties counting one half (Mann–Whitney U with average ranks).
// 0.5 when either side is empty.
double Auc(const std::vector<double>& members, const std::vector<double>& non_members);

// The largest TPR of a test "member iff score >= t" over thresholds t whose
// FPR is <= max_fpr (tied scores are never split). 0 when no threshold but
// +infinity qualifies, or either side is empty.
double TprAtFpr(const std::vector<double>& members, const std::vector<double>& non_members, double max_fpr);

// One-sided Clopper–Pearson bounds for a binomial proportion with k
// successes out of n trials at error probability alpha in (0, 1):
//   P(p < lower) <= alpha,  lower = 0 if k = 0, else Beta quantile(alpha; k, n - k + 1);
//   P(p > upper) <= alpha,  upper = 1 if k = n, else Beta quantile(1 - alpha; k + 1, n - k)
// (Clopper and Pearson 1934, in the Beta-quantile form given by Brown, Cai,
// DasGupta 2001, "Interval Estimation for a Binomial Proportion"). n = 0
// gives [0, 1].
double ClopperPearsonLower(int64_t k, int64_t n, double alpha);
double ClopperPearsonUpper(int64_t k, int64_t n, double alpha);

// ε lower bound (see the file comment) of one outcome: tp of `members`
// members and fp of `non_members` non-members flagged, δ = delta, each of
// the two one-sided bounds at error probability alpha.
double EpsilonFromCounts(int64_t tp, int64_t members, int64_t fp, int64_t non_members, double delta, double alpha);

// A test "member iff score >= threshold" (flip: "member iff score <
// threshold").
struct ThresholdTest {
  double threshold = 0.0;
  bool flip = false;
};

// The test with the largest EpsilonFromCounts on (members, non_members)
// over every threshold between distinct scores, both directions.
ThresholdTest BestThresholdTest(const std::vector<double>& members, const std::vector<double>& non_members,
                                double delta, double alpha);

// The ε lower bound of an attack: the test chosen on the selection half,
// evaluated on the evaluation half. 0 when either half lacks a side.
double EpsilonLowerBound(const std::vector<double>& select_members, const std::vector<double>& select_non_members,
                         const std::vector<double>& eval_members, const std::vector<double>& eval_non_members,
                         double delta, double alpha);

// The one-run audit (Steinke, Nasr, Jagielski 2023, "Privacy Auditing with
// One (1) Training Run", NeurIPS 2023). m canaries are each included in ONE
// training run independently with probability 1/2; an auditor who sees only
// the trained model guesses "in" or "out" for r of them (abstaining on the
// rest) and is right v times. If the training is (ε, δ)-DP, then for every v
//   P[V >= v] <= f(v) + 2 m δ max_{1 <= i <= v} (f(v - i) - f(v)) / i,
//   f(u) = P[Binomial(r, e^ε / (1 + e^ε)) >= u]
// (their main theorem for approximate DP; for δ = 0 it is the plain
// binomial tail: each guess is no better than ε-randomised response). Unlike
// the bounds above, this one is a proof from a single training run: the
// inclusion of each canary is the independent coin the theorem needs.
//
// OneRunPValue is the right-hand side: the probability, under the null
// hypothesis "the training is (ε, δ)-DP", of v or more correct guesses. The
// terms for i > v add nothing (f(v - i) = 1 there, and (1 - f(v)) / i
// shrinks), so the maximum runs over i <= v. 0 <= v <= r <= m.
double OneRunPValue(int64_t m, int64_t r, int64_t v, double epsilon, double delta);

// The largest ε the outcome (m, r, v) refutes at significance alpha: the
// supremum of ε >= 0 with OneRunPValue(m, r, v, ε, δ) <= alpha, found by
// bisection to 1e-6 (the binomial tail, the dominant term, grows with ε);
// 0 when even ε = 0 is not refuted.
double OneRunEpsilonLowerBound(int64_t m, int64_t r, int64_t v, double delta, double alpha);

// The auditor's guesses for one guess count k: the k canaries with the
// highest scores are guessed "in", the k with the lowest "out" (k <= m / 2;
// a larger k is cut to m / 2). Ties go by position, which the caller must
// have drawn independently of inclusion. included[i] is canary i's coin.
struct OneRunGuesses {
  int64_t guesses = 0;  // r = 2k
  int64_t correct = 0;  // v
};
OneRunGuesses GuessTopAndBottom(const std::vector<double>& scores, const std::vector<bool>& included, int64_t k);

}  // namespace dpfleet::audit

#endif  // DPFLEET_WORKER_AUDIT_STATISTICS_H_
