// BackgroundErrors: failures of work that no caller was waiting on — a lost
// lease or a job start the store could not record, a dataset's finished
// preparation it could not store — counted and kept (the last one), so an
// operator sees them (/metrics, the server's log) while the coordinator
// retries them. It records; it never decides or retries anything itself.
//
// Thread-safe; a leaf lock that is held for a counter bump.
#ifndef DPFLEET_SERVER_CORE_BACKGROUND_ERRORS_H_
#define DPFLEET_SERVER_CORE_BACKGROUND_ERRORS_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace dpfleet::server {

class BackgroundErrors {
 public:
  struct Snapshot {
    int64_t count = 0;  // since the coordinator started
    std::string last;   // "what: status", empty when none
  };

  // `what` says which background step failed ("starting job-000004").
  void Record(const std::string& what, const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    ++count_;
    last_ = absl::StrCat(what, ": ", status.ToString());
  }

  Snapshot Get() const {
    absl::MutexLock lock(&mu_);
    return {count_, last_};
  }

 private:
  mutable absl::Mutex mu_;
  int64_t count_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_BACKGROUND_ERRORS_H_
