#include "server/core/sqlite_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "tests/testing/server/fault_vfs.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::dpfleet::testing::FaultVfs;
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

LedgerEntry Row(const std::string& job, int attempt, int epoch, const std::string& dataset = "/data/p.csv") {
  LedgerEntry e;
  e.job_id = job;
  e.attempt = attempt;
  e.epoch = epoch;
  e.dataset = dataset;
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
  EXPECT_TRUE(*store_->Charge(Row("job-2", 1, 1, "/data/q.csv")));
  auto rows = store_->LedgerForJob("job-1");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[1].attempt, 2);
  EXPECT_EQ((*rows)[1].noise_multiplier, 1.1);
  EXPECT_EQ(store_->LedgerForDataset("/data/p.csv")->size(), 2u);
  EXPECT_EQ(*store_->LedgerDatasets(), (std::vector<std::string>{"/data/p.csv", "/data/q.csv"}));
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
  ASSERT_TRUE(store_->PutBudget({"/data/p.csv", 3.0, 1e-5, 7}).ok());
  ASSERT_TRUE(store_->PutBudget({"/data/p.csv", 4.0, 1e-6, 8}).ok());
  Reopen();
  EXPECT_EQ(*store_->LoadDatasets(), (std::vector<std::string>{"{\"name\":\"a\",\"v\":2}", "{\"name\":\"b\"}"}));
  ASSERT_TRUE(store_->DeleteDataset("a").ok());
  EXPECT_EQ(store_->LoadDatasets()->size(), 1u);
  auto budgets = store_->LoadBudgets();
  ASSERT_EQ(budgets->size(), 1u);
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
};

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
      {"PutBudget", "store the budget of /data/p.csv",
       [](Store& s) {
         return s.PutBudget({"/data/p.csv", 1, 1e-5, 0});
       },
       [](Store& s) { return !s.LoadBudgets()->empty(); }},
  };
}

void PrintTo(const WriteCase& w, std::ostream* os) { *os << w.name; }

class SqliteStoreFsyncTest : public SqliteStoreTest, public ::testing::WithParamInterface<WriteCase> {};

TEST_P(SqliteStoreFsyncTest, AFailedFsyncFailsTheWriteAndLeavesNothingVisible) {
  Reopen(/*faulty=*/true);
  ASSERT_TRUE(store_->PutJob(Job("job-1")).ok());
  const WriteCase& w = GetParam();
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

}  // namespace
}  // namespace dpfleet::server
