#include "server/core/content_key.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status.h"

namespace dpfleet::server {
namespace {

// How often a file that keeps changing under the hash is read again.
constexpr int kHashAttempts = 3;

int64_t Nanoseconds(const struct timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec; }

}  // namespace

absl::StatusOr<FileStamp> StampOf(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(absl::StrCat("'", path, "' does not exist"));
    return absl::FailedPreconditionError(absl::StrCat("cannot stat '", path, "': ", std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat("'", path, "' is not a regular file"));
  FileStamp s;
  s.device = static_cast<uint64_t>(st.st_dev);
  s.inode = static_cast<uint64_t>(st.st_ino);
  s.size = static_cast<int64_t>(st.st_size);
  s.mtime_ns = Nanoseconds(st.st_mtim);
  s.ctime_ns = Nanoseconds(st.st_ctim);
  return s;
}

absl::StatusOr<HashedFile> HashFile(const std::string& path) {
  for (int attempt = 0; attempt < kHashAttempts; ++attempt) {
    ASSIGN_OR_RETURN(const FileStamp before, StampOf(path));
    ASSIGN_OR_RETURN(const std::string hex, Sha256FileHex(path));
    ASSIGN_OR_RETURN(const FileStamp after, StampOf(path));
    // Unchanged before and after: the bytes read are the bytes of this
    // version (a file replaced by rename shows a new inode).
    if (before == after) return HashedFile{absl::StrCat(kContentKeyPrefix, hex), after};
  }
  return absl::UnavailableError(
      absl::StrCat("'", path, "' changed every time it was read; its content cannot be identified"));
}

std::string LegacyPathKey(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(path, ec).lexically_normal();
  return absl::StrCat(kLegacyKeyPrefix, ec ? path : abs.string());
}

bool IsContentKey(absl::string_view key) {
  if (!absl::StartsWith(key, kContentKeyPrefix)) return false;
  const absl::string_view hex = key.substr(sizeof(kContentKeyPrefix) - 1);
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsLegacyKey(absl::string_view key) {
  return absl::StartsWith(key, kLegacyKeyPrefix) && key.size() > sizeof(kLegacyKeyPrefix) - 1;
}

}  // namespace dpfleet::server
