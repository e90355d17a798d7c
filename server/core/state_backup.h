// Backups of the coordinator's durable state, and the lock that gives one
// coordinator at a time a state directory.
//
// The state database (jobs, the privacy ledger, budgets, datasets' records,
// models, tokens, the split key, the audit trail) is copied with SQLite's
// online backup: one read transaction, so the copy is the database as of one
// commit even while a coordinator writes (WAL readers never block it). A
// backup is a single self-contained SQLite file, as secret as the state
// directory (token hashes, the split key, models): it is created 0600.
// Prepared shards under datasets/ are derived data and are not in it: a
// restored dataset whose shards are absent is prepared again from its raw
// files (DatasetRegistry::Recover).
//
// Restore never loses state: it refuses while a coordinator holds the
// directory, and an existing database is moved aside, never overwritten.
#ifndef DPFLEET_SERVER_CORE_STATE_BACKUP_H_
#define DPFLEET_SERVER_CORE_STATE_BACKUP_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace dpfleet::server {

// What a state database holds, as its tables count it.
struct StateSummary {
  int schema_version = 0;
  int64_t jobs = 0;
  int64_t ledger_rows = 0;
  int64_t datasets = 0;
  int64_t tokens = 0;
  int64_t audit_rows = 0;
  int64_t bytes = 0;
};

// Copies `state_dir`'s database to `out_file` (which must not exist: a
// backup is never overwritten) through a temporary file, fsynced and renamed
// into place, then checks the copy (InspectStateDb).
absl::StatusOr<StateSummary> BackupStateDb(const std::string& state_dir, const std::string& out_file);

// Opens a database file read-only and checks it: SQLite's integrity check,
// and a schema version this coordinator can migrate from.
absl::StatusOr<StateSummary> InspectStateDb(const std::string& file);

struct RestoreResult {
  StateSummary restored;
  std::string moved_aside;  // where the database it replaced went ("" if none)
};

class StateDirLock;

// Makes `backup_file` the database of the directory `held` locks (so no
// coordinator serves it meanwhile). Refused when the backup fails its
// checks, or when the directory already has a database and `replace` is
// false; with `replace`, the old database (and its WAL) is renamed to
// coordinator.db.replaced-<UTC time>, never deleted. The restored database
// migrates when it is next opened.
absl::StatusOr<RestoreResult> RestoreStateDb(const StateDirLock& held, const std::string& backup_file, bool replace);

// An exclusive flock on `state_dir`/lock, held for the life of the object:
// a second coordinator, or a restore, on the same directory is refused
// rather than interleaving writes. Released by the kernel if the holder dies.
class StateDirLock {
 public:
  // `who` says what takes it, for the other party's error message.
  static absl::StatusOr<StateDirLock> Acquire(const std::string& state_dir, const std::string& who);
  StateDirLock(StateDirLock&& other) noexcept : dir_(std::move(other.dir_)), fd_(other.fd_) { other.fd_ = -1; }
  StateDirLock& operator=(StateDirLock&& other) noexcept;
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;
  ~StateDirLock();
  const std::string& state_dir() const { return dir_; }

 private:
  StateDirLock(std::string dir, int fd) : dir_(std::move(dir)), fd_(fd) {}
  std::string dir_;
  int fd_ = -1;
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_STATE_BACKUP_H_
