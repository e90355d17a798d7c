// Privacy-loss-distribution (PLD) accountant for Poisson-subsampled Gaussian
// mechanisms under add/remove-one neighbouring.
//
// Internal to the privacy accountant (common/privacy/accountant.h is the public
// entry point); exposed for tests and the benchmark.
//
// Method, per neighbouring direction (remove: P = (1-q)N(0,s^2) + qN(1,s^2)
// vs Q = N(0,s^2); add: the same pair swapped):
//   1. Discretise the privacy loss L = log(dP/dQ) of one step onto the grid
//      {k * interval} with the "connect the dots" rule (Doroshenko, Ghazi,
//      Kamath, Kumar, Manurangsi 2022): the P-mass of every loss value is
//      split between its two neighbouring grid points so that both the P-
//      and the Q-mass are preserved. This is a mean-preserving spread of the
//      likelihood ratio, so the discrete pair dominates the real one (its
//      hockey-stick curve is the chord of the real, convex one): an upper
//      bound that survives composition.
//   2. Mass beyond the tails goes to +infinity loss (upper tail) or is
//      moved up to the lowest grid point (lower tail): both only raise delta.
//   3. Compose T steps by raising the FFT of the PMF to the T-th power on a
//      window sized by a Chernoff bound of the discrete PMF; the mass that
//      can alias into the window is added to delta.
//   4. Read epsilon off the hockey-stick divergence at the requested delta.
// The reported epsilon is the larger of the two directions.
//
// Must never under-report: every truncation, rounding and clamp in here moves
// probability towards larger privacy loss.
#ifndef DPFLEET_COMMON_PRIVACY_PLD_ACCOUNTANT_H_
#define DPFLEET_COMMON_PRIVACY_PLD_ACCOUNTANT_H_

#include <cstdint>
#include <vector>

#include "common/privacy/accountant.h"

namespace dpfleet::privacy::pld {

enum class Direction { kRemove, kAdd };

// A privacy-loss PMF on a uniform grid: mass[i] sits at loss
// (offset + i) * interval; infinity_mass at +infinity.
struct DiscretePld {
  double interval = 0;
  int64_t offset = 0;
  std::vector<double> mass;
  double infinity_mass = 0;
};

// Connect-the-dots discretisation of one step of the sampled Gaussian in one
// direction. `tail_mass` bounds the probability pushed to the tails.
DiscretePld DiscretizeSubsampledGaussian(double sample_rate,
                                         double noise_multiplier,
                                         Direction direction, double interval,
                                         double tail_mass);

// Smallest epsilon >= 0 with hockey-stick divergence delta(eps) <= delta for
// the (composed) PMF, with `extra_delta` added to delta(eps) everywhere (the
// aliasing bound). +infinity if the mass at +infinity already exceeds delta.
double EpsilonForDelta(const DiscretePld& pld, double delta,
                       double extra_delta = 0.0);

// Hockey-stick divergence delta(eps) of a PMF.
double DeltaForEpsilon(const DiscretePld& pld, double epsilon);

// T-fold composition of heterogeneous mechanisms by FFT, in one direction,
// returning the composed PMF on its window and the aliasing bound.
// All parts must share one interval. `too_large` when the window would need
// an FFT longer than max_fft_size (the caller then coarsens the grid).
struct ComposedPld {
  DiscretePld pld;
  double aliasing_mass = 0;  // add to delta(eps)
  bool too_large = false;
};
ComposedPld Compose(const std::vector<DiscretePld>& parts,
                    const std::vector<int64_t>& steps, double window_tail_mass,
                    int64_t max_fft_size = int64_t{1} << 22);

struct PldOptions {
  // 0 = choose automatically from the mechanisms (see ChooseInterval).
  double interval = 0;
  // Upper bound on the FFT length (memory: 16 bytes per point, twice).
  int64_t max_fft_size = int64_t{1} << 22;
};

// Epsilon of the composition of `mechanisms` at `delta` (inputs validated by
// the caller). Pure PLD, without the RDP fallback of privacy::ComputeEpsilon.
double ComputeEpsilon(const std::vector<SubsampledGaussian>& mechanisms,
                      double delta, const PldOptions& options = {});

// The discretisation interval ComputeEpsilon would use in `direction`.
double ChooseInterval(const std::vector<SubsampledGaussian>& mechanisms,
                      Direction direction, double delta);

// In-place radix-2 complex FFT (size a power of two); inverse is unscaled.
// Exposed for tests.
void Fft(std::vector<double>& re, std::vector<double>& im, bool inverse);

}  // namespace dpfleet::privacy::pld

#endif  // DPFLEET_COMMON_PRIVACY_PLD_ACCOUNTANT_H_
