#include "server/core/state_backup.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "server/core/store.h"

namespace dpfleet::server {
namespace {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;

absl::StatusOr<Db> OpenDb(const std::string& path, int flags, const std::string& what) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  Db db(raw);
  if (rc != SQLITE_OK) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", what, " ", path, ": ", raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(raw, 5000);
  return db;
}

absl::Status Exec(sqlite3* db, const std::string& sql, const std::string& what) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    absl::Status s = absl::InternalError(absl::StrCat(what, ": ", error ? error : sqlite3_errmsg(db)));
    sqlite3_free(error);
    return s;
  }
  return absl::OkStatus();
}

// The first column of the first row of `sql`, or an error naming `what`.
absl::StatusOr<std::string> QueryText(sqlite3* db, const std::string& sql, const std::string& what) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    return absl::DataLossError(absl::StrCat(what, ": ", sqlite3_errmsg(db)));
  }
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> st(raw, sqlite3_finalize);
  if (sqlite3_step(raw) != SQLITE_ROW) return absl::DataLossError(absl::StrCat(what, ": ", sqlite3_errmsg(db)));
  const unsigned char* t = sqlite3_column_text(raw, 0);
  return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
}

// Rows of `table`, or nullopt when the schema has no such table.
absl::StatusOr<std::optional<int64_t>> Count(sqlite3* db, const std::string& table) {
  ASSIGN_OR_RETURN(
      std::string exists,
      QueryText(db, absl::StrCat("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '", table, "'"),
                "schema"));
  if (exists == "0") return std::nullopt;
  ASSIGN_OR_RETURN(std::string n, QueryText(db, absl::StrCat("SELECT COUNT(*) FROM ", table), "count " + table));
  return std::stoll(n);
}

// Copies every page of `from` into `to` in one step: one read transaction
// on the source, so the copy is the database as of one commit.
absl::Status CopyPages(sqlite3* from, sqlite3* to, const std::string& what) {
  sqlite3_backup* b = sqlite3_backup_init(to, "main", from, "main");
  if (b == nullptr) return absl::InternalError(absl::StrCat(what, ": ", sqlite3_errmsg(to)));
  int rc;
  do {
    rc = sqlite3_backup_step(b, -1);
    // BUSY: a writer holds the source's lock for a moment (busy_timeout
    // already waited); LOCKED: the same. Try again.
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) sqlite3_sleep(50);
  } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) return absl::InternalError(absl::StrCat(what, ": ", sqlite3_errstr(rc)));
  return absl::OkStatus();
}

absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat("fsync ", path, ": ", std::strerror(err)));
  return absl::OkStatus();
}

std::string ParentDir(const std::string& path) {
  const std::filesystem::path p = std::filesystem::absolute(path).parent_path();
  return p.empty() ? "." : p.string();
}

// Writes the database at `from` (already open) to `dest` through
// `dest`.tmp: pages copied, made a self-contained rollback-journal file,
// fsynced, renamed, and the directory fsynced.
absl::Status WriteCopy(sqlite3* from, const std::string& dest, const std::string& what) {
  const std::string tmp = dest + ".tmp";
  std::error_code ec;
  std::filesystem::remove(tmp, ec);
  {
    // Created 0600 before SQLite writes a byte: the copy is as secret as
    // the state directory.
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return absl::FailedPreconditionError(absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
    ::close(fd);
  }
  absl::Status s = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Db to, OpenDb(tmp, SQLITE_OPEN_READWRITE, "the copy"));
    RETURN_IF_ERROR(CopyPages(from, to.get(), what));
    // The source is in WAL mode and the copy inherits it; one file is what
    // a backup should be.
    RETURN_IF_ERROR(Exec(to.get(), "PRAGMA journal_mode=DELETE", "the copy's journal mode"));
    return absl::OkStatus();
  }();
  if (s.ok()) s = FsyncPath(tmp, O_RDONLY);
  if (s.ok() && std::rename(tmp.c_str(), dest.c_str()) != 0) {
    s = absl::InternalError(absl::StrCat("rename ", tmp, " to ", dest, ": ", std::strerror(errno)));
  }
  if (!s.ok()) {
    std::filesystem::remove(tmp, ec);
    return s;
  }
  return FsyncPath(ParentDir(dest), O_RDONLY | O_DIRECTORY);
}

}  // namespace

absl::StatusOr<StateSummary> InspectStateDb(const std::string& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    return absl::NotFoundError(absl::StrCat(file, ": no such file"));
  }
  if (std::filesystem::exists(file + "-wal", ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat(file,
                     " has a write-ahead log beside it: it is a live database, not a backup (`dpfleet-server backup` "
                     "makes one)"));
  }
  // immutable=1: read the file as it is, write nothing next to it (no WAL,
  // no lock files), which a backup on read-only media needs.
  ASSIGN_OR_RETURN(Db db, OpenDb(absl::StrCat("file:", file, "?immutable=1"), SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
                                 "state database"));
  absl::StatusOr<std::string> check = QueryText(db.get(), "PRAGMA integrity_check", "integrity check");
  if (!check.ok() || *check != "ok") {
    return absl::DataLossError(absl::StrCat(
        file, " is not an intact SQLite database: ", check.ok() ? *check : std::string(check.status().message())));
  }
  StateSummary s;
  ASSIGN_OR_RETURN(std::string version, QueryText(db.get(), "PRAGMA user_version", "schema version"));
  s.schema_version = std::stoi(version);
  ASSIGN_OR_RETURN(std::optional<int64_t> jobs, Count(db.get(), "jobs"));
  if (!jobs)
    return absl::FailedPreconditionError(absl::StrCat(file, " is not a dpfleet state database (no jobs table)"));
  if (s.schema_version > Store::kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(file, " has schema version ", s.schema_version,
                                                      ", newer than this dpfleet-server's ", Store::kSchemaVersion,
                                                      ": restore it with a newer dpfleet-server"));
  }
  s.jobs = *jobs;
  // Tables a schema lacks (tokens and audit came with version 2) count 0;
  // the first schemas were unnumbered (version 0).
  for (auto [table, n] : {std::pair{"ledger", &s.ledger_rows}, std::pair{"datasets", &s.datasets},
                          std::pair{"tokens", &s.tokens}, std::pair{"audit", &s.audit_rows}}) {
    ASSIGN_OR_RETURN(std::optional<int64_t> rows, Count(db.get(), table));
    *n = rows.value_or(0);
  }
  s.bytes = static_cast<int64_t>(std::filesystem::file_size(file, ec));
  return s;
}

absl::StatusOr<StateSummary> BackupStateDb(const std::string& state_dir, const std::string& out_file) {
  const std::string db_path = Store::DatabasePath(state_dir);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(db_path, ec)) {
    return absl::NotFoundError(absl::StrCat("--state-dir ", state_dir, ": no state database (", db_path, ")"));
  }
  if (std::filesystem::exists(out_file, ec)) {
    return absl::AlreadyExistsError(absl::StrCat("--out ", out_file, " exists; a backup never overwrites a file"));
  }
  {
    // Read-write so that SQLite can read the WAL of a serving coordinator
    // (its shared-memory index); nothing is written to the source.
    ASSIGN_OR_RETURN(Db from, OpenDb(db_path, SQLITE_OPEN_READWRITE, "state database"));
    RETURN_IF_ERROR(WriteCopy(from.get(), out_file, "backup"));
  }
  absl::StatusOr<StateSummary> summary = InspectStateDb(out_file);
  if (!summary.ok()) return Annotate(summary.status(), absl::StrCat("the backup written to ", out_file));
  return summary;
}

absl::StatusOr<RestoreResult> RestoreStateDb(const StateDirLock& held, const std::string& backup_file, bool replace) {
  const std::string& state_dir = held.state_dir();
  RestoreResult result;
  ASSIGN_OR_RETURN(result.restored, InspectStateDb(backup_file));
  std::error_code ec;
  const std::string db_path = Store::DatabasePath(state_dir);
  const bool replacing = std::filesystem::exists(db_path, ec);
  if (replacing && !replace) {
    return absl::AlreadyExistsError(absl::StrCat("--state-dir ", state_dir, " already has a state database (", db_path,
                                                 "); --replace moves it aside and restores"));
  }
  // The copy is complete and on disk before anything of the old database
  // moves: a failure at any step leaves the directory with the database it
  // had (a directory without one would start a coordinator on an empty
  // ledger).
  const std::string staged = db_path + ".restoring";
  {
    ASSIGN_OR_RETURN(Db from, OpenDb(absl::StrCat("file:", backup_file, "?immutable=1"),
                                     SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, "backup"));
    RETURN_IF_ERROR(WriteCopy(from.get(), staged, "restore"));
  }
  std::vector<std::string> moved;  // suffixes moved aside, to undo
  auto undo = [&](absl::Status why) {
    for (const std::string& suffix : moved)
      std::rename((result.moved_aside + suffix).c_str(), (db_path + suffix).c_str());
    std::filesystem::remove(staged, ec);
    return why;
  };
  if (replacing) {
    const std::string stamp = absl::FormatTime("%Y%m%dT%H%M%SZ", absl::Now(), absl::UTCTimeZone());
    result.moved_aside = absl::StrCat(db_path, ".replaced-", stamp);
    for (const char* suffix : {"", "-wal", "-shm"}) {
      const std::string from = db_path + suffix;
      if (!std::filesystem::exists(from, ec)) continue;
      if (std::rename(from.c_str(), (result.moved_aside + suffix).c_str()) != 0) {
        return undo(absl::InternalError(absl::StrCat("move ", from, " aside: ", std::strerror(errno))));
      }
      moved.push_back(suffix);
    }
  }
  if (std::rename(staged.c_str(), db_path.c_str()) != 0) {
    return undo(absl::InternalError(absl::StrCat("rename ", staged, " to ", db_path, ": ", std::strerror(errno))));
  }
  RETURN_IF_ERROR(FsyncPath(state_dir, O_RDONLY | O_DIRECTORY));
  return result;
}

absl::StatusOr<StateDirLock> StateDirLock::Acquire(const std::string& state_dir, const std::string& who) {
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec)
    return absl::FailedPreconditionError(absl::StrCat("--state-dir ", state_dir, ": cannot create: ", ec.message()));
  const std::string path = absl::StrCat(state_dir, "/lock");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--state-dir ", state_dir, ": cannot open ", path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[256] = {};
    const ssize_t n = ::pread(fd, holder, sizeof(holder) - 1, 0);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat("--state-dir ", state_dir, " is in use by ",
                                                        n > 0 ? std::string(holder, n) : "another process",
                                                        "; stop it first"));
    }
    return absl::InternalError(absl::StrCat("flock ", path, ": ", std::strerror(err)));
  }
  const std::string mine = absl::StrCat(who, " (pid ", ::getpid(), ")");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, mine.data(), mine.size(), 0) != static_cast<ssize_t>(mine.size())) {
    // The lock holds all the same; only the other party's message is poorer.
  }
  return StateDirLock(state_dir, fd);
}

StateDirLock& StateDirLock::operator=(StateDirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    dir_ = std::move(other.dir_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

StateDirLock::~StateDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace dpfleet::server
