// HTTP/JSON endpoints for tools that poll: job status and ε as JSON,
// Prometheus metrics. Read-only; everything that changes state goes through
// the gRPC API. Over TLS when the coordinator has a certificate.
//
// One middleware (cpp-httplib's pre-routing handler) runs the Gate on every
// request before any route: a bearer token ("Authorization: Bearer T"),
// the role table's HTTP rows (server/rpc/access.h), the request rate. The
// routes then show each caller what its role may see (an analyst: only its
// own jobs; a viewer: states and ε).
//
//   GET /                     -> the live page (anyone: static HTML, no data;
//   GET /page/{file}             its script, style and icon, compiled in from
//                                server/http/page/). The page asks for a token
//                                and polls the routes below with it.
//   GET /healthz              -> {"status":"ok"}               (anyone; liveness)
//   GET /readyz               -> {"status":"ready","workers":N} (anyone; readiness),
//                                or 503 with the reason when the store does not answer
//   GET /v1/jobs              -> {"jobs":[...]}
//   GET /v1/jobs/{id}         -> the job (same fields as `dpctl status -o json`)
//   GET /v1/workers           -> {"workers":[...]}             (custodian)
//   GET /v1/datasets          -> {"datasets":[...]}: name, state, progress
//                                (rows_prepared), counts, manifest
//   GET /v1/budgets[?dataset=D] -> {"datasets":[...]}: ε spent, committed,
//                                budget and remaining per dataset (the
//                                fields of `dpctl budget -o json`)
//   GET /metrics              -> Prometheus text format (jobs and workers by state,
//                                running jobs' ε and epochs, dataset ε
//                                spent/committed/budget, the counters and
//                                histograms of server/core/metrics.h, and
//                                background work the store refused and that
//                                is retried)
//
// Every answer carries Cache-Control: no-store, X-Content-Type-Options:
// nosniff and a Content-Security-Policy (the page's: its own script and
// style only, fetches to this origin; everything else: nothing at all).
//
// Refusals: 401 (no, malformed, unknown or revoked token), 403 (the role
// may not), 404 (no such route or job), 413 (request too large), 429
// (request rate); the body is {"error": "..."}.
#ifndef DPFLEET_SERVER_HTTP_HTTP_SERVER_H_
#define DPFLEET_SERVER_HTTP_HTTP_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/core/dataset_registry.h"
#include "server/core/job_manager.h"
#include "server/core/metrics.h"
#include "server/rpc/auth.h"

namespace httplib {
class Server;
}

namespace dpfleet::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 = any free port
  // PEM files; both set = HTTPS.
  std::string tls_cert, tls_key;
};

// The HTTP status a JSON error reply carries for a status code (400 for a
// request that cannot succeed as sent, 5xx only for the service's own faults).
int HttpStatusOf(const absl::Status& s);

class HttpServer {
 public:
  // Binds and serves on a thread.
  // `audit` (for its background failures on /metrics) may be null.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpOptions& options, JobManager* jobs,
                                                           DatasetRegistry* datasets, Gate* gate,
                                                           ServerMetrics* metrics = nullptr,
                                                           const AuditTrail* audit = nullptr);
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
// `metrics` (may be null) adds the counters and histograms.
std::string RenderPrometheus(const std::vector<JobRecord>& jobs, const std::vector<WorkerRecord>& workers,
                             const std::vector<BudgetView>& budgets, const ServerMetrics* metrics = nullptr);
// dpfleet_background_failures_total by component (jobs, datasets, audit).
std::string RenderBackgroundFailures(const BackgroundErrors::Snapshot& jobs, const BackgroundErrors::Snapshot& datasets,
                                     const BackgroundErrors::Snapshot& audit);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_HTTP_HTTP_SERVER_H_
