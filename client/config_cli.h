// `dpctl config`: the named contexts of dpctl's config file
// (client/connection.h describes the file).
//
//   dpctl config get-contexts [-o json|yaml|name]   every context; * marks the current one
//   dpctl config current-context                    the current context's name
//   dpctl config use-context NAME                   make NAME current (rewrites the file)
//
// Prints paths and servers, never a token (only the token file's path).
#ifndef DPFLEET_CLIENT_CONFIG_CLI_H_
#define DPFLEET_CLIENT_CONFIG_CLI_H_

#include <ostream>
#include <string>
#include <vector>

namespace dpfleet::client {

// `args` is what follows `dpctl config`; `config_path` the file in use
// ($DPFLEET_CONFIG or the default).
int RunConfigCommand(const std::vector<std::string>& args, const std::string& config_path, bool config_required,
                     std::ostream& out, std::ostream& err);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_CONFIG_CLI_H_
