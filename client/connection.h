// How dpctl reaches the coordinator: address, CA and token, each from the
// first of (1) the command line (--server, --ca, --token), (2) the
// environment ($DPFLEET_SERVER, $DPFLEET_CA, $DPFLEET_TOKEN), (3) dpctl's
// config file: a YAML mapping with the keys `server`, `ca` and
// `token_file` (paths relative to the file), and/or named contexts
//
//   current-context: prod
//   contexts:
//     prod: {server: coord.example:7070, ca: ca.pem, token_file: prod.token}
//     lab:  {server: 127.0.0.1:7070}
//
// where the selected context (--context, else current-context) fills what
// it names before the top-level keys do. The config file is
// $DPFLEET_CONFIG, else $XDG_CONFIG_HOME/dpfleet/config.yaml, else
// ~/.config/dpfleet/config.yaml (the older dpctl.yaml beside it is read
// when config.yaml does not exist); it may be absent.
//
// A token file must be readable by its owner only (like an ssh key): one
// that the group or others can read is refused. The token itself is never
// printed.
#ifndef DPFLEET_CLIENT_CONNECTION_H_
#define DPFLEET_CLIENT_CONNECTION_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "client/coordinator_client.h"

namespace dpfleet::client {

struct ConnectionSettings {
  std::string server;  // HOST:PORT
  std::string ca;      // path of the CA's PEM
  std::string token;   // the token itself
};

// $XDG_CONFIG_HOME/dpfleet/config.yaml or ~/.config/dpfleet/config.yaml,
// or dpctl.yaml in the same folder when only that one exists.
std::string DefaultConfigPath();

// One context's settings as the file spells them (paths made relative to
// the file already resolved).
struct ContextSettings {
  std::string server;
  std::string ca;
  std::string token_file;
};

struct ConfigFile {
  ContextSettings top;  // the single-context keys
  std::map<std::string, ContextSettings> contexts;
  std::string current_context;
};

// The config file; an absent file is an empty ConfigFile. InvalidArgument
// naming the file and key for anything it does not know.
absl::StatusOr<ConfigFile> LoadConfig(const std::string& path);

// Rewrites `path` with current-context set to `name` (which must be one
// of its contexts), keeping every other key; the file keeps its mode.
absl::Status SetCurrentContext(const std::string& path, const std::string& name);

// Fills what `flags` leaves empty from `env`, then from the config file at
// `config_path` (absent is fine unless `config_required`), then the
// default server 127.0.0.1:7070. `context` (--context) selects a context
// of the file ("": its current-context). InvalidArgument naming the file
// and key for a bad config or token file, or an unknown context.
absl::StatusOr<ConnectionSettings> ResolveConnection(const ConnectionSettings& flags, const ConnectionSettings& env,
                                                     const std::string& config_path, bool config_required,
                                                     const std::string& context = "");

// The client options for resolved settings (reads the CA file).
absl::StatusOr<ClientOptions> ToClientOptions(const ConnectionSettings& settings);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_CONNECTION_H_
