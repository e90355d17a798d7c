#include "server/rpc/token_command.h"

#include <pwd.h>
#include <unistd.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "server/core/store.h"
#include "server/core/tokens.h"

namespace dpfleet::server {

int RunTokenCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  constexpr char kUsage[] = "usage: dpfleet-server token create --state-dir DIR --name NAME --role custodian|analyst|viewer\n";
  if (args.empty() || args[0] != "create") {
    err << kUsage;
    return 2;
  }
  std::map<std::string, std::string> values;
  for (std::size_t i = 1; i < args.size(); ++i) {
    std::string flag = args[i];
    std::string value;
    if (const auto eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      err << "dpfleet-server token create: " << flag << " needs a value\n" << kUsage;
      return 2;
    }
    if (flag == "--state_dir") flag = "--state-dir";
    if (flag != "--state-dir" && flag != "--name" && flag != "--role") {
      err << "dpfleet-server token create: unknown flag " << flag << "\n" << kUsage;
      return 2;
    }
    if (!values.emplace(flag, value).second) {
      err << "dpfleet-server token create: " << flag << " given more than once\n";
      return 2;
    }
  }
  for (const char* required : {"--state-dir", "--name", "--role"}) {
    if (values[required].empty()) {
      err << "dpfleet-server token create: " << required << " is required\n" << kUsage;
      return 2;
    }
  }
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
  // Who ran it, as the operating system knows them.
  const struct passwd* user = getpwuid(getuid());
  audit.name = absl::StrCat(user != nullptr ? user->pw_name : "uid", " (uid ", getuid(), ")");
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
