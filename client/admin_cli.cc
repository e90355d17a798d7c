#include "client/admin_cli.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/cli.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {
namespace {

std::string Time(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

// JSON has no infinity; a non-private charge composes to null.
nlohmann::json Number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

int TokenVerb(CoordinatorClient& client, const Args& p, bool json, std::ostream& out, std::ostream& err) {
  const std::string sub = p.positional.size() > 1 ? p.positional[1] : "";
  if (sub == "create") {
    if (p.positional.size() != 3 || !p.values.count("--role")) {
      err << "dpctl admin token create: expected NAME --role custodian|analyst|viewer\n";
      return kExitUsage;
    }
    absl::StatusOr<v1::CreateTokenResponse> r = client.CreateToken(p.positional[2], p.values.at("--role"));
    if (!r.ok()) return ReportError(r.status(), err);
    if (json) {
      out << nlohmann::json{{"name", r->info().name()}, {"role", r->info().role()}, {"token", r->token()}}.dump()
          << "\n";
    } else {
      out << r->token() << "\n";
    }
    err << "token for " << r->info().role() << " '" << r->info().name()
        << "' printed on stdout; it is shown only this once\n";
    return kExitOk;
  }
  if (sub == "list") {
    if (p.positional.size() != 2) {
      err << "dpctl admin token list: takes no arguments\n";
      return kExitUsage;
    }
    absl::StatusOr<std::vector<v1::TokenInfo>> tokens = client.ListTokens();
    if (!tokens.ok()) return ReportError(tokens.status(), err);
    if (json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const v1::TokenInfo& t : *tokens) {
        arr.push_back({{"name", t.name()}, {"role", t.role()}, {"created_unix_ms", t.created_unix_ms()},
                       {"revoked_unix_ms", t.revoked_unix_ms()}, {"valid", t.revoked_unix_ms() == 0}});
      }
      out << nlohmann::json{{"tokens", arr}}.dump(2) << "\n";
      return kExitOk;
    }
    out << absl::StrFormat("%-24s %-10s %-25s %s\n", "NAME", "ROLE", "CREATED", "REVOKED");
    for (const v1::TokenInfo& t : *tokens) {
      out << absl::StrFormat("%-24s %-10s %-25s %s\n", t.name(), t.role(), Time(t.created_unix_ms()),
                             Time(t.revoked_unix_ms()));
    }
    return kExitOk;
  }
  if (sub == "revoke") {
    if (p.positional.size() != 3) {
      err << "dpctl admin token revoke: expected NAME\n";
      return kExitUsage;
    }
    if (absl::Status s = client.RevokeToken(p.positional[2]); !s.ok()) return ReportError(s, err);
    out << "revoked the token(s) of '" << p.positional[2] << "'\n";
    return kExitOk;
  }
  err << "dpctl admin token: expected create | list | revoke\n";
  return kExitUsage;
}

int AuditVerb(CoordinatorClient& client, const Args& p, bool json, std::ostream& out, std::ostream& err) {
  int64_t after = 0;
  int32_t limit = 0;
  if (p.positional.size() != 1 || (p.values.count("--after") && !absl::SimpleAtoi(p.values.at("--after"), &after)) ||
      (p.values.count("--limit") && !absl::SimpleAtoi(p.values.at("--limit"), &limit))) {
    err << "dpctl admin audit: expected [--after ID] [--limit N] [-o json] (ID and N integers)\n";
    return kExitUsage;
  }
  absl::StatusOr<std::vector<v1::AuditEntry>> entries = client.ListAudit(after, limit);
  if (!entries.ok()) return ReportError(entries.status(), err);
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const v1::AuditEntry& e : *entries) {
      arr.push_back({{"id", e.id()}, {"time_unix_ms", e.time_unix_ms()}, {"kind", e.kind()}, {"name", e.name()},
                     {"role", e.role()}, {"action", e.action()}, {"target", e.target()}, {"outcome", e.outcome()},
                     {"detail", e.detail()}});
    }
    out << nlohmann::json{{"entries", arr}}.dump(2) << "\n";
    return kExitOk;
  }
  out << absl::StrFormat("%6s %-25s %-28s %-14s %-30s %s\n", "ID", "TIME", "WHO", "ACTION", "TARGET", "OUTCOME");
  for (const v1::AuditEntry& e : *entries) {
    const std::string who = e.kind() == "anonymous" ? "anonymous"
                            : e.kind() == "user"    ? absl::StrCat(e.role(), ":", e.name())
                                                    : absl::StrCat(e.kind(), ":", e.name());
    out << absl::StrFormat("%6d %-25s %-28s %-14s %-30s %s%s\n", e.id(), Time(e.time_unix_ms()), who, e.action(),
                           e.target(), e.outcome(), e.detail().empty() ? "" : " (" + e.detail() + ")");
  }
  return kExitOk;
}

}  // namespace

void AddAdminFlags(ArgSpec* spec) { spec->values.insert({"--role", "--after", "--limit"}); }

int AdminVerb(CoordinatorClient& client, const Args& p, std::ostream& out, std::ostream& err) {
  absl::StatusOr<bool> json = JsonOutputRequested(p);
  if (!json.ok()) {
    err << "dpctl: " << json.status().message() << "\n";
    return kExitUsage;
  }
  const std::string sub = p.positional.empty() ? "" : p.positional[0];
  if (sub == "token") return TokenVerb(client, p, *json, out, err);
  if (sub == "audit") return AuditVerb(client, p, *json, out, err);
  err << "dpctl admin: expected token | audit | certs\n";
  return kExitUsage;
}

int LedgerVerb(CoordinatorClient& client, const Args& p, std::ostream& out, std::ostream& err) {
  const std::string format = p.values.count("-o") ? p.values.at("-o") : "text";
  if (format != "text" && format != "json" && format != "csv") {
    err << "dpctl ledger: -o \"" << format << "\" is not an output format (expected json, csv or text)\n";
    return kExitUsage;
  }
  if (p.positional.size() != 1) {
    err << "dpctl ledger: expected DATASET (a registered name or a data path)\n";
    return kExitUsage;
  }
  absl::StatusOr<v1::GetLedgerResponse> ledger = client.GetLedger(p.positional[0]);
  if (!ledger.ok()) return ReportError(ledger.status(), err);
  if (format == "json") {
    nlohmann::json arr = nlohmann::json::array();
    for (const v1::LedgerCharge& c : ledger->charges()) {
      arr.push_back({{"job_id", c.job_id()}, {"owner", c.owner()}, {"attempt", c.attempt()}, {"epoch", c.epoch()},
                     {"mechanism", c.mechanism()}, {"sample_rate", c.sample_rate()},
                     {"noise_multiplier", c.noise_multiplier()}, {"steps", c.steps()}, {"delta", c.delta()},
                     {"epsilon_increment", Number(c.epsilon_increment())},
                     {"epsilon_total", Number(c.epsilon_total())}, {"recorded_unix_ms", c.recorded_unix_ms()}});
    }
    out << nlohmann::json{{"dataset", ledger->dataset()}, {"delta", ledger->delta()}, {"charges", arr}}.dump(2)
        << "\n";
    return kExitOk;
  }
  if (format == "csv") {
    out << "job_id,owner,attempt,epoch,mechanism,sample_rate,noise_multiplier,steps,delta,epsilon_increment,"
           "epsilon_total,recorded_unix_ms\n";
    for (const v1::LedgerCharge& c : ledger->charges()) {
      // Job ids and token names hold no commas or quotes.
      out << absl::StrFormat("%s,%s,%d,%d,%s,%.17g,%.17g,%d,%.17g,%.17g,%.17g,%d\n", c.job_id(), c.owner(),
                             c.attempt(), c.epoch(), c.mechanism(), c.sample_rate(), c.noise_multiplier(), c.steps(),
                             c.delta(), c.epsilon_increment(), c.epsilon_total(), c.recorded_unix_ms());
    }
    return kExitOk;
  }
  out << absl::StrFormat("ledger of %s (epsilon composed with RDP at delta %.3g)\n", ledger->dataset(),
                         ledger->delta());
  out << absl::StrFormat("%-12s %-16s %7s %5s %10s %8s %7s %10s %10s  %s\n", "JOB", "OWNER", "ATTEMPT", "EPOCH",
                         "Q", "SIGMA", "STEPS", "+EPSILON", "EPSILON", "TIME");
  for (const v1::LedgerCharge& c : ledger->charges()) {
    out << absl::StrFormat("%-12s %-16s %7d %5d %10.6g %8.4g %7d %10.4f %10.4f  %s\n", c.job_id(),
                           c.owner().empty() ? "-" : c.owner(), c.attempt(), c.epoch(), c.sample_rate(),
                           c.noise_multiplier(), c.steps(), c.epsilon_increment(), c.epsilon_total(),
                           Time(c.recorded_unix_ms()));
  }
  return kExitOk;
}

}  // namespace dpfleet::client
