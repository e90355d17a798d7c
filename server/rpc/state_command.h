// `dpfleet-server backup --state-dir D --out FILE` and
// `dpfleet-server restore --from FILE --state-dir D [--replace]`: the
// operator's commands around server/core/state_backup. Backup runs beside a
// serving coordinator; restore refuses while one holds the directory. Both
// are audited as local actions (backup in the live trail, restore in the
// restored one).
#ifndef DPFLEET_SERVER_RPC_STATE_COMMAND_H_
#define DPFLEET_SERVER_RPC_STATE_COMMAND_H_

#include <ostream>
#include <string>
#include <vector>

namespace dpfleet::server {

// `args` follow "backup" / "restore". Exit codes: 0 ok, 2 usage, 1 any
// other failure (named on `err`).
int RunBackupCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int RunRestoreCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_STATE_COMMAND_H_
