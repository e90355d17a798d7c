#include "server/rpc/state_command.h"

#include <map>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/core/clock.h"
#include "server/core/state_backup.h"
#include "server/core/store.h"
#include "server/rpc/local_command.h"

namespace dpfleet::server {
namespace {

std::string Describe(const StateSummary& s) {
  return absl::StrFormat("schema v%d: %d jobs, %d ledger rows, %d datasets, %d tokens, %d audit rows; %.1f MiB",
                         s.schema_version, s.jobs, s.ledger_rows, s.datasets, s.tokens, s.audit_rows,
                         static_cast<double>(s.bytes) / (1 << 20));
}

// Appends one local action to the audit trail of `state_dir`'s database.
absl::Status AuditLocal(const std::string& state_dir, const std::string& action, const std::string& target,
                        const std::string& detail) {
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(state_dir);
  if (!store.ok()) return store.status();
  SystemClock clock;
  AuditRecord audit;
  audit.time_ms = clock.NowMs();
  audit.kind = "local";
  audit.name = LocalUserName();
  audit.action = action;
  audit.target = target;
  audit.outcome = "OK";
  audit.detail = detail;
  return (*store)->AppendAudit(audit);
}

}  // namespace

int RunBackupCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  constexpr char kCommand[] = "dpfleet-server backup";
  const LocalFlagSpec spec{kCommand,
                           "usage: dpfleet-server backup --state-dir DIR --out FILE\n",
                           {"--state-dir", "--out"},
                           {},
                           {"--state-dir", "--out"}};
  std::optional<std::map<std::string, std::string>> flags = ParseLocalFlags(args, spec, err);
  if (!flags) return 2;
  const std::string& dir = (*flags)["--state-dir"];
  const std::string& file = (*flags)["--out"];
  absl::StatusOr<StateSummary> summary = BackupStateDb(dir, file);
  if (!summary.ok()) {
    err << kCommand << ": " << summary.status().message() << "\n";
    return 1;
  }
  out << "backed up " << Store::DatabasePath(dir) << " (" << Describe(*summary) << ") to " << file << "\n";
  if (absl::Status audited = AuditLocal(dir, "BackupState", file, Describe(*summary)); !audited.ok()) {
    err << kCommand << ": the backup is complete, but its audit row was not written: " << audited.message() << "\n";
  }
  return 0;
}

int RunRestoreCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  constexpr char kCommand[] = "dpfleet-server restore";
  const LocalFlagSpec spec{kCommand,
                           "usage: dpfleet-server restore --from FILE --state-dir DIR [--replace]\n",
                           {"--state-dir", "--from"},
                           {"--replace"},
                           {"--state-dir", "--from"}};
  std::optional<std::map<std::string, std::string>> flags = ParseLocalFlags(args, spec, err);
  if (!flags) return 2;
  const std::string& dir = (*flags)["--state-dir"];
  const std::string& file = (*flags)["--from"];
  absl::StatusOr<StateDirLock> lock = StateDirLock::Acquire(dir, kCommand);
  if (!lock.ok()) {
    err << kCommand << ": " << lock.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<RestoreResult> result = RestoreStateDb(*lock, file, flags->count("--replace") > 0);
  if (!result.ok()) {
    err << kCommand << ": " << result.status().message() << "\n";
    return 1;
  }
  const std::string detail = result->moved_aside.empty()
                                 ? Describe(result->restored)
                                 : absl::StrCat(Describe(result->restored), "; replaced ", result->moved_aside);
  // Opening the restored database migrates it to this build's schema now,
  // while the directory is still locked, so a failure shows here.
  if (absl::Status audited = AuditLocal(dir, "RestoreState", file, detail); !audited.ok()) {
    err << kCommand << ": restored, but the database does not open: " << audited.message() << "\n";
    return 1;
  }
  out << "restored " << file << " (" << Describe(result->restored) << ") into " << Store::DatabasePath(dir) << "\n";
  if (!result->moved_aside.empty()) out << "the database it replaced is kept as " << result->moved_aside << "\n";
  return 0;
}

}  // namespace dpfleet::server
