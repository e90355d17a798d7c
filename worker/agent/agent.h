// WorkerAgent: the worker daemon's control loop. Registers with the
// coordinator, keeps the lease with heartbeats, starts the assignments it
// receives (one at a time) and reports how they ended. Survives coordinator
// restarts: it re-registers under its old id and keeps its run.
//
// With TLS options it speaks mutual TLS: it checks the coordinator's
// certificate against the fleet CA and proves its own identity with its
// client certificate (the coordinator lets it act only for the runs it
// was given). It never sends a user token.
#ifndef DPFLEET_WORKER_AGENT_AGENT_H_
#define DPFLEET_WORKER_AGENT_AGENT_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/log/logging.h"
#include "dpfleet/v1/worker.grpc.pb.h"
#include "worker/agent/released_log.h"

namespace dpfleet::worker {

struct AgentOptions {
  std::string server;  // coordinator HOST:PORT
  std::string device = "cpu";
  std::string work_dir;
  int threads = 0;
  std::string gloo_host = "127.0.0.1";
  absl::Duration collective_timeout = absl::Seconds(30);
  bool fetch_shards = false;
  // PEM text: the fleet CA, this worker's certificate and key. All empty:
  // plaintext (a loopback coordinator without TLS).
  std::string tls_ca, tls_cert, tls_key;
  // Released log lines below this level are not shipped (--log-level).
  log::Level log_level = log::Level::kInfo;
};

class WorkerAgent {
 public:
  explicit WorkerAgent(AgentOptions options);
  ~WorkerAgent();

  // Blocks until `stop` becomes true; then cancels the current run, reports
  // it and returns.
  absl::Status Run(const std::atomic<bool>& stop);

 private:
  absl::Status Register(bool keep_run);
  void StartRun(const v1::Assignment& a);
  void FinishRunIfDone();
  void ReportDone(const v1::Assignment& a, const absl::Status& result, ReleasedLog* run_log = nullptr);
  // Sends the run's released log lines in batches (ShipLogs); a batch the
  // coordinator cannot take now is kept for the next call.
  void ShipLogs(const v1::Assignment& a, ReleasedLog* run_log);

  AgentOptions options_;
  std::shared_ptr<v1::WorkerService::Stub> stub_;
  absl::Mutex mu_;
  std::string worker_id_ ABSL_GUARDED_BY(mu_);
  int64_t heartbeat_interval_ms_ = 500;
  // The current run, if any.
  std::unique_ptr<v1::Assignment> run_;
  std::unique_ptr<ReleasedLog> run_log_;
  std::thread run_thread_;
  std::atomic<bool> run_cancel_{false};
  std::atomic<bool> run_finished_{false};
  bool stop_requested_ = false;  // SIGTERM: the run's end is the worker's stop
  absl::Status run_result_;
};

}  // namespace dpfleet::worker

#endif  // DPFLEET_WORKER_AGENT_AGENT_H_
