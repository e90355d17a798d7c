#ifndef DPFLEET_WORKER_TRAIN_GUARD_TORCH_H_
#define DPFLEET_WORKER_TRAIN_GUARD_TORCH_H_

// LibTorch throws; the worker's modules return absl::Status. GuardTorch runs
// `fn` (which returns an absl::Status) and turns anything LibTorch or the
// standard library throws into an Internal error prefixed with `what`.

#include <c10/util/Exception.h>

#include <exception>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace dpfleet::train {

template <typename Fn>
absl::Status GuardTorch(absl::string_view what, Fn&& fn) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_GUARD_TORCH_H_
