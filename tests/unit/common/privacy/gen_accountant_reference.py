#!/usr/bin/env python3
"""Generates accountant_reference.inc: reference epsilons for the accountant tests.

Run it in a throwaway virtual environment outside the project, e.g.

  python3 -m venv /tmp/refvenv
  /tmp/refvenv/bin/pip install dp-accounting==0.6.0 numpy scipy
  /tmp/refvenv/bin/python tests/unit/common/privacy/gen_accountant_reference.py \
      > tests/unit/common/privacy/accountant_reference.inc

For every (q, sigma, steps, delta) on the grid it records
  * rdp_exact:    epsilon from the RDP curve on dpfleet's order grid, with
                  every A_alpha evaluated independently in 50-digit arithmetic
                  (mpmath): the exact binomial sum for integer orders, direct
                  numerical integration of E_{N(0,s^2)}[((1-q)+q e^{(2z-1)/2s^2})^a]
                  for fractional ones; then the same RDP -> (eps, delta)
                  conversion. dpfleet's RDP must match it closely.
  * rdp_dpacc:    dp_accounting's RdpAccountant on the same order grid
                  (it sums |terms| of the fractional series, so it can only be
                  looser): dpfleet must never be looser than it.
  * rdp_default:  dp_accounting's RdpAccountant on its default orders (for
                  the record / docs).
  * pld_upper:    dp_accounting's PLDAccountant-equivalent pessimistic
                  connect-the-dots PLD at pld_interval.
  * pld_lower:    dp_accounting's optimistic (privacy buckets, rounding down)
                  PLD at max(pld_interval, 1e-4): meant as a lower bound on
                  the true epsilon (it is not one at very large epsilon, where
                  dp_accounting is ~0.04% high even against the closed form).
  * gaussian_exact: for q = 1 the exact epsilon (closed form, 60 digits);
                  -1 otherwise.
"""

import math
import multiprocessing
import sys

import dp_accounting
import mpmath
import numpy as np
from dp_accounting.pld import privacy_loss_distribution as pld_lib

mpmath.mp.dps = 60

Q_GRID = [1e-4, 1e-3, 0.01, 0.1, 0.5, 1.0]
SIGMA_GRID = [0.5, 0.8, 1.0, 2.0, 5.0]
STEPS_GRID = [1, 10, 1000, 100000]
DELTA_GRID = [1e-5, 1e-8]


def dpfleet_orders():
  """Mirror of rdp::DefaultOrders() (checked by the C++ test)."""
  orders = [1.0 + i / 10.0 for i in range(1, 100)]
  orders += [11.0 + 0.5 * i for i in range(0, 11)]
  orders += list(range(17, 65))
  orders += [72, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512,
             640, 768, 1024, 1536, 2048, 3072, 4096]
  return [float(a) for a in orders]


ORDERS = dpfleet_orders()


def exact_log_a(q, sigma, alpha):
  q = mpmath.mpf(q)
  s2 = mpmath.mpf(sigma) ** 2
  if float(alpha).is_integer():
    a = int(alpha)
    total = mpmath.mpf(0)
    for k in range(a + 1):
      total += (mpmath.binomial(a, k) * (1 - q) ** (a - k) * q ** k *
                mpmath.exp(mpmath.mpf(k * k - k) / (2 * s2)))
    return mpmath.log(total)
  alpha = mpmath.mpf(alpha)
  sigma_mp = mpmath.sqrt(s2)

  def integrand(z):
    mix = (1 - q) + q * mpmath.exp((2 * z - 1) / (2 * s2))
    return mpmath.npdf(z, 0, sigma_mp) * mix ** alpha

  z0 = s2 * mpmath.log(1 / q - 1) + mpmath.mpf(1) / 2
  points = sorted({float(x) for x in [
      -12 * sigma, 0, 0.5, 1, float(z0), float(alpha), float(alpha) - 6 * sigma,
      float(alpha) + 12 * sigma, 12 * sigma]})
  points = [-mpmath.inf] + [mpmath.mpf(x) for x in points] + [mpmath.inf]
  return mpmath.log(mpmath.quad(integrand, points, maxdegree=10))


def exact_rdp_curve(q, sigma):
  if q == 1.0:
    return [mpmath.mpf(a) / (2 * mpmath.mpf(sigma) ** 2) for a in ORDERS]
  return [exact_log_a(q, sigma, a) / (mpmath.mpf(a) - 1) for a in ORDERS]


def rdp_to_epsilon(rdp_total, delta):
  """Same conversion as dpfleet (Balle et al. 2020, Prop. 12), in mpmath."""
  best = mpmath.inf
  log_delta = mpmath.log(delta)
  for a, r in zip(ORDERS, rdp_total):
    a = mpmath.mpf(a)
    if delta * delta + mpmath.expm1(-r) > 0:
      return 0.0
    eps = r + mpmath.log1p(-1 / a) - (log_delta + mpmath.log(a)) / (a - 1)
    best = min(best, eps)
  return float(max(best, 0))


def dpacc_rdp(q, sigma, steps, delta, orders):
  acc = dp_accounting.rdp.RdpAccountant(orders=orders)
  event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
  acc.compose(event, steps)
  return float(acc.get_epsilon(delta))


def pld_interval_for(q, sigma, steps):
  """Discretisation interval for dp_accounting's PLD.

  Its default (1e-4) everywhere except: where it would take minutes (huge
  composed supports), 1e-3 (a coarser pessimistic grid is still an upper
  bound); and where the per-step privacy loss is so concentrated (tiny q,
  large sigma) that 1e-4 is coarse against its spread, making the
  pessimistic estimate far above the truth: there a grid of 5% of the loss's
  standard deviation q*sqrt(e^{1/s^2}-1) (at least 1e-6).
  """
  if steps >= 100000 and q >= 0.1:
    return 1e-3
  loss_std = q * math.sqrt(math.expm1(1.0 / sigma ** 2))
  if q < 1.0 and sigma >= 0.8:
    return min(1e-4, max(1e-6, 0.05 * loss_std))
  return 1e-4


def gaussian_exact_eps(sigma, steps, delta):
  """Exact epsilon of `steps` full-batch Gaussian steps (one Gaussian with
  sigma/sqrt(steps)): delta(eps) = Phi(-eps s + 1/2s) - e^eps Phi(-eps s - 1/2s)
  (Balle & Wang 2018), inverted by bisection in 60-digit arithmetic."""
  s = mpmath.mpf(sigma) / mpmath.sqrt(steps)
  d = mpmath.mpf(delta)

  def delta_at(e):
    return mpmath.ncdf(-e * s + 1 / (2 * s)) - mpmath.exp(e) * mpmath.ncdf(-e * s - 1 / (2 * s))

  lo, hi = mpmath.mpf(0), mpmath.mpf(1)
  while delta_at(hi) > d:
    hi *= 2
  for _ in range(200):
    mid = (lo + hi) / 2
    if delta_at(mid) > d:
      lo = mid
    else:
      hi = mid
  return float(hi)


def pld_eps(q, sigma, steps, deltas, interval, pessimistic):
  pld = pld_lib.from_gaussian_mechanism(
      standard_deviation=sigma, sampling_prob=q,
      value_discretization_interval=interval,
      pessimistic_estimate=pessimistic,
      use_connect_dots=pessimistic)
  if steps > 1:
    pld = pld.self_compose(steps)
  return [float(pld.get_epsilon_for_delta(d)) for d in deltas]


def curve_job(args):
  q, sigma = args
  return (q, sigma), [mpmath.mpf(r) for r in exact_rdp_curve(q, sigma)]


def pld_job(args):
  q, sigma, steps = args
  interval = pld_interval_for(q, sigma, steps)
  upper = pld_eps(q, sigma, steps, DELTA_GRID, interval, True)
  # The optimistic (privacy buckets) estimate is off by up to steps*interval/2
  # and only useful as a lower bound at the default grid.
  lower = pld_eps(q, sigma, steps, DELTA_GRID, max(interval, 1e-4), False)
  return (q, sigma, steps), (interval, upper, lower)


def fmt(x):
  if math.isinf(x):
    return "kInf"
  return repr(float(x))


def main():
  import logging
  logging.disable(logging.WARNING)
  with multiprocessing.Pool(2) as pool:
    curves = dict(pool.map(curve_job, [(q, s) for q in Q_GRID for s in SIGMA_GRID]))
    plds = dict(pool.map(pld_job, [(q, s, t) for q in Q_GRID for s in SIGMA_GRID
                                   for t in STEPS_GRID], chunksize=1))
  out = []
  out.append("// Generated by tests/unit/common/privacy/gen_accountant_reference.py with "
             f"dp-accounting {dp_accounting.__version__ if hasattr(dp_accounting, '__version__') else '0.6.0'}, "
             f"numpy {np.__version__}, mpmath {mpmath.__version__}. Do not edit.")
  out.append("// Included by accountant_test.cc, which defines ReferenceCase.")
  out.append("constexpr double kReferenceOrders[] = {")
  out.append("    " + ", ".join(repr(a) for a in ORDERS) + "};")
  out.append("// {q, sigma, steps, delta, rdp_exact, rdp_dpacc, rdp_default,")
  out.append("//  pld_upper, pld_lower, pld_interval, gaussian_exact}")
  out.append("constexpr ReferenceCase kReferenceCases[] = {")
  for q in Q_GRID:
    for s in SIGMA_GRID:
      curve = curves[(q, s)]
      for t in STEPS_GRID:
        interval, upper, lower = plds[(q, s, t)]
        for di, d in enumerate(DELTA_GRID):
          exact = rdp_to_epsilon([r * t for r in curve], d)
          same = dpacc_rdp(q, s, t, d, ORDERS)
          default = dpacc_rdp(q, s, t, d, None)
          gauss = gaussian_exact_eps(s, t, d) if q == 1.0 else -1.0
          out.append("    {" + ", ".join([
              repr(q), repr(s), str(t), repr(d), fmt(exact), fmt(same),
              fmt(default), fmt(upper[di]), fmt(lower[di]), repr(interval),
              fmt(gauss)]) + "},")
  out.append("};")
  sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
  main()
