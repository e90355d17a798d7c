// Store: the coordinator's durable state — jobs, the privacy ledger (keyed
// by the content of the files each charge read), budgets per file, the
// cache of file content keys, datasets, checkpoints, models, API tokens
// (hashes only), the audit trail and the coordinator's secrets — as an
// interface, so that the coordinator's logic can be driven against a store
// that fails on purpose (tests/testing/server/faulty_store.h). The one
// production implementation is SQLite (server/core/sqlite_store.h), which
// Open returns.
//
// The contract every implementation keeps, and JobManager relies on:
//  * A write returns OK only once it is durable, so a crash after OK loses
//    nothing.
//  * Each call is one transaction: it lands whole or not at all. A failed
//    write leaves what readers of the store see unchanged, so the caller
//    keeps its old state and memory and disk still agree.
//  * A failure names the write and the cause. Unavailable when the cause
//    may pass (an I/O error, a full disk, a failed fsync, a busy database):
//    the caller may retry. Internal or DataLoss otherwise.
//  * After a failed fsync the write is not visible, but its bytes may have
//    reached the disk; after a crash that follows before the next
//    successful write it may be there. The only way this can surprise is
//    with a change the caller was told had failed (never one it was told
//    had succeeded), and for the ledger that errs on the side of counting.
//
// A store never decides anything: it keeps rows. It never publishes.
#ifndef DPFLEET_SERVER_CORE_STORE_H_
#define DPFLEET_SERVER_CORE_STORE_H_

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/core/content_key.h"
#include "server/core/types.h"

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

// A job record and what changes with it, written as one transaction: an
// epoch's record lands together with the checkpoint it resumes from, and a
// job's end together with dropping its checkpoints.
struct JobCommit {
  JobRecord job;
  // Stored with the record when non-empty: the training state after epoch
  // `checkpoint_epoch`.
  std::string checkpoint;
  int32_t checkpoint_epoch = 0;
  // Checkpoints of epochs below this go with the record (0: none;
  // kAllCheckpoints: every one of the job's).
  int32_t drop_checkpoints_below = 0;
  // Stored with the record when non-empty: an audit run's report (the JSON
  // of the API's AuditReport), so that the run is SUCCEEDED exactly when
  // its report is on disk.
  std::string audit_report;
  static constexpr int32_t kAllCheckpoints = std::numeric_limits<int32_t>::max();
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

// One line of a run's log as a worker shipped it (worker/agent/released_log.h
// says what a line may hold). `seq` is the store's, per job, increasing.
struct LogLine {
  int64_t seq = 0;
  int32_t attempt = 0;
  int32_t rank = 0;
  int32_t level = 2;  // the proto's LogLevel: 1 debug, 2 info, 3 warn, 4 error
  int64_t time_ms = 0;
  std::string message;
};

// Bounds of one job's kept log: past either, the oldest lines go (and are
// counted), so the end of a run — where it failed — is always kept.
struct LogLimits {
  int64_t max_lines = 20'000;
  int64_t max_bytes = 4 << 20;  // message bytes
};

struct LogAppendResult {
  int64_t stored = 0;
  int64_t dropped = 0;  // older lines of the job this append pushed out
};

struct LogQuery {
  int64_t after_seq = 0;
  std::optional<int32_t> rank, attempt;
  int64_t limit = 1000;
};

struct LogPage {
  std::vector<LogLine> lines;
  int64_t last_seq = 0;  // of the job's whole log
  int64_t dropped_lines = 0, dropped_bytes = 0;  // by the caps, ever
  int64_t worker_dropped = 0;  // lines workers' own buffers dropped
};

class Store {
 public:
  // The schema version of the state database this build writes (PRAGMA
  // user_version in SqliteStore). A database of an older version is
  // migrated when it is opened; a newer one is refused.
  static constexpr int kSchemaVersion = 6;
  // The database file of a state directory.
  static std::string DatabasePath(const std::string& state_dir);

  // Opens (creating if needed) DIR/coordinator.db, migrating an older
  // schema: the SQLite store.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& state_dir);
  virtual ~Store() = default;

  // What opening the database did that an operator should know (a
  // migration, and what it could not carry over), for the start-up log.
  virtual std::vector<std::string> MigrationNotes() const = 0;

  // Reads the database (a query that touches its pages): Unavailable
  // naming the cause when the store cannot serve. For readiness probes.
  virtual absl::Status Ping() = 0;

  // Next job id, durably reserved (a reserved id whose job is never stored
  // is simply skipped).
  virtual absl::StatusOr<std::string> NextJobId() = 0;
  virtual absl::Status PutJob(const JobRecord& job) = 0;
  virtual absl::Status CommitJob(const JobCommit& commit) = 0;
  // All jobs in submission order.
  virtual absl::StatusOr<std::vector<JobRecord>> LoadJobs() = 0;

  // Records a charge and the files it applies to, in one transaction.
  // Returns true when it was new, false when the same (job, attempt,
  // epoch, mechanism) was already recorded (idempotent retries).
  virtual absl::StatusOr<bool> Charge(const LedgerEntry& entry) = 0;
  virtual absl::StatusOr<std::vector<LedgerEntry>> LedgerForJob(const std::string& job_id) = 0;
  // Every charge that applies to the file with ledger key `file`.
  virtual absl::StatusOr<std::vector<LedgerEntry>> LedgerForFile(const std::string& file) = 0;
  // Ledger keys with at least one charge.
  virtual absl::StatusOr<std::vector<std::string>> LedgerFiles() = 0;

  // The content-key cache (server/core/file_identifier.h): the key hashed
  // for a file version, if that (device, inode) was hashed with exactly
  // this stamp.
  virtual absl::StatusOr<std::optional<std::string>> CachedContentKey(const FileStamp& stamp) = 0;
  virtual absl::Status PutContentKey(const FileStamp& stamp, const std::string& key) = 0;
  // Which path was last seen holding which content: the names the budget
  // views give a file. Paths whose content changed name the new key.
  virtual absl::Status PutFilePath(const std::string& path, const std::string& key, int64_t seen_ms) = 0;
  // Ledger key -> paths that hold it, paths sorted.
  virtual absl::StatusOr<std::map<std::string, std::vector<std::string>>> FilePaths() = 0;
  // The key last seen at `path` (exactly as recorded: a canonical path), if
  // any.
  virtual absl::StatusOr<std::optional<std::string>> FileAtPath(const std::string& path) = 0;
  // Whether the key names a file the coordinator has seen, charged or
  // budgeted.
  virtual absl::StatusOr<bool> KnowsFile(const std::string& key) = 0;

  // Registered datasets as JSON records, keyed by name.
  virtual absl::Status PutDataset(const std::string& name, const std::string& record_json) = 0;
  virtual absl::StatusOr<std::vector<std::string>> LoadDatasets() = 0;
  // Forgets a registered dataset (its ledger entries and budget stay).
  virtual absl::Status DeleteDataset(const std::string& name) = 0;

  // Bytes [offset, offset + max_bytes) of a stored blob, and its size.
  struct BlobChunk {
    std::string data;
    int64_t total_bytes = 0;
  };

  // The trained model of a job (kept with the job).
  virtual absl::Status PutModel(const std::string& job_id, const std::string& data) = 0;
  // Chunks of a checkpoint (the training state after `epoch`, stored by
  // CommitJob) and of a model. NotFound when there is none; InvalidArgument
  // for an offset past the end.
  virtual absl::StatusOr<BlobChunk> ReadCheckpoint(const std::string& job_id, int32_t epoch, int64_t offset,
                                                   int64_t max_bytes) = 0;
  virtual absl::StatusOr<BlobChunk> ReadModel(const std::string& job_id, int64_t offset, int64_t max_bytes) = 0;

  // The report an audit run's end stored (JobCommit::audit_report);
  // nullopt when it has none.
  virtual absl::StatusOr<std::optional<std::string>> ReadAuditReport(const std::string& job_id) = 0;

  // Sets (inserts or replaces) the budgets of several files in one
  // transaction: all of them are on disk or none.
  virtual absl::Status PutBudgets(const std::vector<BudgetRecord>& budgets) = 0;
  virtual absl::StatusOr<std::vector<BudgetRecord>> LoadBudgets() = 0;

  // Adds a token; AlreadyExists while another valid token has its name.
  virtual absl::StatusOr<TokenRecord> PutToken(TokenRecord token) = 0;
  // The token with this SHA-256 (valid or revoked), if any.
  virtual absl::StatusOr<std::optional<TokenRecord>> FindToken(const std::string& sha256) = 0;
  virtual absl::StatusOr<std::vector<TokenRecord>> ListTokens() = 0;
  // Marks every valid token of `name` revoked; returns how many there were.
  virtual absl::StatusOr<int> RevokeTokens(const std::string& name, int64_t now_ms) = 0;

  virtual absl::Status AppendAudit(const AuditRecord& record) = 0;
  // Entries with id > after_id, oldest first, at most `limit`.
  virtual absl::StatusOr<std::vector<AuditRecord>> ListAudit(int64_t after_id, int64_t limit) = 0;

  // Appends a batch of a job's log lines in one transaction, giving each the
  // next seq, then drops the job's oldest lines beyond `limits` (counted);
  // `worker_dropped` adds to the lines workers say they dropped.
  virtual absl::StatusOr<LogAppendResult> AppendJobLogs(const std::string& job_id, const std::vector<LogLine>& lines,
                                                        const LogLimits& limits, int64_t worker_dropped) = 0;
  // A job's lines after `query.after_seq` that match its filters, oldest
  // first, at most `query.limit`; an unknown job has an empty log.
  virtual absl::StatusOr<LogPage> ReadJobLogs(const std::string& job_id, const LogQuery& query) = 0;

  // The coordinator's secret key of the train/eval split of data.path jobs:
  // 64 bits from getrandom(2), drawn the first time and stored here (so it
  // survives restarts and every job on the same files gets the same
  // held-out persons). Nothing here hands it to an API response or a log;
  // it goes to workers inside their assignments only.
  virtual absl::StatusOr<uint64_t> SplitKey() = 0;
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_STORE_H_
