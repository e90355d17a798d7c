#include "common/privacy/accountant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/privacy/pld_accountant.h"
#include "common/privacy/rdp_accountant.h"
#include "common/status.h"

namespace dpfleet::privacy {
namespace {

constexpr double kCalibrationRelativeTolerance = 1e-4;
// sigma beyond which calibration gives up (epsilon would need to be absurdly
// small); sigma below which it does too (epsilon absurdly large).
constexpr double kMaxSigma = 1e6;
constexpr double kMinSigma = 1e-3;

absl::Status ValidateDelta(double delta) {
  if (!(delta > 0 && delta < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta must be in (0, 1), got ", delta));
  }
  return absl::OkStatus();
}

absl::Status ValidateMechanism(const SubsampledGaussian& m, absl::string_view prefix) {
  if (!(m.sample_rate > 0 && m.sample_rate <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "sample_rate must be in (0, 1], got ", m.sample_rate));
  }
  if (!(m.noise_multiplier > 0) || std::isinf(m.noise_multiplier)) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "noise_multiplier must be a finite number > 0, got ", m.noise_multiplier));
  }
  if (m.steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "steps must be >= 0, got ", m.steps));
  }
  return absl::OkStatus();
}

// Both accountants without validation.
double EpsilonUnchecked(AccountantKind kind,
                        const std::vector<SubsampledGaussian>& mechanisms, double delta) {
  const double rdp_eps = rdp::ComputeEpsilon(mechanisms, delta).epsilon;
  if (kind == AccountantKind::kRdp) return rdp_eps;
  // Both are upper bounds on the true epsilon, so their minimum is one too;
  // RDP only wins in corners where the PLD grid had to be coarsened.
  return std::min(pld::ComputeEpsilon(mechanisms, delta), rdp_eps);
}

}  // namespace

absl::StatusOr<AccountantKind> ParseAccountantKind(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "rdp") return AccountantKind::kRdp;
  if (lower == "pld") return AccountantKind::kPld;
  return absl::InvalidArgumentError(absl::StrCat(
      "accountant must be \"rdp\" or \"pld\", got \"", name, "\""));
}

absl::string_view AccountantName(AccountantKind kind) {
  switch (kind) {
    case AccountantKind::kRdp:
      return "rdp";
    case AccountantKind::kPld:
      return "pld";
  }
  return "unknown";
}

absl::StatusOr<double> ComputeEpsilon(AccountantKind kind,
                                      const std::vector<SubsampledGaussian>& mechanisms,
                                      double delta) {
  RETURN_IF_ERROR(ValidateDelta(delta));
  for (size_t i = 0; i < mechanisms.size(); ++i) {
    const std::string prefix =
        mechanisms.size() == 1 ? std::string() : absl::StrCat("mechanisms[", i, "].");
    RETURN_IF_ERROR(ValidateMechanism(mechanisms[i], prefix));
  }
  return EpsilonUnchecked(kind, mechanisms, delta);
}

absl::StatusOr<double> CalibrateNoiseMultiplier(AccountantKind kind, double target_epsilon,
                                                double delta, double sample_rate,
                                                int64_t steps) {
  return CalibrateNoiseMultiplier(kind, target_epsilon, delta, sample_rate, steps, {});
}

absl::StatusOr<double> CalibrateNoiseMultiplier(AccountantKind kind, double target_epsilon,
                                                double delta, double sample_rate, int64_t steps,
                                                const std::vector<SubsampledGaussian>& fixed) {
  if (!(target_epsilon > 0) || std::isinf(target_epsilon)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target_epsilon must be a finite number > 0, got ", target_epsilon));
  }
  RETURN_IF_ERROR(ValidateDelta(delta));
  if (!(sample_rate > 0 && sample_rate <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample_rate must be in (0, 1], got ", sample_rate));
  }
  if (steps < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("steps must be >= 1 to calibrate, got ", steps));
  }
  for (size_t i = 0; i < fixed.size(); ++i) {
    RETURN_IF_ERROR(ValidateMechanism(fixed[i], absl::StrCat("fixed[", i, "].")));
  }
  if (!fixed.empty()) {
    // However much noise training gets, the composition never drops below
    // the fixed mechanisms' own epsilon.
    const double floor = EpsilonUnchecked(kind, fixed, delta);
    if (floor >= target_epsilon) {
      return absl::InvalidArgumentError(absl::StrCat(
          "target_epsilon ", target_epsilon, " is unreachable: the fixed mechanisms alone spend ", floor));
    }
  }
  std::vector<SubsampledGaussian> mechanisms = fixed;
  mechanisms.push_back({sample_rate, 1.0, steps});
  auto eps_at = [&](double sigma) {
    mechanisms.back().noise_multiplier = sigma;
    return EpsilonUnchecked(kind, mechanisms, delta);
  };

  // Bracket [lo, hi] with eps(lo) > target >= eps(hi). For PLD, start from
  // the RDP answer: RDP is never tighter, so its sigma is (nearly) an upper
  // end already and saves most of the expensive PLD evaluations.
  double hi = 1.0;
  if (kind == AccountantKind::kPld) {
    auto rdp_sigma = CalibrateNoiseMultiplier(AccountantKind::kRdp, target_epsilon, delta,
                                              sample_rate, steps, fixed);
    if (rdp_sigma.ok()) hi = *rdp_sigma;
  }
  double eps_hi = eps_at(hi);
  double lo = hi;
  double eps_lo = eps_hi;
  if (eps_hi > target_epsilon) {
    while (eps_hi > target_epsilon) {
      lo = hi;
      eps_lo = eps_hi;
      hi *= 2.0;
      if (hi > kMaxSigma) {
        return absl::InvalidArgumentError(absl::StrCat(
            "target_epsilon ", target_epsilon, " is unreachable with noise_multiplier <= ",
            kMaxSigma));
      }
      eps_hi = eps_at(hi);
    }
  } else {
    const double step = kind == AccountantKind::kPld ? 0.9 : 0.5;
    while (eps_lo <= target_epsilon) {
      hi = lo;
      eps_hi = eps_lo;
      lo *= step;
      if (lo < kMinSigma) {
        // Any sigma >= kMinSigma meets the target; report the floor.
        return hi;
      }
      eps_lo = eps_at(lo);
    }
  }
  // Safeguarded false position on log(eps) vs log(sigma) (Illinois variant),
  // always keeping the bracket; returns the feasible end.
  int side = 0;
  double f_lo = std::log(std::max(eps_lo, 1e-300)) - std::log(target_epsilon);
  double f_hi = std::log(std::max(eps_hi, 1e-300)) - std::log(target_epsilon);
  for (int iter = 0; iter < 200 && (hi - lo) > kCalibrationRelativeTolerance * hi; ++iter) {
    const double x_lo = std::log(lo), x_hi = std::log(hi);
    double x = x_hi;
    if (std::isfinite(f_lo) && std::isfinite(f_hi) && f_lo > f_hi) {
      x = x_hi - f_hi * (x_hi - x_lo) / (f_hi - f_lo);
    }
    // Keep the probe strictly inside, away from the ends, so both ends move.
    const double margin = 0.05 * (x_hi - x_lo);
    if (!(x > x_lo + margin && x < x_hi - margin)) x = 0.5 * (x_lo + x_hi);
    const double mid = std::exp(x);
    const double eps_mid = eps_at(mid);
    const double f_mid = std::log(std::max(eps_mid, 1e-300)) - std::log(target_epsilon);
    if (eps_mid <= target_epsilon) {
      hi = mid;
      f_hi = f_mid;
      if (side == 1) f_lo *= 0.5;
      side = 1;
    } else {
      lo = mid;
      f_lo = f_mid;
      if (side == -1) f_hi *= 0.5;
      side = -1;
    }
  }
  return hi;
}

}  // namespace dpfleet::privacy
