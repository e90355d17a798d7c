// dpfleet-server: the coordinator daemon.
//   dpfleet-server --listen HOST:PORT --http HOST:PORT --state-dir DIR [--config FILE]
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/synchronization/notification.h"
#include "server/rpc/coordinator_server.h"
#include "common/cli_flags.h"
#include "common/version.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7070", "gRPC address HOST:PORT (port 0 = any free port)");
ABSL_FLAG(std::string, http, "127.0.0.1:7071", "HTTP/JSON address HOST:PORT; empty disables it");
ABSL_FLAG(std::string, state_dir, "", "directory for the durable state (required)");
ABSL_FLAG(std::string, config, "", "optional YAML with lease_ttl_ms, heartbeat_interval_ms");
ABSL_FLAG(int64_t, lease_ttl_ms, 0, "overrides the config's lease_ttl_ms");
ABSL_FLAG(int64_t, heartbeat_interval_ms, 0, "overrides the config's heartbeat_interval_ms");
ABSL_FLAG(std::string, port_file, "", "write 'grpc_port http_port' here once serving");

namespace {
int g_signal_pipe[2] = {-1, -1};
void OnSignal(int) {
  char c = 1;
  (void)!write(g_signal_pipe[1], &c, 1);
}
}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "dpfleet coordinator\n  dpfleet-server --listen HOST:PORT --http HOST:PORT --state-dir DIR "
      "[--config FILE]");
  absl::FlagsUsageConfig usage;
  usage.version_string = [] { return dpfleet::VersionLine("dpfleet-server") + "\n"; };
  absl::SetFlagsUsageConfig(usage);
  dpfleet::DashedFlags flags(argc, argv);
  absl::ParseCommandLine(flags.argc(), flags.argv());
  dpfleet::server::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.http = absl::GetFlag(FLAGS_http);
  options.state_dir = absl::GetFlag(FLAGS_state_dir);
  if (!absl::GetFlag(FLAGS_config).empty()) {
    absl::Status s = dpfleet::server::LoadServerConfig(absl::GetFlag(FLAGS_config), &options);
    if (!s.ok()) {
      std::fprintf(stderr, "dpfleet-server: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  if (absl::GetFlag(FLAGS_lease_ttl_ms) > 0) options.coordinator.lease_ttl_ms = absl::GetFlag(FLAGS_lease_ttl_ms);
  if (absl::GetFlag(FLAGS_heartbeat_interval_ms) > 0) {
    options.coordinator.heartbeat_interval_ms = absl::GetFlag(FLAGS_heartbeat_interval_ms);
  }
  if (options.state_dir.empty()) {
    std::fprintf(stderr, "dpfleet-server: --state-dir is required\n");
    return 2;
  }
  auto server = dpfleet::server::CoordinatorServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "dpfleet-server: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
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
  std::fprintf(stderr, "dpfleet-server: shutting down\n");
  sd_notify(0, "STOPPING=1");
  (*server)->Shutdown();
  return 0;
}
