#include "client/admin_cli.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/cli.h"
#include "client/privacy_format.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {
namespace {

std::string Time(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

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
    err << "dpctl ledger: expected DATASET (a registered name, a data path or a file key)\n";
    return kExitUsage;
  }
  absl::StatusOr<v1::GetLedgerResponse> ledger = client.GetLedger(p.positional[0]);
  if (!ledger.ok()) return ReportError(ledger.status(), err);
  if (format == "json") {
    out << LedgerJson(*ledger).dump(2) << "\n";
  } else if (format == "csv") {
    out << LedgerCsv(*ledger);
  } else {
    out << LedgerText(*ledger);
  }
  return kExitOk;
}

}  // namespace dpfleet::client
