// AuditTrail: the durable record of every state-changing call — submit,
// cancel, dataset add/rm, budget set, token create/revoke, worker
// register — and of every refusal of one, with who called, when, and how
// it ended. Entries go to the state store (SQLite, synchronous=FULL) and
// are listed by `dpctl admin audit`.
//
// Never records a secret (tokens are named by their owner's name) and
// never lets anonymous callers fill the disk: their refusals are recorded
// at a bounded rate, with a count of those left out.
#ifndef DPFLEET_SERVER_RPC_AUDIT_H_
#define DPFLEET_SERVER_RPC_AUDIT_H_

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
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

  // Records `action` on `target` by `caller` with its outcome. A failure
  // to write is reported on stderr; the call it describes has happened.
  void Record(const Identity& caller, absl::string_view action, absl::string_view target,
              const absl::Status& outcome);

 private:
  Store* const store_;
  Clock* const clock_;
  RateLimiter anonymous_;
  absl::Mutex mu_;
  int64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;  // anonymous refusals left out since the last one recorded
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_AUDIT_H_
