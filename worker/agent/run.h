// Runs one assignment (one rank of one job attempt) to its end: load this
// rank's data, train epoch by epoch, and report.
//
// Order per epoch, which the privacy claim depends on: charge the epoch to
// the coordinator's durable ledger FIRST, then train; then (rank 0, after an
// epoch with an eval release) charge the eval release, and only then compute
// the DP metrics and report them. If a charge cannot be recorded, what it
// pays for does not happen.
#ifndef DPFLEET_WORKER_AGENT_RUN_H_
#define DPFLEET_WORKER_AGENT_RUN_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "dpfleet/v1/worker.grpc.pb.h"
#include "worker/agent/released_log.h"

namespace dpfleet::worker {

struct RunContext {
  std::shared_ptr<v1::WorkerService::StubInterface> stub;
  std::function<std::string()> worker_id;  // current id (changes on re-registration)
  std::string device = "cpu";
  std::string work_dir;
  int threads = 0;  // intra-op threads; 0 = LibTorch default
  // Address other ranks reach this worker on for Gloo.
  std::string gloo_host = "127.0.0.1";
  // Bound on every collective; a dead peer fails the run within it.
  absl::Duration collective_timeout = absl::Seconds(30);
  // How long to keep retrying the coordinator before giving up on the run.
  absl::Duration coordinator_patience = absl::Minutes(2);
  const std::atomic<bool>* cancel = nullptr;  // set by a cancel order or SIGTERM
  // Stream dataset shards from the coordinator even when its directory
  // looks visible (for fleets whose paths do not mean the same files).
  bool fetch_shards = false;
  // The run's released log (what its owner reads); may be null. Its stage
  // is where a failure happened.
  ReleasedLog* log = nullptr;
};

// Returns OK when the run trained every epoch; Cancelled when stopped; any
// other error says why the run failed. Does not call ReportDone.
absl::Status RunAssignment(const v1::Assignment& assignment, const RunContext& ctx);

}  // namespace dpfleet::worker

#endif  // DPFLEET_WORKER_AGENT_RUN_H_
