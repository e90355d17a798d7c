// ReleasedLog: the only way a run's log lines leave the worker for the
// coordinator, where the job's owner reads them (`dpctl logs`). An analyst
// reads these lines, so each is one of the fixed sentences below, filled
// with numbers the analyst already has or that ε covers: the attempt, rank,
// world size, epoch numbers, steps per epoch (from the public N and B), the
// stage of the run, a status code's name. There is deliberately no method
// that takes a string: a record value, a CSV row, an error message, a
// non-private loss or accuracy, or a count of the private file cannot be
// passed in. Such detail goes to the worker's own log (common/log/logging.h)
// on the operator's host, and the whole error message to custodians.
//
// Thread-safe. The buffer is bounded: past `capacity` lines the oldest go,
// counted, and the count is shipped with the next batch.
#ifndef DPFLEET_WORKER_AGENT_RELEASED_LOG_H_
#define DPFLEET_WORKER_AGENT_RELEASED_LOG_H_

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/log/logging.h"
#include "common/log/run_events.h"
#include "dpfleet/v1/types.pb.h"

namespace dpfleet::worker {

class ReleasedLog {
 public:
  // Lines below `min_level` are neither kept nor shipped.
  ReleasedLog(log::Level min_level = log::Level::kInfo, std::size_t capacity = 2000);

  // --- The vocabulary ---
  void Started(int32_t attempt, int32_t rank, int32_t world_size, int32_t start_epoch, int32_t epochs, bool cuda);
  // The run enters `stage` (info); the last one is where a failure happened.
  void Stage(log::RunStage stage);
  void Connected(int32_t world_size, bool nccl);
  void Resumed(int32_t epoch);
  void EpochCharged(int32_t epoch);  // debug
  void EpochTrained(int32_t epoch, int32_t epochs, int64_t steps);
  void EvalReleased(int32_t epoch);
  void ModelUploaded();
  // An audit run (`dpctl audit`): what it attacks, its progress (a phase
  // of worker/audit/audit.h's AuditProgress, said only when it is one of the
  // engine's known phases; any other is "working"), and the report handed
  // over.
  void AuditStarted(int32_t shadow_models, bool baseline);
  void AuditProgress(const std::string& phase, int done, int total);
  void AuditReported();
  void Finished();
  // error: log::PublicRunFailure of the current stage and `code`.
  void Failed(absl::StatusCode code);

  log::RunStage stage() const;
  // The lines to ship (all of them), and the lines dropped since the last
  // call; PutBack returns a batch the coordinator did not take.
  std::vector<v1::JobLogLine> Take(int64_t* dropped);
  void PutBack(std::vector<v1::JobLogLine> lines, int64_t dropped);
  // The sentences logged so far (for tests).
  std::vector<std::string> Messages() const;

 private:
  void Add(log::Level level, std::string message);

  const log::Level min_level_;
  const std::size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<v1::JobLogLine> lines_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> said_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  log::RunStage stage_ ABSL_GUARDED_BY(mu_) = log::RunStage::kStarting;
};

}  // namespace dpfleet::worker

#endif  // DPFLEET_WORKER_AGENT_RELEASED_LOG_H_
