#include "server/rpc/convert.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace dpfleet::server {
namespace {

TEST(ConvertTest, EveryStatusCodeKeepsItsCodeAndMessage) {
  EXPECT_TRUE(ToGrpc(absl::OkStatus()).ok());
  const std::pair<absl::Status, grpc::StatusCode> cases[] = {
      {absl::InvalidArgumentError("training.epochs: '-3' must be positive"), grpc::StatusCode::INVALID_ARGUMENT},
      {absl::NotFoundError("job 'x' not found"), grpc::StatusCode::NOT_FOUND},
      {absl::FailedPreconditionError("job 'x' is QUEUED, not RUNNING"), grpc::StatusCode::FAILED_PRECONDITION},
      {absl::UnavailableError("state store: store job x: disk I/O error"), grpc::StatusCode::UNAVAILABLE},
      {absl::DeadlineExceededError("not published in time"), grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::PermissionDeniedError("not a file of rank 1"), grpc::StatusCode::PERMISSION_DENIED},
      {absl::AlreadyExistsError("dataset 'd' is already registered"), grpc::StatusCode::ALREADY_EXISTS},
      {absl::InternalError("state store: constraint"), grpc::StatusCode::INTERNAL},
      {absl::DataLossError("a job record is not JSON"), grpc::StatusCode::DATA_LOSS},
      {absl::AbortedError("closed"), grpc::StatusCode::ABORTED},
      {absl::CancelledError("caller went away"), grpc::StatusCode::CANCELLED},
      {absl::ResourceExhaustedError("busy"), grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::UnimplementedError("no"), grpc::StatusCode::UNIMPLEMENTED},
      {absl::UnauthenticatedError("who"), grpc::StatusCode::UNAUTHENTICATED},
      {absl::OutOfRangeError("far"), grpc::StatusCode::OUT_OF_RANGE},
      {absl::UnknownError("?"), grpc::StatusCode::UNKNOWN},
  };
  for (const auto& [in, code] : cases) {
    const grpc::Status out = ToGrpc(in);
    EXPECT_EQ(out.error_code(), code) << in;
    EXPECT_EQ(out.error_message(), in.message());
  }
}

TEST(ConvertTest, JobStatesMapOneToOne) {
  EXPECT_EQ(ToProto(JobState::kQueued), v1::QUEUED);
  EXPECT_EQ(ToProto(JobState::kRunning), v1::RUNNING);
  EXPECT_EQ(ToProto(JobState::kSucceeded), v1::SUCCEEDED);
  EXPECT_EQ(ToProto(JobState::kFailed), v1::FAILED);
  EXPECT_EQ(ToProto(JobState::kCancelled), v1::CANCELLED);
}

TEST(ConvertTest, AJobRecordBecomesAJobWithEveryField) {
  JobRecord r;
  r.job_id = "job-000007";
  r.name = "n";
  r.state = JobState::kRunning;
  r.spec_yaml = "name: n\n";
  r.epochs = 5;
  r.epochs_done = 2;
  r.epsilon = 1.25;
  r.delta = 1e-5;
  r.noise_multiplier = 1.1;
  r.accountant = "pld";
  r.sample_rate = 0.01;
  r.steps_per_epoch = 100;
  r.train_rows = 10000;
  r.world_size = 2;
  r.reason = "why";
  r.created_ms = 1;
  r.started_ms = 2;
  r.finished_ms = 3;
  r.attempt = 4;
  r.worker_ids = {"w-a", "w-b"};
  EpochRecord e;
  e.epoch = 1;
  e.eval_loss = 0.5;
  e.eval_accuracy = 0.75;
  e.eval_auc = 0.8;
  e.eval_balanced_accuracy = 0.7;
  e.majority_rate = 0.6;
  e.epsilon = 0.9;
  e.steps = 100;
  e.train_seconds = 1.5;
  r.history = {e};
  v1::Job j;
  ToProto(r, &j);
  EXPECT_EQ(j.job_id(), "job-000007");
  EXPECT_EQ(j.name(), "n");
  EXPECT_EQ(j.state(), v1::RUNNING);
  EXPECT_EQ(j.spec_yaml(), "name: n\n");
  EXPECT_EQ(j.epochs(), 5);
  EXPECT_EQ(j.epochs_done(), 2);
  EXPECT_EQ(j.epsilon(), 1.25);
  EXPECT_EQ(j.delta(), 1e-5);
  EXPECT_EQ(j.noise_multiplier(), 1.1);
  EXPECT_EQ(j.accountant(), "pld");
  EXPECT_EQ(j.sample_rate(), 0.01);
  EXPECT_EQ(j.steps_per_epoch(), 100);
  EXPECT_EQ(j.train_rows(), 10000);
  EXPECT_EQ(j.world_size(), 2);
  EXPECT_EQ(j.reason(), "why");
  EXPECT_EQ(j.created_unix_ms(), 1);
  EXPECT_EQ(j.started_unix_ms(), 2);
  EXPECT_EQ(j.finished_unix_ms(), 3);
  EXPECT_EQ(j.attempt(), 4);
  ASSERT_EQ(j.worker_ids_size(), 2);
  EXPECT_EQ(j.worker_ids(1), "w-b");
  ASSERT_EQ(j.history_size(), 1);
  // Epoch metrics survive the trip to the wire and back.
  const EpochRecord back = FromProto(j.history(0));
  EXPECT_EQ(ToJson(back), ToJson(e));
}

TEST(ConvertTest, WorkersAndBudgetsBecomeTheirMessages) {
  WorkerRecord w;
  w.worker_id = "w-1";
  w.hostname = "h";
  w.device = "cuda:0";
  w.pid = 42;
  w.job_id = "job-1";
  w.attempt = 2;
  w.rank = 1;
  w.registered_ms = 10;
  w.last_heartbeat_ms = 20;
  for (const auto& [state, proto] : {std::pair{WorkerState::kIdle, v1::IDLE}, std::pair{WorkerState::kBusy, v1::BUSY},
                                     std::pair{WorkerState::kLost, v1::LOST}}) {
    w.state = state;
    v1::WorkerInfo out;
    ToProto(w, &out);
    EXPECT_EQ(out.state(), proto);
    EXPECT_EQ(out.worker_id(), "w-1");
    EXPECT_EQ(out.hostname(), "h");
    EXPECT_EQ(out.device(), "cuda:0");
    EXPECT_EQ(out.pid(), 42);
    EXPECT_EQ(out.job_id(), "job-1");
    EXPECT_EQ(out.attempt(), 2);
    EXPECT_EQ(out.rank(), 1);
    EXPECT_EQ(out.registered_unix_ms(), 10);
    EXPECT_EQ(out.last_heartbeat_unix_ms(), 20);
  }
  BudgetView b;
  b.file = "sha256:" + std::string(64, 'd');
  b.names = {"acs", "/d.csv"};
  b.has_budget = true;
  b.epsilon_budget = 3;
  b.delta = 1e-6;
  b.spent = 1;
  b.committed = 2;
  b.remaining = 1;
  b.jobs = 4;
  v1::DatasetBudget out;
  ToProto(b, &out);
  EXPECT_EQ(out.file(), b.file);
  EXPECT_THAT(out.names(), ::testing::ElementsAre("acs", "/d.csv"));
  EXPECT_TRUE(out.has_budget());
  EXPECT_EQ(out.epsilon_budget(), 3);
  EXPECT_EQ(out.delta(), 1e-6);
  EXPECT_EQ(out.epsilon_spent(), 1);
  EXPECT_EQ(out.epsilon_committed(), 2);
  EXPECT_EQ(out.epsilon_remaining(), 1);
  EXPECT_EQ(out.jobs(), 4);
}

}  // namespace
}  // namespace dpfleet::server
