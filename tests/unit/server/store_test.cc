// The coordinator's SQLite store (server/core/store.h): the ledger's
// mechanism column, the secret split key, and the schema migration — a
// database of every older schema (the first, unnumbered one; the
// unnumbered one of the privacy-engine line, which had the mechanism column
// and the split key; version 2, with tokens and audit) opens, keeps its
// jobs, ledger and secrets and gains what it lacked; a newer one is refused.
#include "server/core/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstring>
#include <string>

#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

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

LedgerEntry Row(int epoch, Mechanism mechanism, double sigma) {
  LedgerEntry e;
  e.job_id = "job-000001";
  e.attempt = 1;
  e.epoch = epoch;
  e.mechanism = mechanism;
  e.dataset = "/data/p.csv";
  e.steps = mechanism == Mechanism::kEval ? 1 : 100;
  e.sample_rate = mechanism == Mechanism::kEval ? 1.0 : 0.01;
  e.noise_multiplier = sigma;
  e.delta = 1e-5;
  e.recorded_ms = epoch;
  return e;
}


TEST(StoreTest, MigratesAVersionOneDatabase) {
  testing::TempDir dir;
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
       "INSERT INTO ledger VALUES ('job-000007', 1, 1, '/data/p.csv', 10, 0.01, 1.0, 1e-5, 5);");
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto jobs = (*store)->LoadJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].name, "old");
  EXPECT_EQ((*jobs)[0].owner, "") << "a job from before owners is the custodian's alone";
  auto rows = (*store)->LedgerForJob("job-000007");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].mechanism, Mechanism::kTrain) << "a row from before eval releases paid for training";
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
    auto rows = *(*store)->LedgerForDataset("/data/p.csv");
    ASSERT_GE(rows.size(), 2u);
    EXPECT_EQ(rows[0].epoch, 1);
    EXPECT_EQ(rows[0].mechanism, Mechanism::kTrain);
    EXPECT_EQ(rows[0].steps, 100);
    EXPECT_DOUBLE_EQ(rows[0].noise_multiplier, 1.1);
    EXPECT_EQ(rows[1].mechanism, Mechanism::kTrain);
    if (open == 0) {
      EXPECT_EQ(rows.size(), 2u);
      LedgerEntry eval = Row(1, Mechanism::kEval, 25);
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
       "INSERT INTO ledger VALUES ('job-000001', 1, 1, 'eval', '/data/p.csv', 1, 1.0, 25, 1e-5, 2);");
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto rows = (*store)->LedgerForJob("job-000001");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].mechanism, Mechanism::kTrain);
  EXPECT_EQ((*rows)[1].mechanism, Mechanism::kEval);
  EXPECT_DOUBLE_EQ((*rows)[1].noise_multiplier, 25);
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
  Exec(dir.Join("coordinator.db"),
       std::string(kSchemaV1) +
           "CREATE TABLE tokens (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, role TEXT NOT NULL, "
           "  sha256 BLOB NOT NULL UNIQUE, created_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL DEFAULT 0);"
           "CREATE UNIQUE INDEX tokens_valid_name ON tokens (name) WHERE revoked_ms = 0;"
           "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, kind TEXT NOT NULL, "
           "  name TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, "
           "  outcome TEXT NOT NULL, detail TEXT NOT NULL);"
           "INSERT INTO tokens (name, role, sha256, created_ms) VALUES ('admin', 'custodian', x'00', 1);"
           "INSERT INTO ledger VALUES ('job-000002', 1, 1, '/data/p.csv', 10, 0.01, 1.0, 1e-5, 5);"
           "PRAGMA user_version = 2;");
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
  EXPECT_TRUE(*(*store)->Charge(Row(1, Mechanism::kEval, 25)));
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
