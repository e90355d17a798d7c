// Status helpers shared by every dpfleet library.
//
// Fallible functions return absl::Status / absl::StatusOr<T>; these macros
// chain them and stop at the first failure. Exceptions never cross a module
// boundary: LibTorch and yaml-cpp exceptions are converted at their edge.
#ifndef DPFLEET_COMMON_STATUS_H_
#define DPFLEET_COMMON_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define DPFLEET_STATUS_CONCAT_INNER_(a, b) a##b
#define DPFLEET_STATUS_CONCAT_(a, b) DPFLEET_STATUS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    ::absl::Status _dpfleet_status = (expr);          \
    if (!_dpfleet_status.ok()) return _dpfleet_status; \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                           \
  if (!tmp.ok()) return tmp.status();           \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ASSIGN_OR_RETURN_IMPL_(DPFLEET_STATUS_CONCAT_(_dpfleet_statusor_, __LINE__), lhs, rexpr)

namespace dpfleet {

// Prefixes a status message with context, keeping its code.
inline absl::Status Annotate(const absl::Status& s, absl::string_view context) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

}  // namespace dpfleet

#endif  // DPFLEET_COMMON_STATUS_H_
