// Content keys: how the privacy ledger names a raw input file. A file is
// the SHA-256 of its bytes, so a symlink, a hard link, a copy or a renamed
// file is the same file to the ledger, and no new name for the same records
// escapes the budget on them.
//
// A key is "sha256:" and 64 lower-case hex digits. The one exception is
// kept for history: ledgers from before content keys named files by path,
// and the rows of a file that no longer existed when the state directory
// was upgraded keep "path:" and that path (LegacyPathKey) — there is
// nothing left to hash, and a charge is never dropped.
//
// Never decides whether a path may be read: callers confine paths first
// (DataRoots). A key identifies content; it is no secret and no MAC.
#ifndef DPFLEET_SERVER_CORE_CONTENT_KEY_H_
#define DPFLEET_SERVER_CORE_CONTENT_KEY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dpfleet::server {

inline constexpr char kContentKeyPrefix[] = "sha256:";
inline constexpr char kLegacyKeyPrefix[] = "path:";

// One version of a file on disk, as stat(2) tells it without reading the
// file: a content key computed for a stamp stays valid while the stamp is
// unchanged. ctime is in it although no one sets it by hand: a write that
// restores mtime (touch -d, cp -p over the file) still moves ctime, so a
// rewritten file is hashed again.
struct FileStamp {
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileStamp& o) const {
    return device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns;
  }
  bool operator!=(const FileStamp& o) const { return !(*this == o); }
};

// stat(2) of `path`, following symlinks. NotFound when it does not exist,
// FailedPrecondition when it is not a regular file.
absl::StatusOr<FileStamp> StampOf(const std::string& path);

struct HashedFile {
  std::string key;  // "sha256:<hex>"
  FileStamp stamp;  // the version that was hashed
};
// Reads the whole file and returns its content key with the stamp it had
// before and after the read. A file that changed while it was read is read
// again (a few times, then Unavailable): a key always belongs to its stamp.
absl::StatusOr<HashedFile> HashFile(const std::string& path);

// "path:" and the lexically normal absolute form of `path`.
std::string LegacyPathKey(const std::string& path);
// "sha256:" followed by exactly 64 lower-case hex digits.
bool IsContentKey(absl::string_view key);
bool IsLegacyKey(absl::string_view key);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_CONTENT_KEY_H_
