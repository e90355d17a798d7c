// DatasetRegistry: raw PUMS files registered under a name and prepared by
// the coordinator, in the background, into shards + manifest.json under
// <state-dir>/datasets/<name>/ (the same PrepareShards that
// `dpctl data prepare` runs). Records are durable; a preparation that a
// restart interrupted runs again.
//
// Never exposes rows: a dataset's public face is its manifest (counts,
// layout, checksums). Never reads a raw file outside the data roots
// (server/core/data_resolver.h): paths are checked, and stored as their
// realpath, when a dataset is added, and again before an interrupted
// preparation restarts.
//
// Each dataset records the content keys of its files when it is added
// (server/core/file_identifier.h): the ledger charges a job on the dataset
// to those files, whoever else reads them under whatever name.
//
// Remove forgets a registration and deletes the shards the coordinator made
// (never the raw files); a preparation in progress is cancelled. The
// privacy ledger is keyed by the raw files' content, not by the
// registration, so removing (and re-adding) a dataset never forgets budget
// already spent.
//
// Store, then publish: a record changes in memory (what Get and List show)
// only after the store holds it. Add and Remove fail with the store's
// status and change nothing. A finished preparation whose READY or FAILED
// record the store refuses stays PREPARING, is counted in
// background_errors() and is written again (backoff up to kMaxRetryDelay)
// until the store takes it, the dataset is removed or the registry goes;
// a restart that finds it PREPARING prepares it again.
//
// Locking: `write_mu_` is held across each decide-write-swap; `mu_` guards
// the records, is what readers take, and is never held across a store
// write or a directory deletion.
#ifndef DPFLEET_SERVER_CORE_DATASET_REGISTRY_H_
#define DPFLEET_SERVER_CORE_DATASET_REGISTRY_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/pums/prepare.h"
#include "server/core/background_errors.h"
#include "server/core/clock.h"
#include "server/core/data_resolver.h"
#include "server/core/file_identifier.h"
#include "server/core/store.h"

namespace dpfleet::server {

struct DatasetRecord {
  std::string name;
  std::vector<std::string> paths;
  // The ledger keys of `paths` (same order), taken when the dataset was
  // added: what it prepared is what its jobs are charged to.
  std::vector<std::string> input_files;
  std::string task = "employment";
  std::vector<std::string> features;
  int shards = 4;
  uint64_t split_seed = 0;
  double eval_fraction = 0.2;
  std::string state = "PREPARING";  // PREPARING | READY | FAILED
  std::string reason;
  std::string dir;
  std::string manifest_json;
  int64_t rows_train = 0;
  int64_t rows_eval = 0;
  int64_t rows_prepared = 0;  // progress: rows kept so far while PREPARING
  int64_t created_ms = 0;
  int64_t ready_ms = 0;
};

class DatasetRegistry {
 public:
  // Runs data::PrepareShards; `prepare` replaces it (tests that need a
  // preparation to be in a known state).
  using PrepareFn = std::function<absl::StatusOr<data::Manifest>(const data::PrepareOptions&)>;
  DatasetRegistry(Store* store, Clock* clock, std::string state_dir, PrepareFn prepare = data::PrepareShards);
  ~DatasetRegistry();  // waits for running preparations

  // Where raw files may come from; without roots (the default) every path
  // is refused. Set before Recover.
  void set_data_roots(DataRoots roots) { roots_ = std::move(roots); }

  // Loads records; restarts preparations a restart interrupted. Records
  // from before content keys get theirs now: the files that still exist
  // are hashed where the record names them, the others keep
  // LegacyPathKey (as the store's migration keyed their ledger rows).
  absl::Status Recover();
  // Validates (name, files — confined, identified and distinct —, task,
  // features, shards) and starts preparing.
  absl::StatusOr<DatasetRecord> Add(DatasetRecord request);
  absl::StatusOr<DatasetRecord> Get(const std::string& name);
  std::vector<DatasetRecord> List();
  // Forgets `name` and deletes its shard directory; returns the record as it
  // was. A PREPARING dataset's preparation is cancelled and cleans up after
  // itself; until it has, Add of the same name is refused (Unavailable).
  // The caller makes sure no live job uses the dataset (JobManager).
  absl::StatusOr<DatasetRecord> Remove(const std::string& name);
  // Blocks until a removed dataset's preparation has stopped and cleaned up
  // (tests, tools); DeadlineExceeded if it has not within `timeout`.
  absl::Status WaitRemoved(const std::string& name, absl::Duration timeout);
  // Blocks until the dataset is no longer PREPARING (tests, tools).
  absl::StatusOr<DatasetRecord> WaitPrepared(const std::string& name, absl::Duration timeout);
  BackgroundErrors::Snapshot background_errors() const { return background_errors_.Get(); }

  static constexpr absl::Duration kMaxRetryDelay = absl::Seconds(5);

 private:
  void StartLocked(const DatasetRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Prepare(DatasetRecord record, std::shared_ptr<std::atomic<bool>> cancel);
  // Stores a finished preparation's record, retrying while the store
  // refuses it; returns once it is stored or no longer wanted.
  void StorePrepared(const DatasetRecord& record);
  // Deletes a shard directory this registry made (under <state-dir>/datasets).
  void DeleteDir(const std::string& dir) const;
  // At recovery: points a record at this state directory's copy of its
  // shards and sends a READY dataset whose shards are gone back to
  // PREPARING (stored); true when it changed the record.
  absl::StatusOr<bool> RelocateLocked(DatasetRecord* d) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Store* const store_;
  Clock* const clock_;
  const std::string state_dir_;
  const PrepareFn prepare_;
  DataRoots roots_;
  FileIdentifier files_;
  BackgroundErrors background_errors_;
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, DatasetRecord> datasets_ ABSL_GUARDED_BY(mu_);
  // Cancel flags of the preparations still running, by name.
  std::map<std::string, std::shared_ptr<std::atomic<bool>>> preparing_ ABSL_GUARDED_BY(mu_);
  // Removed while PREPARING: their preparation has yet to stop.
  std::set<std::string> removing_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_DATASET_REGISTRY_H_
