// Durable coordinator state in SQLite (WAL mode, synchronous=FULL): jobs,
// the privacy ledger (keyed by the content of the files each charge read),
// datasets, budgets per file, the cache of file content keys, API tokens
// (hashes only) and the audit trail. A write returns only after it is on disk, so a
// coordinator crash loses neither a submitted job nor a recorded epoch, and
// no privacy charge is ever forgotten.
//
// Thread-safe: one connection guarded by a mutex (the coordinator's write
// rate is a few rows per epoch, far below what one connection sustains).
#ifndef DPFLEET_SERVER_CORE_STORE_H_
#define DPFLEET_SERVER_CORE_STORE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/content_key.h"
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
// Poisson-subsampled Gaussian mechanism for one epoch of one attempt. It
// applies to every input file the job reads: `files` (content keys,
// content_key.h) are where it counts against budgets.
struct LedgerEntry {
  std::string job_id;
  int32_t attempt = 0;
  int32_t epoch = 0;
  Mechanism mechanism = Mechanism::kTrain;
  std::string dataset;  // the data as the job named it (its paths, '+'-joined); a label
  std::vector<std::string> files;  // the ledger keys it is charged to, sorted
  int64_t steps = 0;
  double sample_rate = 0;
  double noise_multiplier = 0;
  double delta = 0;
  int64_t recorded_ms = 0;
};

// A file's total privacy budget (a budget set on a dataset or a path is one
// of these per file it names).
struct BudgetRecord {
  std::string file;  // ledger key
  double epsilon = 0;
  double delta = 0;
  int64_t updated_ms = 0;
};

// An API token: only its SHA-256 is ever stored, never the secret.
struct TokenRecord {
  int64_t id = 0;
  std::string name;  // the person or program it stands for (owns their jobs)
  std::string role;  // custodian | analyst | viewer
  std::string sha256;  // 32 raw bytes
  int64_t created_ms = 0;
  int64_t revoked_ms = 0;  // 0 while valid
};

// One entry of the audit trail: a state-changing call (or its refusal).
struct AuditRecord {
  int64_t id = 0;  // increasing
  int64_t time_ms = 0;
  std::string kind;  // user | worker | anonymous | local
  std::string name;  // token name or certificate name
  std::string role;
  std::string action;  // e.g. SubmitJob, CreateToken
  std::string target;  // job id, dataset, token name, ...
  std::string outcome;  // OK or the status code name
  std::string detail;
};

class Store {
 public:
  // The schema version this build writes (PRAGMA user_version). A database
  // of an older version is migrated when it is opened.
  static constexpr int kSchemaVersion = 4;
  // The database file of a state directory.
  static std::string DatabasePath(const std::string& state_dir);

  // Opens (creating if needed) DIR/coordinator.db, migrating an older schema.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& state_dir);
  ~Store();

  // What opening the database did that an operator should know (a
  // migration, and what it could not carry over), for the start-up log.
  const std::vector<std::string>& migration_notes() const { return migration_notes_; }

  // Reads the database (a query that touches its pages): Unavailable
  // naming the cause when the store cannot serve. For readiness probes.
  absl::Status Ping();

  // Next job id, durably reserved.
  absl::StatusOr<std::string> NextJobId();
  absl::Status PutJob(const JobRecord& job);
  // All jobs in submission order.
  absl::StatusOr<std::vector<JobRecord>> LoadJobs();

  // Records a charge and the files it applies to, in one transaction.
  // Returns true when it was new, false when the same (job, attempt,
  // epoch, mechanism) was already recorded (idempotent retries).
  absl::StatusOr<bool> Charge(const LedgerEntry& entry);
  absl::StatusOr<std::vector<LedgerEntry>> LedgerForJob(const std::string& job_id);
  // Every charge that applies to the file with ledger key `file`.
  absl::StatusOr<std::vector<LedgerEntry>> LedgerForFile(const std::string& file);
  // Ledger keys with at least one charge.
  absl::StatusOr<std::vector<std::string>> LedgerFiles();

  // The content-key cache (server/core/file_identifier.h): the key hashed
  // for a file version, if that (device, inode) was hashed with exactly
  // this stamp.
  absl::StatusOr<std::optional<std::string>> CachedContentKey(const FileStamp& stamp);
  absl::Status PutContentKey(const FileStamp& stamp, const std::string& key);
  // Which path was last seen holding which content: the names the budget
  // views give a file. Paths whose content changed name the new key.
  absl::Status PutFilePath(const std::string& path, const std::string& key, int64_t seen_ms);
  // Ledger key -> paths that hold it, paths sorted.
  absl::StatusOr<std::map<std::string, std::vector<std::string>>> FilePaths();
  // The key last seen at `path` (exactly as recorded: a canonical path), if
  // any.
  absl::StatusOr<std::optional<std::string>> FileAtPath(const std::string& path);
  // Whether the key names a file the coordinator has seen, charged or
  // budgeted.
  absl::StatusOr<bool> KnowsFile(const std::string& key);

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

  // Sets (inserts or replaces) the budgets of several files in one
  // transaction: all of them are on disk or none.
  absl::Status PutBudgets(const std::vector<BudgetRecord>& budgets);
  absl::StatusOr<std::vector<BudgetRecord>> LoadBudgets();

  // Adds a token; AlreadyExists while another valid token has its name.
  absl::StatusOr<TokenRecord> PutToken(TokenRecord token);
  // The token with this SHA-256 (valid or revoked), if any.
  absl::StatusOr<std::optional<TokenRecord>> FindToken(const std::string& sha256);
  absl::StatusOr<std::vector<TokenRecord>> ListTokens();
  // Marks every valid token of `name` revoked; returns how many there were.
  absl::StatusOr<int> RevokeTokens(const std::string& name, int64_t now_ms);

  absl::Status AppendAudit(const AuditRecord& record);
  // Entries with id > after_id, oldest first, at most `limit`.
  absl::StatusOr<std::vector<AuditRecord>> ListAudit(int64_t after_id, int64_t limit);

  // The coordinator's secret key of the train/eval split of data.path jobs:
  // 64 bits from getrandom(2), drawn the first time and stored here (so it
  // survives restarts and every job on the same files gets the same
  // held-out persons). Nothing here hands it to an API response or a log;
  // it goes to workers inside their assignments only.
  absl::StatusOr<uint64_t> SplitKey();

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  absl::Status Exec(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Brings a database of any earlier schema version to kSchemaVersion.
  absl::Status MigrateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Version 3's step: rebuilds a ledger without a mechanism column (its
  // rows are training charges); a ledger that has one is left alone.
  absl::Status MigrateLedgerMechanismLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Version 4's step: charges and budgets keyed by path strings move onto
  // the content of the files (hashed now); a file that no longer exists
  // keeps its rows under LegacyPathKey. Appends what it did to
  // migration_notes_.
  absl::Status MigrateLedgerToContentKeysLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A chunk of column `data` of row `rowid` of `table`.
  absl::StatusOr<BlobChunk> ReadBlobLocked(const char* table, int64_t rowid, int64_t offset, int64_t max_bytes,
                                           const std::string& what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Charges (with their files) selected by `where`, an SQL condition on
  // ledger `l` with one parameter ?1 bound to `value`, in recorded order.
  absl::StatusOr<std::vector<LedgerEntry>> QueryLedger(const std::string& where, const std::string& value);
  // Runs `steps` in one transaction (BEGIN IMMEDIATE ... COMMIT), rolled
  // back when a step fails.
  absl::Status InTransactionLocked(const std::function<absl::Status()>& steps) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PutBudgetLocked(const BudgetRecord& budget) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One charge -> file row (idempotent).
  absl::Status PutLedgerFileLocked(const std::string& job_id, int64_t attempt, int64_t epoch,
                                   const std::string& mechanism, const std::string& file)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PutContentKeyLocked(const FileStamp& stamp, const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PutFilePathLocked(const std::string& path, const std::string& key, int64_t seen_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> migration_notes_;  // written while opening only
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_STORE_H_
