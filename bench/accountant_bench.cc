// Microbenchmark of the privacy accountant: epsilon at 1e3 and 1e5 steps for
// the RDP and PLD accountants, and noise calibration, at a typical DP-SGD
// setting (q = 0.01, sigma = 1, delta = 1e-5). Prints a table, or one JSON
// object with --json. Measures only; never changes what the accountant does.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/privacy/accountant.h"
#include "nlohmann/json.hpp"

namespace {

using dpfleet::privacy::AccountantKind;
using dpfleet::privacy::AccountantName;

struct Row {
  std::string what;
  std::string accountant;
  int64_t steps;
  double value;
  double micros;
};

// Median-free but warm: one untimed call, then the mean of `reps` calls.
template <typename F>
double TimeMicros(F&& f, int reps) {
  f();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  const auto end = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::micro>(end - start).count() / reps;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else {
      std::fprintf(stderr, "usage: %s [--json]\n", argv[0]);
      return 2;
    }
  }
  constexpr double kQ = 0.01, kSigma = 1.0, kDelta = 1e-5;
  std::vector<Row> rows;
  for (AccountantKind kind : {AccountantKind::kRdp, AccountantKind::kPld}) {
    const int reps = kind == AccountantKind::kRdp ? 200 : 3;
    for (int64_t steps : {int64_t{1000}, int64_t{100000}}) {
      double eps = 0;
      // A fresh sigma (changed in the 13th digit) per call defeats the RDP
      // curve cache, so this is the cost of a first evaluation.
      int call = 0;
      const double us = TimeMicros(
          [&] {
            const double sigma = kSigma * (1.0 + 1e-13 * ++call);
            eps = *dpfleet::privacy::ComputeEpsilon(kind, {{kQ, sigma, steps}}, kDelta);
          },
          reps);
      rows.push_back({"epsilon", std::string(AccountantName(kind)), steps, eps, us});
      if (kind == AccountantKind::kRdp) {
        const double cached_us = TimeMicros(
            [&] { eps = *dpfleet::privacy::ComputeEpsilon(kind, {{kQ, kSigma, steps}}, kDelta); },
            reps);
        rows.push_back({"epsilon_cached_curve", "rdp", steps, eps, cached_us});
      }
    }
    double sigma = 0;
    const double us = TimeMicros(
        [&] {
          sigma = *dpfleet::privacy::CalibrateNoiseMultiplier(kind, 2.0, kDelta, kQ, 10000);
        },
        kind == AccountantKind::kRdp ? 10 : 1);
    rows.push_back({"calibrate_sigma_eps2", std::string(AccountantName(kind)), 10000, sigma, us});
  }
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Row& r : rows) {
      out.push_back({{"what", r.what}, {"accountant", r.accountant}, {"steps", r.steps},
                     {"value", r.value}, {"micros", r.micros}});
    }
    std::printf("%s\n", nlohmann::json({{"q", kQ}, {"sigma", kSigma}, {"delta", kDelta},
                                        {"results", out}})
                            .dump()
                            .c_str());
  } else {
    std::printf("q=%g sigma=%g delta=%g\n", kQ, kSigma, kDelta);
    std::printf("%-22s %-4s %8s %14s %12s\n", "what", "acct", "steps", "value", "time_us");
    for (const Row& r : rows) {
      std::printf("%-22s %-4s %8lld %14.6f %12.1f\n", r.what.c_str(), r.accountant.c_str(),
                  static_cast<long long>(r.steps), r.value, r.micros);
    }
  }
  return 0;
}
