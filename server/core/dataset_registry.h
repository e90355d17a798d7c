// DatasetRegistry: raw PUMS files registered under a name and prepared by
// the coordinator, in the background, into shards + manifest.json under
// <state-dir>/datasets/<name>/ (the same PrepareShards that
// `dpctl data prepare` runs). Records are durable; a preparation that a
// restart interrupted runs again.
//
// Never exposes rows: a dataset's public face is its manifest (counts,
// layout, checksums).
#ifndef DPFLEET_SERVER_CORE_DATASET_REGISTRY_H_
#define DPFLEET_SERVER_CORE_DATASET_REGISTRY_H_

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/clock.h"
#include "server/core/store.h"

namespace dpfleet::server {

struct DatasetRecord {
  std::string name;
  std::vector<std::string> paths;
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
  DatasetRegistry(Store* store, Clock* clock, std::string state_dir);
  ~DatasetRegistry();  // waits for running preparations

  // Loads records; restarts preparations a restart interrupted.
  absl::Status Recover();
  // Validates (name, files, task, features, shards) and starts preparing.
  absl::StatusOr<DatasetRecord> Add(DatasetRecord request);
  absl::StatusOr<DatasetRecord> Get(const std::string& name);
  std::vector<DatasetRecord> List();
  // Blocks until the dataset is no longer PREPARING (tests, tools).
  absl::StatusOr<DatasetRecord> WaitPrepared(const std::string& name, absl::Duration timeout);

 private:
  void StartLocked(const DatasetRecord& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Prepare(DatasetRecord record);

  Store* const store_;
  Clock* const clock_;
  const std::string state_dir_;
  absl::Mutex mu_;
  std::map<std::string, DatasetRecord> datasets_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_DATASET_REGISTRY_H_
