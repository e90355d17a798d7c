// dpfleet-server: the coordinator daemon.
//   dpfleet-server --listen HOST:PORT --http HOST:PORT --state-dir DIR [--config FILE]
//                  [--tls-cert F --tls-key F --client-ca F] [--insecure-plaintext]
//                  [--data-root DIR]...
//   dpfleet-server token create --state-dir DIR --name NAME --role custodian|analyst|viewer
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/synchronization/notification.h"
#include "server/rpc/coordinator_server.h"
#include "server/rpc/state_command.h"
#include "server/rpc/token_command.h"
#include "common/cli_flags.h"
#include "common/log/logging.h"
#include "common/version.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7070", "gRPC address HOST:PORT (port 0 = any free port)");
ABSL_FLAG(std::string, http, "127.0.0.1:7071", "HTTP/JSON address HOST:PORT; empty disables it");
ABSL_FLAG(std::string, state_dir, "", "directory for the durable state (required)");
ABSL_FLAG(std::string, config, "",
          "optional YAML: lease_ttl_ms, heartbeat_interval_ms, requests_per_second, request_burst, "
          "max_watch_streams_per_token, max_spec_bytes, max_message_bytes, max_http_request_bytes, max_wait_ms");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain of this coordinator (TLS on gRPC and HTTP)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, client_ca, "", "PEM CA whose certificates identify workers (mutual TLS)");
ABSL_FLAG(bool, insecure_plaintext, false, "serve plaintext on a non-loopback listener (warned at every start)");
ABSL_FLAG(std::vector<std::string>, data_root, {},
          "a directory raw PUMS files may be read from; repeat the flag for several");
ABSL_FLAG(int64_t, lease_ttl_ms, 0, "overrides the config's lease_ttl_ms");
ABSL_FLAG(int64_t, heartbeat_interval_ms, 0, "overrides the config's heartbeat_interval_ms");
ABSL_FLAG(std::string, log_level, "info", "least level logged to stderr: debug, info, warn or error");
ABSL_FLAG(std::string, port_file, "", "write 'grpc_port http_port' here once serving");

namespace {
int g_signal_pipe[2] = {-1, -1};
void OnSignal(int) {
  char c = 1;
  (void)!write(g_signal_pipe[1], &c, 1);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "token") {
    return dpfleet::server::RunTokenCommand(std::vector<std::string>(argv + 2, argv + argc), std::cout, std::cerr);
  }
  if (argc > 1 && std::string(argv[1]) == "backup") {
    return dpfleet::server::RunBackupCommand(std::vector<std::string>(argv + 2, argv + argc), std::cout, std::cerr);
  }
  if (argc > 1 && std::string(argv[1]) == "restore") {
    return dpfleet::server::RunRestoreCommand(std::vector<std::string>(argv + 2, argv + argc), std::cout, std::cerr);
  }
  absl::SetProgramUsageMessage(
      "dpfleet coordinator\n  dpfleet-server --listen HOST:PORT --http HOST:PORT --state-dir DIR "
      "[--config FILE] [--tls-cert F --tls-key F --client-ca F] [--insecure-plaintext] [--data-root DIR]...\n"
      "  dpfleet-server token create --state-dir DIR --name NAME --role custodian|analyst|viewer\n"
      "  dpfleet-server backup --state-dir DIR --out FILE\n"
      "  dpfleet-server restore --from FILE --state-dir DIR [--replace]");
  absl::FlagsUsageConfig usage;
  usage.version_string = [] { return dpfleet::VersionLine("dpfleet-server") + "\n"; };
  absl::SetFlagsUsageConfig(usage);
  dpfleet::DashedFlags flags(argc, argv);
  // --data-root repeats (Abseil would keep only the last one): collect
  // every occurrence here and hand the rest to Abseil.
  std::vector<std::string> data_roots;
  std::vector<char*> rest;
  for (int i = 0; i < flags.argc(); ++i) {
    const std::string a = flags.argv()[i];
    if (a == "--data_root" && i + 1 < flags.argc()) {
      data_roots.push_back(flags.argv()[++i]);
    } else if (a.rfind("--data_root=", 0) == 0) {
      data_roots.push_back(a.substr(12));
    } else {
      rest.push_back(flags.argv()[i]);
    }
  }
  rest.push_back(nullptr);
  absl::ParseCommandLine(static_cast<int>(rest.size()) - 1, rest.data());
  dpfleet::log::Level level = dpfleet::log::Level::kInfo;
  if (absl::Status s = dpfleet::log::ParseLevel(absl::GetFlag(FLAGS_log_level), &level); !s.ok()) {
    std::fprintf(stderr, "dpfleet-server: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  dpfleet::log::Init("dpfleet-server", level);
  dpfleet::server::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.http = absl::GetFlag(FLAGS_http);
  options.state_dir = absl::GetFlag(FLAGS_state_dir);
  options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key = absl::GetFlag(FLAGS_tls_key);
  options.client_ca = absl::GetFlag(FLAGS_client_ca);
  options.insecure_plaintext = absl::GetFlag(FLAGS_insecure_plaintext);
  options.data_roots = data_roots;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    absl::Status s = dpfleet::server::LoadServerConfig(absl::GetFlag(FLAGS_config), &options);
    if (!s.ok()) {
      dpfleet::log::Error(s.message());
      return 2;
    }
  }
  if (absl::GetFlag(FLAGS_lease_ttl_ms) > 0) options.coordinator.lease_ttl_ms = absl::GetFlag(FLAGS_lease_ttl_ms);
  if (absl::GetFlag(FLAGS_heartbeat_interval_ms) > 0) {
    options.coordinator.heartbeat_interval_ms = absl::GetFlag(FLAGS_heartbeat_interval_ms);
  }
  if (options.state_dir.empty()) {
    dpfleet::log::Error("--state-dir is required");
    return 2;
  }
  auto server = dpfleet::server::CoordinatorServer::Start(options);
  if (!server.ok()) {
    dpfleet::log::Error(server.status().message());
    return server.status().code() == absl::StatusCode::kInvalidArgument ||
                   server.status().code() == absl::StatusCode::kFailedPrecondition
               ? 2
               : 1;
  }
  for (const std::string& note : (*server)->upgrade_notes()) dpfleet::log::Info(note);
  for (const std::string& note : (*server)->security_notes()) dpfleet::log::Warn(note);
  std::printf("dpfleet-server: gRPC on port %d, HTTP on port %d, state in %s\n", (*server)->grpc_port(),
              (*server)->http_port(), options.state_dir.c_str());
  std::fflush(stdout);
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    const std::string tmp = absl::GetFlag(FLAGS_port_file) + ".tmp";
    {
      std::ofstream f(tmp);
      f << (*server)->grpc_port() << " " << (*server)->http_port() << "\n";
    }
    std::rename(tmp.c_str(), absl::GetFlag(FLAGS_port_file).c_str());
  }
  // Under systemd (Type=notify) the unit is ready now: serving, state
  // recovered. Without NOTIFY_SOCKET this does nothing.
  sd_notifyf(0, "READY=1\nSTATUS=gRPC on port %d, HTTP on port %d", (*server)->grpc_port(), (*server)->http_port());
  if (pipe(g_signal_pipe) != 0) return 1;
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  char c;
  while (read(g_signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
  }
  dpfleet::log::Info("shutting down");
  sd_notify(0, "STOPPING=1");
  (*server)->Shutdown();
  return 0;
}
