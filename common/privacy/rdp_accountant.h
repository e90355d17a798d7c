// Renyi-DP accountant for the Poisson-subsampled Gaussian mechanism.
//
// Internal to the privacy accountant (common/privacy/accountant.h is the public
// entry point); exposed for tests, the benchmark and the PLD accountant,
// which uses RDP as a cheap tail bound and as a fallback upper bound.
//
// The RDP of one step is computed once per order (Mironov, Talwar, Zhang
// 2019, "Renyi Differential Privacy of the Sampled Gaussian Mechanism") and
// composition over T steps multiplies it by T, so the cost never depends on
// the number of steps. Must never under-report: numerical trouble at an
// order yields +infinity for that order (the order is then ignored), never a
// smaller value.
#ifndef DPFLEET_COMMON_PRIVACY_RDP_ACCOUNTANT_H_
#define DPFLEET_COMMON_PRIVACY_RDP_ACCOUNTANT_H_

#include <vector>

#include "absl/status/statusor.h"
#include "common/privacy/accountant.h"

namespace dpfleet::privacy::rdp {

// The order grid: 1.1..10.9 in steps of 0.1, 11..16 in steps of 0.5, every
// integer 17..64, then a geometric-ish tail up to 4096 (large orders matter
// for very small epsilon). A superset of dp_accounting's default orders.
const std::vector<double>& DefaultOrders();

// RDP of ONE step of the sampled Gaussian mechanism at `order` (> 1).
// q == 1 is the plain Gaussian: order / (2 sigma^2).
double SubsampledGaussianRdp(double sample_rate, double noise_multiplier,
                             double order);

// RDP of one step at every order of `orders`.
std::vector<double> SubsampledGaussianRdpCurve(
    double sample_rate, double noise_multiplier,
    const std::vector<double>& orders);

struct EpsilonAndOrder {
  double epsilon = 0;
  double order = 0;  // the order that attains the minimum (0 if none/eps=0)
};

// (eps, delta) from an RDP curve with the conversion of Balle et al. 2020
// (Prop. 12) / Canonne, Kamath, Steinke 2020:
//   eps = rdp - (log delta + log alpha) / (alpha - 1) + log((alpha - 1)/alpha)
// minimised over orders, with the KL (Bretagnolle-Huber) shortcut
// delta >= sqrt(1 - exp(-rdp)) => eps = 0. Non-finite rdp values are skipped.
EpsilonAndOrder EpsilonFromRdp(const std::vector<double>& orders,
                               const std::vector<double>& rdp, double delta);

// Epsilon of the composition of `mechanisms` over `orders` (inputs are
// assumed validated by the caller).
EpsilonAndOrder ComputeEpsilon(const std::vector<SubsampledGaussian>& mechanisms,
                               double delta,
                               const std::vector<double>& orders = DefaultOrders());

}  // namespace dpfleet::privacy::rdp

#endif  // DPFLEET_COMMON_PRIVACY_RDP_ACCOUNTANT_H_
