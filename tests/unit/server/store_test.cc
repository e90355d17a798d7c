// Tests for the coordinator's SQLite store: the privacy ledger's mechanism
// column (and the migration of ledgers written before it) and the secret
// split key.
#include "server/core/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>

#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

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
TEST(StoreTest, OldLedgersMigrateAsTrainingCharges) {
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

}  // namespace
}  // namespace dpfleet::server
