// What the offline subcommands of dpfleet-server (`token create`, `backup`,
// `restore`) share: their flag parsing and the name under which their
// actions are audited. They run as a local user on the coordinator's host,
// before or beside the coordinator, never through its API.
#ifndef DPFLEET_SERVER_RPC_LOCAL_COMMAND_H_
#define DPFLEET_SERVER_RPC_LOCAL_COMMAND_H_

#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

namespace dpfleet::server {

struct LocalFlagSpec {
  std::string command;            // "dpfleet-server backup", for messages
  std::string usage;              // printed after a usage error
  std::set<std::string> valued;   // --flag VALUE / --flag=VALUE
  std::set<std::string> boolean;  // --flag
  std::set<std::string> required;
};

// `args` as typed after the subcommand. Underscores in flag names are
// accepted as dashes. On a usage error, says which flag and why on `err`
// and returns nullopt (exit code 2). Boolean flags map to "true".
std::optional<std::map<std::string, std::string>> ParseLocalFlags(const std::vector<std::string>& args,
                                                                  const LocalFlagSpec& spec, std::ostream& err);

// The operating-system user running this process, as the audit trail
// names a local action: "alice (uid 1000)".
std::string LocalUserName();

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_LOCAL_COMMAND_H_
