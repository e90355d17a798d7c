// FileIdentifier: the ledger key (content_key.h) of a raw input file, hashed
// once per version of the file. A version is its FileStamp (device, inode,
// size, mtime and ctime in ns): while the stamp is unchanged the key is
// taken from a cache — in memory, and durable in the Store so that a
// restart does not read every file again. A hard link shares its target's
// (device, inode) and so its cache entry; a symlink is resolved by the
// caller; a copy is another inode with the same bytes, hashed once and
// landing on the same key.
//
// It also records which path was last seen holding which content, the
// names the budget views give a file.
//
// Never confines a path: callers pass paths DataRoots (or a dataset's
// record) already accepted. Never reads a file whose stamp it knows.
// Thread-safe; the hash of a large file runs without its lock.
#ifndef DPFLEET_SERVER_CORE_FILE_IDENTIFIER_H_
#define DPFLEET_SERVER_CORE_FILE_IDENTIFIER_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/clock.h"
#include "server/core/content_key.h"
#include "server/core/store.h"

namespace dpfleet::server {

class FileIdentifier {
 public:
  FileIdentifier(Store* store, Clock* clock) : store_(store), clock_(clock) {}

  // The content key of the regular file at `path` (a canonical path the
  // caller has confined). NotFound when it does not exist.
  absl::StatusOr<std::string> Identify(const std::string& path);

  // What this instance hashed (cache hits read nothing).
  struct Stats {
    int64_t files_hashed = 0;
    int64_t bytes_hashed = 0;
    double seconds = 0;
  };
  Stats stats();

 private:
  Store* const store_;
  Clock* const clock_;
  absl::Mutex mu_;
  // (device, inode) -> the stamp it was hashed at and its key.
  std::map<std::pair<uint64_t, uint64_t>, std::pair<FileStamp, std::string>> known_ ABSL_GUARDED_BY(mu_);
  // path -> the key last recorded for it in the store.
  std::map<std::string, std::string> named_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_FILE_IDENTIFIER_H_
