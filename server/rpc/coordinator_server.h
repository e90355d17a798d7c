// The coordinator process minus flag parsing: opens the store, recovers
// jobs, serves gRPC (Coordinator, Admin, WorkerService, health) and HTTP,
// and runs the lease ticker. Starts on port 0 when asked and reports the
// bound ports; Shutdown is idempotent.
//
// Transport security: with --tls-cert/--tls-key/--client-ca every listener
// speaks TLS and workers must present a certificate the client CA signed.
// Without them it serves plaintext only when every listener is on
// loopback, and refuses to start otherwise unless insecure_plaintext is
// set. Every call passes the Gate (server/rpc/auth.h) either way.
#ifndef DPFLEET_SERVER_RPC_COORDINATOR_SERVER_H_
#define DPFLEET_SERVER_RPC_COORDINATOR_SERVER_H_

#include <grpcpp/server.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "server/core/job_manager.h"
#include "server/core/state_backup.h"
#include "server/core/tokens.h"
#include "server/rpc/audit.h"
#include "server/rpc/auth.h"

namespace dpfleet::server {

class AdminServiceImpl;
class CoordinatorServiceImpl;
class WorkerServiceImpl;
class HttpServer;

struct ServerOptions {
  std::string listen = "127.0.0.1:0";  // gRPC HOST:PORT
  std::string http;                     // HTTP HOST:PORT; empty = no HTTP endpoint
  std::string state_dir;
  CoordinatorOptions coordinator;
  SecurityLimits limits;
  // PEM files: the server's certificate chain and key, and the CA whose
  // certificates identify workers. All three or none.
  std::string tls_cert, tls_key, client_ca;
  // Serve plaintext on a non-loopback listener (warned about at every start).
  bool insecure_plaintext = false;
  // Where raw PUMS files may be read from (--data-root, repeatable).
  std::vector<std::string> data_roots;
};

// Reads the optional --config YAML: lease_ttl_ms, heartbeat_interval_ms and
// the SecurityLimits keys.
absl::Status LoadServerConfig(const std::string& path, ServerOptions* options);
// Splits HOST:PORT; InvalidArgument naming `flag` otherwise.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(const std::string& flag,
                                                          const std::string& value);
// localhost, 127.0.0.0/8 or ::1.
bool IsLoopbackHost(const std::string& host);

class CoordinatorServer {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const ServerOptions& options);
  ~CoordinatorServer();

  int grpc_port() const { return grpc_port_; }
  int http_port() const;
  JobManager* jobs() { return jobs_.get(); }
  // How the listeners are secured, for the start-up message (a warning
  // line first when they are exposed in plaintext).
  const std::vector<std::string>& security_notes() const { return security_notes_; }
  // What opening the state directory changed (a schema upgrade, and what it
  // could not carry over), for the start-up message.
  std::vector<std::string> upgrade_notes() const { return store_->MigrationNotes(); }
  void Shutdown();
  void Wait();

 private:
  CoordinatorServer() = default;
  // The gRPC health service's status of every service (and ""): SERVING
  // while the store answers.
  void UpdateHealth();

  std::optional<StateDirLock> state_lock_;  // first in, last out
  std::unique_ptr<Store> store_;
  ServerMetrics metrics_;
  std::unique_ptr<FileIdentifier> files_;
  std::unique_ptr<DataResolver> data_;
  std::unique_ptr<Clock> clock_;
  std::unique_ptr<DatasetRegistry> datasets_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<Tokens> tokens_;
  std::unique_ptr<AuditTrail> audit_;
  std::unique_ptr<Gate> gate_;
  std::unique_ptr<CoordinatorServiceImpl> coordinator_service_;
  std::unique_ptr<AdminServiceImpl> admin_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<HttpServer> http_;
  std::thread ticker_;
  absl::Notification stop_;
  std::once_flag shutdown_once_;
  int grpc_port_ = 0;
  std::vector<std::string> security_notes_;
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_COORDINATOR_SERVER_H_
