// HTTP/JSON endpoints for tools that poll: job status and ε as JSON,
// Prometheus metrics. Read-only; everything that changes state goes through
// the gRPC API.
//
//   GET /healthz              -> {"status":"ok"}
//   GET /v1/jobs              -> {"jobs":[...]}
//   GET /v1/jobs/{id}         -> the job (same fields as `dpctl status -o json`)
//   GET /v1/workers           -> {"workers":[...]}
//   GET /v1/datasets          -> {"datasets":[...]}: name, state, progress
//                                (rows_prepared), counts, manifest
//   GET /v1/budgets[?dataset=D] -> {"datasets":[...]}: ε spent, committed,
//                                budget and remaining per dataset (the
//                                fields of `dpctl budget -o json`)
//   GET /metrics              -> Prometheus text format (jobs and workers by state,
//                                job ε and epochs, dataset ε spent/committed/budget,
//                                background work the store refused and that is retried)
#ifndef DPFLEET_SERVER_HTTP_HTTP_SERVER_H_
#define DPFLEET_SERVER_HTTP_HTTP_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/core/dataset_registry.h"
#include "server/core/job_manager.h"

namespace httplib {
class Server;
}

namespace dpfleet::server {

class HttpServer {
 public:
  // Binds host:port (port 0 = any free port) and serves on a thread.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& host, int port,
                                                           JobManager* jobs, DatasetRegistry* datasets);
  ~HttpServer();
  int port() const { return port_; }
  void Shutdown();

 private:
  HttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Rendering used by the HTTP endpoints (exposed for tests).
std::string RenderPrometheus(const std::vector<JobRecord>& jobs, const std::vector<WorkerRecord>& workers,
                             const std::vector<BudgetView>& budgets);
// dpfleet_background_failures_total by component (jobs, datasets).
std::string RenderBackgroundFailures(const BackgroundErrors::Snapshot& jobs,
                                     const BackgroundErrors::Snapshot& datasets);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_HTTP_HTTP_SERVER_H_
