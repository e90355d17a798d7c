// Privacy accountant for DP-SGD: the (epsilon, delta) spent by composing
// Poisson-subsampled Gaussian mechanisms, and the inverse problem
// (smallest noise multiplier that meets a target epsilon).
//
// Used by the coordinator's privacy ledger (which composes heterogeneous
// mechanisms: several jobs with different q, sigma and step counts on one
// dataset), by the worker's per-epoch reporting and by `dpctl privacy`.
//
// Two accountants are offered:
//   * kRdp (default): Renyi DP of the sampled Gaussian mechanism (Mironov,
//     Talwar, Zhang 2019) over a fixed grid of orders, converted with the
//     tight RDP -> (eps, delta) bound (Balle et al. 2020, Canonne-Kamath-
//     Steinke 2020). Fast: cost is independent of the number of steps.
//   * kPld: a privacy-loss-distribution accountant ("connect the dots"
//     discretisation, Doroshenko et al. 2022, composed by FFT). Tighter;
//     slower (milliseconds to a second).
//
// Invariant this unit must never break: the reported epsilon is an UPPER
// bound on the true epsilon of the composed mechanism (never under-report
// privacy loss), and a calibrated noise multiplier always satisfies the
// target when re-evaluated by the same accountant. Every numerical shortcut
// in the implementation rounds towards more privacy loss.
#ifndef DPFLEET_COMMON_PRIVACY_ACCOUNTANT_H_
#define DPFLEET_COMMON_PRIVACY_ACCOUNTANT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dpfleet::privacy {

enum class AccountantKind { kRdp, kPld };

// "rdp" | "pld" (ASCII case-insensitive); InvalidArgument naming the value
// and the accepted names otherwise.
absl::StatusOr<AccountantKind> ParseAccountantKind(absl::string_view name);

// "rdp" or "pld".
absl::string_view AccountantName(AccountantKind kind);

// One Poisson-subsampled Gaussian mechanism applied `steps` times: each step
// samples every record independently with probability `sample_rate` and adds
// N(0, (noise_multiplier * C)^2) noise to the sum of clipped contributions.
struct SubsampledGaussian {
  double sample_rate = 0;
  double noise_multiplier = 0;
  int64_t steps = 0;
};

// Epsilon of the composition of all `mechanisms` under add/remove-one
// neighbouring, at the given delta. Validates 0 < q <= 1, sigma > 0,
// steps >= 0 (per mechanism) and 0 < delta < 1, returning InvalidArgument
// that names the parameter and its value. An empty vector, or all steps == 0,
// gives 0. May return +infinity when no finite epsilon can be certified.
absl::StatusOr<double> ComputeEpsilon(
    AccountantKind kind, const std::vector<SubsampledGaussian>& mechanisms,
    double delta);

// Smallest noise multiplier sigma such that `steps` steps at `sample_rate`
// give epsilon(sigma) <= target_epsilon at `delta`, within relative tolerance
// 1e-4 and never below the true minimum: the returned sigma is always one for
// which ComputeEpsilon(kind, ...) <= target_epsilon. Requires target_epsilon
// > 0, 0 < delta < 1, 0 < sample_rate <= 1, steps >= 1.
absl::StatusOr<double> CalibrateNoiseMultiplier(AccountantKind kind,
                                                double target_epsilon,
                                                double delta,
                                                double sample_rate,
                                                int64_t steps);

// The same with `fixed` mechanisms composed in whose noise is not being
// calibrated (a job's eval releases): the smallest sigma for which `fixed`
// plus `steps` steps at `sample_rate` meet the target, with the same
// guarantee. InvalidArgument when `fixed` alone already spends the target.
absl::StatusOr<double> CalibrateNoiseMultiplier(AccountantKind kind,
                                                double target_epsilon,
                                                double delta,
                                                double sample_rate,
                                                int64_t steps,
                                                const std::vector<SubsampledGaussian>& fixed);

}  // namespace dpfleet::privacy

#endif  // DPFLEET_COMMON_PRIVACY_ACCOUNTANT_H_
