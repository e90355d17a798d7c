// RunAssignment (worker/agent/run) against a scripted coordinator over an
// in-process channel: the order the privacy claim rests on (charge an
// epoch, then train it, then charge its eval release, then release its
// metrics), what a refused or
// unreachable charge does, stop orders, cancels, and resuming from a
// checkpoint. Real training on a small synthetic PUMS file.
#include "worker/agent/run.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/pums/synth.h"
#include "common/spec/job_spec.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/worker/fake_coordinator.h"

namespace dpfleet::worker {
namespace {

using ::dpfleet::testing::FakeCoordinator;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class RunTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new std::string(data_dir_.Join("pums.csv"));
    ASSERT_TRUE(data::WriteSyntheticPums({/*rows=*/3000, /*seed=*/4}, *data_).ok());
  }
  static void TearDownTestSuite() { delete data_; }

  v1::Assignment Assignment(int epochs, int max_attempts = 1, int start_epoch = 0, int attempt = 1) {
    v1::Assignment a;
    a.set_job_id("job-000001");
    a.set_attempt(attempt);
    a.set_rank(0);
    a.set_world_size(1);
    a.set_spec_yaml(absl::StrCat("name: t\ndata: {path: ", *data_, "}\nmodel: {type: logistic}\n",
                                 "training: {epochs: ", epochs, ", batch_size: 200, learning_rate: 0.5}\n",
                                 "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.3, delta: 1.0e-5}\n",
                                 "resources: {workers: 1, max_attempts: ", max_attempts, "}\n"));
    a.set_noise_multiplier(1.3);
    a.add_data_paths(*data_);
    a.set_start_epoch(start_epoch);
    return a;
  }
  RunContext Context() {
    RunContext ctx;
    ctx.stub = v1::WorkerService::NewStub(coordinator_.channel());
    ctx.worker_id = [] { return std::string("w-fake"); };
    ctx.work_dir = work_.path();
    ctx.threads = 1;
    ctx.coordinator_patience = absl::Seconds(20);
    ctx.cancel = &cancel_;
    return ctx;
  }

  static testing::TempDir data_dir_;
  static std::string* data_;
  testing::TempDir work_;
  FakeCoordinator coordinator_;
  std::atomic<bool> cancel_{false};
};

testing::TempDir RunTest::data_dir_;
std::string* RunTest::data_ = nullptr;

TEST_F(RunTest, EveryEpochIsChargedBeforeItTrainsAndItsMetricsAreReleased) {
  ASSERT_TRUE(RunAssignment(Assignment(2), Context()).ok());
  EXPECT_THAT(coordinator_.calls(), ElementsAre("charge 1", "charge eval 1", "progress 1", "charge 2", "charge eval 2",
                                                "progress 2", "upload"));
  std::vector<v1::ChargeBudgetRequest> charges, evals;
  for (const v1::ChargeBudgetRequest& c : coordinator_.charges()) {
    (c.mechanism() == v1::MECHANISM_EVAL ? evals : charges).push_back(c);
  }
  const auto reports = coordinator_.reports();
  ASSERT_EQ(charges.size(), 2u);
  ASSERT_EQ(evals.size(), 2u);
  ASSERT_EQ(reports.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    // The eval release: the Gaussian mechanism on the whole eval split.
    EXPECT_EQ(evals[i].epoch(), i + 1);
    EXPECT_EQ(evals[i].steps(), 1);
    EXPECT_DOUBLE_EQ(evals[i].sample_rate(), 1.0);
    EXPECT_DOUBLE_EQ(evals[i].noise_multiplier(), kDefaultEvalNoiseMultiplier);
    EXPECT_EQ(charges[i].job_id(), "job-000001");
    EXPECT_EQ(charges[i].attempt(), 1);
    EXPECT_EQ(charges[i].epoch(), i + 1);
    EXPECT_DOUBLE_EQ(charges[i].noise_multiplier(), 1.3) << "the coordinator's σ, not a local one";
    // q = B/N and steps = round(N/B) of the same N.
    EXPECT_NEAR(charges[i].sample_rate() * charges[i].steps(), 1.0, 0.1);
    EXPECT_EQ(reports[i].metrics().epoch(), i + 1);
    EXPECT_EQ(reports[i].metrics().steps(), (i + 1) * charges[i].steps()) << "steps done so far";
    EXPECT_GT(reports[i].metrics().eval_accuracy(), 0);
    EXPECT_EQ(reports[i].worker_id(), "w-fake");
    EXPECT_TRUE(reports[i].checkpoint().empty()) << "no checkpoints for a job that is not retried";
  }
  EXPECT_FALSE(coordinator_.model().empty());
}

TEST_F(RunTest, ARefusedChargeEndsTheRunBeforeTheEpochTrains) {
  coordinator_.FailCharge(2, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "over its budget"));
  const absl::Status s = RunAssignment(Assignment(3), Context());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("charging the privacy ledger: over its budget"));
  EXPECT_THAT(coordinator_.calls(), ElementsAre("charge 1", "charge eval 1", "progress 1", "charge 2"))
      << "nothing of epoch 2 (nor later) is released, and no model";
}

TEST_F(RunTest, ARefusedEvalChargeReleasesNoMetrics) {
  coordinator_.FailCharge(1, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "over its budget"), 1,
                          v1::MECHANISM_EVAL);
  const absl::Status s = RunAssignment(Assignment(2), Context());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(coordinator_.calls(), ElementsAre("charge 1", "charge eval 1"))
      << "the epoch trained, but no metric of it left the worker";
  EXPECT_TRUE(coordinator_.reports().empty());
}

TEST_F(RunTest, AnUnavailableCoordinatorIsRetriedAndTheEpochChargedOnce) {
  coordinator_.FailCharge(1, grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting"), /*times=*/2);
  ASSERT_TRUE(RunAssignment(Assignment(1), Context()).ok());
  EXPECT_THAT(coordinator_.calls(),
              ElementsAre("charge 1", "charge 1", "charge 1", "charge eval 1", "progress 1", "upload"));
}

TEST_F(RunTest, ACoordinatorThatStaysAwayFailsTheRunAfterItsPatience) {
  coordinator_.FailCharge(1, grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone"), /*times=*/1000);
  RunContext ctx = Context();
  ctx.coordinator_patience = absl::Milliseconds(300);
  const absl::Status s = RunAssignment(Assignment(1), ctx);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("charging the privacy ledger: coordinator unreachable"));
  EXPECT_THAT(coordinator_.calls(), ::testing::Not(::testing::Contains("progress 1")));
}

TEST_F(RunTest, AStopInTheProgressAckEndsTheRun) {
  coordinator_.StopAtEpoch(1, "cancelled by user");
  const absl::Status s = RunAssignment(Assignment(3), Context());
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(s.message(), "cancelled by user");
  EXPECT_THAT(coordinator_.calls(), ElementsAre("charge 1", "charge eval 1", "progress 1"));
}

TEST_F(RunTest, ACancelledRunChargesNothing) {
  cancel_ = true;
  const absl::Status s = RunAssignment(Assignment(2), Context());
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(coordinator_.calls().empty());
}

TEST_F(RunTest, ARunOnTheWrongDeviceIsRefusedBeforeItTouchesAnything) {
  v1::Assignment a = Assignment(1);
  a.set_spec_yaml(
      absl::StrReplaceAll(a.spec_yaml(), {{"resources: {workers: 1,", "resources: {device: cuda, workers: 1,"}}));
  const absl::Status s = RunAssignment(a, Context());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("resources.device 'cuda' does not match this worker's device cpu"));
  EXPECT_TRUE(coordinator_.calls().empty());
}

// A retried attempt starts from rank 0's state after the last finished
// epoch and charges only the epochs it trains.
TEST_F(RunTest, AResumedAttemptStartsFromTheCheckpointAndTrainsTheRest) {
  ASSERT_TRUE(RunAssignment(Assignment(2, /*max_attempts=*/2), Context()).ok());
  const auto first = coordinator_.reports();
  ASSERT_EQ(first.size(), 2u);
  ASSERT_FALSE(first[0].checkpoint().empty()) << "retriable jobs send their state with every epoch";
  FakeCoordinator resumed_coordinator;
  resumed_coordinator.SetCheckpoint(1, first[0].checkpoint());
  RunContext ctx = Context();
  ctx.stub = v1::WorkerService::NewStub(resumed_coordinator.channel());
  ASSERT_TRUE(RunAssignment(Assignment(2, 2, /*start_epoch=*/1, /*attempt=*/2), ctx).ok());
  EXPECT_THAT(resumed_coordinator.calls(),
              ElementsAre("fetch checkpoint", "charge 2", "charge eval 2", "progress 2", "upload"));
  EXPECT_EQ(resumed_coordinator.reports()[0].metrics().steps(), first[1].metrics().steps())
      << "the step count continues from the checkpoint";
}

TEST_F(RunTest, ACheckpointOfAnotherEpochIsRefusedAsDataLoss) {
  ASSERT_TRUE(RunAssignment(Assignment(2, /*max_attempts=*/2), Context()).ok());
  FakeCoordinator resumed_coordinator;
  // Labelled epoch 1 but holding epoch 2's steps.
  resumed_coordinator.SetCheckpoint(1, coordinator_.reports()[1].checkpoint());
  RunContext ctx = Context();
  ctx.stub = v1::WorkerService::NewStub(resumed_coordinator.channel());
  const absl::Status s = RunAssignment(Assignment(2, 2, 1, 2), ctx);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("checkpoint after epoch 1 holds"));
  EXPECT_THAT(resumed_coordinator.calls(), ElementsAre("fetch checkpoint"));
}

}  // namespace
}  // namespace dpfleet::worker
