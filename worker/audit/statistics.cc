#include "worker/audit/statistics.h"

#include <algorithm>
#include <boost/math/distributions/beta.hpp>
#include <boost/math/distributions/binomial.hpp>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <utility>

namespace dpfleet::audit {
namespace {

// Scores of both sides, sorted descending, with a member flag.
std::vector<std::pair<double, bool>> Pooled(const std::vector<double>& members,
                                            const std::vector<double>& non_members) {
  std::vector<std::pair<double, bool>> all;
  all.reserve(members.size() + non_members.size());
  for (double s : members) all.emplace_back(s, true);
  for (double s : non_members) all.emplace_back(s, false);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return all;
}

// One point of the ROC sweep: the test "member iff score >= threshold"
// flags tp members and fp non-members.
struct RocPoint {
  double threshold;
  int64_t tp, fp;
};

// Every threshold at a distinct score, from the highest down (tied scores
// enter together).
std::vector<RocPoint> Sweep(const std::vector<std::pair<double, bool>>& pooled) {
  std::vector<RocPoint> points;
  int64_t tp = 0, fp = 0;
  for (size_t i = 0; i < pooled.size();) {
    const double t = pooled[i].first;
    for (; i < pooled.size() && pooled[i].first == t; ++i) (pooled[i].second ? tp : fp)++;
    points.push_back({t, tp, fp});
  }
  return points;
}

}  // namespace

double Auc(const std::vector<double>& members, const std::vector<double>& non_members) {
  if (members.empty() || non_members.empty()) return 0.5;
  auto pooled = Pooled(members, non_members);
  std::reverse(pooled.begin(), pooled.end());  // ascending: rank 1 = lowest
  // Sum of the members' ranks, a tie group sharing its average rank.
  double rank_sum = 0.0;
  for (size_t i = 0; i < pooled.size();) {
    size_t j = i;
    int64_t in_group = 0;
    for (; j < pooled.size() && pooled[j].first == pooled[i].first; ++j) in_group += pooled[j].second;
    const double average_rank = 0.5 * static_cast<double>(i + 1 + j);  // ranks i+1..j
    rank_sum += average_rank * static_cast<double>(in_group);
    i = j;
  }
  const double m = static_cast<double>(members.size()), n = static_cast<double>(non_members.size());
  const double u = rank_sum - m * (m + 1) / 2;
  return u / (m * n);
}

double TprAtFpr(const std::vector<double>& members, const std::vector<double>& non_members, double max_fpr) {
  if (members.empty() || non_members.empty()) return 0.0;
  const double m = static_cast<double>(members.size()), n = static_cast<double>(non_members.size());
  double best = 0.0;
  for (const RocPoint& p : Sweep(Pooled(members, non_members))) {
    if (static_cast<double>(p.fp) / n > max_fpr) break;  // fp only grows down the sweep
    best = std::max(best, static_cast<double>(p.tp) / m);
  }
  return best;
}

double ClopperPearsonLower(int64_t k, int64_t n, double alpha) {
  if (n <= 0 || k <= 0) return 0.0;
  const boost::math::beta_distribution<double> beta(static_cast<double>(k), static_cast<double>(n - k + 1));
  return boost::math::quantile(beta, alpha);
}

double ClopperPearsonUpper(int64_t k, int64_t n, double alpha) {
  if (n <= 0 || k >= n) return 1.0;
  const boost::math::beta_distribution<double> beta(static_cast<double>(k + 1), static_cast<double>(n - k));
  return boost::math::quantile(beta, 1.0 - alpha);
}

double EpsilonFromCounts(int64_t tp, int64_t members, int64_t fp, int64_t non_members, double delta, double alpha) {
  if (members <= 0 || non_members <= 0) return 0.0;
  const double tpr_lo = ClopperPearsonLower(tp, members, alpha);
  const double fpr_hi = ClopperPearsonUpper(fp, non_members, alpha);
  double eps = 0.0;
  // TPR <= e^ε FPR + δ. fpr_hi > 0 always (the upper bound at fp = 0 is
  // 1 - alpha^(1/n) > 0).
  if (tpr_lo - delta > 0) eps = std::max(eps, std::log((tpr_lo - delta) / fpr_hi));
  // TNR <= e^ε FNR + δ with TNR_lo = 1 - FPR_hi, FNR_hi = 1 - TPR_lo (> 0:
  // the lower bound at tp = members is alpha^(1/members) < 1).
  const double tnr_lo = 1.0 - fpr_hi, fnr_hi = 1.0 - tpr_lo;
  if (tnr_lo - delta > 0) eps = std::max(eps, std::log((tnr_lo - delta) / fnr_hi));
  return eps;
}

ThresholdTest BestThresholdTest(const std::vector<double>& members, const std::vector<double>& non_members,
                                double delta, double alpha) {
  ThresholdTest best;
  if (members.empty() || non_members.empty()) return best;
  const int64_t m = static_cast<int64_t>(members.size()), n = static_cast<int64_t>(non_members.size());
  double best_eps = -1.0;
  for (const RocPoint& p : Sweep(Pooled(members, non_members))) {
    // "score >= t" flags (tp, fp); its complement "score < t" flags the rest.
    const double up = EpsilonFromCounts(p.tp, m, p.fp, n, delta, alpha);
    const double down = EpsilonFromCounts(m - p.tp, m, n - p.fp, n, delta, alpha);
    if (up > best_eps) best_eps = up, best = {p.threshold, false};
    if (down > best_eps) best_eps = down, best = {p.threshold, true};
  }
  return best;
}

double EpsilonLowerBound(const std::vector<double>& select_members, const std::vector<double>& select_non_members,
                         const std::vector<double>& eval_members, const std::vector<double>& eval_non_members,
                         double delta, double alpha) {
  if (select_members.empty() || select_non_members.empty() || eval_members.empty() || eval_non_members.empty()) {
    return 0.0;
  }
  const ThresholdTest test = BestThresholdTest(select_members, select_non_members, delta, alpha);
  auto flagged = [&](const std::vector<double>& scores) {
    int64_t k = 0;
    for (double s : scores) k += (s >= test.threshold) != test.flip;
    return k;
  };
  return EpsilonFromCounts(flagged(eval_members), static_cast<int64_t>(eval_members.size()), flagged(eval_non_members),
                           static_cast<int64_t>(eval_non_members.size()), delta, alpha);
}

double OneRunPValue(int64_t m, int64_t r, int64_t v, double epsilon, double delta) {
  if (v <= 0) return 1.0;
  if (v > r) return 0.0;  // more correct guesses than guesses: impossible
  // q = e^ε / (1 + e^ε), written to stay finite for large ε.
  const double q = 1.0 / (1.0 + std::exp(-epsilon));
  const boost::math::binomial_distribution<double> binomial(static_cast<double>(r), q);
  // f(v) = P[X >= v] = P[X > v - 1].
  const double tail = boost::math::cdf(boost::math::complement(binomial, static_cast<double>(v - 1)));
  double p = tail;
  if (delta > 0) {
    // max over i of P[v - i <= X < v] / i, the window growing down from v - 1.
    double window = 0.0, best = 0.0;
    for (int64_t i = 1; i <= v; ++i) {
      window += boost::math::pdf(binomial, static_cast<double>(v - i));
      best = std::max(best, window / static_cast<double>(i));
    }
    p += 2.0 * static_cast<double>(m) * delta * best;
  }
  return std::min(p, 1.0);
}

double OneRunEpsilonLowerBound(int64_t m, int64_t r, int64_t v, double delta, double alpha) {
  if (OneRunPValue(m, r, v, 0.0, delta) > alpha) return 0.0;
  // Bracket: p(lo) <= alpha < p(hi).
  double lo = 0.0, hi = 1.0;
  while (OneRunPValue(m, r, v, hi, delta) <= alpha) {
    lo = hi;
    hi *= 2.0;
    if (hi > 1e3) return lo;  // every guess right with r huge: beyond any ε worth printing
  }
  while (hi - lo > 1e-6) {
    const double mid = 0.5 * (lo + hi);
    if (OneRunPValue(m, r, v, mid, delta) <= alpha) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

OneRunGuesses GuessTopAndBottom(const std::vector<double>& scores, const std::vector<bool>& included, int64_t k) {
  const int64_t m = static_cast<int64_t>(std::min(scores.size(), included.size()));
  k = std::clamp<int64_t>(k, 0, m / 2);
  std::vector<int64_t> order(static_cast<size_t>(m));
  std::iota(order.begin(), order.end(), 0);
  // Descending by score; equal scores keep their positions' order. A
  // non-finite score (a diverged model) ranks lowest, as -infinity.
  std::vector<double> key(scores.begin(), scores.begin() + m);
  for (double& s : key)
    if (std::isnan(s)) s = -std::numeric_limits<double>::infinity();
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key[a] > key[b]; });
  OneRunGuesses g;
  g.guesses = 2 * k;
  for (int64_t i = 0; i < k; ++i) {
    g.correct += included[order[i]] ? 1 : 0;          // guessed "in"
    g.correct += included[order[m - 1 - i]] ? 0 : 1;  // guessed "out"
  }
  return g;
}

}  // namespace dpfleet::audit
