// The coordinator's SQLite store (server/core/sqlite_store.h): every table
// round-trips and survives a reopen; every write whose fsync fails (FaultVfs)
// is Unavailable, names itself and leaves nothing visible; the ledger's
// mechanism column, its charge -> file rows, budgets per file, the
// content-key cache and the secret split key; and the schema migration — a
// database of every older schema (the first, unnumbered one; the
// unnumbered one of the privacy-engine line, which had the mechanism column
// and the split key; version 2, with tokens and audit; version 3, with eval
// rows, all keyed by path strings) opens, keeps its jobs, ledger and
// secrets, moves its charges and budgets onto the content of the files they
// named, and gains what it lacked; a newer one is refused, and a migration
// the disk refuses leaves the old version whole.
#include "server/core/sqlite_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>

#include "common/sha256.h"
#include "tests/testing/files.h"
#include "tests/testing/server/fault_vfs.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::dpfleet::testing::FaultVfs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

JobRecord Job(const std::string& id, JobState state = JobState::kQueued) {
  JobRecord r;
  r.job_id = id;
  r.name = "n-" + id;
  r.state = state;
  r.spec_yaml = "name: x\n";
  r.data_paths = {"/data/p.csv"};
  r.epochs = 3;
  return r;
}

// Ledger keys of two files.
const std::string kFileP = "sha256:" + std::string(64, 'a');
const std::string kFileQ = "sha256:" + std::string(64, 'b');

LedgerEntry Row(const std::string& job, int attempt, int epoch, const std::string& file = kFileP) {
  LedgerEntry e;
  e.job_id = job;
  e.attempt = attempt;
  e.epoch = epoch;
  e.dataset = "/data/p.csv";
  e.files = {file};
  e.steps = 100;
  e.sample_rate = 0.01;
  e.noise_multiplier = 1.1;
  e.delta = 1e-5;
  e.recorded_ms = 1000 + epoch;
  return e;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void TearDown() override { FaultVfs::Get().Clear(); }
  // The store as a restarted coordinator opens it; `faulty` through the VFS
  // that fails on request.
  void Reopen(bool faulty = false) {
    store_.reset();
    SqliteStoreOptions options;
    if (faulty) options.vfs = FaultVfs::Get().Name();
    auto s = SqliteStore::Open(dir_.path(), options);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  // A second connection on the same database: what any other reader sees.
  std::unique_ptr<SqliteStore> Other() { return *SqliteStore::Open(dir_.path()); }

  testing::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(SqliteStoreTest, JobsComeBackInSubmissionOrderAfterAReopen) {
  ASSERT_TRUE(store_->PutJob(Job("job-b")).ok());
  ASSERT_TRUE(store_->PutJob(Job("job-a")).ok());
  JobRecord b = Job("job-b", JobState::kRunning);
  b.attempt = 2;
  b.history.push_back(EpochRecord{1, 0.5, 0.7});
  ASSERT_TRUE(store_->PutJob(b).ok());  // an update keeps its place
  Reopen();
  auto jobs = store_->LoadJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].job_id, "job-b");
  EXPECT_EQ((*jobs)[0].state, JobState::kRunning);
  EXPECT_EQ((*jobs)[0].attempt, 2);
  ASSERT_EQ((*jobs)[0].history.size(), 1u);
  EXPECT_EQ((*jobs)[0].history[0].eval_accuracy, 0.7);
  EXPECT_EQ((*jobs)[1].job_id, "job-a");
}

TEST_F(SqliteStoreTest, JobIdsAreReservedDurablyAndNeverRepeat) {
  EXPECT_EQ(*store_->NextJobId(), "job-000001");
  EXPECT_EQ(*store_->NextJobId(), "job-000002");
  Reopen();
  EXPECT_EQ(*store_->NextJobId(), "job-000003");
}

TEST_F(SqliteStoreTest, AChargeIsRecordedOncePerJobAttemptAndEpoch) {
  EXPECT_TRUE(*store_->Charge(Row("job-1", 1, 1)));
  EXPECT_FALSE(*store_->Charge(Row("job-1", 1, 1))) << "a retried charge records nothing";
  EXPECT_TRUE(*store_->Charge(Row("job-1", 2, 1))) << "a new attempt pays again";
  EXPECT_TRUE(*store_->Charge(Row("job-2", 1, 1, kFileQ)));
  auto rows = store_->LedgerForJob("job-1");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[1].attempt, 2);
  EXPECT_EQ((*rows)[1].noise_multiplier, 1.1);
  EXPECT_EQ(store_->LedgerForFile(kFileP)->size(), 2u);
  EXPECT_EQ(*store_->LedgerFiles(), (std::vector<std::string>{kFileP, kFileQ}));
  // One charge on two files: one row, listed for each file, with both.
  LedgerEntry both = Row("job-4", 1, 1);
  both.files = {kFileP, kFileQ};
  EXPECT_TRUE(*store_->Charge(both));
  EXPECT_EQ(store_->LedgerForFile(kFileQ)->size(), 2u);
  EXPECT_EQ(store_->LedgerForJob("job-4")->at(0).files, (std::vector<std::string>{kFileP, kFileQ}));
  EXPECT_THAT(*store_->LedgerForJob("job-3"), IsEmpty());
}

// An epoch's record lands with the checkpoint it resumes from and drops the
// older one; a job's end drops them all.
TEST_F(SqliteStoreTest, CommitJobWritesTheRecordAndItsCheckpointsTogether) {
  JobCommit first{Job("job-1", JobState::kRunning), "after-1", 1, 1};
  first.job.epochs_done = 1;
  ASSERT_TRUE(store_->CommitJob(first).ok());
  JobCommit second{Job("job-1", JobState::kRunning), "after-2", 2, 2};
  second.job.epochs_done = 2;
  ASSERT_TRUE(store_->CommitJob(second).ok());
  EXPECT_EQ(store_->ReadCheckpoint("job-1", 1, 0, 100).status().code(), absl::StatusCode::kNotFound);
  auto kept = store_->ReadCheckpoint("job-1", 2, 0, 100);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->data, "after-2");
  EXPECT_EQ(store_->LoadJobs()->at(0).epochs_done, 2);
  JobCommit end;
  end.job = Job("job-1", JobState::kSucceeded);
  end.drop_checkpoints_below = JobCommit::kAllCheckpoints;
  ASSERT_TRUE(store_->CommitJob(end).ok());
  EXPECT_EQ(store_->ReadCheckpoint("job-1", 2, 0, 100).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->LoadJobs()->at(0).state, JobState::kSucceeded);
}

TEST_F(SqliteStoreTest, BlobsAreReadInChunksWithinTheirBounds) {
  ASSERT_TRUE(store_->PutModel("job-1", "0123456789").ok());
  auto head = store_->ReadModel("job-1", 0, 4);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->data, "0123");
  EXPECT_EQ(head->total_bytes, 10);
  EXPECT_EQ(store_->ReadModel("job-1", 8, 100)->data, "89");
  EXPECT_EQ(store_->ReadModel("job-1", 10, 100)->data, "");
  auto past = store_->ReadModel("job-1", 11, 1);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(past.status().message(), HasSubstr("outside the model of job-1 (10 bytes)"));
  EXPECT_EQ(store_->ReadModel("job-2", 0, 1).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, DatasetsAndBudgetsRoundTrip) {
  ASSERT_TRUE(store_->PutDataset("b", "{\"name\":\"b\"}").ok());
  ASSERT_TRUE(store_->PutDataset("a", "{\"name\":\"a\"}").ok());
  ASSERT_TRUE(store_->PutDataset("a", "{\"name\":\"a\",\"v\":2}").ok());
  ASSERT_TRUE(store_->PutBudgets({{kFileP, 3.0, 1e-5, 7}}).ok());
  ASSERT_TRUE(store_->PutBudgets({{kFileP, 4.0, 1e-6, 8}, {kFileQ, 4.0, 1e-6, 8}}).ok());
  Reopen();
  EXPECT_EQ(*store_->LoadDatasets(), (std::vector<std::string>{"{\"name\":\"a\",\"v\":2}", "{\"name\":\"b\"}"}));
  ASSERT_TRUE(store_->DeleteDataset("a").ok());
  EXPECT_EQ(store_->LoadDatasets()->size(), 1u);
  auto budgets = store_->LoadBudgets();
  ASSERT_EQ(budgets->size(), 2u);
  EXPECT_EQ((*budgets)[0].file, kFileP);
  EXPECT_EQ((*budgets)[0].epsilon, 4.0);
  EXPECT_EQ((*budgets)[0].delta, 1e-6);
}

TEST_F(SqliteStoreTest, AMalformedJobRecordIsDataLoss) {
  ASSERT_TRUE(store_->PutJob(Job("job-1")).ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_.path() + "/coordinator.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE jobs SET record = 'not json'", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  EXPECT_EQ(store_->LoadJobs().status().code(), absl::StatusCode::kDataLoss);
}

// Every write, its fsync failing at commit: the caller gets Unavailable
// naming the write and the failed fsync, and neither this connection nor
// another one sees any of it; once the disk works the same write lands.
struct WriteCase {
  std::string name;
  std::string names_the_write;
  std::function<absl::Status(Store&)> write;
  // True once the write is visible through `store`.
  std::function<bool(Store&)> visible;
  // What the write needs in the store first (optional).
  std::function<void(Store&)> setup;
};

TokenRecord Token(const std::string& name) {
  TokenRecord t;
  t.name = name;
  t.role = "analyst";
  t.sha256 = std::string(32, name[0]);
  t.created_ms = 1;
  return t;
}

AuditRecord Audit(const std::string& action) {
  AuditRecord a;
  a.time_ms = 5;
  a.kind = "user";
  a.name = "alice";
  a.role = "analyst";
  a.action = action;
  a.target = "job-000001";
  a.outcome = "OK";
  return a;
}

std::vector<WriteCase> Writes() {
  return {
      {"PutJob", "store job job-9", [](Store& s) { return s.PutJob(Job("job-9")); },
       [](Store& s) { return s.LoadJobs()->size() == 2; }},
      {"CommitJob", "store job job-1",
       [](Store& s) {
         JobCommit c{Job("job-1", JobState::kRunning), "state", 1, 1};
         return s.CommitJob(c);
       },
       [](Store& s) {
         return s.LoadJobs()->at(0).state == JobState::kRunning || s.ReadCheckpoint("job-1", 1, 0, 9).ok();
       }},
      {"Charge", "charge epoch 1 of job job-1 to the ledger",
       [](Store& s) { return s.Charge(Row("job-1", 1, 1)).status(); },
       [](Store& s) { return !s.LedgerForJob("job-1")->empty(); }},
      {"PutDataset", "store dataset d", [](Store& s) { return s.PutDataset("d", "{}"); },
       [](Store& s) { return !s.LoadDatasets()->empty(); }},
      {"PutModel", "store the model of job-1", [](Store& s) { return s.PutModel("job-1", "m"); },
       [](Store& s) { return s.ReadModel("job-1", 0, 1).ok(); }},
      {"PutBudgets", "store the budgets of 2 file(s)",
       [](Store& s) {
         return s.PutBudgets({{kFileP, 1, 1e-5, 0}, {kFileQ, 1, 1e-5, 0}});
       },
       [](Store& s) { return !s.LoadBudgets()->empty(); }},
      {"PutContentKey", "store the content key " + kFileP,
       [](Store& s) {
         return s.PutContentKey(FileStamp{1, 2, 3, 4, 5}, kFileP);
       },
       [](Store& s) {
         return s.CachedContentKey(FileStamp{1, 2, 3, 4, 5})->has_value();
       }},
      {"PutFilePath", "store the file at /data/p.csv", [](Store& s) { return s.PutFilePath("/data/p.csv", kFileP, 1); },
       [](Store& s) { return s.FileAtPath("/data/p.csv")->has_value(); }},
      {"ChargeEval", "charge epoch 1 of job job-1 (eval release) to the ledger",
       [](Store& s) {
         LedgerEntry e = Row("job-1", 1, 1);
         e.mechanism = Mechanism::kEval;
         return s.Charge(e).status();
       },
       [](Store& s) { return !s.LedgerForJob("job-1")->empty(); }},
      {"PutToken", "store token alice", [](Store& s) { return s.PutToken(Token("alice")).status(); },
       [](Store& s) { return !s.ListTokens()->empty(); }},
      {"RevokeTokens", "revoke the tokens of bob", [](Store& s) { return s.RevokeTokens("bob", 9).status(); },
       [](Store& s) { return s.ListTokens()->at(0).revoked_ms != 0; },
       [](Store& s) { ASSERT_TRUE(s.PutToken(Token("bob")).ok()); }},
      {"AppendAudit", "append the audit entry of SubmitJob", [](Store& s) { return s.AppendAudit(Audit("SubmitJob")); },
       [](Store& s) { return !s.ListAudit(0, 10)->empty(); }},
  };
}

void PrintTo(const WriteCase& w, std::ostream* os) { *os << w.name; }

class SqliteStoreFsyncTest : public SqliteStoreTest, public ::testing::WithParamInterface<WriteCase> {};

TEST_P(SqliteStoreFsyncTest, AFailedFsyncFailsTheWriteAndLeavesNothingVisible) {
  Reopen(/*faulty=*/true);
  ASSERT_TRUE(store_->PutJob(Job("job-1")).ok());
  const WriteCase& w = GetParam();
  if (w.setup) w.setup(*store_);
  const int64_t before = FaultVfs::Get().failed_syncs();
  FaultVfs::Get().FailSyncs(true);
  const absl::Status failed = w.write(*store_);
  FaultVfs::Get().FailSyncs(false);
  ASSERT_GT(FaultVfs::Get().failed_syncs(), before) << "SQLite met the failing fsync";
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
  EXPECT_THAT(failed.message(), HasSubstr(w.names_the_write));
  EXPECT_THAT(failed.message(), HasSubstr("fsync failed"));
  EXPECT_FALSE(w.visible(*store_)) << "this connection does not see it";
  EXPECT_FALSE(w.visible(*Other())) << "nor does another";
  Reopen();
  EXPECT_FALSE(w.visible(*store_)) << "nor a restart";
  ASSERT_TRUE(w.write(*store_).ok()) << "the store works again once the disk does";
  EXPECT_TRUE(w.visible(*Other()));
}

// The id is taken only once the reservation is durable (the statement's
// commit comes after its RETURNING row).
TEST_F(SqliteStoreTest, AJobIdWhoseReservationFailedIsNotTaken) {
  Reopen(/*faulty=*/true);
  FaultVfs::Get().FailSyncs(true);
  auto failed = store_->NextJobId();
  FaultVfs::Get().FailSyncs(false);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_THAT(failed.status().message(), HasSubstr("reserve a job id"));
  EXPECT_EQ(*store_->NextJobId(), "job-000001");
}

// A split key whose storing failed was never handed out: the next call
// draws and stores one, and that one stays.
TEST_F(SqliteStoreTest, ASplitKeyWhoseStoringFailedIsNotTheKey) {
  Reopen(/*faulty=*/true);
  FaultVfs::Get().FailSyncs(true);
  auto failed = store_->SplitKey();
  FaultVfs::Get().FailSyncs(false);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_THAT(failed.status().message(), HasSubstr("store the split key"));
  const uint64_t key = *store_->SplitKey();
  Reopen();
  EXPECT_EQ(*store_->SplitKey(), key);
}

INSTANTIATE_TEST_SUITE_P(EveryWrite, SqliteStoreFsyncTest, ::testing::ValuesIn(Writes()),
                         [](const ::testing::TestParamInfo<WriteCase>& info) { return info.param.name; });

TEST_F(SqliteStoreTest, AFailedWriteIsUnavailableAndChangesNothing) {
  Reopen(/*faulty=*/true);
  ASSERT_TRUE(store_->PutJob(Job("job-1")).ok());
  FaultVfs::Get().FailWrites(true);
  const absl::Status s = store_->PutJob(Job("job-2"));
  FaultVfs::Get().FailWrites(false);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("state store: store job job-2: disk I/O error"));
  EXPECT_EQ(store_->LoadJobs()->size(), 1u);
  EXPECT_EQ(Other()->LoadJobs()->size(), 1u);
  ASSERT_TRUE(store_->PutJob(Job("job-2")).ok());
  EXPECT_EQ(Other()->LoadJobs()->size(), 2u);
}

// --- Schema versions and migration ---

void Exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

// Schema 1 as the first coordinators wrote it (user_version 0).
constexpr char kSchemaV1[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, record TEXT NOT NULL);"
    "CREATE TABLE ledger (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, epoch INTEGER NOT NULL, "
    "  dataset TEXT NOT NULL, steps INTEGER NOT NULL, sample_rate REAL NOT NULL, noise_multiplier REAL NOT NULL, "
    "  delta REAL NOT NULL, recorded_ms INTEGER NOT NULL, PRIMARY KEY (job_id, attempt, epoch));"
    "CREATE INDEX ledger_dataset ON ledger (dataset);"
    "CREATE TABLE datasets (name TEXT PRIMARY KEY, record TEXT NOT NULL);"
    "CREATE TABLE budgets (dataset TEXT PRIMARY KEY, epsilon REAL NOT NULL, delta REAL NOT NULL, "
    "  updated_ms INTEGER NOT NULL);"
    "CREATE TABLE checkpoints (job_id TEXT NOT NULL, epoch INTEGER NOT NULL, data BLOB NOT NULL, "
    "  PRIMARY KEY (job_id, epoch));"
    "CREATE TABLE models (job_id TEXT PRIMARY KEY, data BLOB NOT NULL);";

LedgerEntry MechanismRow(int epoch, Mechanism mechanism, double sigma) {
  LedgerEntry e;
  e.job_id = "job-000001";
  e.attempt = 1;
  e.epoch = epoch;
  e.mechanism = mechanism;
  e.dataset = "/data/p.csv";
  e.files = {kFileP};
  e.steps = mechanism == Mechanism::kEval ? 1 : 100;
  e.sample_rate = mechanism == Mechanism::kEval ? 1.0 : 0.01;
  e.noise_multiplier = sigma;
  e.delta = 1e-5;
  e.recorded_ms = epoch;
  return e;
}

// What version 2 added: tokens and the audit trail.
constexpr char kTokensAndAuditV2[] =
    "CREATE TABLE tokens (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, role TEXT NOT NULL, "
    "  sha256 BLOB NOT NULL UNIQUE, created_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX tokens_valid_name ON tokens (name) WHERE revoked_ms = 0;"
    "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, kind TEXT NOT NULL, "
    "  name TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, "
    "  outcome TEXT NOT NULL, detail TEXT NOT NULL);";

// Files an old ledger named by path, for the content-key migration: a.csv,
// a byte-identical copy.csv, and gone.csv, which no longer exists.
struct OldFiles {
  explicit OldFiles(const testing::TempDir& dir)
      : a(dir.Join("a.csv")), copy(dir.Join("copy.csv")), gone(dir.Join("gone.csv")) {
    testing::WriteAll(a, "SERIALNO,SPORDER\n2024HU1,1\n");
    testing::WriteAll(copy, testing::ReadAll(a));
    key = "sha256:" + Sha256Hex(testing::ReadAll(a));
  }
  // A job that read [a, gone] (its record says so), a row of a job with no
  // record left that read the copy, and budgets on all three names. `eval`
  // is the old ledger's mechanism column ("" for a ledger without one).
  std::string Sql(const std::string& mechanism_column) const {
    JobRecord job;
    job.job_id = "job-000101";
    job.name = "old";
    job.data_paths = {a, gone};
    nlohmann::json record = ToJson(job);
    record.erase("input_files");
    const std::string m = mechanism_column.empty() ? "" : "'" + mechanism_column + "', ";
    return "INSERT INTO jobs VALUES ('job-000101', 101, '" + record.dump() + "');" +
           "INSERT INTO ledger VALUES ('job-000101', 1, 1, " + m + "'" + a + "+" + gone +
           "', 10, 0.01, 1.0, 1e-5, 100);"
           "INSERT INTO ledger VALUES ('job-000102', 1, 1, " +
           m + "'" + copy +
           "', 10, 0.01, 1.0, 1e-5, 101);"
           "INSERT INTO budgets VALUES ('" +
           a +
           "', 5.0, 1e-5, 1);"
           "INSERT INTO budgets VALUES ('" +
           copy +
           "', 3.0, 1e-6, 2);"
           "INSERT INTO budgets VALUES ('" +
           gone + "', 7.0, 1e-5, 3);";
  }
  // What the migration must have made of Sql()'s rows (and, on the open
  // that migrated, what it said).
  void Check(Store& store, bool migrated_now = true) const {
    auto on_a = store.LedgerForFile(key);
    ASSERT_TRUE(on_a.ok()) << on_a.status();
    ASSERT_EQ(on_a->size(), 2u) << "a.csv and its copy are one file";
    EXPECT_EQ((*on_a)[0].job_id, "job-000101");
    EXPECT_THAT((*on_a)[0].files, ElementsAre(LegacyPathKey(gone), key)) << "the job's record names both files";
    EXPECT_EQ((*on_a)[1].job_id, "job-000102");
    EXPECT_THAT((*on_a)[1].files, ElementsAre(key));
    auto on_gone = store.LedgerForFile(LegacyPathKey(gone));
    ASSERT_TRUE(on_gone.ok());
    ASSERT_EQ(on_gone->size(), 1u) << "a vanished file keeps its rows under its old path";
    EXPECT_EQ((*on_gone)[0].job_id, "job-000101");
    auto budgets = store.LoadBudgets();
    ASSERT_TRUE(budgets.ok());
    ASSERT_EQ(budgets->size(), 2u);
    std::map<std::string, BudgetRecord> by_file;
    for (const BudgetRecord& b : *budgets) by_file[b.file] = b;
    EXPECT_DOUBLE_EQ(by_file[key].epsilon, 3.0) << "two budgets on one content: the smaller holds";
    EXPECT_DOUBLE_EQ(by_file[key].delta, 1e-6);
    EXPECT_DOUBLE_EQ(by_file[LegacyPathKey(gone)].epsilon, 7.0);
    auto paths = store.FilePaths();
    ASSERT_TRUE(paths.ok());
    EXPECT_THAT((*paths)[key], ElementsAre(a, copy)) << "the views name the file by both paths";
    if (!migrated_now) return;
    const std::vector<std::string> notes = store.MigrationNotes();
    ASSERT_EQ(notes.size(), 2u);
    EXPECT_THAT(notes[0], HasSubstr("3 budget(s) moved onto"));
    EXPECT_THAT(notes[0], HasSubstr("(2 hashed")) << "a.csv and its copy, once each";
    EXPECT_THAT(notes[1], HasSubstr("could not be hashed; their charges and budgets stay"));
    EXPECT_THAT(notes[1], HasSubstr(LegacyPathKey(gone) + " (no longer exists)"));
    auto cached = store.CachedContentKey(*StampOf(a));
    ASSERT_TRUE(cached.ok());
    EXPECT_EQ(*cached, key) << "hashed once, during the migration";
  }
  std::string a, copy, gone, key;
};

TEST(SqliteStoreMigrationTest, MigratesAVersionOneDatabase) {
  testing::TempDir dir;
  const OldFiles files(dir);
  JobRecord job;
  job.job_id = "job-000007";
  job.name = "old";
  job.data_paths = {"/data/p.csv"};
  // Schema v1 as the first coordinators wrote it (user_version 0), with a
  // job record from before owners.
  nlohmann::json record = ToJson(job);
  record.erase("owner");
  record.erase("worker_identities");
  Exec(dir.Join("coordinator.db"),
       std::string(kSchemaV1) + "INSERT INTO jobs VALUES ('job-000007', 1, '" + record.dump() +
           "');"
           "INSERT INTO ledger VALUES ('job-000007', 1, 1, '/data/p.csv', 10, 0.01, 1.0, 1e-5, 5);" +
           files.Sql(""));
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto jobs = (*store)->LoadJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].name, "old");
  EXPECT_EQ((*jobs)[0].owner, "") << "a job from before owners is the custodian's alone";
  auto rows = (*store)->LedgerForJob("job-000007");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].mechanism, Mechanism::kTrain) << "a row from before eval releases paid for training";
  EXPECT_THAT((*rows)[0].files, ElementsAre("path:/data/p.csv"));
  files.Check(**store);
  EXPECT_TRUE((*store)->SplitKey().ok());
  // The new tables work.
  TokenRecord t;
  t.name = "alice";
  t.role = "analyst";
  t.sha256 = std::string(32, 'x');
  ASSERT_TRUE((*store)->PutToken(t).ok());
  EXPECT_EQ((*store)->PutToken(t).status().code(), absl::StatusCode::kAlreadyExists);
  AuditRecord a;
  a.action = "SubmitJob";
  ASSERT_TRUE((*store)->AppendAudit(a).ok());
  EXPECT_EQ((*store)->ListAudit(0, 10)->size(), 1u);
}

TEST(SqliteStoreMigrationTest, TrainAndEvalOfOneEpochAreTwoRows) {
  testing::TempDir dir;
  auto store = *Store::Open(dir.path());
  EXPECT_TRUE(*store->Charge(MechanismRow(1, Mechanism::kTrain, 1.1)));
  EXPECT_TRUE(*store->Charge(MechanismRow(1, Mechanism::kEval, 25)));
  EXPECT_FALSE(*store->Charge(MechanismRow(1, Mechanism::kEval, 25))) << "idempotent per mechanism";
  auto rows = *store->LedgerForJob("job-000001");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].mechanism, Mechanism::kTrain);
  EXPECT_EQ(rows[1].mechanism, Mechanism::kEval);
  EXPECT_DOUBLE_EQ(rows[1].noise_multiplier, 25);
  EXPECT_STREQ(MechanismName(Mechanism::kEval), "eval");
  EXPECT_STREQ(MechanismName(Mechanism::kTrain), "train");
}

// A state directory from before eval releases: its ledger rows were all
// training charges, keyed by (job, attempt, epoch). Opening it migrates the
// table without losing a row, and new eval rows fit next to the old ones.
TEST(SqliteStoreMigrationTest, OldLedgersMigrateAsTrainingChargesAndTakeEvalRows) {
  testing::TempDir dir;
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir.path() + "/coordinator.db").c_str(), &db), SQLITE_OK);
    const char* old_schema =
        "CREATE TABLE ledger (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, "
        "  epoch INTEGER NOT NULL, dataset TEXT NOT NULL, steps INTEGER NOT NULL, "
        "  sample_rate REAL NOT NULL, noise_multiplier REAL NOT NULL, delta REAL NOT NULL, "
        "  recorded_ms INTEGER NOT NULL, PRIMARY KEY (job_id, attempt, epoch));"
        "CREATE INDEX ledger_dataset ON ledger (dataset);"
        "INSERT INTO ledger VALUES ('job-000001', 1, 1, '/data/p.csv', 100, 0.01, 1.1, 1e-5, 1);"
        "INSERT INTO ledger VALUES ('job-000001', 1, 2, '/data/p.csv', 100, 0.01, 1.1, 1e-5, 2);";
    ASSERT_EQ(sqlite3_exec(db, old_schema, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  for (int open = 0; open < 2; ++open) {  // the second open finds the new schema
    auto store = Store::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    auto rows = *(*store)->LedgerForFile("path:/data/p.csv");
    ASSERT_GE(rows.size(), 2u);
    EXPECT_EQ(rows[0].epoch, 1);
    EXPECT_EQ(rows[0].mechanism, Mechanism::kTrain);
    EXPECT_EQ(rows[0].steps, 100);
    EXPECT_DOUBLE_EQ(rows[0].noise_multiplier, 1.1);
    EXPECT_EQ(rows[1].mechanism, Mechanism::kTrain);
    if (open == 0) {
      EXPECT_EQ(rows.size(), 2u);
      LedgerEntry eval = MechanismRow(1, Mechanism::kEval, 25);
      eval.files = {"path:/data/p.csv"};
      eval.recorded_ms = 10;  // listed after the migrated rows
      EXPECT_TRUE(*(*store)->Charge(eval)) << "an eval row next to a migrated one";
    } else {
      ASSERT_EQ(rows.size(), 3u);
      EXPECT_EQ(rows[2].epoch, 1);
      EXPECT_EQ(rows[2].mechanism, Mechanism::kEval);
    }
  }
}

TEST(SqliteStoreMigrationTest, SplitKeyIsDrawnOnceAndKept) {
  testing::TempDir a, b;
  uint64_t first = 0;
  {
    auto store = *Store::Open(a.path());
    first = *store->SplitKey();
    EXPECT_EQ(*store->SplitKey(), first);
  }
  auto reopened = *Store::Open(a.path());
  EXPECT_EQ(*reopened->SplitKey(), first) << "survives a restart";
  auto other = *Store::Open(b.path());
  EXPECT_NE(*other->SplitKey(), first) << "another coordinator draws its own (2^-64 to collide)";
}

// The unnumbered schema of the privacy-engine line (user_version 0): the
// ledger already had its mechanism column, eval rows and a split key. The
// chain keeps all three and adds tokens and audit.
TEST(SqliteStoreMigrationTest, MigratesAnUnnumberedDatabaseThatHadEvalRowsAndASplitKey) {
  testing::TempDir dir;
  const OldFiles files(dir);
  const std::string key(8, '\x5a');
  Exec(dir.Join("coordinator.db"),
       "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
       "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, record TEXT NOT NULL);"
       "CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);"
       "CREATE TABLE datasets (name TEXT PRIMARY KEY, record TEXT NOT NULL);"
       "CREATE TABLE budgets (dataset TEXT PRIMARY KEY, epsilon REAL NOT NULL, delta REAL NOT NULL, "
       "  updated_ms INTEGER NOT NULL);"
       "CREATE TABLE checkpoints (job_id TEXT NOT NULL, epoch INTEGER NOT NULL, data BLOB NOT NULL, "
       "  PRIMARY KEY (job_id, epoch));"
       "CREATE TABLE models (job_id TEXT PRIMARY KEY, data BLOB NOT NULL);"
       "CREATE TABLE ledger (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, epoch INTEGER NOT NULL, "
       "  mechanism TEXT NOT NULL DEFAULT 'train', dataset TEXT NOT NULL, steps INTEGER NOT NULL, "
       "  sample_rate REAL NOT NULL, noise_multiplier REAL NOT NULL, delta REAL NOT NULL, "
       "  recorded_ms INTEGER NOT NULL, PRIMARY KEY (job_id, attempt, epoch, mechanism));"
       "CREATE INDEX ledger_dataset ON ledger (dataset);"
       "INSERT INTO secrets VALUES ('split_key', x'5a5a5a5a5a5a5a5a');"
       "INSERT INTO ledger VALUES ('job-000001', 1, 1, 'train', '/data/p.csv', 100, 0.01, 1.1, 1e-5, 1);"
       "INSERT INTO ledger VALUES ('job-000001', 1, 1, 'eval', '/data/p.csv', 1, 1.0, 25, 1e-5, 2);" +
           files.Sql("train"));
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto rows = (*store)->LedgerForJob("job-000001");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].mechanism, Mechanism::kTrain);
  EXPECT_EQ((*rows)[1].mechanism, Mechanism::kEval);
  EXPECT_DOUBLE_EQ((*rows)[1].noise_multiplier, 25);
  files.Check(**store);
  uint64_t kept = 0;
  std::memcpy(&kept, key.data(), sizeof(kept));
  EXPECT_EQ(*(*store)->SplitKey(), kept) << "the held-out persons stay the same across the upgrade";
  TokenRecord t;
  t.name = "alice";
  t.role = "analyst";
  t.sha256 = std::string(32, 'y');
  EXPECT_TRUE((*store)->PutToken(t).ok());
}

// Version 2 (tokens and audit, before eval releases): its tokens survive
// and its ledger rows become training charges.
TEST(SqliteStoreMigrationTest, MigratesAVersionTwoDatabase) {
  testing::TempDir dir;
  const OldFiles files(dir);
  Exec(dir.Join("coordinator.db"),
       std::string(kSchemaV1) + kTokensAndAuditV2 +
           "INSERT INTO tokens (name, role, sha256, created_ms) VALUES ('admin', 'custodian', x'00', 1);"
           "INSERT INTO ledger VALUES ('job-000002', 1, 1, '/data/p.csv', 10, 0.01, 1.0, 1e-5, 5);" +
           files.Sql("") + "PRAGMA user_version = 2;");
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto tokens = (*store)->ListTokens();
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 1u);
  EXPECT_EQ((*tokens)[0].name, "admin");
  auto rows = (*store)->LedgerForJob("job-000002");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].mechanism, Mechanism::kTrain);
  files.Check(**store);
  EXPECT_TRUE(*(*store)->Charge(MechanismRow(1, Mechanism::kEval, 25)));
}

// Version 3 (eval rows and the split key, every charge and budget keyed by
// the data's path string): the last schema before content keys.
TEST(SqliteStoreMigrationTest, MigratesAVersionThreeDatabase) {
  testing::TempDir dir;
  const OldFiles files(dir);
  Exec(dir.Join("coordinator.db"),
       std::string(kSchemaV1) + kTokensAndAuditV2 +
           "CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);"
           "DROP TABLE ledger;"
           "CREATE TABLE ledger (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, epoch INTEGER NOT NULL, "
           "  mechanism TEXT NOT NULL DEFAULT 'train', dataset TEXT NOT NULL, steps INTEGER NOT NULL, "
           "  sample_rate REAL NOT NULL, noise_multiplier REAL NOT NULL, delta REAL NOT NULL, "
           "  recorded_ms INTEGER NOT NULL, PRIMARY KEY (job_id, attempt, epoch, mechanism));" +
           files.Sql("eval") + "PRAGMA user_version = 3;");
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  files.Check(**store);
  auto rows = (*store)->LedgerForFile(files.key);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].mechanism, Mechanism::kEval) << "the mechanism survives";
  // Reopened: already version 4, nothing to migrate and nothing to say.
  store->reset();
  auto again = Store::Open(dir.path());
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)->MigrationNotes().empty());
  files.Check(**again, /*migrated_now=*/false);
}

TEST(SqliteStoreMigrationTest, RefusesADatabaseFromANewerVersion) {
  testing::TempDir dir;
  Exec(dir.Join("coordinator.db"), "PRAGMA user_version = 99;");
  auto store = Store::Open(dir.path());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("schema version 99"));
}

// A migration the disk refuses (its commit's fsync fails) is Unavailable,
// names the step, and leaves the old schema whole: the next start migrates.
TEST(SqliteStoreMigrationTest, AMigrationTheDiskRefusesLeavesTheOldVersion) {
  testing::TempDir dir;
  Exec(dir.Join("coordinator.db"), std::string("PRAGMA journal_mode=WAL;") + kSchemaV1 +
                                       "INSERT INTO ledger VALUES ('job-000002', 1, 1, '/data/p.csv', 10, 0.01, 1.0, "
                                       "1e-5, 5);");
  SqliteStoreOptions faulty;
  faulty.vfs = FaultVfs::Get().Name();
  FaultVfs::Get().FailSyncs(true);
  auto refused = SqliteStore::Open(dir.path(), faulty);
  FaultVfs::Get().Clear();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("migrate the state database from schema version 0"));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.Join("coordinator.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), 0) << "the old version stays";
  sqlite3_finalize(st);
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = 'tokens'", -1, &st, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), 0) << "no table of the refused migration";
  sqlite3_finalize(st);
  sqlite3_close(db);
  auto store = SqliteStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_EQ((*store)->LedgerForJob("job-000002")->size(), 1u);
  EXPECT_EQ((*store)->LedgerForJob("job-000002")->at(0).mechanism, Mechanism::kTrain);
}

// Version 4 (content keys) had no job logs: a database of that schema
// keeps its jobs and gains empty logs that take lines at once.
TEST(SqliteStoreMigrationTest, MigratesAVersionFourDatabase) {
  testing::TempDir dir;
  {
    auto store = Store::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    JobRecord job;
    job.job_id = "job-000001";
    job.name = "kept";
    ASSERT_TRUE((*store)->PutJob(job).ok());
  }
  Exec(dir.Join("coordinator.db"),
       "DROP TABLE job_logs; DROP TABLE job_log_stats; DROP TABLE audit_reports; PRAGMA user_version = 4;");
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto jobs = (*store)->LoadJobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].name, "kept");
  EXPECT_TRUE((*jobs)[0].attempts.empty()) << "a record from before attempt histories has none";
  auto empty = (*store)->ReadJobLogs("job-000001", LogQuery{});
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->lines.empty());
  EXPECT_EQ(empty->last_seq, 0);
  LogLine l;
  l.message = "attempt 1 rank 0 of 1 started";
  auto appended = (*store)->AppendJobLogs("job-000001", {l}, LogLimits{}, 0);
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(appended->stored, 1);
  auto page = (*store)->ReadJobLogs("job-000001", LogQuery{});
  ASSERT_EQ(page->lines.size(), 1u);
  EXPECT_EQ(page->lines[0].seq, 1);
  store->reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.Join("coordinator.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), Store::kSchemaVersion);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// Version 5 had no audit reports: a database of that schema keeps its jobs
// and logs, has no report for any job, and stores one with a run's end.
TEST(SqliteStoreMigrationTest, MigratesAVersionFiveDatabase) {
  testing::TempDir dir;
  {
    auto store = Store::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    JobRecord job;
    job.job_id = "job-000001";
    job.name = "kept";
    ASSERT_TRUE((*store)->PutJob(job).ok());
    LogLine l;
    l.message = "run finished";
    ASSERT_TRUE((*store)->AppendJobLogs("job-000001", {l}, LogLimits{}, 0).ok());
  }
  Exec(dir.Join("coordinator.db"), "DROP TABLE audit_reports; PRAGMA user_version = 5;");
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto jobs = (*store)->LoadJobs();
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].name, "kept");
  EXPECT_FALSE((*jobs)[0].audit.has_value()) << "a record from before audits is a training job";
  EXPECT_EQ((*store)->ReadJobLogs("job-000001", LogQuery{})->lines.size(), 1u);
  auto none = (*store)->ReadAuditReport("job-000001");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  JobCommit end;
  end.job = (*jobs)[0];
  end.job.job_id = "job-000002";
  end.job.state = JobState::kSucceeded;
  end.job.audit = AuditOrder{};
  end.job.audit->target = "job-000001";
  end.job.audit->reported_epsilon = 1.25;
  end.audit_report = R"({"job_id":"job-000001"})";
  ASSERT_TRUE((*store)->CommitJob(end).ok());
  store->reset();
  store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->MigrationNotes().empty()) << "already the current version";
  auto report = (*store)->ReadAuditReport("job-000002");
  ASSERT_TRUE(report.ok() && report->has_value());
  EXPECT_EQ(**report, end.audit_report);
  auto back = (*store)->LoadJobs();
  ASSERT_EQ(back->size(), 2u);
  ASSERT_TRUE((*back)[1].audit.has_value());
  EXPECT_EQ((*back)[1].audit->target, "job-000001");
  EXPECT_DOUBLE_EQ(*(*back)[1].audit->reported_epsilon, 1.25);
}

// A batch of log lines is one transaction: a failed fsync stores none of
// it and uses no seq.
TEST(SqliteStoreLogTest, AFailedLogWriteStoresNothing) {
  testing::TempDir dir;
  SqliteStoreOptions faulty;
  faulty.vfs = FaultVfs::Get().Name();
  auto store = SqliteStore::Open(dir.path(), faulty);
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<LogLine> lines(2);
  lines[0].message = "a";
  lines[1].message = "b";
  FaultVfs::Get().FailSyncs(true);
  auto refused = (*store)->AppendJobLogs("job-000001", lines, LogLimits{}, 0);
  FaultVfs::Get().Clear();
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  auto page = (*store)->ReadJobLogs("job-000001", LogQuery{});
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->lines.empty());
  ASSERT_TRUE((*store)->AppendJobLogs("job-000001", lines, LogLimits{}, 0).ok());
  page = (*store)->ReadJobLogs("job-000001", LogQuery{});
  ASSERT_EQ(page->lines.size(), 2u);
  EXPECT_EQ(page->lines[0].seq, 1);
}

}  // namespace
}  // namespace dpfleet::server
