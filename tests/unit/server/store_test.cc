// The state store's schema migration (server/core/store.h): a database of
// the first, unnumbered schema opens, keeps its jobs and ledger and gains
// the token and audit tables; a newer one is refused.
#include "server/core/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

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
       "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
       "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, record TEXT NOT NULL);"
       "CREATE TABLE ledger (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, epoch INTEGER NOT NULL, "
       "  dataset TEXT NOT NULL, steps INTEGER NOT NULL, sample_rate REAL NOT NULL, noise_multiplier REAL NOT NULL, "
       "  delta REAL NOT NULL, recorded_ms INTEGER NOT NULL, PRIMARY KEY (job_id, attempt, epoch));"
       "CREATE TABLE datasets (name TEXT PRIMARY KEY, record TEXT NOT NULL);"
       "CREATE TABLE budgets (dataset TEXT PRIMARY KEY, epsilon REAL NOT NULL, delta REAL NOT NULL, "
       "  updated_ms INTEGER NOT NULL);"
       "INSERT INTO jobs VALUES ('job-000007', 1, '" + record.dump() + "');"
       "INSERT INTO ledger VALUES ('job-000007', 1, 1, '/data/p.csv', 10, 0.01, 1.0, 1e-5, 5);");
  auto store = Store::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto jobs = (*store)->LoadJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].name, "old");
  EXPECT_EQ((*jobs)[0].owner, "") << "a job from before owners is the custodian's alone";
  EXPECT_EQ((*store)->LedgerForJob("job-000007")->size(), 1u);
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

TEST(StoreTest, RefusesADatabaseFromANewerVersion) {
  testing::TempDir dir;
  Exec(dir.Join("coordinator.db"), "PRAGMA user_version = 99;");
  auto store = Store::Open(dir.path());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("schema version 99"));
}

}  // namespace
}  // namespace dpfleet::server
