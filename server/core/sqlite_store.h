// SqliteStore: the coordinator's Store in one SQLite database (WAL mode,
// synchronous=FULL): a write returns only after the write-ahead log holding
// it is fsynced, so a coordinator crash loses neither a submitted job nor a
// recorded epoch, and no privacy charge is ever forgotten.
//
// Errors keep the Store contract (store.h): SQLite's extended result code
// decides the status code (I/O errors, a full disk and a busy database are
// Unavailable; anything else is Internal) and the message names the write
// and the cause, e.g. "state store: store job job-000003: disk I/O error
// (fsync failed; the write is not durable)". A failed fsync at commit never
// makes the write visible: SQLite appends the transaction to the WAL but
// only publishes it in the WAL index after the fsync succeeded.
//
// Thread-safe: two connections, each guarded by its own mutex (leaf locks):
// one writes (the coordinator's write rate is a few rows per epoch, far
// below what one connection sustains), one reads. WAL lets the reader go on
// while a write waits for its fsync, so a status read that needs the ledger
// (a budget view, /metrics) never waits for a write; it sees every write
// that has returned.
#ifndef DPFLEET_SERVER_CORE_SQLITE_STORE_H_
#define DPFLEET_SERVER_CORE_SQLITE_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/core/store.h"

struct sqlite3;

namespace dpfleet::server {

struct SqliteStoreOptions {
  // The SQLite VFS to open the database with; empty: the platform's. Tests
  // name a VFS that fails fsyncs on request (tests/testing/fault_vfs.h).
  std::string vfs;
};

class SqliteStore final : public Store {
 public:
  // Opens (creating if needed) DIR/coordinator.db, migrating an older schema.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(const std::string& state_dir,
                                                           const SqliteStoreOptions& options = {});
  ~SqliteStore() override;

  std::vector<std::string> MigrationNotes() const override { return migration_notes_; }
  absl::Status Ping() override;

  absl::StatusOr<std::string> NextJobId() override;
  absl::Status PutJob(const JobRecord& job) override;
  absl::Status CommitJob(const JobCommit& commit) override;
  absl::StatusOr<std::vector<JobRecord>> LoadJobs() override;

  absl::StatusOr<bool> Charge(const LedgerEntry& entry) override;
  absl::StatusOr<std::vector<LedgerEntry>> LedgerForJob(const std::string& job_id) override;
  absl::StatusOr<std::vector<LedgerEntry>> LedgerForFile(const std::string& file) override;
  absl::StatusOr<std::vector<std::string>> LedgerFiles() override;

  absl::StatusOr<std::optional<std::string>> CachedContentKey(const FileStamp& stamp) override;
  absl::Status PutContentKey(const FileStamp& stamp, const std::string& key) override;
  absl::Status PutFilePath(const std::string& path, const std::string& key, int64_t seen_ms) override;
  absl::StatusOr<std::map<std::string, std::vector<std::string>>> FilePaths() override;
  absl::StatusOr<std::optional<std::string>> FileAtPath(const std::string& path) override;
  absl::StatusOr<bool> KnowsFile(const std::string& key) override;

  absl::Status PutDataset(const std::string& name, const std::string& record_json) override;
  absl::StatusOr<std::vector<std::string>> LoadDatasets() override;
  absl::Status DeleteDataset(const std::string& name) override;

  absl::Status PutModel(const std::string& job_id, const std::string& data) override;
  absl::StatusOr<BlobChunk> ReadCheckpoint(const std::string& job_id, int32_t epoch, int64_t offset,
                                           int64_t max_bytes) override;
  absl::StatusOr<BlobChunk> ReadModel(const std::string& job_id, int64_t offset, int64_t max_bytes) override;
  absl::StatusOr<std::optional<std::string>> ReadAuditReport(const std::string& job_id) override;

  absl::Status PutBudgets(const std::vector<BudgetRecord>& budgets) override;
  absl::StatusOr<std::vector<BudgetRecord>> LoadBudgets() override;

  absl::StatusOr<TokenRecord> PutToken(TokenRecord token) override;
  absl::StatusOr<std::optional<TokenRecord>> FindToken(const std::string& sha256) override;
  absl::StatusOr<std::vector<TokenRecord>> ListTokens() override;
  absl::StatusOr<int> RevokeTokens(const std::string& name, int64_t now_ms) override;

  absl::Status AppendAudit(const AuditRecord& record) override;
  absl::StatusOr<std::vector<AuditRecord>> ListAudit(int64_t after_id, int64_t limit) override;

  absl::StatusOr<LogAppendResult> AppendJobLogs(const std::string& job_id, const std::vector<LogLine>& lines,
                                                const LogLimits& limits, int64_t worker_dropped) override;
  absl::StatusOr<LogPage> ReadJobLogs(const std::string& job_id, const LogQuery& query) override;
  absl::StatusOr<uint64_t> SplitKey() override;

 private:
  SqliteStore(sqlite3* writer, sqlite3* reader) : db_(writer), reader_(reader) {}
  absl::Status Exec(const std::string& sql, absl::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `body` as one IMMEDIATE transaction on the writer: committed when
  // it returns OK, rolled back otherwise (the status names `what`).
  absl::Status TransactionLocked(absl::string_view what, const std::function<absl::Status()>& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Brings a database of any earlier schema version to Store::kSchemaVersion,
  // in one transaction, by one ordered chain of steps.
  absl::Status MigrateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Version 3's step: rebuilds a ledger without a mechanism column (its
  // rows are training charges); a ledger that has one is left alone.
  absl::Status MigrateLedgerMechanismLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Version 4's step: charges and budgets keyed by path strings move onto
  // the content of the files (hashed now); a file that no longer exists
  // keeps its rows under LegacyPathKey. Appends what it did to
  // migration_notes_.
  absl::Status MigrateLedgerToContentKeysLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PutBudgetLocked(const BudgetRecord& budget) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One charge -> file row (idempotent).
  absl::Status PutLedgerFileLocked(const std::string& job_id, int64_t attempt, int64_t epoch,
                                   const std::string& mechanism, const std::string& file)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PutContentKeyLocked(const FileStamp& stamp, const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PutFilePathLocked(const std::string& path, const std::string& key, int64_t seen_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PutJobLocked(const JobRecord& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A chunk of column `data` of row `rowid` of `table`.
  absl::StatusOr<BlobChunk> ReadBlobLocked(const char* table, int64_t rowid, int64_t offset, int64_t max_bytes,
                                           const std::string& what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);
  // Charges (with their files) selected by `where`, an SQL condition on
  // ledger `l` with one parameter ?1 bound to `value`, in recorded order.
  absl::StatusOr<std::vector<LedgerEntry>> QueryLedger(const std::string& where, const std::string& value);

  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);  // writes
  absl::Mutex read_mu_;
  sqlite3* reader_ ABSL_GUARDED_BY(read_mu_);
  std::vector<std::string> migration_notes_;  // written while opening only
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_SQLITE_STORE_H_
