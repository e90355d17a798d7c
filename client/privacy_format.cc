#include "client/privacy_format.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace dpfleet::client {
namespace {

std::string Time(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

// A finite number, or nullopt for the +inf of a non-private use.
std::optional<double> Finite(double v) { return std::isinf(v) ? std::nullopt : std::optional<double>(v); }

// "sha256:" and the first 12 hex digits: enough to tell files apart in a
// table; JSON and CSV carry the whole key.
std::string ShortKey(const std::string& key) {
  constexpr char kPrefix[] = "sha256:";
  if (key.rfind(kPrefix, 0) == 0 && key.size() > sizeof(kPrefix) - 1 + 12) {
    return key.substr(0, sizeof(kPrefix) - 1 + 12) + "…";
  }
  return key;
}

std::string Names(const google::protobuf::RepeatedPtrField<std::string>& names) {
  return names.empty() ? "-" : absl::StrJoin(names, ", ");
}

}  // namespace

bool IsPrivate(const v1::Job& job) { return job.mode() != "none"; }

std::optional<double> JobEpsilon(const v1::Job& job) {
  if (!IsPrivate(job) || !job.has_epsilon()) return std::nullopt;
  return job.epsilon();
}

std::optional<double> EpochEpsilon(const v1::EpochMetrics& m) {
  return m.has_epsilon() ? std::optional<double>(m.epsilon()) : std::nullopt;
}

std::string EpsilonText(std::optional<double> epsilon, int precision) {
  if (!epsilon || std::isinf(*epsilon)) return kNotPrivateText;
  return absl::StrFormat("%.*f", precision, *epsilon);
}

nlohmann::json EpsilonJson(std::optional<double> epsilon) {
  if (!epsilon || !std::isfinite(*epsilon)) return nullptr;
  return *epsilon;
}

std::string Pad(const std::string& text, int width) {
  int columns = 0;
  for (unsigned char c : text) columns += (c & 0xC0) != 0x80;  // continuation bytes add no column
  const int target = width < 0 ? -width : width;
  if (columns >= target) return text;
  const std::string fill(static_cast<size_t>(target - columns), ' ');
  return width < 0 ? text + fill : fill + text;
}

nlohmann::json BudgetJson(const v1::DatasetBudget& b) {
  nlohmann::json j = {{"file", b.file()},
                      {"names", std::vector<std::string>(b.names().begin(), b.names().end())},
                      {"private", !std::isinf(b.epsilon_spent())},
                      {"delta", b.delta()},
                      {"epsilon_spent", EpsilonJson(Finite(b.epsilon_spent()))},
                      {"epsilon_committed", EpsilonJson(Finite(b.epsilon_committed()))},
                      {"jobs", b.jobs()},
                      {"epsilon_budget", nullptr},
                      {"epsilon_remaining", nullptr}};
  if (b.has_budget()) {
    j["epsilon_budget"] = b.epsilon_budget();
    j["epsilon_remaining"] = b.epsilon_remaining();
  }
  return j;
}

std::string BudgetTable(const std::vector<v1::DatasetBudget>& budgets) {
  std::string out = absl::StrFormat("%-24s %10s %16s %16s %10s %8s %5s  %s\n", "FILE", "BUDGET", "SPENT", "COMMITTED",
                                    "REMAINING", "DELTA", "JOBS", "NAMES");
  for (const v1::DatasetBudget& b : budgets) {
    absl::StrAppend(&out, absl::StrFormat("%s %10s %s %s %10s %8.2g %5d  %s\n", Pad(ShortKey(b.file()), -24),
                                          b.has_budget() ? absl::StrFormat("%.4f", b.epsilon_budget()) : "-",
                                          Pad(EpsilonText(Finite(b.epsilon_spent())), 16),
                                          Pad(EpsilonText(Finite(b.epsilon_committed())), 16),
                                          b.has_budget() ? absl::StrFormat("%.4f", b.epsilon_remaining()) : "-",
                                          b.delta(), b.jobs(), Names(b.names())));
  }
  return out;
}

nlohmann::json LedgerJson(const v1::GetLedgerResponse& ledger) {
  nlohmann::json files = nlohmann::json::array();
  for (const v1::FileLedger& f : ledger.files()) {
    nlohmann::json charges = nlohmann::json::array();
    for (const v1::LedgerCharge& c : f.charges()) {
      charges.push_back({{"job_id", c.job_id()},
                         {"owner", c.owner()},
                         {"attempt", c.attempt()},
                         {"epoch", c.epoch()},
                         {"mechanism", c.mechanism()},
                         {"sample_rate", c.sample_rate()},
                         {"noise_multiplier", c.noise_multiplier()},
                         {"steps", c.steps()},
                         {"delta", c.delta()},
                         {"epsilon_increment", EpsilonJson(Finite(c.epsilon_increment()))},
                         {"epsilon_total", EpsilonJson(Finite(c.epsilon_total()))},
                         {"recorded_unix_ms", c.recorded_unix_ms()}});
    }
    files.push_back({{"file", f.file()},
                     {"names", std::vector<std::string>(f.names().begin(), f.names().end())},
                     {"delta", f.delta()},
                     {"charges", charges}});
  }
  return {{"files", files}};
}

std::string LedgerText(const v1::GetLedgerResponse& ledger) {
  std::string out;
  for (const v1::FileLedger& f : ledger.files()) {
    absl::StrAppend(&out, out.empty() ? "" : "\n",
                    absl::StrFormat("ledger of file %s (%s); epsilon composed with RDP at delta %.3g\n", f.file(),
                                    Names(f.names()), f.delta()),
                    absl::StrFormat("%-12s %-16s %7s %5s %-9s %10s %8s %7s %16s %16s  %s\n", "JOB", "OWNER", "ATTEMPT",
                                    "EPOCH", "MECHANISM", "Q", "SIGMA", "STEPS", "+EPSILON", "EPSILON", "TIME"));
    for (const v1::LedgerCharge& c : f.charges()) {
      absl::StrAppend(
          &out,
          absl::StrFormat("%-12s %-16s %7d %5d %-9s %10.6g %8.4g %7d %s %s  %s\n", c.job_id(),
                          c.owner().empty() ? "-" : c.owner(), c.attempt(), c.epoch(), c.mechanism(), c.sample_rate(),
                          c.noise_multiplier(), c.steps(), Pad(EpsilonText(Finite(c.epsilon_increment())), 16),
                          Pad(EpsilonText(Finite(c.epsilon_total())), 16), Time(c.recorded_unix_ms())));
    }
  }
  return out;
}

std::string LedgerCsv(const v1::GetLedgerResponse& ledger) {
  std::string out =
      "file,job_id,owner,attempt,epoch,mechanism,sample_rate,noise_multiplier,steps,delta,epsilon_increment,"
      "epsilon_total,recorded_unix_ms\n";
  for (const v1::FileLedger& f : ledger.files()) {
    for (const v1::LedgerCharge& c : f.charges()) {
      // Keys, job ids and token names hold no commas or quotes (a legacy
      // "path:" key could; it is quoted).
      const bool quote = f.file().find_first_of(",\"") != std::string::npos;
      std::string file = f.file();
      if (quote) {
        std::string escaped;
        for (char ch : file) escaped += ch == '"' ? std::string("\"\"") : std::string(1, ch);
        file = absl::StrCat("\"", escaped, "\"");
      }
      absl::StrAppend(
          &out, absl::StrFormat("%s,%s,%s,%d,%d,%s,%.17g,%.17g,%d,%.17g,%.17g,%.17g,%d\n", file, c.job_id(), c.owner(),
                                c.attempt(), c.epoch(), c.mechanism(), c.sample_rate(), c.noise_multiplier(), c.steps(),
                                c.delta(), c.epsilon_increment(), c.epsilon_total(), c.recorded_unix_ms()));
    }
  }
  return out;
}

}  // namespace dpfleet::client
