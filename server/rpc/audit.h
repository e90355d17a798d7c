// AuditTrail: the durable record of every state-changing call — submit,
// cancel, dataset add/rm, budget set, token create/revoke, worker
// register — and of every refusal of one, with who called, when, and how
// it ended. Entries go to the state store (SQLite, synchronous=FULL) and
// are listed by `dpctl admin audit`.
//
// Never records a secret (tokens are named by their owner's name) and
// never lets anonymous callers fill the disk: their refusals are recorded
// at a bounded rate, with a count of those left out.
//
// An entry is written after the call it describes (the call's outcome is
// part of it), so a store that refuses the write cannot undo the call. The
// entry is then kept in memory and written, in order and ahead of newer
// ones, by the next Record or Flush (the coordinator's ticker flushes), so
// a passing store failure loses nothing; the failure is counted in
// background_errors() (/metrics) and logged. Only a crash while entries
// are pending, or more than kMaxPending of them, loses entries, and the
// latter is said in the detail of the next entry written.
#ifndef DPFLEET_SERVER_RPC_AUDIT_H_
#define DPFLEET_SERVER_RPC_AUDIT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/core/background_errors.h"
#include "server/core/clock.h"
#include "server/core/store.h"
#include "server/rpc/access.h"

namespace dpfleet::server {

// A token bucket per key: `per_second` sustained, `burst` at once.
class RateLimiter {
 public:
  RateLimiter(double per_second, double burst, Clock* clock) : per_second_(per_second), burst_(burst), clock_(clock) {}
  // Takes one request from `key`'s bucket; false when it is empty.
  bool Allow(const std::string& key);

 private:
  struct Bucket {
    double tokens = 0;
    int64_t last_ms = 0;
  };
  const double per_second_;
  const double burst_;
  Clock* const clock_;
  absl::Mutex mu_;
  std::map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

class AuditTrail {
 public:
  AuditTrail(Store* store, Clock* clock) : store_(store), clock_(clock), anonymous_(1.0, 20.0, clock) {}

  // Entries kept while the store refuses them; beyond this the oldest go.
  static constexpr std::size_t kMaxPending = 4096;

  // Records `action` on `target` by `caller` with its outcome (after any
  // entries still pending). A failure to write keeps the entry pending;
  // the call it describes has happened either way.
  void Record(const Identity& caller, absl::string_view action, absl::string_view target,
              const absl::Status& outcome);
  // Writes the pending entries, oldest first, until the store refuses one.
  void Flush();
  std::size_t pending() const;
  BackgroundErrors::Snapshot background_errors() const { return background_errors_.Get(); }

 private:
  // Writes `r` (noting the entries dropped before it), counting a failure.
  absl::Status WriteLocked(const AuditRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Writes `r` now, or keeps it pending behind the entries already waiting.
  void AppendLocked(AuditRecord r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  void FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  Store* const store_;
  Clock* const clock_;
  RateLimiter anonymous_;
  BackgroundErrors background_errors_;
  absl::Mutex mu_;
  int64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;  // anonymous refusals left out since the last one recorded
  // Held across the store writes, so entries land in the order they came.
  mutable absl::Mutex write_mu_;
  std::deque<AuditRecord> pending_ ABSL_GUARDED_BY(write_mu_);
  int64_t dropped_ ABSL_GUARDED_BY(write_mu_) = 0;  // pending entries dropped since the last one written
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_AUDIT_H_
