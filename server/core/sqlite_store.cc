#include "server/core/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"

namespace dpfleet::server {
namespace {

// The status of SQLite's last error on `db`, by its extended result code:
// causes that may pass are Unavailable (retrying can help), a damaged file
// is DataLoss, anything else Internal.
absl::Status SqlError(sqlite3* db, absl::string_view what) {
  const int rc = sqlite3_extended_errcode(db);
  std::string message = absl::StrCat("state store: ", what, ": ", sqlite3_errmsg(db));
  if (rc == SQLITE_IOERR_FSYNC || rc == SQLITE_IOERR_DIR_FSYNC) {
    absl::StrAppend(&message, " (fsync failed; the write is not durable)");
  }
  switch (rc & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
      return absl::UnavailableError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    default:
      return absl::InternalError(message);
  }
}

// Finalizes a prepared statement on every path.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return stmt_; }
  int Step() { return sqlite3_step(stmt_); }
  void Bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  void BindBlob(int i, const std::string& b) {
    sqlite3_bind_blob(stmt_, i, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
  }
  std::string Text(int col) {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(stmt_, col)) : "";
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

// Runs one statement that returns no rows.
absl::Status StepDone(sqlite3* db, Statement& st, absl::string_view what) {
  if (!st.ok() || st.Step() != SQLITE_DONE) return SqlError(db, what);
  return absl::OkStatus();
}

// One connection to the database at `path`.
absl::StatusOr<sqlite3*> OpenConnection(const std::string& path, const std::string& vfs) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      vfs.empty() ? nullptr : vfs.c_str()) != SQLITE_OK) {
    absl::Status s = absl::FailedPreconditionError(
        absl::StrCat("cannot open state database ", path, ": ", db ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close(db);
    return s;
  }
  // Extended codes tell a failed fsync from other I/O errors.
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 5000);
  return db;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& state_dir) {
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteStore> store, SqliteStore::Open(state_dir));
  return std::unique_ptr<Store>(std::move(store));
}

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& state_dir,
                                                               const SqliteStoreOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat("--state-dir ", state_dir, ": cannot create: ", ec.message()));
  }
  const std::string path = state_dir + "/coordinator.db";
  ASSIGN_OR_RETURN(sqlite3* writer, OpenConnection(path, options.vfs));
  absl::StatusOr<sqlite3*> reader = OpenConnection(path, options.vfs);
  if (!reader.ok()) {
    sqlite3_close(writer);
    return reader.status();
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(writer, *reader));
  absl::MutexLock lock(&store->mu_);
  RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL", "open"));
  RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL", "open"));
  RETURN_IF_ERROR(store->Exec(
      "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
      "  record TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS ledger (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, "
      "  epoch INTEGER NOT NULL, dataset TEXT NOT NULL, steps INTEGER NOT NULL, "
      "  sample_rate REAL NOT NULL, noise_multiplier REAL NOT NULL, delta REAL NOT NULL, "
      "  recorded_ms INTEGER NOT NULL, PRIMARY KEY (job_id, attempt, epoch));"
      "CREATE INDEX IF NOT EXISTS ledger_dataset ON ledger (dataset);"
      "CREATE TABLE IF NOT EXISTS datasets (name TEXT PRIMARY KEY, record TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS budgets (dataset TEXT PRIMARY KEY, epsilon REAL NOT NULL, "
      "  delta REAL NOT NULL, updated_ms INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS checkpoints (job_id TEXT NOT NULL, epoch INTEGER NOT NULL, "
      "  data BLOB NOT NULL, PRIMARY KEY (job_id, epoch));"
      "CREATE TABLE IF NOT EXISTS models (job_id TEXT PRIMARY KEY, data BLOB NOT NULL);",
      "create tables"));
  return store;
}

SqliteStore::~SqliteStore() {
  {
    absl::MutexLock lock(&read_mu_);
    sqlite3_close(reader_);
  }
  absl::MutexLock lock(&mu_);
  sqlite3_close(db_);
}

absl::Status SqliteStore::Exec(const std::string& sql, absl::string_view what) {
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) return SqlError(db_, what);
  return absl::OkStatus();
}

absl::StatusOr<std::string> SqliteStore::NextJobId() {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "INSERT INTO meta(key, value) VALUES('next_job', 1) "
               "ON CONFLICT(key) DO UPDATE SET value = value + 1 RETURNING value");
  if (!st.ok() || st.Step() != SQLITE_ROW) return SqlError(db_, "reserve a job id");
  const int64_t n = sqlite3_column_int64(st.get(), 0);
  // RETURNING hands the row over before the statement commits; the id is
  // reserved only once the step that follows reports the commit.
  if (st.Step() != SQLITE_DONE) return SqlError(db_, "reserve a job id");
  return absl::StrFormat("job-%06d", n);
}

absl::Status SqliteStore::PutJobLocked(const JobRecord& job) {
  Statement st(db_,
               "INSERT INTO jobs(job_id, seq, record) VALUES(?1, "
               "  (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?2) "
               "ON CONFLICT(job_id) DO UPDATE SET record = excluded.record");
  st.Bind(1, job.job_id);
  st.Bind(2, ToJson(job).dump());
  return StepDone(db_, st, "store job " + job.job_id);
}

absl::Status SqliteStore::PutJob(const JobRecord& job) {
  absl::MutexLock lock(&mu_);
  return PutJobLocked(job);
}

absl::Status SqliteStore::CommitJob(const JobCommit& c) {
  absl::MutexLock lock(&mu_);
  const std::string what = "store job " + c.job.job_id;
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE", what));
  absl::Status s = [&]() -> absl::Status {
    if (!c.checkpoint.empty()) {
      Statement st(db_, "INSERT OR REPLACE INTO checkpoints(job_id, epoch, data) VALUES(?1, ?2, ?3)");
      st.Bind(1, c.job.job_id);
      st.Bind(2, static_cast<int64_t>(c.checkpoint_epoch));
      st.BindBlob(3, c.checkpoint);
      RETURN_IF_ERROR(StepDone(db_, st, absl::StrCat("store the checkpoint of ", c.job.job_id)));
    }
    if (c.drop_checkpoints_below > 0) {
      Statement st(db_, "DELETE FROM checkpoints WHERE job_id = ?1 AND epoch < ?2");
      st.Bind(1, c.job.job_id);
      st.Bind(2, static_cast<int64_t>(c.drop_checkpoints_below));
      RETURN_IF_ERROR(StepDone(db_, st, absl::StrCat("drop the checkpoints of ", c.job.job_id)));
    }
    RETURN_IF_ERROR(PutJobLocked(c.job));
    return Exec("COMMIT", what);
  }();
  if (!s.ok() && !sqlite3_get_autocommit(db_)) {
    // Still inside the transaction (SQLite rolls back by itself on some
    // errors, not on all): nothing of it may stay.
    if (absl::Status undone = Exec("ROLLBACK", what); !undone.ok()) {
      return absl::Status(s.code(), absl::StrCat(s.message(), "; rolling back failed too: ", undone.message()));
    }
  }
  return s;
}

absl::StatusOr<std::vector<JobRecord>> SqliteStore::LoadJobs() {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT record FROM jobs ORDER BY seq");
  if (!st.ok()) return SqlError(reader_, "load jobs");
  std::vector<JobRecord> jobs;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    nlohmann::json j = nlohmann::json::parse(st.Text(0), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::DataLossError("state store: a job record is not JSON");
    ASSIGN_OR_RETURN(JobRecord r, JobFromJson(j));
    jobs.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return SqlError(reader_, "load jobs");
  return jobs;
}

absl::StatusOr<bool> SqliteStore::Charge(const LedgerEntry& e) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "INSERT OR IGNORE INTO ledger(job_id, attempt, epoch, dataset, steps, sample_rate, "
               "noise_multiplier, delta, recorded_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  st.Bind(1, e.job_id);
  st.Bind(2, static_cast<int64_t>(e.attempt));
  st.Bind(3, static_cast<int64_t>(e.epoch));
  st.Bind(4, e.dataset);
  st.Bind(5, e.steps);
  st.Bind(6, e.sample_rate);
  st.Bind(7, e.noise_multiplier);
  st.Bind(8, e.delta);
  st.Bind(9, e.recorded_ms);
  RETURN_IF_ERROR(StepDone(db_, st, absl::StrCat("charge epoch ", e.epoch, " of job ", e.job_id, " to the ledger")));
  return sqlite3_changes(db_) > 0;
}

absl::StatusOr<std::vector<LedgerEntry>> SqliteStore::QueryLedger(const std::string& column,
                                                                  const std::string& value) {
  absl::MutexLock lock(&read_mu_);
  const std::string sql = absl::StrCat(
      "SELECT job_id, attempt, epoch, dataset, steps, sample_rate, noise_multiplier, delta, "
      "recorded_ms FROM ledger WHERE ",
      column, " = ?1 ORDER BY recorded_ms, job_id, attempt, epoch");
  Statement st(reader_, sql.c_str());
  if (!st.ok()) return SqlError(reader_, "read the ledger");
  st.Bind(1, value);
  std::vector<LedgerEntry> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    LedgerEntry e;
    e.job_id = st.Text(0);
    e.attempt = static_cast<int32_t>(sqlite3_column_int64(st.get(), 1));
    e.epoch = static_cast<int32_t>(sqlite3_column_int64(st.get(), 2));
    e.dataset = st.Text(3);
    e.steps = sqlite3_column_int64(st.get(), 4);
    e.sample_rate = sqlite3_column_double(st.get(), 5);
    e.noise_multiplier = sqlite3_column_double(st.get(), 6);
    e.delta = sqlite3_column_double(st.get(), 7);
    e.recorded_ms = sqlite3_column_int64(st.get(), 8);
    out.push_back(e);
  }
  if (rc != SQLITE_DONE) return SqlError(reader_, "read the ledger");
  return out;
}

absl::StatusOr<std::vector<LedgerEntry>> SqliteStore::LedgerForJob(const std::string& job_id) {
  return QueryLedger("job_id", job_id);
}

absl::StatusOr<std::vector<LedgerEntry>> SqliteStore::LedgerForDataset(const std::string& dataset) {
  return QueryLedger("dataset", dataset);
}

absl::StatusOr<std::vector<std::string>> SqliteStore::LedgerDatasets() {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT DISTINCT dataset FROM ledger ORDER BY dataset");
  if (!st.ok()) return SqlError(reader_, "read ledger datasets");
  std::vector<std::string> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out.push_back(st.Text(0));
  if (rc != SQLITE_DONE) return SqlError(reader_, "read ledger datasets");
  return out;
}

absl::Status SqliteStore::PutDataset(const std::string& name, const std::string& record_json) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "INSERT INTO datasets(name, record) VALUES(?1, ?2) "
               "ON CONFLICT(name) DO UPDATE SET record = excluded.record");
  st.Bind(1, name);
  st.Bind(2, record_json);
  return StepDone(db_, st, "store dataset " + name);
}

absl::StatusOr<std::vector<std::string>> SqliteStore::LoadDatasets() {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT record FROM datasets ORDER BY name");
  if (!st.ok()) return SqlError(reader_, "load datasets");
  std::vector<std::string> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out.push_back(st.Text(0));
  if (rc != SQLITE_DONE) return SqlError(reader_, "load datasets");
  return out;
}

absl::Status SqliteStore::DeleteDataset(const std::string& name) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "DELETE FROM datasets WHERE name = ?1");
  st.Bind(1, name);
  return StepDone(db_, st, "delete dataset " + name);
}

absl::Status SqliteStore::PutModel(const std::string& job_id, const std::string& data) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "INSERT OR REPLACE INTO models(job_id, data) VALUES(?1, ?2)");
  st.Bind(1, job_id);
  st.BindBlob(2, data);
  return StepDone(db_, st, "store the model of " + job_id);
}

absl::StatusOr<Store::BlobChunk> SqliteStore::ReadBlobLocked(const char* table, int64_t rowid, int64_t offset,
                                                            int64_t max_bytes, const std::string& what) {
  sqlite3_blob* blob = nullptr;
  if (sqlite3_blob_open(reader_, "main", table, "data", rowid, /*flags=read-only*/ 0, &blob) != SQLITE_OK) {
    absl::Status s = SqlError(reader_, "open " + what);
    sqlite3_blob_close(blob);
    return s;
  }
  BlobChunk chunk;
  chunk.total_bytes = sqlite3_blob_bytes(blob);
  if (offset < 0 || offset > chunk.total_bytes) {
    sqlite3_blob_close(blob);
    return absl::InvalidArgumentError(
        absl::StrCat("offset ", offset, " is outside ", what, " (", chunk.total_bytes, " bytes)"));
  }
  const int64_t n = std::clamp<int64_t>(max_bytes, 0, chunk.total_bytes - offset);
  chunk.data.resize(static_cast<size_t>(n));
  const int rc = n > 0 ? sqlite3_blob_read(blob, chunk.data.data(), static_cast<int>(n), static_cast<int>(offset))
                       : SQLITE_OK;
  absl::Status s = rc == SQLITE_OK ? absl::OkStatus() : SqlError(reader_, "read " + what);
  sqlite3_blob_close(blob);
  RETURN_IF_ERROR(s);
  return chunk;
}

absl::StatusOr<Store::BlobChunk> SqliteStore::ReadCheckpoint(const std::string& job_id, int32_t epoch,
                                                            int64_t offset, int64_t max_bytes) {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT rowid FROM checkpoints WHERE job_id = ?1 AND epoch = ?2");
  if (!st.ok()) return SqlError(reader_, "load checkpoint");
  st.Bind(1, job_id);
  st.Bind(2, static_cast<int64_t>(epoch));
  const int rc = st.Step();
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(absl::StrCat("job '", job_id, "' has no checkpoint after epoch ", epoch));
  }
  if (rc != SQLITE_ROW) return SqlError(reader_, "load the checkpoint of " + job_id);
  return ReadBlobLocked("checkpoints", sqlite3_column_int64(st.get(), 0), offset, max_bytes,
                        absl::StrCat("the checkpoint of ", job_id));
}

absl::StatusOr<Store::BlobChunk> SqliteStore::ReadModel(const std::string& job_id, int64_t offset,
                                                       int64_t max_bytes) {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT rowid FROM models WHERE job_id = ?1");
  if (!st.ok()) return SqlError(reader_, "load model");
  st.Bind(1, job_id);
  const int rc = st.Step();
  if (rc == SQLITE_DONE) return absl::NotFoundError(absl::StrCat("job '", job_id, "' has no stored model"));
  if (rc != SQLITE_ROW) return SqlError(reader_, "load the model of " + job_id);
  return ReadBlobLocked("models", sqlite3_column_int64(st.get(), 0), offset, max_bytes,
                        absl::StrCat("the model of ", job_id));
}

absl::Status SqliteStore::PutBudget(const BudgetRecord& b) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "INSERT INTO budgets(dataset, epsilon, delta, updated_ms) VALUES(?1, ?2, ?3, ?4) "
               "ON CONFLICT(dataset) DO UPDATE SET epsilon = excluded.epsilon, delta = excluded.delta, "
               "updated_ms = excluded.updated_ms");
  st.Bind(1, b.dataset);
  st.Bind(2, b.epsilon);
  st.Bind(3, b.delta);
  st.Bind(4, b.updated_ms);
  return StepDone(db_, st, "store the budget of " + b.dataset);
}

absl::StatusOr<std::vector<BudgetRecord>> SqliteStore::LoadBudgets() {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT dataset, epsilon, delta, updated_ms FROM budgets ORDER BY dataset");
  if (!st.ok()) return SqlError(reader_, "load budgets");
  std::vector<BudgetRecord> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    BudgetRecord b;
    b.dataset = st.Text(0);
    b.epsilon = sqlite3_column_double(st.get(), 1);
    b.delta = sqlite3_column_double(st.get(), 2);
    b.updated_ms = sqlite3_column_int64(st.get(), 3);
    out.push_back(b);
  }
  if (rc != SQLITE_DONE) return SqlError(reader_, "load budgets");
  return out;
}

}  // namespace dpfleet::server
