#include "common/privacy/pld_accountant.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace dpfleet::privacy::pld {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kPi = 3.14159265358979323846;
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// Losses beyond +-kMaxLoss are never represented on the grid (exp() of them
// must stay finite); the mass out there goes to +infinity / up to the grid.
constexpr double kMaxLoss = 600.0;

// Fractions of delta spent on truncation: single-step tails (shared by all
// steps) and FFT window aliasing. Both are added to delta, so they only
// make epsilon larger, by a negligible amount.
constexpr double kTailFractionOfDelta = 1e-7;
constexpr double kWindowFractionOfDelta = 1e-7;

// Discretisation accuracy target: connect-the-dots adds at most interval^2/4
// of variance per step to the privacy loss; keep that below this fraction of
// the real per-step variance (the composed std then grows by <0.1%).
constexpr double kVarianceInflation = 2e-3;
// Prefer at least this many points on the composed window: FFTs this small
// cost nothing, and a finer grid only tightens the bound.
constexpr double kCheapPoints = double{1 << 15};
// Never more than this many points for one single-step PMF.
constexpr double kMaxSinglePoints = double{1 << 21};

// Standard normal tails.
double UpperTail(double z) { return 0.5 * std::erfc(z * kInvSqrt2); }
double LowerTail(double z) { return 0.5 * std::erfc(-z * kInvSqrt2); }

// z with UpperTail(z) = tail, by bisection (monotone, well conditioned).
double UpperQuantile(double tail) {
  double lo = 0.0, hi = 40.0;
  for (int i = 0; i < 200 && hi - lo > 1e-12; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (UpperTail(mid) > tail) lo = mid; else hi = mid;
  }
  return hi;
}

double LogAddExp(double a, double b) {
  if (a == -kInf) return b;
  if (b == -kInf) return a;
  const double hi = std::max(a, b);
  return hi + std::log1p(std::exp(-std::fabs(a - b)));
}

// The remove-direction privacy loss as a function of the output x:
// log(dP/dQ)(x) = log((1-q) + q exp((2x-1)/(2 sigma^2))), increasing in x.
// The add direction's loss is its negative.
struct LossFunction {
  double q;
  double sigma;
  double log_q;
  double log_1mq;  // -inf when q == 1

  LossFunction(double sample_rate, double noise_multiplier)
      : q(sample_rate), sigma(noise_multiplier), log_q(std::log(sample_rate)),
        log_1mq(sample_rate >= 1.0 ? -kInf : std::log1p(-sample_rate)) {}

  double Loss(double x) const {
    return LogAddExp(log_1mq, log_q + (2.0 * x - 1.0) / (2.0 * sigma * sigma));
  }

  // Inverse of Loss: the x with Loss(x) = l, or -inf when l <= log(1-q).
  double X(double l) const {
    double log_diff;  // log(e^l - (1 - q))
    if (q >= 1.0) {
      log_diff = l;
    } else if (l <= log_1mq) {
      return -kInf;
    } else if (l > 1.0) {
      log_diff = l + std::log1p(-(1.0 - q) * std::exp(-l));
    } else {
      const double diff = std::expm1(l) + q;
      if (diff <= 0) return -kInf;
      log_diff = std::log(diff);
    }
    return sigma * sigma * (log_diff - log_q) + 0.5;
  }
};

// Normal probability mass of an x-interval, from per-endpoint "signed tails"
// (upper tail for z >= 0, lower tail below) so that nearby endpoints far out
// in either tail keep their relative precision.
struct TailPoint {
  double z;
  double tail;
};
TailPoint MakeTailPoint(double z) {
  return {z, z >= 0 ? UpperTail(z) : LowerTail(z)};
}
double IntervalMass(const TailPoint& a, const TailPoint& b) {  // a.z <= b.z
  double m;
  if (a.z >= 0) {
    m = a.tail - b.tail;
  } else if (b.z < 0) {
    m = b.tail - a.tail;
  } else {
    m = 1.0 - a.tail - b.tail;
  }
  return std::max(m, 0.0);
}

// Single-step loss range holding all but `tail` of the P-mass on each side.
struct LossRange {
  double lo;
  double hi;
};
LossRange SingleStepRange(const LossFunction& f, Direction direction, double tail) {
  const double z = UpperQuantile(tail);
  LossRange r;
  if (direction == Direction::kRemove) {
    // P = (1-q)N(0) + qN(1): x > 1 + s z and x < -s z each carry <= tail.
    r = {f.Loss(-f.sigma * z), f.Loss(1.0 + f.sigma * z)};
  } else {
    // P = N(0), loss -Loss(x) decreasing in x.
    r = {-f.Loss(f.sigma * z), -f.Loss(-f.sigma * z)};
  }
  r.lo = std::max(r.lo, -kMaxLoss);
  r.hi = std::min(r.hi, kMaxLoss);
  if (!(r.hi > r.lo)) r.hi = r.lo + 1e-12;
  return r;
}

// Mean and variance of the single-step loss under P, by the trapezoid rule
// in x. Only used to pick the grid interval, so moderate accuracy suffices.
struct Moments {
  double mean;
  double variance;
};
Moments LossMoments(const LossFunction& f, Direction direction) {
  constexpr int kPoints = 20001;
  const double z = 12.0;
  const double lo = -z * f.sigma;
  const double hi = 1.0 + z * f.sigma;
  const double h = (hi - lo) / (kPoints - 1);
  double m0 = 0, m1 = 0, m2 = 0;
  for (int i = 0; i < kPoints; ++i) {
    const double x = lo + h * i;
    const double w = (i == 0 || i == kPoints - 1) ? 0.5 : 1.0;
    const double u0 = x / f.sigma;
    const double u1 = (x - 1.0) / f.sigma;
    double density = kInvSqrt2Pi / f.sigma * std::exp(-0.5 * u0 * u0);
    double loss = f.Loss(x);
    if (direction == Direction::kRemove) {
      density = (1.0 - f.q) * density +
                f.q * kInvSqrt2Pi / f.sigma * std::exp(-0.5 * u1 * u1);
    } else {
      loss = -loss;
    }
    m0 += w * density;
    m1 += w * density * loss;
    m2 += w * density * loss * loss;
  }
  const double mean = m1 / m0;
  return {mean, std::max(m2 / m0 - mean * mean, 0.0)};
}

int64_t NextPowerOfTwo(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// log E[exp(lambda L)] over the finite part of a PMF (lambda of either sign),
// summed from the end where exp(lambda L) is largest so nothing overflows.
double LogMgf(const DiscretePld& pld, double lambda) {
  const int64_t n = static_cast<int64_t>(pld.mass.size());
  if (n == 0) return -kInf;
  const double step = std::exp(-std::fabs(lambda) * pld.interval);
  double weight = 1.0, sum = 0.0;
  double anchor;
  if (lambda >= 0) {
    anchor = static_cast<double>(pld.offset + n - 1) * pld.interval;
    for (int64_t i = n - 1; i >= 0 && weight > 0; --i, weight *= step) {
      sum += pld.mass[i] * weight;
    }
  } else {
    anchor = static_cast<double>(pld.offset) * pld.interval;
    for (int64_t i = 0; i < n && weight > 0; ++i, weight *= step) {
      sum += pld.mass[i] * weight;
    }
  }
  if (sum <= 0) return -kInf;
  return lambda * anchor + std::log(sum);
}

struct Window {
  double lo;
  double hi;
};

// Range of the composed loss outside which each tail holds <= tail_mass
// (Chernoff bound on the discrete PMFs, clamped to the exact support).
Window ChernoffWindow(const std::vector<DiscretePld>& parts,
                      const std::vector<int64_t>& steps, double tail_mass) {
  double support_lo = 0, support_hi = 0, var = 0;
  for (size_t p = 0; p < parts.size(); ++p) {
    const DiscretePld& d = parts[p];
    const double t = static_cast<double>(steps[p]);
    support_lo += t * static_cast<double>(d.offset) * d.interval;
    support_hi += t * static_cast<double>(d.offset + static_cast<int64_t>(d.mass.size()) - 1) *
                  d.interval;
    double m0 = 0, m1 = 0, m2 = 0;
    for (size_t i = 0; i < d.mass.size(); ++i) {
      const double l = static_cast<double>(d.offset + static_cast<int64_t>(i)) * d.interval;
      m0 += d.mass[i];
      m1 += d.mass[i] * l;
      m2 += d.mass[i] * l * l;
    }
    if (m0 > 0) {
      var += t * std::max(m2 / m0 - (m1 / m0) * (m1 / m0), 0.0);
    }
  }
  const double scale = std::max(std::sqrt(var), parts.empty() ? 1.0 : parts[0].interval);
  const double log_tail = std::log(tail_mass);
  Window w{support_lo, support_hi};
  double best_hi = support_hi, best_lo = support_lo;
  for (int j = -6; j <= 24; ++j) {
    const double lambda = std::ldexp(1.0, j) / scale;
    double k_pos = 0, k_neg = 0;
    for (size_t p = 0; p < parts.size(); ++p) {
      const double t = static_cast<double>(steps[p]);
      k_pos += t * LogMgf(parts[p], lambda);
      k_neg += t * LogMgf(parts[p], -lambda);
    }
    // P(S >= x) <= exp(K(l) - l x) <= tail  <=>  x >= (K(l) - log tail)/l.
    best_hi = std::min(best_hi, (k_pos - log_tail) / lambda);
    // P(S <= x) <= exp(K(-l) + l x) <= tail <=> x <= (log tail - K(-l))/l.
    best_lo = std::max(best_lo, (log_tail - k_neg) / lambda);
  }
  w.hi = std::max(best_hi, best_lo);
  w.lo = std::min(best_lo, w.hi);
  return w;
}

struct DirectionResult {
  double epsilon;
  bool too_large;
};

DirectionResult EpsilonInDirection(const std::vector<SubsampledGaussian>& mechs,
                                   Direction direction, double delta,
                                   double interval, int64_t max_fft_size) {
  double total_steps = 0;
  for (const auto& m : mechs) total_steps += static_cast<double>(m.steps);
  const double single_tail = kTailFractionOfDelta * delta / std::max(total_steps, 1.0);
  std::vector<DiscretePld> parts;
  std::vector<int64_t> steps;
  for (const auto& m : mechs) {
    if (m.steps <= 0) continue;
    parts.push_back(DiscretizeSubsampledGaussian(m.sample_rate, m.noise_multiplier,
                                                 direction, interval, single_tail));
    steps.push_back(m.steps);
    if (static_cast<int64_t>(parts.back().mass.size()) > max_fft_size) return {0, true};
  }
  if (parts.empty()) return {0, false};
  const double window_tail = kWindowFractionOfDelta * delta;
  const ComposedPld composed = Compose(parts, steps, window_tail, max_fft_size);
  if (composed.too_large) return {0, true};
  return {EpsilonForDelta(composed.pld, delta, composed.aliasing_mass), false};
}

}  // namespace

namespace {

// cos/sin(2 pi k / n) for k < n/2, computed directly (not by recurrence) so
// every twiddle is exact to an ulp: the T-th power of the spectrum magnifies
// any error T times. Cached per thread for the last size used.
struct Twiddles {
  size_t n = 0;
  std::vector<double> cos_table;
  std::vector<double> sin_table;
};

const Twiddles& TwiddlesFor(size_t n) {
  thread_local Twiddles t;
  if (t.n != n) {
    t.n = n;
    t.cos_table.resize(n / 2);
    t.sin_table.resize(n / 2);
    for (size_t k = 0; k < n / 2; ++k) {
      const double angle = 2.0 * kPi * static_cast<double>(k) / static_cast<double>(n);
      t.cos_table[k] = std::cos(angle);
      t.sin_table[k] = std::sin(angle);
    }
  }
  return t;
}

// Forward transform of a real sequence x (length n, a power of two >= 2)
// through one complex FFT of length n/2. Writes X[0..n/2] (the rest is the
// conjugate mirror) to (re, im), each of length n/2 + 1.
void RealFft(const std::vector<double>& x, std::vector<double>& re, std::vector<double>& im) {
  const size_t n = x.size();
  const size_t m = n / 2;
  std::vector<double> zr(m), zi(m);
  for (size_t j = 0; j < m; ++j) {
    zr[j] = x[2 * j];
    zi[j] = x[2 * j + 1];
  }
  Fft(zr, zi, /*inverse=*/false);
  const Twiddles& tw = TwiddlesFor(n);
  re.assign(m + 1, 0.0);
  im.assign(m + 1, 0.0);
  for (size_t k = 0; k <= m; ++k) {
    const size_t a = k % m;
    const size_t b = (m - k) % m;
    // E = (Z[k] + conj Z[m-k]) / 2, O = (Z[k] - conj Z[m-k]) / (2i).
    const double er = 0.5 * (zr[a] + zr[b]), ei = 0.5 * (zi[a] - zi[b]);
    const double or_ = 0.5 * (zi[a] + zi[b]), oi = -0.5 * (zr[a] - zr[b]);
    // X[k] = E + w^k O with w = e^{-2 pi i / n}.
    const double wr = k < m ? tw.cos_table[k] : -1.0;
    const double wi = k < m ? -tw.sin_table[k] : 0.0;
    re[k] = er + wr * or_ - wi * oi;
    im[k] = ei + wr * oi + wi * or_;
  }
}

// Inverse of RealFft, scaled: from X[0..n/2] back to the real x (length n).
void InverseRealFft(const std::vector<double>& re, const std::vector<double>& im,
                    std::vector<double>& x) {
  const size_t m = re.size() - 1;
  const size_t n = 2 * m;
  const Twiddles& tw = TwiddlesFor(n);
  std::vector<double> zr(m), zi(m);
  for (size_t k = 0; k < m; ++k) {
    // E = (X[k] + conj X[m-k]) / 2, O = (X[k] - conj X[m-k]) / (2 w^k).
    const double er = 0.5 * (re[k] + re[m - k]), ei = 0.5 * (im[k] - im[m - k]);
    const double dr = 0.5 * (re[k] - re[m - k]), di = 0.5 * (im[k] + im[m - k]);
    const double wr = tw.cos_table[k], wi = tw.sin_table[k];  // w^{-k}
    const double or_ = dr * wr - di * wi, oi = dr * wi + di * wr;
    // Z = E + i O.
    zr[k] = er - oi;
    zi[k] = ei + or_;
  }
  Fft(zr, zi, /*inverse=*/true);
  x.resize(n);
  const double scale = 1.0 / static_cast<double>(m);
  for (size_t j = 0; j < m; ++j) {
    x[2 * j] = zr[j] * scale;
    x[2 * j + 1] = zi[j] * scale;
  }
}

}  // namespace

void Fft(std::vector<double>& re, std::vector<double>& im, bool inverse) {
  const size_t n = re.size();
  if (n <= 1) return;
  // Bit-reversal permutation.
  for (size_t i = 1, j = 0; i < n; ++i) {
    size_t bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      std::swap(re[i], re[j]);
      std::swap(im[i], im[j]);
    }
  }
  const Twiddles& tw = TwiddlesFor(n);
  const double sign = inverse ? 1.0 : -1.0;
  for (size_t len = 2; len <= n; len <<= 1) {
    const size_t half = len / 2;
    const size_t stride = n / len;
    for (size_t start = 0; start < n; start += len) {
      for (size_t k = 0; k < half; ++k) {
        const double wr = tw.cos_table[k * stride];
        const double wi = sign * tw.sin_table[k * stride];
        const size_t a = start + k;
        const size_t b = a + half;
        const double tr = re[b] * wr - im[b] * wi;
        const double ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr;
        im[b] = im[a] - ti;
        re[a] += tr;
        im[a] += ti;
      }
    }
  }
}

DiscretePld DiscretizeSubsampledGaussian(double sample_rate, double noise_multiplier,
                                         Direction direction, double interval,
                                         double tail_mass) {
  const LossFunction f(sample_rate, noise_multiplier);
  const LossRange range = SingleStepRange(f, direction, 0.5 * tail_mass);
  const int64_t k_lo = static_cast<int64_t>(std::floor(range.lo / interval));
  int64_t k_hi = static_cast<int64_t>(std::ceil(range.hi / interval));
  if (k_hi <= k_lo) k_hi = k_lo + 1;
  const int64_t n = k_hi - k_lo + 1;

  DiscretePld out;
  out.interval = interval;
  out.offset = k_lo;
  out.mass.assign(n, 0.0);

  // x boundary of every grid loss, with the normal tails of both mixture
  // components there. Remove: loss in (e_k, e_k+1] <=> x in (X(e_k), X(e_k+1)].
  // Add: loss in (e_k, e_k+1] <=> x in [X(-e_k+1), X(-e_k)).
  const bool remove = direction == Direction::kRemove;
  std::vector<TailPoint> c0(n), c1(n);  // components centred at 0 and at 1
  for (int64_t i = 0; i < n; ++i) {
    const double loss = static_cast<double>(k_lo + i) * interval;
    const double x = remove ? f.X(loss) : f.X(-loss);
    c0[i] = MakeTailPoint(x / f.sigma);
    c1[i] = MakeTailPoint((x - 1.0) / f.sigma);
  }
  const double q = f.q;
  const double em = std::expm1(interval);
  for (int64_t i = 0; i + 1 < n; ++i) {
    double m0, m1;  // N(0) and N(1) mass of the bucket's x-interval
    if (remove) {
      m0 = IntervalMass(c0[i], c0[i + 1]);
      m1 = IntervalMass(c1[i], c1[i + 1]);
    } else {
      m0 = IntervalMass(c0[i + 1], c0[i]);
      m1 = IntervalMass(c1[i + 1], c1[i]);
    }
    const double mix = (1.0 - q) * m0 + q * m1;
    const double p_mass = remove ? mix : m0;
    const double q_mass = remove ? m0 : mix;
    if (p_mass <= 0) continue;
    // Connect-the-dots split preserving P- and Q-mass: the share left at the
    // lower point is (e^{l_hi} Q - P) / (e^interval - 1).
    const double upper_loss = static_cast<double>(k_lo + i + 1) * interval;
    double down = (std::exp(upper_loss) * q_mass - p_mass) / em;
    down = std::min(std::max(down, 0.0), p_mass);
    out.mass[i] += down;
    out.mass[i + 1] += p_mass - down;
  }
  // Tails. Below the grid: moved up to the lowest point (raises every
  // delta(eps)); above: to +infinity.
  double below, above;
  if (remove) {
    // x <= X(e_lo) and x > X(e_hi).
    const TailPoint& a0 = c0[0];
    const TailPoint& a1 = c1[0];
    below = (1.0 - q) * (a0.z >= 0 ? 1.0 - a0.tail : a0.tail) +
            q * (a1.z >= 0 ? 1.0 - a1.tail : a1.tail);
    const TailPoint& b0 = c0[n - 1];
    const TailPoint& b1 = c1[n - 1];
    above = (1.0 - q) * (b0.z >= 0 ? b0.tail : 1.0 - b0.tail) +
            q * (b1.z >= 0 ? b1.tail : 1.0 - b1.tail);
  } else {
    // Loss <= e_lo <=> x >= X(-e_lo); loss > e_hi <=> x < X(-e_hi); P = N(0).
    const TailPoint& a0 = c0[0];
    below = a0.z >= 0 ? a0.tail : 1.0 - a0.tail;
    const TailPoint& b0 = c0[n - 1];
    above = b0.z >= 0 ? 1.0 - b0.tail : b0.tail;
  }
  out.mass[0] += std::max(below, 0.0);
  out.infinity_mass = std::min(std::max(above, 0.0), 1.0);
  return out;
}

ComposedPld Compose(const std::vector<DiscretePld>& parts,
                    const std::vector<int64_t>& steps, double window_tail_mass,
                    int64_t max_fft_size) {
  ComposedPld result;
  if (parts.empty()) return result;
  const double interval = parts[0].interval;
  result.pld.interval = interval;

  double log_keep = 0;  // log P(no step lands at +infinity)
  for (size_t p = 0; p < parts.size(); ++p) {
    log_keep += static_cast<double>(steps[p]) * std::log1p(-std::min(parts[p].infinity_mass, 1.0));
  }
  result.pld.infinity_mass = -std::expm1(log_keep);

  const Window w = ChernoffWindow(parts, steps, window_tail_mass);
  const double span = (w.hi - w.lo) / interval + 2;
  if (!(span <= static_cast<double>(max_fft_size))) {
    result.too_large = true;
    return result;
  }
  const int64_t w_lo = static_cast<int64_t>(std::floor(w.lo / interval));
  const int64_t w_hi = static_cast<int64_t>(std::ceil(w.hi / interval));
  int64_t needed = w_hi - w_lo + 1;
  for (const auto& d : parts) needed = std::max<int64_t>(needed, d.mass.size());
  const int64_t n = std::max<int64_t>(NextPowerOfTwo(needed), 4);
  if (n > max_fft_size) {
    result.too_large = true;
    return result;
  }

  // Spectrum of the composition: product of each part's spectrum to the
  // power of its step count (cyclic convolution = aliased linear one). The
  // inputs are real, so only the half spectrum X[0..n/2] is kept.
  const int64_t half = n / 2;
  std::vector<double> spec_re(half + 1, 1.0), spec_im(half + 1, 0.0);
  std::vector<double> x(n), re, im;
  int64_t shift = 0;  // grid index of composed position 0
  for (size_t p = 0; p < parts.size(); ++p) {
    std::fill(x.begin(), x.end(), 0.0);
    std::copy(parts[p].mass.begin(), parts[p].mass.end(), x.begin());
    RealFft(x, re, im);
    const double t = static_cast<double>(steps[p]);
    for (int64_t k = 0; k <= half; ++k) {
      const double r = std::hypot(re[k], im[k]);
      if (r == 0) {
        spec_re[k] = spec_im[k] = 0;
        continue;
      }
      // z^T = |z|^T e^{i T arg z}.
      const double mag = std::exp(t * std::log(r));
      const double ang = t * std::atan2(im[k], re[k]);
      const double pr = mag * std::cos(ang), pi = mag * std::sin(ang);
      const double sr = spec_re[k] * pr - spec_im[k] * pi;
      const double si = spec_re[k] * pi + spec_im[k] * pr;
      spec_re[k] = sr;
      spec_im[k] = si;
    }
    shift += steps[p] * parts[p].offset;
  }
  std::vector<double> y;
  InverseRealFft(spec_re, spec_im, y);
  result.pld.offset = w_lo;
  result.pld.mass.assign(n, 0.0);
  for (int64_t j = 0; j < n; ++j) {
    int64_t src = (j + w_lo - shift) % n;
    if (src < 0) src += n;
    // FFT round-off can leave tiny negative values; clamping them to 0 only
    // adds mass, which can only raise delta(eps).
    result.pld.mass[j] = std::max(y[src], 0.0);
  }
  // Mass above the window (<= window_tail_mass by Chernoff) wrapped around to
  // the bottom, where it no longer counts towards delta: add it back as a
  // bound. Mass below the window wraps to the top and only raises delta.
  result.aliasing_mass = window_tail_mass;
  return result;
}

double DeltaForEpsilon(const DiscretePld& pld, double epsilon) {
  double delta = pld.infinity_mass;
  for (size_t i = 0; i < pld.mass.size(); ++i) {
    const double l = static_cast<double>(pld.offset + static_cast<int64_t>(i)) * pld.interval;
    if (l > epsilon) delta += pld.mass[i] * -std::expm1(epsilon - l);
  }
  return delta;
}

double EpsilonForDelta(const DiscretePld& pld, double delta, double extra_delta) {
  // delta(eps) = inf_mass + extra + sum_{l_i > eps} p_i (1 - e^{eps - l_i}) is
  // continuous and decreasing. Scan the grid downwards keeping
  //   d_j = delta(l_j)  and  c_j = sum_{i >= j} p_i e^{l_j - l_i};
  // d_{j-1} = d_j + (1 - e^{-interval}) c_j adds only positive terms, so the
  // small deltas that matter are never the difference of large numbers.
  const double top = pld.infinity_mass + extra_delta;
  if (top > delta) return kInf;
  const int64_t n = static_cast<int64_t>(pld.mass.size());
  if (n == 0) return 0.0;
  const double h = pld.interval;
  const double shrink = -std::expm1(-h);
  const double decay = std::exp(-h);
  double d = top;             // delta at l_{n-1}
  double c = pld.mass[n - 1]; // c_{n-1}
  for (int64_t j = n - 1; j >= 1; --j) {
    const double l_j = static_cast<double>(pld.offset + j) * h;
    const double d_next = d + shrink * c;  // delta at l_{j-1}
    if (d_next > delta) {
      // Crossing inside (l_{j-1}, l_j]: delta(eps) = d + c (1 - e^{eps - l_j}).
      if (c <= 0) return std::max(l_j, 0.0);
      const double eps = l_j + std::log1p(-(delta - d) / c);
      return std::max(eps, 0.0);
    }
    if (l_j <= 0) return 0.0;  // delta(0) <= delta already
    d = d_next;
    c = decay * c + pld.mass[j - 1];
  }
  // Below the grid delta(eps) = d + c (1 - e^{eps - l_0}).
  const double l0 = static_cast<double>(pld.offset) * h;
  if (c <= 0 || delta - d >= c) return 0.0;
  return std::max(l0 + std::log1p(-(delta - d) / c), 0.0);
}

double ChooseInterval(const std::vector<SubsampledGaussian>& mechanisms,
                      Direction direction, double delta) {
  double total_steps = 0, total_var = 0, max_range = 0, sum_range = 0;
  for (const auto& m : mechanisms) {
    if (m.steps <= 0) continue;
    const double t = static_cast<double>(m.steps);
    const LossFunction f(m.sample_rate, m.noise_multiplier);
    const Moments mo = LossMoments(f, direction);
    const double single_tail = kTailFractionOfDelta * delta;
    const LossRange r = SingleStepRange(f, direction, single_tail);
    total_steps += t;
    total_var += t * mo.variance;
    max_range = std::max(max_range, r.hi - r.lo);
    sum_range += t * (r.hi - r.lo);
  }
  if (total_steps == 0) return 1e-4;
  // Composed window estimate: CLT bulk plus one heavy single-step tail.
  const double window = std::min(sum_range, 24.0 * std::sqrt(total_var) + max_range);
  // interval^2 / 4 <= kVarianceInflation * (mean per-step variance).
  const double accurate = std::sqrt(4.0 * kVarianceInflation * total_var / total_steps);
  double interval = std::min(accurate, window / kCheapPoints);
  interval = std::max(interval, max_range / kMaxSinglePoints);
  if (!(interval > 0)) interval = std::max(window / kCheapPoints, 1e-12);
  return interval;
}

double ComputeEpsilon(const std::vector<SubsampledGaussian>& mechanisms, double delta,
                      const PldOptions& options) {
  bool any = false;
  for (const auto& m : mechanisms) any = any || m.steps > 0;
  if (!any) return 0.0;
  double epsilon = 0.0;
  for (Direction direction : {Direction::kRemove, Direction::kAdd}) {
    double interval = options.interval > 0 ? options.interval
                                           : ChooseInterval(mechanisms, direction, delta);
    DirectionResult r{0, true};
    for (int attempt = 0; attempt < 40; ++attempt) {
      r = EpsilonInDirection(mechanisms, direction, delta, interval, options.max_fft_size);
      if (!r.too_large) break;
      interval *= 2.0;  // coarser grid: still an upper bound, just looser
    }
    if (r.too_large) return kInf;
    epsilon = std::max(epsilon, r.epsilon);
  }
  return epsilon;
}

}  // namespace dpfleet::privacy::pld
