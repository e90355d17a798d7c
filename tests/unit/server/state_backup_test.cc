// Backups of the coordinator's state (server/core/state_backup.h): a backup
// taken while the database is written is one commit's state; a backup is
// one 0600 file and never overwrites; restore refuses a held directory,
// never deletes the database it replaces, checks what it restores; a
// restored dataset whose shards stayed behind is prepared again.
#include "server/core/state_backup.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/pums/synth.h"
#include "server/core/data_resolver.h"
#include "server/core/dataset_registry.h"
#include "server/core/store.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::dpfleet::testing::TempDir;
using ::testing::HasSubstr;

LedgerEntry Charge(int epoch) {
  LedgerEntry e;
  e.job_id = "job-000001";
  e.attempt = 1;
  e.epoch = epoch;
  e.dataset = "/data/p.csv";
  e.steps = 100;
  e.sample_rate = 0.01;
  e.noise_multiplier = 1.0;
  e.delta = 1e-5;
  e.recorded_ms = epoch;
  return e;
}

std::string JournalMode(const std::string& file) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  std::string mode = sqlite3_step(st) == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(st, 0)) : "";
  sqlite3_finalize(st);
  sqlite3_close(db);
  return mode;
}

// Charges recorded one by one while the backup runs: the copy holds exactly
// the first K of them for some K (a torn copy would hold a gap, fail the
// integrity check, or not open).
TEST(StateBackupTest, ABackupTakenWhileChargesAreWrittenIsOneCommitsState) {
  TempDir dir;
  const std::string live = dir.Join("state");
  auto store = Store::Open(live);
  ASSERT_TRUE(store.ok()) << store.status();
  constexpr int kBefore = 200;
  for (int e = 1; e <= kBefore; ++e) ASSERT_TRUE((*store)->Charge(Charge(e)).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> written{kBefore};
  std::atomic<bool> writer_done{false};
  std::thread writer([&] {
    for (int e = kBefore + 1; !stop.load() && e < 100000; ++e) {
      if (!(*store)->Charge(Charge(e)).ok()) break;
      written = e;
    }
    writer_done = true;
  });
  // Let some writes interleave with the copy; the count, not a sleep, says
  // that they did.
  while (written.load() < kBefore + 50 && !writer_done.load()) std::this_thread::yield();
  if (written.load() < kBefore + 50) {
    writer.join();
    FAIL() << "the writer stopped after " << written.load() << " charges: a charge failed";
  }
  auto summary = BackupStateDb(live, dir.Join("backup.db"));
  stop = true;
  writer.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_GE(summary->ledger_rows, kBefore + 50);
  EXPECT_LE(summary->ledger_rows, written.load());
  EXPECT_EQ(summary->schema_version, Store::kSchemaVersion);

  auto lock = StateDirLock::Acquire(dir.Join("restored"), "test");
  ASSERT_TRUE(lock.ok()) << lock.status();
  auto restored = RestoreStateDb(*lock, dir.Join("backup.db"), /*replace=*/false);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(restored->moved_aside.empty());
  auto copy = Store::Open(dir.Join("restored"));
  ASSERT_TRUE(copy.ok()) << copy.status();
  auto rows = (*copy)->LedgerForJob("job-000001");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(static_cast<int64_t>(rows->size()), summary->ledger_rows);
  for (std::size_t i = 0; i < rows->size(); ++i) {
    ASSERT_EQ((*rows)[i].epoch, static_cast<int32_t>(i + 1)) << "the copy holds a gap";
  }
}

TEST(StateBackupTest, ABackupIsOneSecretFileAndNeverOverwrites) {
  TempDir dir;
  ASSERT_TRUE(Store::Open(dir.Join("state")).ok());
  const std::string out = dir.Join("b.db");
  ASSERT_TRUE(BackupStateDb(dir.Join("state"), out).ok());
  struct stat st {};
  ASSERT_EQ(::stat(out.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "token hashes, the split key and models are in it";
  EXPECT_EQ(JournalMode(out), "delete") << "a backup needs no WAL beside it";
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));

  auto again = BackupStateDb(dir.Join("state"), out);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr(out));
  auto none = BackupStateDb(dir.Join("nothing"), dir.Join("c.db"));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr("--state-dir"));
}

TEST(StateBackupTest, InspectRefusesWhatIsNotAnIntactStateDatabaseOfAKnownVersion) {
  TempDir dir;
  std::ofstream(dir.Join("text.db")) << "not a database at all, but long enough to look like a header......";
  auto text = InspectStateDb(dir.Join("text.db"));
  EXPECT_EQ(text.status().code(), absl::StatusCode::kDataLoss) << text.status();

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.Join("other.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t (x INTEGER)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto other = InspectStateDb(dir.Join("other.db"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("not a dpfleet state database"));

  auto open = Store::Open(dir.Join("state"));
  ASSERT_TRUE(open.ok());
  ASSERT_TRUE((*open)->Charge(Charge(1)).ok());
  ASSERT_TRUE(BackupStateDb(dir.Join("state"), dir.Join("newer.db")).ok());
  ASSERT_EQ(sqlite3_open(dir.Join("newer.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto newer = InspectStateDb(dir.Join("newer.db"));
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(newer.status().message(), HasSubstr("schema version 99"));

  // The database of a serving coordinator (its WAL beside it) is not a
  // backup: read as one file it could miss the latest commits.
  ASSERT_TRUE(std::filesystem::exists(Store::DatabasePath(dir.Join("state")) + "-wal"));
  auto live = InspectStateDb(Store::DatabasePath(dir.Join("state")));
  EXPECT_EQ(live.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(live.status().message(), HasSubstr("write-ahead log"));
  EXPECT_EQ(InspectStateDb(dir.Join("absent.db")).status().code(), absl::StatusCode::kNotFound);
}

TEST(StateBackupTest, ADirectoryIsHeldByOneHolderAtATime) {
  TempDir dir;
  auto first = StateDirLock::Acquire(dir.Join("state"), "dpfleet-server");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = StateDirLock::Acquire(dir.Join("state"), "dpfleet-server restore");
  ASSERT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("in use by dpfleet-server (pid "));
  { StateDirLock gone = std::move(*first); }
  EXPECT_TRUE(StateDirLock::Acquire(dir.Join("state"), "again").ok()) << "released with its holder";
}

TEST(StateBackupTest, RestoreKeepsTheDatabaseItReplaces) {
  TempDir dir;
  {
    auto a = Store::Open(dir.Join("a"));
    ASSERT_TRUE(a.ok());
    ASSERT_TRUE((*a)->Charge(Charge(1)).ok());
  }
  ASSERT_TRUE(BackupStateDb(dir.Join("a"), dir.Join("a.db")).ok());
  {
    auto b = Store::Open(dir.Join("b"));
    ASSERT_TRUE(b.ok());
    for (int e = 1; e <= 3; ++e) ASSERT_TRUE((*b)->Charge(Charge(e)).ok());
  }
  auto lock = StateDirLock::Acquire(dir.Join("b"), "test");
  ASSERT_TRUE(lock.ok());
  auto refused = RestoreStateDb(*lock, dir.Join("a.db"), /*replace=*/false);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(refused.status().message(), HasSubstr("--replace"));

  auto restored = RestoreStateDb(*lock, dir.Join("a.db"), /*replace=*/true);
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_FALSE(restored->moved_aside.empty());
  ASSERT_TRUE(std::filesystem::exists(restored->moved_aside));
  auto now = Store::Open(dir.Join("b"));
  ASSERT_TRUE(now.ok());
  EXPECT_EQ((*now)->LedgerForJob("job-000001")->size(), 1u) << "the backup's ledger";
  // What was replaced still opens with its three charges.
  std::filesystem::create_directories(dir.Join("old"));
  std::filesystem::copy_file(restored->moved_aside, Store::DatabasePath(dir.Join("old")));
  if (std::filesystem::exists(restored->moved_aside + "-wal")) {
    std::filesystem::copy_file(restored->moved_aside + "-wal", Store::DatabasePath(dir.Join("old")) + "-wal");
  }
  auto old = Store::Open(dir.Join("old"));
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ((*old)->LedgerForJob("job-000001")->size(), 3u);
}

// A restore that fails after the backup was checked (here: its staging
// file cannot be written) leaves the directory with the database it had,
// never without one (a coordinator would start on an empty ledger).
TEST(StateBackupTest, AFailedRestoreLeavesTheOldDatabaseInPlace) {
  TempDir dir;
  {
    auto a = Store::Open(dir.Join("a"));
    ASSERT_TRUE(a.ok());
    ASSERT_TRUE((*a)->Charge(Charge(1)).ok());
  }
  ASSERT_TRUE(BackupStateDb(dir.Join("a"), dir.Join("a.db")).ok());
  {
    auto b = Store::Open(dir.Join("b"));
    ASSERT_TRUE(b.ok());
    for (int e = 1; e <= 3; ++e) ASSERT_TRUE((*b)->Charge(Charge(e)).ok());
  }
  // A directory where the staged copy's temporary file would go.
  std::filesystem::create_directories(Store::DatabasePath(dir.Join("b")) + ".restoring.tmp/blocker");
  auto lock = StateDirLock::Acquire(dir.Join("b"), "test");
  ASSERT_TRUE(lock.ok());
  auto failed = RestoreStateDb(*lock, dir.Join("a.db"), /*replace=*/true);
  ASSERT_FALSE(failed.ok());
  auto still = Store::Open(dir.Join("b"));
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ((*still)->LedgerForJob("job-000001")->size(), 3u) << "the old ledger, in place";
}

// The backup holds the dataset's record but not its shards; restored into
// another state directory, the dataset is prepared again from its raw file
// into the new directory, with the same rows.
TEST(StateBackupTest, ARestoredDatasetWithoutItsShardsIsPreparedAgain) {
  TempDir dir;
  const std::string csv = dir.Join("pums.csv");
  ASSERT_TRUE(data::WriteSyntheticPums({/*rows=*/300, /*seed=*/3}, csv).ok());
  SystemClock clock;
  DatasetRecord before;
  {
    auto store = Store::Open(dir.Join("a"));
    ASSERT_TRUE(store.ok());
    DatasetRegistry registry(store->get(), &clock, dir.Join("a"));
    registry.set_data_roots(*DataRoots::Create({dir.path()}));
    DatasetRecord req;
    req.name = "demo";
    req.paths = {csv};
    ASSERT_TRUE(registry.Add(req).ok());
    auto ready = registry.WaitPrepared("demo", absl::Seconds(60));
    ASSERT_TRUE(ready.ok() && ready->state == "READY") << (ready.ok() ? ready->reason : ready.status().ToString());
    before = *ready;
  }
  ASSERT_TRUE(BackupStateDb(dir.Join("a"), dir.Join("a.db")).ok());
  {
    auto lock = StateDirLock::Acquire(dir.Join("b"), "test");
    ASSERT_TRUE(lock.ok());
    ASSERT_TRUE(RestoreStateDb(*lock, dir.Join("a.db"), false).ok());
  }
  std::filesystem::remove_all(dir.Join("a"));  // the old machine is gone
  auto store = Store::Open(dir.Join("b"));
  ASSERT_TRUE(store.ok());
  DatasetRegistry registry(store->get(), &clock, dir.Join("b"));
  registry.set_data_roots(*DataRoots::Create({dir.path()}));
  ASSERT_TRUE(registry.Recover().ok());
  auto again = registry.WaitPrepared("demo", absl::Seconds(60));
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->state, "READY") << again->reason;
  EXPECT_EQ(again->dir, dir.Join("b") + "/datasets/demo");
  EXPECT_TRUE(std::filesystem::exists(again->dir + "/manifest.json"));
  EXPECT_EQ(again->rows_train, before.rows_train);
  EXPECT_EQ(again->rows_eval, before.rows_eval);
  EXPECT_EQ(again->manifest_json, before.manifest_json);
}

}  // namespace
}  // namespace dpfleet::server
