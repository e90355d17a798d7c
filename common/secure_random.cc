#include "common/secure_random.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dpfleet {

absl::Status SecureRandomBytes(void* out, size_t n) {
  auto* bytes = static_cast<unsigned char*>(out);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = getrandom(bytes + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("getrandom failed: ", std::strerror(errno)));
    }
    got += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> SecureRandomU64() {
  uint64_t v = 0;
  absl::Status s = SecureRandomBytes(&v, sizeof(v));
  if (!s.ok()) return s;
  return v;
}

}  // namespace dpfleet
