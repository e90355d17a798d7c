#include "server/core/file_identifier.h"

#include <optional>

#include "absl/time/clock.h"
#include "common/status.h"

namespace dpfleet::server {

absl::StatusOr<std::string> FileIdentifier::Identify(const std::string& path) {
  ASSIGN_OR_RETURN(const FileStamp stamp, StampOf(path));
  std::optional<std::string> key;
  {
    absl::MutexLock lock(&mu_);
    auto it = known_.find({stamp.device, stamp.inode});
    if (it != known_.end() && it->second.first == stamp) key = it->second.second;
  }
  if (!key) {
    ASSIGN_OR_RETURN(key, store_->CachedContentKey(stamp));
  }
  FileStamp known_stamp = stamp;
  if (!key) {
    const absl::Time start = absl::Now();
    ASSIGN_OR_RETURN(const HashedFile hashed, HashFile(path));
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    RETURN_IF_ERROR(store_->PutContentKey(hashed.stamp, hashed.key));
    key = hashed.key;
    known_stamp = hashed.stamp;  // the file may have changed since the first stat
    absl::MutexLock lock(&mu_);
    stats_.files_hashed += 1;
    stats_.bytes_hashed += hashed.stamp.size;
    stats_.seconds += seconds;
  }
  bool renamed = false;
  {
    absl::MutexLock lock(&mu_);
    known_[{known_stamp.device, known_stamp.inode}] = {known_stamp, *key};
    auto n = named_.find(path);
    renamed = n == named_.end() || n->second != *key;
  }
  if (renamed) {
    RETURN_IF_ERROR(store_->PutFilePath(path, *key, clock_->NowMs()));
    absl::MutexLock lock(&mu_);
    named_[path] = *key;
  }
  return *key;
}

FileIdentifier::Stats FileIdentifier::stats() {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace dpfleet::server
