#include "server/core/sqlite_store.h"

#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/secure_random.h"
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

// The ledger table of schema version 3: one row per (job, attempt, epoch,
// mechanism).
constexpr char kLedgerTableV3[] =
    "CREATE TABLE ledger (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, "
    "  epoch INTEGER NOT NULL, mechanism TEXT NOT NULL DEFAULT 'train', dataset TEXT NOT NULL, "
    "  steps INTEGER NOT NULL, sample_rate REAL NOT NULL, noise_multiplier REAL NOT NULL, "
    "  delta REAL NOT NULL, recorded_ms INTEGER NOT NULL, "
    "  PRIMARY KEY (job_id, attempt, epoch, mechanism));"
    "CREATE INDEX IF NOT EXISTS ledger_dataset ON ledger (dataset);";

// Version 4: the charge -> file table, the content-key cache, the paths
// seen per content, and budgets per file (replacing `budgets`, keyed by
// path strings).
constexpr char kContentKeyTablesV4[] =
    "CREATE TABLE ledger_files (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, epoch INTEGER NOT NULL, "
    "  mechanism TEXT NOT NULL, file TEXT NOT NULL, PRIMARY KEY (job_id, attempt, epoch, mechanism, file));"
    "CREATE INDEX ledger_files_file ON ledger_files (file);"
    "CREATE TABLE content_keys (device INTEGER NOT NULL, inode INTEGER NOT NULL, size INTEGER NOT NULL, "
    "  mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, file TEXT NOT NULL, PRIMARY KEY (device, inode));"
    "CREATE TABLE file_paths (path TEXT PRIMARY KEY, file TEXT NOT NULL, seen_ms INTEGER NOT NULL);"
    "CREATE INDEX file_paths_file ON file_paths (file);"
    "CREATE TABLE file_budgets (file TEXT PRIMARY KEY, epsilon REAL NOT NULL, delta REAL NOT NULL, "
    "  updated_ms INTEGER NOT NULL);";

// realpath(3), or `path` itself when it does not resolve.
std::string RealPathOr(const std::string& path) {
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return path;
  std::string out(resolved);
  std::free(resolved);
  return out;
}

// Binds a stamp's five fields to ?1..?5. SQLite integers are signed 64-bit;
// device and inode bit patterns round-trip.
void BindStamp(Statement& st, const FileStamp& stamp) {
  st.Bind(1, static_cast<int64_t>(stamp.device));
  st.Bind(2, static_cast<int64_t>(stamp.inode));
  st.Bind(3, stamp.size);
  st.Bind(4, stamp.mtime_ns);
  st.Bind(5, stamp.ctime_ns);
}

// The paths of a key written before content keys: the data's paths
// '+'-joined. A whole key that is a file is one path (paths may hold a '+').
std::vector<std::string> PathsOfLegacyKey(const std::string& key) {
  if (StampOf(key).ok()) return {key};
  return absl::StrSplit(key, '+', absl::SkipEmpty());
}

absl::StatusOr<Mechanism> ParseMechanism(const std::string& name) {
  if (name == "train") return Mechanism::kTrain;
  if (name == "eval") return Mechanism::kEval;
  return absl::DataLossError(absl::StrCat("state store: unknown ledger mechanism '", name, "'"));
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

const char* MechanismName(Mechanism m) { return m == Mechanism::kEval ? "eval" : "train"; }

std::string Store::DatabasePath(const std::string& state_dir) { return state_dir + "/coordinator.db"; }

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
  const std::string path = DatabasePath(state_dir);
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
  RETURN_IF_ERROR(store->MigrateLocked());
  return store;
}

absl::Status SqliteStore::TransactionLocked(absl::string_view what, const std::function<absl::Status()>& body) {
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE", what));
  absl::Status s = body();
  if (s.ok()) s = Exec("COMMIT", what);
  if (!s.ok() && !sqlite3_get_autocommit(db_)) {
    // Still inside the transaction (SQLite rolls back by itself on some
    // errors, not on all): nothing of it may stay.
    if (absl::Status undone = Exec("ROLLBACK", what); !undone.ok()) {
      return absl::Status(s.code(), absl::StrCat(s.message(), "; rolling back failed too: ", undone.message()));
    }
  }
  return s;
}

absl::Status SqliteStore::MigrateLocked() {
  int version = 0;
  {
    Statement st(db_, "PRAGMA user_version");
    if (!st.ok() || st.Step() != SQLITE_ROW) return SqlError(db_, "read the schema version");
    version = sqlite3_column_int(st.get(), 0);
  }
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat("the state database has schema version ", version,
                                                      ", newer than this dpfleet-server's ", kSchemaVersion));
  }
  if (version == kSchemaVersion) return absl::OkStatus();
  // One transaction: a crash mid-migration leaves the old version intact.
  // The steps form one ordered chain; a new version adds its step at the
  // end and raises kSchemaVersion.
  const std::string what = absl::StrCat("migrate the state database from schema version ", version);
  const auto steps = [&]() -> absl::Status {
    if (version < 1) {
      // Version 1 (the first, unnumbered schema): jobs, ledger, datasets,
      // budgets, checkpoints, models. IF NOT EXISTS: a database from before
      // versioning reads 0 and already has them.
      RETURN_IF_ERROR(Exec(
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
          "create the version 1 tables"));
    }
    if (version < 2) {
      // Version 2: API tokens (SHA-256 only; one valid token per name) and
      // the audit trail.
      RETURN_IF_ERROR(
          Exec("CREATE TABLE tokens (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, "
               "  role TEXT NOT NULL, sha256 BLOB NOT NULL UNIQUE, created_ms INTEGER NOT NULL, "
               "  revoked_ms INTEGER NOT NULL DEFAULT 0);"
               "CREATE UNIQUE INDEX tokens_valid_name ON tokens (name) WHERE revoked_ms = 0;"
               "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, "
               "  kind TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, "
               "  target TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL);",
               "create the version 2 tables (tokens, audit)"));
    }
    if (version < 3) {
      // Version 3: the eval release (a `mechanism` column in the ledger)
      // and the coordinator's secrets (the split key). A database of the
      // unversioned line that had them already reads 0 and keeps them.
      RETURN_IF_ERROR(MigrateLedgerMechanismLocked());
      RETURN_IF_ERROR(Exec("CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);",
                           "create the version 3 table (secrets)"));
    }
    if (version < 4) {
      // Version 4: the ledger follows the records, not the path — charges
      // and budgets are keyed by the content of each input file.
      RETURN_IF_ERROR(MigrateLedgerToContentKeysLocked());
    }
    if (version < 5) {
      // Version 5: the log lines workers ship for each job's runs, and per
      // job the next seq, what is kept and what the caps dropped.
      RETURN_IF_ERROR(
          Exec("CREATE TABLE job_logs (job_id TEXT NOT NULL, seq INTEGER NOT NULL, attempt INTEGER NOT NULL, "
               "  rank INTEGER NOT NULL, level INTEGER NOT NULL, time_ms INTEGER NOT NULL, message TEXT NOT NULL, "
               "  PRIMARY KEY (job_id, seq));"
               "CREATE TABLE job_log_stats (job_id TEXT PRIMARY KEY, next_seq INTEGER NOT NULL, "
               "  lines INTEGER NOT NULL, bytes INTEGER NOT NULL, dropped_lines INTEGER NOT NULL, "
               "  dropped_bytes INTEGER NOT NULL, worker_dropped INTEGER NOT NULL);",
               "create the version 5 tables (job logs)"));
    }
    if (version < 6) {
      // Version 6: the reports of audit runs (`dpctl audit`), one per run.
      RETURN_IF_ERROR(Exec("CREATE TABLE audit_reports (job_id TEXT PRIMARY KEY, report TEXT NOT NULL);",
                           "create the version 6 table (audit reports)"));
    }
    return Exec(absl::StrCat("PRAGMA user_version = ", kSchemaVersion), "record the schema version");
  };
  return TransactionLocked(what, [&] { return Annotate(steps(), what); });
}

absl::Status SqliteStore::MigrateLedgerMechanismLocked() {
  // A ledger from before eval releases had no mechanism column and one row
  // per (job, attempt, epoch): every such row paid for training. SQLite
  // cannot change a primary key in place, so the table is rebuilt (inside
  // MigrateLocked's transaction: a crash leaves the old table whole).
  bool has_mechanism = false;
  {
    Statement st(db_, "SELECT name FROM pragma_table_info('ledger')");
    if (!st.ok()) return SqlError(db_, "inspect the ledger table");
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) has_mechanism = has_mechanism || st.Text(0) == "mechanism";
    if (rc != SQLITE_DONE) return SqlError(db_, "inspect the ledger table");
  }
  if (has_mechanism) return absl::OkStatus();
  return Exec(absl::StrCat("ALTER TABLE ledger RENAME TO ledger_before_mechanism;"
                           "DROP INDEX IF EXISTS ledger_dataset;",
                           kLedgerTableV3,
                           "INSERT INTO ledger (job_id, attempt, epoch, mechanism, dataset, steps, sample_rate, "
                           "  noise_multiplier, delta, recorded_ms) "
                           "SELECT job_id, attempt, epoch, 'train', dataset, steps, sample_rate, noise_multiplier, "
                           "  delta, recorded_ms FROM ledger_before_mechanism;"
                           "DROP TABLE ledger_before_mechanism;"),
              "add the mechanism column to the ledger");
}

absl::Status SqliteStore::MigrateLedgerToContentKeysLocked() {
  RETURN_IF_ERROR(Exec(kContentKeyTablesV4, "create the version 4 tables (files)"));
  const absl::Time start = absl::Now();
  const int64_t now_ms = absl::ToUnixMillis(start);
  // Which files each job read, exactly: the rows' own '+'-joined key is
  // ambiguous for a path that holds a '+'.
  std::map<std::string, std::vector<std::string>> job_paths;
  {
    Statement st(db_, "SELECT job_id, record FROM jobs");
    if (!st.ok()) return SqlError(db_, "read jobs for the ledger migration");
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      const nlohmann::json j = nlohmann::json::parse(st.Text(1), nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("data_paths") && j["data_paths"].is_array()) {
        for (const auto& p : j["data_paths"]) {
          if (p.is_string()) job_paths[st.Text(0)].push_back(p.get<std::string>());
        }
      }
    }
    if (rc != SQLITE_DONE) return SqlError(db_, "read jobs for the ledger migration");
  }
  std::map<std::string, std::string> key_of;  // path as recorded -> ledger key
  std::set<std::string> files;
  std::vector<std::string> unreadable;
  int hashed = 0;
  int64_t hashed_bytes = 0;
  auto key_for = [&](const std::string& path) -> absl::StatusOr<std::string> {
    if (auto it = key_of.find(path); it != key_of.end()) return it->second;
    absl::StatusOr<HashedFile> h = HashFile(path);
    std::string key;
    if (h.ok()) {
      key = h->key;
      RETURN_IF_ERROR(PutContentKeyLocked(h->stamp, key));
      RETURN_IF_ERROR(PutFilePathLocked(RealPathOr(path), key, now_ms));
      ++hashed;
      hashed_bytes += h->stamp.size;
    } else {
      // Nothing to hash: the rows stay under the name they had.
      key = LegacyPathKey(path);
      unreadable.push_back(absl::StrCat(
          key, absl::IsNotFound(h.status()) ? " (no longer exists)" : absl::StrCat(" (", h.status().message(), ")")));
    }
    files.insert(key);
    key_of.emplace(path, key);
    return key;
  };

  struct Row {
    std::string job_id, mechanism, dataset;
    int64_t attempt = 0, epoch = 0;
  };
  std::vector<Row> rows;
  {
    Statement st(db_, "SELECT job_id, attempt, epoch, mechanism, dataset FROM ledger");
    if (!st.ok()) return SqlError(db_, "read the ledger for its migration");
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      rows.push_back({st.Text(0), st.Text(3), st.Text(4), sqlite3_column_int64(st.get(), 1),
                      sqlite3_column_int64(st.get(), 2)});
    }
    if (rc != SQLITE_DONE) return SqlError(db_, "read the ledger for its migration");
  }
  for (const Row& r : rows) {
    auto jp = job_paths.find(r.job_id);
    const std::vector<std::string> paths =
        jp != job_paths.end() && !jp->second.empty() ? jp->second : PathsOfLegacyKey(r.dataset);
    for (const std::string& path : paths) {
      ASSIGN_OR_RETURN(const std::string key, key_for(path));
      RETURN_IF_ERROR(PutLedgerFileLocked(r.job_id, r.attempt, r.epoch, r.mechanism, key));
    }
  }

  // A budget on a path string becomes a budget on each of its files; where
  // two old budgets meet on one file, the smaller epsilon holds.
  std::map<std::string, BudgetRecord> budgets;
  int old_budgets = 0;
  {
    Statement st(db_, "SELECT dataset, epsilon, delta, updated_ms FROM budgets");
    if (!st.ok()) return SqlError(db_, "read budgets for their migration");
    std::vector<BudgetRecord> old;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      old.push_back({st.Text(0), sqlite3_column_double(st.get(), 1), sqlite3_column_double(st.get(), 2),
                     sqlite3_column_int64(st.get(), 3)});
    }
    if (rc != SQLITE_DONE) return SqlError(db_, "read budgets for their migration");
    old_budgets = static_cast<int>(old.size());
    for (const BudgetRecord& b : old) {
      for (const std::string& path : PathsOfLegacyKey(b.file)) {
        ASSIGN_OR_RETURN(const std::string key, key_for(path));
        auto it = budgets.find(key);
        if (it == budgets.end() || b.epsilon < it->second.epsilon ||
            (b.epsilon == it->second.epsilon && b.delta < it->second.delta)) {
          budgets[key] = BudgetRecord{key, b.epsilon, b.delta, b.updated_ms};
        }
      }
    }
  }
  for (const auto& [key, b] : budgets) RETURN_IF_ERROR(PutBudgetLocked(b));
  RETURN_IF_ERROR(Exec("DROP TABLE budgets", "drop the budgets keyed by path"));

  if (rows.empty() && old_budgets == 0) return absl::OkStatus();
  migration_notes_.push_back(absl::StrFormat(
      "state store upgraded to schema 4: the privacy ledger now follows file content; %d charge(s) and %d "
      "budget(s) moved onto %d file(s) (%d hashed, %.1f MB, in %.2f s)",
      rows.size(), old_budgets, files.size(), hashed, hashed_bytes / 1e6, absl::ToDoubleSeconds(absl::Now() - start)));
  if (!unreadable.empty()) {
    migration_notes_.push_back(absl::StrCat(
        "WARNING: ", unreadable.size(),
        " file(s) could not be hashed; their charges and budgets stay under their old path key and count for no "
        "other name or copy of the same records: ",
        absl::StrJoin(unreadable, ", ")));
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Ping() {
  // On the reader: a probe never waits for a write's fsync.
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT count(*) FROM sqlite_master");
  if (!st.ok() || st.Step() != SQLITE_ROW) {
    return absl::UnavailableError(absl::StrCat("state store does not answer: ", sqlite3_errmsg(reader_)));
  }
  return absl::OkStatus();
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
  return TransactionLocked("store job " + c.job.job_id, [&]() -> absl::Status {
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
    if (!c.audit_report.empty()) {
      Statement st(db_, "INSERT OR REPLACE INTO audit_reports(job_id, report) VALUES(?1, ?2)");
      st.Bind(1, c.job.job_id);
      st.Bind(2, c.audit_report);
      RETURN_IF_ERROR(StepDone(db_, st, absl::StrCat("store the audit report of ", c.job.job_id)));
    }
    return PutJobLocked(c.job);
  });
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
  const std::string what = absl::StrCat("charge epoch ", e.epoch, " of job ", e.job_id,
                                        e.mechanism == Mechanism::kEval ? " (eval release)" : "", " to the ledger");
  // The charge and the files it applies to land together or not at all: a
  // charge without its files would count against no budget.
  bool inserted = false;
  RETURN_IF_ERROR(TransactionLocked(what, [&]() -> absl::Status {
    Statement st(db_,
                 "INSERT OR IGNORE INTO ledger(job_id, attempt, epoch, dataset, steps, sample_rate, "
                 "noise_multiplier, delta, recorded_ms, mechanism) "
                 "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    st.Bind(1, e.job_id);
    st.Bind(2, static_cast<int64_t>(e.attempt));
    st.Bind(3, static_cast<int64_t>(e.epoch));
    st.Bind(4, e.dataset);
    st.Bind(5, e.steps);
    st.Bind(6, e.sample_rate);
    st.Bind(7, e.noise_multiplier);
    st.Bind(8, e.delta);
    st.Bind(9, e.recorded_ms);
    st.Bind(10, std::string(MechanismName(e.mechanism)));
    RETURN_IF_ERROR(StepDone(db_, st, what));
    inserted = sqlite3_changes(db_) > 0;
    if (!inserted) return absl::OkStatus();
    for (const std::string& file : e.files) {
      RETURN_IF_ERROR(PutLedgerFileLocked(e.job_id, e.attempt, e.epoch, MechanismName(e.mechanism), file));
    }
    return absl::OkStatus();
  }));
  return inserted;
}

absl::Status SqliteStore::PutLedgerFileLocked(const std::string& job_id, int64_t attempt, int64_t epoch,
                                              const std::string& mechanism, const std::string& file) {
  Statement st(db_,
               "INSERT OR IGNORE INTO ledger_files(job_id, attempt, epoch, mechanism, file) VALUES(?1, ?2, ?3, ?4, ?5)");
  st.Bind(1, job_id);
  st.Bind(2, attempt);
  st.Bind(3, epoch);
  st.Bind(4, mechanism);
  st.Bind(5, file);
  return StepDone(db_, st, absl::StrCat("charge epoch ", epoch, " of job ", job_id, " to file ", file));
}

absl::StatusOr<std::vector<LedgerEntry>> SqliteStore::QueryLedger(const std::string& where, const std::string& value) {
  absl::MutexLock lock(&read_mu_);
  // One row per (charge, file), grouped back into charges below.
  const std::string sql = absl::StrCat(
      "SELECT l.job_id, l.attempt, l.epoch, l.dataset, l.steps, l.sample_rate, l.noise_multiplier, l.delta, "
      "l.recorded_ms, l.mechanism, f.file FROM ledger l LEFT JOIN ledger_files f ON f.job_id = l.job_id AND "
      "f.attempt = l.attempt AND f.epoch = l.epoch AND f.mechanism = l.mechanism WHERE ",
      where, " ORDER BY l.recorded_ms, l.job_id, l.attempt, l.epoch, l.mechanism DESC, f.file");
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
    ASSIGN_OR_RETURN(e.mechanism, ParseMechanism(st.Text(9)));
    const bool has_file = sqlite3_column_type(st.get(), 10) != SQLITE_NULL;
    if (!out.empty() && out.back().job_id == e.job_id && out.back().attempt == e.attempt &&
        out.back().epoch == e.epoch && out.back().mechanism == e.mechanism) {
      if (has_file) out.back().files.push_back(st.Text(10));
      continue;
    }
    if (has_file) e.files.push_back(st.Text(10));
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return SqlError(reader_, "read the ledger");
  return out;
}

absl::StatusOr<std::vector<LedgerEntry>> SqliteStore::LedgerForJob(const std::string& job_id) {
  return QueryLedger("l.job_id = ?1", job_id);
}

absl::StatusOr<std::vector<LedgerEntry>> SqliteStore::LedgerForFile(const std::string& file) {
  return QueryLedger(
      "EXISTS (SELECT 1 FROM ledger_files h WHERE h.file = ?1 AND h.job_id = l.job_id AND h.attempt = l.attempt "
      "AND h.epoch = l.epoch AND h.mechanism = l.mechanism)",
      file);
}

absl::StatusOr<std::vector<std::string>> SqliteStore::LedgerFiles() {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT DISTINCT file FROM ledger_files ORDER BY file");
  if (!st.ok()) return SqlError(reader_, "read the ledger's files");
  std::vector<std::string> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out.push_back(st.Text(0));
  if (rc != SQLITE_DONE) return SqlError(reader_, "read the ledger's files");
  return out;
}

absl::StatusOr<std::optional<std::string>> SqliteStore::CachedContentKey(const FileStamp& stamp) {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_,
               "SELECT file FROM content_keys WHERE device = ?1 AND inode = ?2 AND size = ?3 AND mtime_ns = ?4 "
               "AND ctime_ns = ?5");
  if (!st.ok()) return SqlError(reader_, "read content keys");
  BindStamp(st, stamp);
  const int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return SqlError(reader_, "read content keys");
  return std::optional<std::string>(st.Text(0));
}

absl::Status SqliteStore::PutContentKey(const FileStamp& stamp, const std::string& key) {
  absl::MutexLock lock(&mu_);
  return PutContentKeyLocked(stamp, key);
}

absl::Status SqliteStore::PutContentKeyLocked(const FileStamp& stamp, const std::string& key) {
  Statement st(db_,
               "INSERT OR REPLACE INTO content_keys(device, inode, size, mtime_ns, ctime_ns, file) "
               "VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  BindStamp(st, stamp);
  st.Bind(6, key);
  return StepDone(db_, st, "store the content key " + key);
}

absl::Status SqliteStore::PutFilePath(const std::string& path, const std::string& key, int64_t seen_ms) {
  absl::MutexLock lock(&mu_);
  return PutFilePathLocked(path, key, seen_ms);
}

absl::Status SqliteStore::PutFilePathLocked(const std::string& path, const std::string& key, int64_t seen_ms) {
  Statement st(db_,
               "INSERT INTO file_paths(path, file, seen_ms) VALUES(?1, ?2, ?3) "
               "ON CONFLICT(path) DO UPDATE SET file = excluded.file, seen_ms = excluded.seen_ms");
  st.Bind(1, path);
  st.Bind(2, key);
  st.Bind(3, seen_ms);
  return StepDone(db_, st, "store the file at " + path);
}

absl::StatusOr<std::map<std::string, std::vector<std::string>>> SqliteStore::FilePaths() {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT file, path FROM file_paths ORDER BY file, path");
  if (!st.ok()) return SqlError(reader_, "read file paths");
  std::map<std::string, std::vector<std::string>> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out[st.Text(0)].push_back(st.Text(1));
  if (rc != SQLITE_DONE) return SqlError(reader_, "read file paths");
  return out;
}

absl::StatusOr<std::optional<std::string>> SqliteStore::FileAtPath(const std::string& path) {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT file FROM file_paths WHERE path = ?1");
  if (!st.ok()) return SqlError(reader_, "look up a path");
  st.Bind(1, path);
  const int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return SqlError(reader_, "look up a path");
  return std::optional<std::string>(st.Text(0));
}

absl::StatusOr<bool> SqliteStore::KnowsFile(const std::string& key) {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_,
               "SELECT EXISTS (SELECT 1 FROM ledger_files WHERE file = ?1) OR "
               "EXISTS (SELECT 1 FROM file_budgets WHERE file = ?1) OR EXISTS (SELECT 1 FROM file_paths WHERE file = ?1)");
  if (!st.ok()) return SqlError(reader_, "look up a file");
  st.Bind(1, key);
  if (st.Step() != SQLITE_ROW) return SqlError(reader_, "look up a file");
  return sqlite3_column_int64(st.get(), 0) != 0;
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

absl::StatusOr<LogAppendResult> SqliteStore::AppendJobLogs(const std::string& job_id,
                                                           const std::vector<LogLine>& lines,
                                                           const LogLimits& limits, int64_t worker_dropped) {
  absl::MutexLock lock(&mu_);
  const std::string what = absl::StrCat("store ", lines.size(), " log line(s) of ", job_id);
  LogAppendResult result;
  RETURN_IF_ERROR(TransactionLocked(what, [&]() -> absl::Status {
    int64_t next_seq = 1, kept = 0, bytes = 0, dropped_lines = 0, dropped_bytes = 0, by_workers = 0;
    {
      Statement st(db_,
                   "SELECT next_seq, lines, bytes, dropped_lines, dropped_bytes, worker_dropped FROM job_log_stats "
                   "WHERE job_id = ?1");
      if (!st.ok()) return SqlError(db_, what);
      st.Bind(1, job_id);
      const int rc = st.Step();
      if (rc == SQLITE_ROW) {
        next_seq = sqlite3_column_int64(st.get(), 0);
        kept = sqlite3_column_int64(st.get(), 1);
        bytes = sqlite3_column_int64(st.get(), 2);
        dropped_lines = sqlite3_column_int64(st.get(), 3);
        dropped_bytes = sqlite3_column_int64(st.get(), 4);
        by_workers = sqlite3_column_int64(st.get(), 5);
      } else if (rc != SQLITE_DONE) {
        return SqlError(db_, what);
      }
    }
    for (const LogLine& l : lines) {
      Statement st(db_,
                   "INSERT INTO job_logs(job_id, seq, attempt, rank, level, time_ms, message) "
                   "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
      st.Bind(1, job_id);
      st.Bind(2, next_seq++);
      st.Bind(3, static_cast<int64_t>(l.attempt));
      st.Bind(4, static_cast<int64_t>(l.rank));
      st.Bind(5, static_cast<int64_t>(l.level));
      st.Bind(6, l.time_ms);
      st.Bind(7, l.message);
      RETURN_IF_ERROR(StepDone(db_, st, what));
      ++kept;
      bytes += static_cast<int64_t>(l.message.size());
    }
    result.stored = static_cast<int64_t>(lines.size());
    if (kept > limits.max_lines || bytes > limits.max_bytes) {
      // Oldest first, until both caps hold.
      int64_t last_dropped = 0;
      {
        Statement st(db_, "SELECT seq, length(CAST(message AS BLOB)) FROM job_logs WHERE job_id = ?1 ORDER BY seq");
        if (!st.ok()) return SqlError(db_, what);
        st.Bind(1, job_id);
        int rc;
        while ((kept > limits.max_lines || bytes > limits.max_bytes) && (rc = st.Step()) == SQLITE_ROW) {
          last_dropped = sqlite3_column_int64(st.get(), 0);
          const int64_t n = sqlite3_column_int64(st.get(), 1);
          --kept;
          bytes -= n;
          ++result.dropped;
          ++dropped_lines;
          dropped_bytes += n;
        }
      }
      Statement del(db_, "DELETE FROM job_logs WHERE job_id = ?1 AND seq <= ?2");
      del.Bind(1, job_id);
      del.Bind(2, last_dropped);
      RETURN_IF_ERROR(StepDone(db_, del, what));
    }
    Statement up(db_,
                 "INSERT OR REPLACE INTO job_log_stats(job_id, next_seq, lines, bytes, dropped_lines, dropped_bytes, "
                 "worker_dropped) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    up.Bind(1, job_id);
    up.Bind(2, next_seq);
    up.Bind(3, kept);
    up.Bind(4, bytes);
    up.Bind(5, dropped_lines);
    up.Bind(6, dropped_bytes);
    up.Bind(7, by_workers + std::max<int64_t>(0, worker_dropped));
    return StepDone(db_, up, what);
  }));
  return result;
}

absl::StatusOr<LogPage> SqliteStore::ReadJobLogs(const std::string& job_id, const LogQuery& query) {
  absl::MutexLock lock(&read_mu_);
  const std::string what = "read the log of " + job_id;
  LogPage page;
  {
    Statement st(reader_,
                 "SELECT next_seq, dropped_lines, dropped_bytes, worker_dropped FROM job_log_stats WHERE job_id = ?1");
    if (!st.ok()) return SqlError(reader_, what);
    st.Bind(1, job_id);
    const int rc = st.Step();
    if (rc == SQLITE_ROW) {
      page.last_seq = sqlite3_column_int64(st.get(), 0) - 1;
      page.dropped_lines = sqlite3_column_int64(st.get(), 1);
      page.dropped_bytes = sqlite3_column_int64(st.get(), 2);
      page.worker_dropped = sqlite3_column_int64(st.get(), 3);
    } else if (rc != SQLITE_DONE) {
      return SqlError(reader_, what);
    }
  }
  Statement st(reader_,
               "SELECT seq, attempt, rank, level, time_ms, message FROM job_logs WHERE job_id = ?1 AND seq > ?2 "
               "AND (?3 < 0 OR rank = ?3) AND (?4 < 0 OR attempt = ?4) ORDER BY seq LIMIT ?5");
  if (!st.ok()) return SqlError(reader_, what);
  st.Bind(1, job_id);
  st.Bind(2, query.after_seq);
  st.Bind(3, static_cast<int64_t>(query.rank.value_or(-1)));
  st.Bind(4, static_cast<int64_t>(query.attempt.value_or(-1)));
  st.Bind(5, std::max<int64_t>(1, query.limit));
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    LogLine l;
    l.seq = sqlite3_column_int64(st.get(), 0);
    l.attempt = sqlite3_column_int(st.get(), 1);
    l.rank = sqlite3_column_int(st.get(), 2);
    l.level = sqlite3_column_int(st.get(), 3);
    l.time_ms = sqlite3_column_int64(st.get(), 4);
    l.message = st.Text(5);
    page.lines.push_back(std::move(l));
  }
  if (rc != SQLITE_DONE) return SqlError(reader_, what);
  return page;
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

absl::StatusOr<std::optional<std::string>> SqliteStore::ReadAuditReport(const std::string& job_id) {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT report FROM audit_reports WHERE job_id = ?1");
  if (!st.ok()) return SqlError(reader_, "load the audit report of " + job_id);
  st.Bind(1, job_id);
  const int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return SqlError(reader_, "load the audit report of " + job_id);
  return std::optional<std::string>(st.Text(0));
}

absl::Status SqliteStore::PutBudgets(const std::vector<BudgetRecord>& budgets) {
  absl::MutexLock lock(&mu_);
  return TransactionLocked(absl::StrCat("store the budgets of ", budgets.size(), " file(s)"), [&]() -> absl::Status {
    for (const BudgetRecord& b : budgets) RETURN_IF_ERROR(PutBudgetLocked(b));
    return absl::OkStatus();
  });
}

absl::Status SqliteStore::PutBudgetLocked(const BudgetRecord& b) {
  Statement st(db_,
               "INSERT INTO file_budgets(file, epsilon, delta, updated_ms) VALUES(?1, ?2, ?3, ?4) "
               "ON CONFLICT(file) DO UPDATE SET epsilon = excluded.epsilon, delta = excluded.delta, "
               "updated_ms = excluded.updated_ms");
  st.Bind(1, b.file);
  st.Bind(2, b.epsilon);
  st.Bind(3, b.delta);
  st.Bind(4, b.updated_ms);
  return StepDone(db_, st, "store the budget of " + b.file);
}

absl::StatusOr<std::vector<BudgetRecord>> SqliteStore::LoadBudgets() {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, "SELECT file, epsilon, delta, updated_ms FROM file_budgets ORDER BY file");
  if (!st.ok()) return SqlError(reader_, "load budgets");
  std::vector<BudgetRecord> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    BudgetRecord b;
    b.file = st.Text(0);
    b.epsilon = sqlite3_column_double(st.get(), 1);
    b.delta = sqlite3_column_double(st.get(), 2);
    b.updated_ms = sqlite3_column_int64(st.get(), 3);
    out.push_back(b);
  }
  if (rc != SQLITE_DONE) return SqlError(reader_, "load budgets");
  return out;
}

namespace {

TokenRecord TokenFromRow(Statement& st) {
  TokenRecord t;
  t.id = sqlite3_column_int64(st.get(), 0);
  t.name = st.Text(1);
  t.role = st.Text(2);
  const void* blob = sqlite3_column_blob(st.get(), 3);
  t.sha256.assign(static_cast<const char*>(blob), static_cast<size_t>(sqlite3_column_bytes(st.get(), 3)));
  t.created_ms = sqlite3_column_int64(st.get(), 4);
  t.revoked_ms = sqlite3_column_int64(st.get(), 5);
  return t;
}

constexpr char kTokenColumns[] = "id, name, role, sha256, created_ms, revoked_ms";

}  // namespace

absl::StatusOr<TokenRecord> SqliteStore::PutToken(TokenRecord token) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "INSERT INTO tokens(name, role, sha256, created_ms, revoked_ms) VALUES(?1, ?2, ?3, ?4, 0)");
  if (!st.ok()) return SqlError(db_, "store token " + token.name);
  st.Bind(1, token.name);
  st.Bind(2, token.role);
  st.BindBlob(3, token.sha256);
  st.Bind(4, token.created_ms);
  const int rc = st.Step();
  // Extended result codes are on: SQLITE_CONSTRAINT_UNIQUE and its kin.
  if ((rc & 0xff) == SQLITE_CONSTRAINT) {
    return absl::AlreadyExistsError(
        absl::StrCat("a valid token named '", token.name, "' already exists; revoke it first"));
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "store token " + token.name);
  token.id = sqlite3_last_insert_rowid(db_);
  token.revoked_ms = 0;
  return token;
}

absl::StatusOr<std::optional<TokenRecord>> SqliteStore::FindToken(const std::string& sha256) {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, absl::StrCat("SELECT ", kTokenColumns, " FROM tokens WHERE sha256 = ?1").c_str());
  if (!st.ok()) return SqlError(reader_, "find token");
  st.BindBlob(1, sha256);
  const int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<TokenRecord>();
  if (rc != SQLITE_ROW) return SqlError(reader_, "find token");
  return std::optional<TokenRecord>(TokenFromRow(st));
}

absl::StatusOr<std::vector<TokenRecord>> SqliteStore::ListTokens() {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_, absl::StrCat("SELECT ", kTokenColumns, " FROM tokens ORDER BY id").c_str());
  if (!st.ok()) return SqlError(reader_, "list tokens");
  std::vector<TokenRecord> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out.push_back(TokenFromRow(st));
  if (rc != SQLITE_DONE) return SqlError(reader_, "list tokens");
  return out;
}

absl::StatusOr<int> SqliteStore::RevokeTokens(const std::string& name, int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "UPDATE tokens SET revoked_ms = ?2 WHERE name = ?1 AND revoked_ms = 0");
  st.Bind(1, name);
  st.Bind(2, std::max<int64_t>(now_ms, 1));
  RETURN_IF_ERROR(StepDone(db_, st, "revoke the tokens of " + name));
  return sqlite3_changes(db_);
}

absl::Status SqliteStore::AppendAudit(const AuditRecord& r) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "INSERT INTO audit(time_ms, kind, name, role, action, target, outcome, detail) "
               "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  st.Bind(1, r.time_ms);
  st.Bind(2, r.kind);
  st.Bind(3, r.name);
  st.Bind(4, r.role);
  st.Bind(5, r.action);
  st.Bind(6, r.target);
  st.Bind(7, r.outcome);
  st.Bind(8, r.detail);
  return StepDone(db_, st, absl::StrCat("append the audit entry of ", r.action));
}

absl::StatusOr<std::vector<AuditRecord>> SqliteStore::ListAudit(int64_t after_id, int64_t limit) {
  absl::MutexLock lock(&read_mu_);
  Statement st(reader_,
               "SELECT id, time_ms, kind, name, role, action, target, outcome, detail FROM audit "
               "WHERE id > ?1 ORDER BY id LIMIT ?2");
  if (!st.ok()) return SqlError(reader_, "read the audit trail");
  st.Bind(1, after_id);
  st.Bind(2, limit);
  std::vector<AuditRecord> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    AuditRecord r;
    r.id = sqlite3_column_int64(st.get(), 0);
    r.time_ms = sqlite3_column_int64(st.get(), 1);
    r.kind = st.Text(2);
    r.name = st.Text(3);
    r.role = st.Text(4);
    r.action = st.Text(5);
    r.target = st.Text(6);
    r.outcome = st.Text(7);
    r.detail = st.Text(8);
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return SqlError(reader_, "read the audit trail");
  return out;
}

absl::StatusOr<uint64_t> SqliteStore::SplitKey() {
  absl::MutexLock lock(&mu_);
  // Drawn before the statement so that the insert is one step; a key
  // already stored wins (INSERT OR IGNORE) and this draw is dropped.
  ASSIGN_OR_RETURN(const uint64_t fresh, SecureRandomU64());
  {
    Statement st(db_, "INSERT OR IGNORE INTO secrets(name, value) VALUES('split_key', ?1)");
    st.BindBlob(1, std::string(reinterpret_cast<const char*>(&fresh), sizeof(fresh)));
    RETURN_IF_ERROR(StepDone(db_, st, "store the split key"));
  }
  Statement st(db_, "SELECT value FROM secrets WHERE name = 'split_key'");
  if (!st.ok() || st.Step() != SQLITE_ROW) return SqlError(db_, "read the split key");
  if (sqlite3_column_bytes(st.get(), 0) != static_cast<int>(sizeof(uint64_t))) {
    return absl::DataLossError("state store: the stored split key is not 8 bytes");
  }
  uint64_t key = 0;
  std::memcpy(&key, sqlite3_column_blob(st.get(), 0), sizeof(key));
  return key;
}

}  // namespace dpfleet::server
