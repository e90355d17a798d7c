#include "server/rpc/token_command.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "server/core/store.h"
#include "server/core/tokens.h"
#include "server/rpc/local_command.h"

namespace dpfleet::server {

int RunTokenCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  constexpr char kUsage[] = "usage: dpfleet-server token create --state-dir DIR --name NAME --role custodian|analyst|viewer\n";
  if (args.empty() || args[0] != "create") {
    err << kUsage;
    return 2;
  }
  LocalFlagSpec spec{"dpfleet-server token create", kUsage, {"--state-dir", "--name", "--role"}, {},
                     {"--state-dir", "--name", "--role"}};
  std::optional<std::map<std::string, std::string>> parsed =
      ParseLocalFlags(std::vector<std::string>(args.begin() + 1, args.end()), spec, err);
  if (!parsed) return 2;
  std::map<std::string, std::string>& values = *parsed;
  absl::StatusOr<Role> role = ParseTokenRole(values["--role"]);
  absl::Status name_ok = ValidateTokenName(values["--name"]);
  if (!role.ok() || !name_ok.ok()) {
    err << "dpfleet-server token create: " << (role.ok() ? name_ok : role.status()).message() << "\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(values["--state-dir"]);
  if (!store.ok()) {
    err << "dpfleet-server token create: " << store.status().message() << "\n";
    return 1;
  }
  SystemClock clock;
  Tokens tokens(store->get(), &clock);
  absl::StatusOr<std::string> secret = tokens.Create(values["--name"], *role);
  AuditRecord audit;
  audit.time_ms = clock.NowMs();
  audit.kind = "local";
  audit.name = LocalUserName();  // who ran it, as the operating system knows them
  audit.action = "CreateToken";
  audit.target = absl::StrCat(values["--name"], " (", values["--role"], ")");
  audit.outcome = secret.ok() ? "OK" : absl::StatusCodeToString(secret.status().code());
  audit.detail = secret.ok() ? "dpfleet-server token create" : std::string(secret.status().message());
  absl::Status audited = (*store)->AppendAudit(audit);
  if (!secret.ok()) {
    err << "dpfleet-server token create: " << secret.status().message() << "\n";
    return 1;
  }
  if (!audited.ok()) err << "dpfleet-server token create: audit trail: " << audited.message() << "\n";
  out << *secret << "\n";
  err << "token for " << values["--role"] << " '" << values["--name"]
      << "' printed on stdout; it is shown only this once (the coordinator keeps its SHA-256)\n";
  return 0;
}

}  // namespace dpfleet::server
