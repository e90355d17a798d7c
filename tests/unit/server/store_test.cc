// The coordinator's SQLite store (server/core/store.h): the ledger's
// mechanism column and its charge -> file rows, budgets per file, the
// content-key cache, the secret split key, and the schema migration — a
// database of every older schema (the first, unnumbered one; the
// unnumbered one of the privacy-engine line, which had the mechanism column
// and the split key; version 2, with tokens and audit; version 3, with
// eval rows, all keyed by path strings) opens, keeps its jobs, ledger and
// secrets, moves its charges and budgets onto the content of the files
// they named, and gains what it lacked; a newer one is refused.
#include "server/core/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstring>
#include <map>
#include <string>

#include "common/sha256.h"
#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

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

// What version 2 added: tokens and the audit trail.
constexpr char kTokensAndAuditV2[] =
    "CREATE TABLE tokens (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, role TEXT NOT NULL, "
    "  sha256 BLOB NOT NULL UNIQUE, created_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX tokens_valid_name ON tokens (name) WHERE revoked_ms = 0;"
    "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, kind TEXT NOT NULL, "
    "  name TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, "
    "  outcome TEXT NOT NULL, detail TEXT NOT NULL);";

LedgerEntry Row(int epoch, Mechanism mechanism, double sigma) {
  LedgerEntry e;
  e.job_id = "job-000001";
  e.attempt = 1;
  e.epoch = epoch;
  e.mechanism = mechanism;
  e.dataset = "/data/p.csv";
  e.files = {"sha256:" + std::string(64, 'a')};
  e.steps = mechanism == Mechanism::kEval ? 1 : 100;
  e.sample_rate = mechanism == Mechanism::kEval ? 1.0 : 0.01;
  e.noise_multiplier = sigma;
  e.delta = 1e-5;
  e.recorded_ms = epoch;
  return e;
}


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
           "INSERT INTO ledger VALUES ('job-000102', 1, 1, " + m + "'" + copy + "', 10, 0.01, 1.0, 1e-5, 101);"
           "INSERT INTO budgets VALUES ('" + a + "', 5.0, 1e-5, 1);"
           "INSERT INTO budgets VALUES ('" + copy + "', 3.0, 1e-6, 2);"
           "INSERT INTO budgets VALUES ('" + gone + "', 7.0, 1e-5, 3);";
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
    ASSERT_EQ(store.migration_notes().size(), 2u);
    EXPECT_THAT(store.migration_notes()[0], HasSubstr("3 budget(s) moved onto"));
    EXPECT_THAT(store.migration_notes()[0], HasSubstr("(2 hashed")) << "a.csv and its copy, once each";
    EXPECT_THAT(store.migration_notes()[1], HasSubstr("could not be hashed; their charges and budgets stay"));
    EXPECT_THAT(store.migration_notes()[1], HasSubstr(LegacyPathKey(gone) + " (no longer exists)"));
    auto cached = store.CachedContentKey(*StampOf(a));
    ASSERT_TRUE(cached.ok());
    EXPECT_EQ(*cached, key) << "hashed once, during the migration";
  }
  std::string a, copy, gone, key;
};

TEST(StoreTest, MigratesAVersionOneDatabase) {
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
       std::string(kSchemaV1) +
       "INSERT INTO jobs VALUES ('job-000007', 1, '" + record.dump() + "');"
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

TEST(StoreTest, TrainAndEvalOfOneEpochAreTwoRows) {
  testing::TempDir dir;
  auto store = *Store::Open(dir.path());
  EXPECT_TRUE(*store->Charge(Row(1, Mechanism::kTrain, 1.1)));
  EXPECT_TRUE(*store->Charge(Row(1, Mechanism::kEval, 25)));
  EXPECT_FALSE(*store->Charge(Row(1, Mechanism::kEval, 25))) << "idempotent per mechanism";
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
TEST(StoreTest, OldLedgersMigrateAsTrainingChargesAndTakeEvalRows) {
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
      LedgerEntry eval = Row(1, Mechanism::kEval, 25);
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

TEST(StoreTest, SplitKeyIsDrawnOnceAndKept) {
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
TEST(StoreTest, MigratesAnUnnumberedDatabaseThatHadEvalRowsAndASplitKey) {
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
TEST(StoreTest, MigratesAVersionTwoDatabase) {
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
  EXPECT_TRUE(*(*store)->Charge(Row(1, Mechanism::kEval, 25)));
}

// Version 3 (eval rows and the split key, every charge and budget keyed by
// the data's path string): the last schema before content keys.
TEST(StoreTest, MigratesAVersionThreeDatabase) {
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
  EXPECT_TRUE((*again)->migration_notes().empty());
  files.Check(**again, /*migrated_now=*/false);
}

TEST(StoreTest, RefusesADatabaseFromANewerVersion) {
  testing::TempDir dir;
  Exec(dir.Join("coordinator.db"), "PRAGMA user_version = 99;");
  auto store = Store::Open(dir.path());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("schema version 99"));
}

}  // namespace
}  // namespace dpfleet::server
