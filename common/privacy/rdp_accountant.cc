#include "common/privacy/rdp_accountant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace dpfleet::privacy::rdp {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kLogHalf = -0.69314718055994530942;
constexpr double kLogSqrtPi = 0.57236494292470008707;
constexpr double kSqrt2 = 1.41421356237309504880;

// A series term this far (in log units) below the running total cannot move
// the sum in double precision.
// For the alternating tail of the fractional-order series: stop once the
// last term (which bounds the remainder, and is added to the total) is below
// 1e-10 of the total.
constexpr double kNegligibleLogRatio = -23.0;
// Upper bound on series terms for fractional orders. Where the series
// converges this slowly (q near 1/2, small alpha) the order is dropped
// (+inf), which can only make epsilon larger; dp_accounting does the same.
constexpr int kMaxSeriesTerms = 2000;

// log(exp(a) + exp(b)) without overflow.
double LogAddExp(double a, double b) {
  if (a == -kInf) return b;
  if (b == -kInf) return a;
  const double hi = std::max(a, b);
  return hi + std::log1p(std::exp(-std::fabs(a - b)));
}

// log(erfc(x)), accurate where erfc underflows. For x >= 25 the asymptotic
// expansion erfc(x) = exp(-x^2)/(x sqrt(pi)) * (1 - 1/(2x^2) + 3/(2x^2)^2 -
// 15/(2x^2)^3 + 105/(2x^2)^4 - ...) is accurate to ~1e-13 relative.
double LogErfc(double x) {
  if (x < 25.0) return std::log(std::erfc(x));
  const double u = 1.0 / (2.0 * x * x);
  const double series = 1.0 - u * (1.0 - 3.0 * u * (1.0 - 5.0 * u * (1.0 - 7.0 * u)));
  return -x * x - std::log(x) - kLogSqrtPi + std::log(series);
}

// log(0), log(1), ..., log(n), grown on demand (thread-local: no locking).
const std::vector<double>& LogIntegers(int n) {
  thread_local std::vector<double> table{-kInf};
  while (static_cast<int>(table.size()) <= n) {
    table.push_back(std::log(static_cast<double>(table.size())));
  }
  return table;
}

std::vector<double>& ScratchTerms() {
  thread_local std::vector<double> scratch;
  return scratch;
}

// log(A_alpha) for integer alpha >= 2, where
//   A_alpha = sum_k C(alpha,k) (1-q)^(alpha-k) q^k exp((k^2-k)/(2 sigma^2))
// (Mironov et al. 2019, Sec. 3.3, integer case). Since the k = 0, 1 terms have
// exponent 0 and sum_k C(alpha,k)(1-q)^(alpha-k) q^k = 1, this equals
//   1 + sum_{k>=2} C(alpha,k)(1-q)^(alpha-k) q^k expm1((k^2-k)/(2 sigma^2)),
// a sum of positive terms: no cancellation even when q is tiny and A ~ 1.
double LogAInteger(double q, double sigma, int alpha) {
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  const double inv_two_var = 1.0 / (2.0 * sigma * sigma);
  const std::vector<double>& log_int = LogIntegers(alpha + 1);
  // Pass 1: log terms (cheap arithmetic; log C(alpha,k) built incrementally,
  // error ~alpha ulps). Pass 2: exponentiate only terms that can matter.
  std::vector<double>& terms = ScratchTerms();
  terms.resize(alpha + 1);
  double log_binom = log_int[alpha] + log_int[alpha - 1] - log_int[2];  // C(alpha,2)
  double max_term = -kInf;
  for (int k = 2; k <= alpha; ++k) {
    const double c = (static_cast<double>(k) * k - k) * inv_two_var;
    // log(expm1(c)) = c + log(1 - exp(-c)); the correction is < 1e-17 past 40.
    const double log_expm1 = c > 40.0 ? c : c + std::log(-std::expm1(-c));
    const double t = log_binom + (alpha - k) * log_1mq + k * log_q + log_expm1;
    terms[k] = t;
    max_term = std::max(max_term, t);
    if (k < alpha) log_binom += log_int[alpha - k] - log_int[k + 1];
  }
  if (max_term == -kInf) return 0.0;
  double sum = 0.0;
  for (int k = 2; k <= alpha; ++k) {
    if (terms[k] > max_term - 50.0) sum += std::exp(terms[k] - max_term);
  }
  const double log_s = max_term + std::log(sum);  // log(A - 1)
  return log_s < 0 ? std::log1p(std::exp(log_s)) : log_s + std::log1p(std::exp(-log_s));
}

// log(A_alpha) for fractional alpha > 1, by the two convergent series of
// Mironov et al. 2019 (Sec. 3.3): with z0 = sigma^2 log(1/q - 1) + 1/2,
//   A = sum_k C(alpha,k) (1-q)^(alpha-k) q^k e^{(k^2-k)/(2s^2)} Phi((z0-k)/s)
//     + sum_k C(alpha,k) (1-q)^k q^(alpha-k) e^{(j^2-j)/(2s^2)} Phi((j-z0)/s),
// j = alpha - k, and generalised binomials C(alpha,k) that alternate in sign
// once k > alpha. Positive and negative parts are accumulated separately in
// log space. Returns +inf when the series cannot be trusted.
double LogAFractional(double q, double sigma, double alpha) {
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  const double inv_two_var = 1.0 / (2.0 * sigma * sigma);
  const double z0 = sigma * sigma * (log_1mq - log_q) + 0.5;
  const double inv_sqrt2_sigma = 1.0 / (kSqrt2 * sigma);
  double log_pos = -kInf;
  double log_neg = -kInf;
  double log_abs_binom = 0.0;  // log |C(alpha, 0)|
  bool binom_negative = false;
  for (int k = 0; k < kMaxSeriesTerms; ++k) {
    const double j = alpha - k;
    const double t0 = log_abs_binom + k * log_q + j * log_1mq +
                      (static_cast<double>(k) * k - k) * inv_two_var + kLogHalf +
                      LogErfc((k - z0) * inv_sqrt2_sigma);
    const double t1 = log_abs_binom + j * log_q + k * log_1mq +
                      (j * j - j) * inv_two_var + kLogHalf +
                      LogErfc((z0 - j) * inv_sqrt2_sigma);
    const double t = LogAddExp(t0, t1);
    if (binom_negative) {
      log_neg = LogAddExp(log_neg, t);
    } else {
      log_pos = LogAddExp(log_pos, t);
    }
    // Past k > alpha the signs alternate and the magnitudes shrink, so the
    // omitted tail is bounded by the last term; stop once that is negligible
    // against the total, and add it to the positive side to stay an upper
    // bound. (dp_accounting adds |terms|, a looser but also valid bound.)
    if (k > alpha + 1 && t - log_pos < kNegligibleLogRatio) {
      log_pos = LogAddExp(log_pos, t);
      if (log_neg >= log_pos) return kInf;
      return log_pos + std::log1p(-std::exp(log_neg - log_pos));
    }
    // C(alpha, k+1) = C(alpha, k) * (alpha - k) / (k + 1).
    const double ratio = (alpha - k) / (k + 1.0);
    if (ratio < 0) binom_negative = !binom_negative;
    log_abs_binom += std::log(std::fabs(ratio));
  }
  return kInf;
}

bool IsInteger(double x) { return x == std::floor(x); }

}  // namespace

const std::vector<double>& DefaultOrders() {
  static const std::vector<double>* const kOrders = [] {
    auto* orders = new std::vector<double>();
    // Fine steps where the optimum usually lies for DP-SGD settings
    // (a superset of dp_accounting's default grid below 11).
    for (int i = 1; i <= 99; ++i) orders->push_back(1.0 + i / 10.0);
    for (int i = 0; i <= 10; ++i) orders->push_back(11.0 + 0.5 * i);
    for (int a = 17; a <= 64; ++a) orders->push_back(a);
    for (double a : {72, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448,
                     512, 640, 768, 1024, 1536, 2048, 3072, 4096}) {
      orders->push_back(a);
    }
    return orders;
  }();
  return *kOrders;
}

double SubsampledGaussianRdp(double sample_rate, double noise_multiplier,
                             double order) {
  if (sample_rate <= 0) return 0.0;
  if (!(noise_multiplier > 0) || std::isinf(order)) return kInf;
  if (sample_rate >= 1.0) return order / (2.0 * noise_multiplier * noise_multiplier);
  double log_a;
  if (IsInteger(order) && order <= 1e6) {
    log_a = LogAInteger(sample_rate, noise_multiplier, static_cast<int>(order));
  } else {
    log_a = LogAFractional(sample_rate, noise_multiplier, order);
  }
  if (std::isnan(log_a)) return kInf;
  // A_alpha >= 1 mathematically; a slightly negative log is rounding noise.
  return std::max(log_a, 0.0) / (order - 1.0);
}

std::vector<double> SubsampledGaussianRdpCurve(double sample_rate,
                                               double noise_multiplier,
                                               const std::vector<double>& orders) {
  std::vector<double> rdp;
  rdp.reserve(orders.size());
  for (double a : orders) {
    rdp.push_back(SubsampledGaussianRdp(sample_rate, noise_multiplier, a));
  }
  return rdp;
}

EpsilonAndOrder EpsilonFromRdp(const std::vector<double>& orders,
                               const std::vector<double>& rdp, double delta) {
  EpsilonAndOrder best{kInf, 0};
  const double log_delta = std::log(delta);
  for (size_t i = 0; i < orders.size() && i < rdp.size(); ++i) {
    const double a = orders[i];
    const double r = rdp[i];
    if (!(a > 1.0) || std::isnan(r) || std::isinf(r)) continue;
    if (delta * delta + std::expm1(-r) > 0) {
      // D_alpha >= KL for alpha >= 1 and TV <= sqrt(1 - exp(-KL))
      // (Bretagnolle-Huber), and delta(0) = TV: (0, delta)-DP already.
      return {0.0, a};
    }
    const double eps = r + std::log1p(-1.0 / a) - (log_delta + std::log(a)) / (a - 1.0);
    if (eps < best.epsilon) best = {eps, a};
  }
  best.epsilon = std::max(best.epsilon, 0.0);
  return best;
}

namespace {

// The ledger re-evaluates the same few (q, sigma) pairs with growing step
// counts; keep their default-grid curves (per thread, so no locking).
const std::vector<double>& CachedDefaultCurve(double q, double sigma) {
  struct Entry {
    double q;
    double sigma;
    std::vector<double> curve;
  };
  constexpr size_t kEntries = 8;
  thread_local std::vector<Entry> cache;
  thread_local size_t next = 0;
  for (const Entry& e : cache) {
    if (e.q == q && e.sigma == sigma) return e.curve;
  }
  Entry fresh{q, sigma, SubsampledGaussianRdpCurve(q, sigma, DefaultOrders())};
  if (cache.size() < kEntries) {
    cache.push_back(std::move(fresh));
    return cache.back().curve;
  }
  cache[next] = std::move(fresh);
  const std::vector<double>& curve = cache[next].curve;
  next = (next + 1) % kEntries;
  return curve;
}

}  // namespace

EpsilonAndOrder ComputeEpsilon(const std::vector<SubsampledGaussian>& mechanisms,
                               double delta, const std::vector<double>& orders) {
  std::vector<double> total(orders.size(), 0.0);
  const bool default_orders = &orders == &DefaultOrders();
  bool any = false;
  for (const SubsampledGaussian& m : mechanisms) {
    if (m.steps <= 0) continue;
    any = true;
    const double steps = static_cast<double>(m.steps);
    if (default_orders) {
      const std::vector<double>& curve = CachedDefaultCurve(m.sample_rate, m.noise_multiplier);
      for (size_t i = 0; i < orders.size(); ++i) total[i] += steps * curve[i];
      continue;
    }
    for (size_t i = 0; i < orders.size(); ++i) {
      total[i] += steps * SubsampledGaussianRdp(m.sample_rate, m.noise_multiplier, orders[i]);
    }
  }
  if (!any) return {0.0, 0.0};
  return EpsilonFromRdp(orders, total, delta);
}

}  // namespace dpfleet::privacy::rdp
