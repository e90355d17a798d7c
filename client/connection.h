// How dpctl reaches the coordinator: address, CA and token, each from the
// first of (1) the command line (--server, --ca, --token), (2) the
// environment ($DPFLEET_SERVER, $DPFLEET_CA, $DPFLEET_TOKEN), (3) dpctl's
// config file, a YAML mapping with the keys `server`, `ca` and
// `token_file` (paths relative to the file). The config file is
// $DPFLEET_CONFIG, else $XDG_CONFIG_HOME/dpfleet/dpctl.yaml, else
// ~/.config/dpfleet/dpctl.yaml; it may be absent.
//
// A token file must be readable by its owner only (like an ssh key): one
// that the group or others can read is refused. The token itself is never
// printed.
#ifndef DPFLEET_CLIENT_CONNECTION_H_
#define DPFLEET_CLIENT_CONNECTION_H_

#include <string>

#include "absl/status/statusor.h"
#include "client/coordinator_client.h"

namespace dpfleet::client {

struct ConnectionSettings {
  std::string server;  // HOST:PORT
  std::string ca;      // path of the CA's PEM
  std::string token;   // the token itself
};

// $XDG_CONFIG_HOME/dpfleet/dpctl.yaml or ~/.config/dpfleet/dpctl.yaml.
std::string DefaultConfigPath();

// Fills what `flags` leaves empty from `env`, then from the config file at
// `config_path` (absent is fine unless `config_required`), then the
// default server 127.0.0.1:7070. InvalidArgument naming the file and key
// for a bad config or token file.
absl::StatusOr<ConnectionSettings> ResolveConnection(const ConnectionSettings& flags, const ConnectionSettings& env,
                                                     const std::string& config_path, bool config_required);

// The client options for resolved settings (reads the CA file).
absl::StatusOr<ClientOptions> ToClientOptions(const ConnectionSettings& settings);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_CONNECTION_H_
