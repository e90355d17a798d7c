// Durable coordinator state in SQLite (WAL mode, synchronous=FULL): jobs and
// the privacy ledger. A write returns only after it is on disk, so a
// coordinator crash loses neither a submitted job nor a recorded epoch, and
// no privacy charge is ever forgotten.
//
// Thread-safe: one connection guarded by a mutex (the coordinator's write
// rate is a few rows per epoch, far below what one connection sustains).
#ifndef DPFLEET_SERVER_CORE_STORE_H_
#define DPFLEET_SERVER_CORE_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/types.h"

struct sqlite3;

namespace dpfleet::server {

// What a ledger row pays for: an epoch of DP-SGD, or the epoch's eval
// release (the Gaussian mechanism on the eval score histogram, stored as
// steps 1, sample_rate 1, noise_multiplier sigma_e). Both are
// Poisson-subsampled Gaussians, so the accountants compose them alike.
enum class Mechanism { kTrain, kEval };
const char* MechanismName(Mechanism m);  // "train" | "eval"

// One charge of the privacy ledger: `steps` applications of the
// Poisson-subsampled Gaussian mechanism for one epoch of one attempt.
struct LedgerEntry {
  std::string job_id;
  int32_t attempt = 0;
  int32_t epoch = 0;
  Mechanism mechanism = Mechanism::kTrain;
  std::string dataset;  // the data the mechanism touched (dataset key)
  int64_t steps = 0;
  double sample_rate = 0;
  double noise_multiplier = 0;
  double delta = 0;
  int64_t recorded_ms = 0;
};

// A dataset's total privacy budget.
struct BudgetRecord {
  std::string dataset;
  double epsilon = 0;
  double delta = 0;
  int64_t updated_ms = 0;
};

class Store {
 public:
  // Opens (creating if needed) DIR/coordinator.db.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& state_dir);
  ~Store();

  // Next job id, durably reserved.
  absl::StatusOr<std::string> NextJobId();
  absl::Status PutJob(const JobRecord& job);
  // All jobs in submission order.
  absl::StatusOr<std::vector<JobRecord>> LoadJobs();

  // Records a charge. Returns true when it was new, false when the same
  // (job, attempt, epoch, mechanism) was already recorded (idempotent
  // retries).
  absl::StatusOr<bool> Charge(const LedgerEntry& entry);
  absl::StatusOr<std::vector<LedgerEntry>> LedgerForJob(const std::string& job_id);
  absl::StatusOr<std::vector<LedgerEntry>> LedgerForDataset(const std::string& dataset);
  // Datasets with at least one ledger entry.
  absl::StatusOr<std::vector<std::string>> LedgerDatasets();

  // Registered datasets as JSON records, keyed by name.
  absl::Status PutDataset(const std::string& name, const std::string& record_json);
  absl::StatusOr<std::vector<std::string>> LoadDatasets();
  // Forgets a registered dataset (its ledger entries and budget stay).
  absl::Status DeleteDataset(const std::string& name);

  // Bytes [offset, offset + max_bytes) of a stored blob, and its size.
  struct BlobChunk {
    std::string data;
    int64_t total_bytes = 0;
  };

  // Training state after `epoch` of a job (rank 0's DpSgdTrainer bytes),
  // for resuming a failed attempt. DeleteCheckpoints drops those of epochs
  // below `below_epoch` (INT32_MAX: all of the job's).
  absl::Status PutCheckpoint(const std::string& job_id, int32_t epoch, const std::string& data);
  absl::Status DeleteCheckpoints(const std::string& job_id, int32_t below_epoch);
  // The trained model of a job (kept with the job).
  absl::Status PutModel(const std::string& job_id, const std::string& data);
  // Chunks of the two, read with SQLite's incremental blob I/O: a chunk
  // costs its own size, not the blob's. NotFound when there is none;
  // InvalidArgument for an offset past the end.
  absl::StatusOr<BlobChunk> ReadCheckpoint(const std::string& job_id, int32_t epoch, int64_t offset,
                                           int64_t max_bytes);
  absl::StatusOr<BlobChunk> ReadModel(const std::string& job_id, int64_t offset, int64_t max_bytes);

  absl::Status PutBudget(const BudgetRecord& budget);
  absl::StatusOr<std::vector<BudgetRecord>> LoadBudgets();

  // The coordinator's secret key of the train/eval split of data.path jobs:
  // 64 bits from getrandom(2), drawn the first time and stored here (so it
  // survives restarts and every job on the same files gets the same
  // held-out persons). Nothing here hands it to an API response or a log;
  // it goes to workers inside their assignments only.
  absl::StatusOr<uint64_t> SplitKey();

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  absl::Status Exec(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Creates the ledger table, or moves one without a mechanism column to
  // the current schema (its rows are training charges).
  absl::Status MigrateLedgerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A chunk of column `data` of row `rowid` of `table`.
  absl::StatusOr<BlobChunk> ReadBlobLocked(const char* table, int64_t rowid, int64_t offset, int64_t max_bytes,
                                           const std::string& what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<LedgerEntry>> QueryLedger(const std::string& column,
                                                       const std::string& value);

  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_STORE_H_
