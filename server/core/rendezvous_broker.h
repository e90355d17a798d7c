// RendezvousBroker: the per-attempt key-value store through which the ranks
// of one attempt find each other (rank 0 publishes the NCCL unique id or
// Gloo's connection keys under job/attempt/key, the others wait for them).
//
// It has its own lock, a leaf: it never calls out while holding it, so a
// rank waiting for a key holds nothing that heartbeats, charges or status
// reads need. An attempt's keys exist only while the attempt is open; when
// it ends (DropJob) its keys are forgotten and its waiters are answered, so
// no rank of a dead attempt waits out its deadline.
//
// Waiting comes in two forms: GetAsync registers a callback and returns at
// once (for a server that must not hold a thread per waiting rank), and Get
// blocks until a deadline, built on GetAsync.
//
// It never decides whether a caller may use an attempt: JobManager checks
// the run (job RUNNING, attempt current, rank in range) before calling.
#ifndef DPFLEET_SERVER_CORE_RENDEZVOUS_BROKER_H_
#define DPFLEET_SERVER_CORE_RENDEZVOUS_BROKER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace dpfleet::server {

class RendezvousBroker {
 public:
  // Gets the value once it is published, or why it never will be. It runs
  // on the thread that publishes, drops or shuts down (possibly under that
  // caller's own locks), so it must only hand the result over and return:
  // never call the broker or the JobManager from it.
  using GetCallback = std::function<void(absl::StatusOr<std::string>)>;

  // Opens an attempt's key space (the job went RUNNING with `attempt`).
  // Opening an open attempt changes nothing.
  void OpenAttempt(const std::string& job_id, int32_t attempt);
  // Ends every open attempt of the job: forgets their keys and answers
  // their waiters with `why` (JobManager passes the error a call made now
  // would get), or with Aborted when `why` is OK.
  void DropJob(const std::string& job_id, const absl::Status& why = absl::OkStatus());

  // Aborted when the attempt is not open.
  absl::Status Set(const std::string& job_id, int32_t attempt, const std::string& key, const std::string& value);
  // Adds `delta` to the integer stored under key (0 if absent); returns the
  // sum. FailedPrecondition when the key holds something else.
  absl::StatusOr<int64_t> Add(const std::string& job_id, int32_t attempt, const std::string& key, int64_t delta);

  // Calls `done` exactly once: with the value as soon as it is published
  // (inline when it already is), Aborted when the attempt is not open or is
  // dropped first, Unavailable at Shutdown. Returns an id for CancelWait,
  // or 0 when `done` already ran. There is no deadline here: whoever waits
  // owns the timer and calls CancelWait when it fires.
  int64_t GetAsync(const std::string& job_id, int32_t attempt, const std::string& key, GetCallback done);
  // Forgets a waiter. True when `done` will never run; false when it has
  // run or is running now (its result is on its way).
  bool CancelWait(int64_t waiter_id);

  // Blocks until the key is published or `deadline` passes
  // (DeadlineExceeded naming key, job and attempt); otherwise as GetAsync.
  absl::StatusOr<std::string> Get(const std::string& job_id, int32_t attempt, const std::string& key,
                                  absl::Time deadline);

  // Answers every waiter with Unavailable; later waits for a key that is
  // not published return Unavailable at once.
  void Shutdown();

  // Blocks until at least `n` callers wait for the key, without polling:
  // lets a test (or a benchmark of many waiting ranks) publish only once
  // the waiters are in place.
  void AwaitWaiters(const std::string& job_id, int32_t attempt, const std::string& key, int n);

 private:
  using AttemptKey = std::pair<std::string, int32_t>;  // (job id, attempt)
  struct Waiter {
    AttemptKey attempt;
    std::string key;
    GetCallback done;
  };

  // Takes every waiter of (attempt, key) out of the table, or every waiter
  // of the attempt when `key` is null.
  std::map<int64_t, Waiter> TakeWaitersLocked(const AttemptKey& attempt, const std::string* key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int CountWaitersLocked(const AttemptKey& attempt, const std::string& key) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  // Open attempts and their published keys.
  std::map<AttemptKey, std::map<std::string, std::string>> values_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  int64_t next_waiter_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_RENDEZVOUS_BROKER_H_
