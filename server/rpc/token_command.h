// `dpfleet-server token create --state-dir D --name NAME --role R`: the
// offline bootstrap of the first token (before anyone can call the
// coordinator's Admin API), straight into the state store. The secret goes
// to `out` (stdout) once and nowhere else; the creation is audited as a
// local action.
#ifndef DPFLEET_SERVER_RPC_TOKEN_COMMAND_H_
#define DPFLEET_SERVER_RPC_TOKEN_COMMAND_H_

#include <ostream>
#include <string>
#include <vector>

namespace dpfleet::server {

// `args` follow "token". Exit codes: 0 ok, 2 usage or invalid name/role,
// 1 any other failure (the state store cannot be opened, the name exists).
int RunTokenCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_TOKEN_COMMAND_H_
