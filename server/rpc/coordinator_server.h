// The coordinator process minus flag parsing: opens the store, recovers
// jobs, serves gRPC (Coordinator, WorkerService, health) and HTTP, and runs
// the lease ticker. Starts on port 0 when asked and reports the bound ports;
// Shutdown is idempotent.
#ifndef DPFLEET_SERVER_RPC_COORDINATOR_SERVER_H_
#define DPFLEET_SERVER_RPC_COORDINATOR_SERVER_H_

#include <grpcpp/server.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "server/core/job_manager.h"

namespace dpfleet::server {

class CoordinatorServiceImpl;
class WorkerServiceImpl;
class HttpServer;

struct ServerOptions {
  std::string listen = "127.0.0.1:0";  // gRPC HOST:PORT
  std::string http;                     // HTTP HOST:PORT; empty = no HTTP endpoint
  std::string state_dir;
  CoordinatorOptions coordinator;
};

// Reads the optional --config YAML (lease_ttl_ms, heartbeat_interval_ms).
absl::Status LoadServerConfig(const std::string& path, ServerOptions* options);
// Splits HOST:PORT; InvalidArgument naming `flag` otherwise.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(const std::string& flag,
                                                          const std::string& value);

class CoordinatorServer {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const ServerOptions& options);
  ~CoordinatorServer();

  int grpc_port() const { return grpc_port_; }
  int http_port() const;
  JobManager* jobs() { return jobs_.get(); }
  void Shutdown();
  void Wait();

 private:
  CoordinatorServer() = default;

  std::unique_ptr<Store> store_;
  std::unique_ptr<DataResolver> data_;
  std::unique_ptr<Clock> clock_;
  std::unique_ptr<DatasetRegistry> datasets_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<CoordinatorServiceImpl> coordinator_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<HttpServer> http_;
  std::thread ticker_;
  absl::Notification stop_;
  std::once_flag shutdown_once_;
  int grpc_port_ = 0;
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_COORDINATOR_SERVER_H_
