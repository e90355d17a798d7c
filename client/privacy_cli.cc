#include "client/privacy_cli.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "client/args.h"
#include "client/cli.h"
#include "common/privacy/accountant.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {
namespace {

constexpr char kUsage[] =
    "usage: dpctl privacy epsilon --sample-rate Q --noise-multiplier S --steps T --delta D\n"
    "                             [--accountant rdp|pld] [-o json]\n"
    "       dpctl privacy sigma --target-epsilon E --delta D --sample-rate Q --steps T\n"
    "                           [--accountant rdp|pld] [-o json]\n"
    "  Instead of --sample-rate/--steps, both accept\n"
    "    --epochs E --dataset-size N --batch-size B\n"
    "  (q = B/N, steps = E * max(1, round(N/B))).\n"
    "  Flags take `--flag value` or `--flag=value`. Accountant defaults to rdp.\n";

// A usage error: message for stderr, exit code 2.
struct UsageError {
  std::string message;
};

using Flags = std::map<std::string, std::string>;

// Splits args[begin..] into flags (client/args.h); every flag takes one
// value. Flags are keyed by name without dashes; "output" stands for -o,
// whose value sets *json.
std::optional<UsageError> ParseFlags(const std::vector<std::string>& args, size_t begin,
                                     const std::set<std::string>& known, Flags& flags, bool* json) {
  ArgSpec spec;
  spec.positionals = false;
  for (const std::string& name : known) spec.values.insert(name == "output" ? "-o" : absl::StrCat("--", name));
  absl::StatusOr<Args> parsed = ParseArgs({args.begin() + static_cast<std::ptrdiff_t>(begin), args.end()}, spec);
  if (!parsed.ok()) return UsageError{std::string(parsed.status().message())};
  absl::StatusOr<bool> wants_json = JsonOutputRequested(*parsed);
  if (!wants_json.ok()) return UsageError{std::string(wants_json.status().message())};
  *json = *wants_json;
  for (const auto& [flag, value] : parsed->values) {
    if (flag != "-o") flags[flag.substr(2)] = value;
  }
  return std::nullopt;
}

std::variant<double, UsageError> GetDouble(const Flags& flags, const std::string& name) {
  auto it = flags.find(name);
  if (it == flags.end()) {
    return UsageError{absl::StrCat("missing required flag --", name)};
  }
  double v;
  if (!absl::SimpleAtod(it->second, &v) || !std::isfinite(v)) {
    return UsageError{
        absl::StrCat("--", name, ": \"", it->second, "\" is not a finite number")};
  }
  return v;
}

std::variant<int64_t, UsageError> GetInt(const Flags& flags, const std::string& name) {
  auto it = flags.find(name);
  if (it == flags.end()) {
    return UsageError{absl::StrCat("missing required flag --", name)};
  }
  int64_t v;
  if (absl::SimpleAtoi(it->second, &v)) return v;
  // Accept integral values written as floats ("1e5", "1000.0").
  double d;
  if (absl::SimpleAtod(it->second, &d) && std::isfinite(d) && d == std::floor(d) &&
      std::fabs(d) < 9e18) {
    return static_cast<int64_t>(d);
  }
  return UsageError{absl::StrCat("--", name, ": \"", it->second, "\" is not an integer")};
}

// The (q, steps) pair, from either form of flags.
struct Schedule {
  double sample_rate = 0;
  int64_t steps = 0;
};

std::variant<Schedule, UsageError> GetSchedule(const Flags& flags) {
  const bool direct = flags.count("sample-rate") || flags.count("steps");
  const bool friendly =
      flags.count("epochs") || flags.count("dataset-size") || flags.count("batch-size");
  if (direct && friendly) {
    return UsageError{
        "give either --sample-rate/--steps or --epochs/--dataset-size/--batch-size, "
        "not both"};
  }
  Schedule s;
  if (!friendly) {
    auto q = GetDouble(flags, "sample-rate");
    if (auto* e = std::get_if<UsageError>(&q)) return *e;
    auto t = GetInt(flags, "steps");
    if (auto* e = std::get_if<UsageError>(&t)) return *e;
    s.sample_rate = std::get<double>(q);
    s.steps = std::get<int64_t>(t);
    return s;
  }
  auto epochs = GetInt(flags, "epochs");
  if (auto* e = std::get_if<UsageError>(&epochs)) return *e;
  auto n = GetInt(flags, "dataset-size");
  if (auto* e = std::get_if<UsageError>(&n)) return *e;
  auto b = GetInt(flags, "batch-size");
  if (auto* e = std::get_if<UsageError>(&b)) return *e;
  const int64_t e_v = std::get<int64_t>(epochs), n_v = std::get<int64_t>(n),
                b_v = std::get<int64_t>(b);
  if (e_v < 1) return UsageError{absl::StrCat("--epochs must be >= 1, got ", e_v)};
  if (n_v < 1) return UsageError{absl::StrCat("--dataset-size must be >= 1, got ", n_v)};
  if (b_v < 1 || b_v > n_v) {
    return UsageError{absl::StrCat("--batch-size must be in [1, dataset-size=", n_v,
                                   "], got ", b_v)};
  }
  s.sample_rate = static_cast<double>(b_v) / static_cast<double>(n_v);
  const int64_t per_epoch = std::max<int64_t>(
      1, std::llround(static_cast<double>(n_v) / static_cast<double>(b_v)));
  s.steps = e_v * per_epoch;
  return s;
}

// Maps an accountant error to the CLI flag it is about.
std::string FlagForField(absl::string_view message) {
  static const std::pair<const char*, const char*> kFields[] = {
      {"sample_rate", "--sample-rate"},       {"noise_multiplier", "--noise-multiplier"},
      {"target_epsilon", "--target-epsilon"}, {"steps", "--steps"},
      {"delta", "--delta"},
  };
  for (const auto& [field, flag] : kFields) {
    if (absl::StartsWith(message, field)) return flag;
  }
  return "";
}

int ReportStatus(const absl::Status& status, std::ostream& err) {
  const std::string flag = FlagForField(status.message());
  err << "dpctl privacy: " << (flag.empty() ? "" : flag + ": ") << status.message() << "\n";
  return status.code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
}

int Usage(const UsageError& e, std::ostream& err) {
  err << "dpctl privacy: " << e.message << "\n" << kUsage;
  return kExitUsage;
}

nlohmann::json JsonNumber(double v) {
  // JSON has no infinity; null says "no finite bound".
  if (!std::isfinite(v)) return nullptr;
  return v;
}

int RunEpsilon(const Flags& flags, bool json, privacy::AccountantKind kind,
               std::ostream& out, std::ostream& err) {
  auto schedule = GetSchedule(flags);
  if (auto* e = std::get_if<UsageError>(&schedule)) return Usage(*e, err);
  auto sigma = GetDouble(flags, "noise-multiplier");
  if (auto* e = std::get_if<UsageError>(&sigma)) return Usage(*e, err);
  auto delta = GetDouble(flags, "delta");
  if (auto* e = std::get_if<UsageError>(&delta)) return Usage(*e, err);
  const Schedule s = std::get<Schedule>(schedule);
  const double sigma_v = std::get<double>(sigma), delta_v = std::get<double>(delta);
  if (s.steps < 0) return Usage({absl::StrCat("--steps must be >= 0, got ", s.steps)}, err);
  auto eps = privacy::ComputeEpsilon(kind, {{s.sample_rate, sigma_v, s.steps}}, delta_v);
  if (!eps.ok()) return ReportStatus(eps.status(), err);
  if (json) {
    nlohmann::json j = {{"epsilon", JsonNumber(*eps)},
                        {"delta", delta_v},
                        {"accountant", std::string(privacy::AccountantName(kind))},
                        {"sample_rate", s.sample_rate},
                        {"noise_multiplier", sigma_v},
                        {"steps", s.steps}};
    out << j.dump() << "\n";
  } else {
    out << absl::StrFormat(
        "epsilon = %.6g at delta = %g (%s accountant; sample rate %g, noise multiplier %g, "
        "%d steps)\n",
        *eps, delta_v, privacy::AccountantName(kind), s.sample_rate, sigma_v, s.steps);
  }
  return kExitOk;
}

int RunSigma(const Flags& flags, bool json, privacy::AccountantKind kind, std::ostream& out,
             std::ostream& err) {
  auto target = GetDouble(flags, "target-epsilon");
  if (auto* e = std::get_if<UsageError>(&target)) return Usage(*e, err);
  auto delta = GetDouble(flags, "delta");
  if (auto* e = std::get_if<UsageError>(&delta)) return Usage(*e, err);
  auto schedule = GetSchedule(flags);
  if (auto* e = std::get_if<UsageError>(&schedule)) return Usage(*e, err);
  const Schedule s = std::get<Schedule>(schedule);
  const double target_v = std::get<double>(target), delta_v = std::get<double>(delta);
  auto sigma =
      privacy::CalibrateNoiseMultiplier(kind, target_v, delta_v, s.sample_rate, s.steps);
  if (!sigma.ok()) return ReportStatus(sigma.status(), err);
  // Report the epsilon actually reached, so the user sees the slack.
  auto eps = privacy::ComputeEpsilon(kind, {{s.sample_rate, *sigma, s.steps}}, delta_v);
  if (!eps.ok()) return ReportStatus(eps.status(), err);
  if (json) {
    nlohmann::json j = {{"noise_multiplier", *sigma},
                        {"target_epsilon", target_v},
                        {"epsilon", JsonNumber(*eps)},
                        {"delta", delta_v},
                        {"accountant", std::string(privacy::AccountantName(kind))},
                        {"sample_rate", s.sample_rate},
                        {"steps", s.steps}};
    out << j.dump() << "\n";
  } else {
    out << absl::StrFormat(
        "noise multiplier = %.6g reaches epsilon = %.6g <= %g at delta = %g (%s accountant; "
        "sample rate %g, %d steps)\n",
        *sigma, *eps, target_v, delta_v, privacy::AccountantName(kind), s.sample_rate,
        s.steps);
  }
  return kExitOk;
}

}  // namespace

int RunPrivacyCommand(const std::vector<std::string>& args, std::ostream& out,
                      std::ostream& err) {
  if (args.empty()) return Usage({"missing verb (epsilon or sigma)"}, err);
  const std::string& verb = args[0];
  if (verb == "help" || verb == "--help" || verb == "-h") {
    out << kUsage;
    return kExitOk;
  }
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      out << kUsage;
      return kExitOk;
    }
  }
  const bool is_epsilon = verb == "epsilon" || verb == "eps";
  const bool is_sigma = verb == "sigma";
  if (!is_epsilon && !is_sigma) {
    return Usage({absl::StrCat("unknown verb \"", verb, "\" (expected epsilon or sigma)")},
                 err);
  }
  std::set<std::string> known = {"delta",  "accountant",   "output",    "sample-rate",
                                 "steps",  "epochs",       "dataset-size", "batch-size"};
  known.insert(is_epsilon ? "noise-multiplier" : "target-epsilon");
  Flags flags;
  bool json = false;
  if (auto e = ParseFlags(args, 1, known, flags, &json)) return Usage(*e, err);
  privacy::AccountantKind kind = privacy::AccountantKind::kRdp;
  if (auto it = flags.find("accountant"); it != flags.end()) {
    auto parsed = privacy::ParseAccountantKind(it->second);
    if (!parsed.ok()) {
      return Usage({absl::StrCat("--accountant: \"", it->second,
                                 "\" is not an accountant (expected rdp or pld)")},
                   err);
    }
    kind = *parsed;
  }
  return is_epsilon ? RunEpsilon(flags, json, kind, out, err)
                    : RunSigma(flags, json, kind, out, err);
}

}  // namespace dpfleet::client
