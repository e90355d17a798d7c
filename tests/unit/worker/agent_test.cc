// WorkerAgent (worker/agent/agent) against a scripted coordinator on a
// loopback port: registration and its refusal, runs handed over by
// heartbeats and their reported end, stop orders, a second assignment while
// busy, and re-registering with the run it still holds.
#include "worker/agent/agent.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/pums/synth.h"
#include "common/version.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/worker/fake_coordinator.h"

namespace dpfleet::worker {
namespace {

using ::dpfleet::testing::FakeCoordinator;
using ::testing::Contains;
using ::testing::HasSubstr;

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.Join("pums.csv");
    ASSERT_TRUE(data::WriteSyntheticPums({/*rows=*/2000, /*seed=*/9}, data_).ok());
  }
  void TearDown() override {
    stop_ = true;
    if (agent_thread_.joinable()) agent_thread_.join();
  }

  v1::Assignment Assignment(const std::string& job_id, int epochs) {
    v1::Assignment a;
    a.set_job_id(job_id);
    a.set_attempt(1);
    a.set_world_size(1);
    a.set_spec_yaml(absl::StrCat("name: t\ndata: {path: ", data_, "}\nmodel: {type: logistic}\n",
                                 "training: {epochs: ", epochs, ", batch_size: 200}\n",
                                 "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5}\n"));
    a.set_noise_multiplier(1.0);
    a.add_data_paths(data_);
    return a;
  }
  // Runs the agent's loop on its own thread until the test ends.
  void StartAgent() {
    AgentOptions options;
    options.server = coordinator_.address();
    options.work_dir = dir_.path();
    options.threads = 1;
    agent_ = std::make_unique<WorkerAgent>(options);
    agent_thread_ = std::thread([this] { result_ = agent_->Run(stop_); });
  }

  testing::TempDir dir_;
  std::string data_;
  FakeCoordinator coordinator_;
  std::atomic<bool> stop_{false};
  std::unique_ptr<WorkerAgent> agent_;
  std::thread agent_thread_;
  absl::Status result_;
};

TEST_F(AgentTest, RegistersRunsWhatAHeartbeatHandsOverAndReportsItsEnd) {
  coordinator_.QueueAssignment(Assignment("job-000001", 1));
  StartAgent();
  coordinator_.AwaitCalls("done", 1);
  stop_ = true;
  agent_thread_.join();
  EXPECT_TRUE(result_.ok()) << result_;
  const auto registrations = coordinator_.registrations();
  ASSERT_GE(registrations.size(), 1u);
  EXPECT_EQ(registrations[0].protocol_version(), kProtocolVersion);
  EXPECT_EQ(registrations[0].device(), "cpu");
  EXPECT_TRUE(registrations[0].running_job_id().empty());
  EXPECT_THAT(coordinator_.calls(),
              ::testing::ElementsAre("register", "charge 1", "charge eval 1", "progress 1", "upload", "done ok"));
  const v1::DoneReport done = coordinator_.dones()[0];
  EXPECT_EQ(done.job_id(), "job-000001");
  EXPECT_EQ(done.worker_id(), "w-fake");
}

TEST_F(AgentTest, ARefusedRegistrationEndsTheAgentWithTheReason) {
  coordinator_.RefuseRegistration(
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "worker speaks protocol version 0"));
  AgentOptions options;
  options.server = coordinator_.address();
  WorkerAgent agent(options);
  const absl::Status s = agent.Run(stop_);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("worker speaks protocol version 0"));
}

// A stop order that arrives while the run is inside its charge: the run
// stops before it trains, and its end is reported as a failure.
TEST_F(AgentTest, AStopOrderEndsTheRunAndItsEndIsReported) {
  coordinator_.HoldCharges();
  coordinator_.QueueAssignment(Assignment("job-000001", 5));
  StartAgent();
  coordinator_.AwaitHeldCharge();
  coordinator_.QueueCancel("job-000001");
  // The heartbeat after the one that carried the stop order: the agent
  // sends it only once it has acted on the answer before.
  const int seen = coordinator_.heartbeats();
  coordinator_.AwaitHeartbeats(seen + 2);
  coordinator_.ReleaseCharges();
  coordinator_.AwaitCalls("done", 1);
  const v1::DoneReport done = coordinator_.dones()[0];
  EXPECT_FALSE(done.success());
  EXPECT_THAT(done.error(), HasSubstr("cancelled"));
  EXPECT_THAT(coordinator_.calls(), ::testing::Not(Contains("progress 1")));
}

TEST_F(AgentTest, ASecondAssignmentWhileBusyIsRefusedAsBusy) {
  coordinator_.HoldCharges();
  coordinator_.QueueAssignment(Assignment("job-000001", 1));
  StartAgent();
  coordinator_.AwaitHeldCharge();
  coordinator_.QueueAssignment(Assignment("job-000002", 1));
  coordinator_.AwaitCalls("done", 1);
  const v1::DoneReport refused = coordinator_.dones()[0];
  EXPECT_EQ(refused.job_id(), "job-000002");
  EXPECT_FALSE(refused.success());
  EXPECT_THAT(refused.error(), HasSubstr("worker is busy with another run"));
  coordinator_.ReleaseCharges();
  coordinator_.AwaitCalls("done", 2);
  EXPECT_EQ(coordinator_.dones()[1].job_id(), "job-000001");
  EXPECT_TRUE(coordinator_.dones()[1].success());
}

// After a coordinator restart a heartbeat says "register again": the agent
// does, under its old id, naming the run it still holds.
TEST_F(AgentTest, ReregistersUnderItsOldIdWithTheRunItHolds) {
  coordinator_.HoldCharges();
  coordinator_.QueueAssignment(Assignment("job-000001", 1));
  StartAgent();
  coordinator_.AwaitHeldCharge();
  coordinator_.AskToReregister();
  coordinator_.AwaitCalls("register", 2);
  const v1::RegisterRequest again = coordinator_.registrations()[1];
  EXPECT_EQ(again.previous_worker_id(), "w-fake");
  EXPECT_EQ(again.running_job_id(), "job-000001");
  EXPECT_EQ(again.running_attempt(), 1);
  EXPECT_EQ(again.running_rank(), 0);
  coordinator_.ReleaseCharges();
  coordinator_.AwaitCalls("done", 1);
  EXPECT_TRUE(coordinator_.dones()[0].success());
}

// A run whose data makes it fail with a message that quotes the private
// file (here: an exact count of its person records and its path): the
// custodian's DoneReport has the whole message, but the log lines shipped
// for the analyst say only the stage and the code.
TEST_F(AgentTest, AFailedRunShipsItsCategoryButNeverTheErrorMessage) {
  const std::string copy = dir_.Join("copy-of-pums.csv");
  std::filesystem::copy_file(data_, copy);
  v1::Assignment a = Assignment("job-000001", 1);
  a.add_data_paths(copy);  // the same person records twice: refused, naming their count
  coordinator_.QueueAssignment(a);
  StartAgent();
  coordinator_.AwaitCalls("done", 1);
  stop_ = true;
  agent_thread_.join();
  const v1::DoneReport done = coordinator_.dones()[0];
  ASSERT_FALSE(done.success());
  EXPECT_THAT(done.error(), HasSubstr("person records"));
  EXPECT_EQ(done.error_stage(), "loading data");
  EXPECT_EQ(done.error_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  const std::vector<v1::JobLogLine> lines = coordinator_.log_lines();
  ASSERT_FALSE(lines.empty());
  std::vector<std::string> messages;
  for (const v1::JobLogLine& l : lines) {
    messages.push_back(l.message());
    EXPECT_THAT(l.message(), ::testing::Not(HasSubstr("records"))) << l.message();
    EXPECT_THAT(l.message(), ::testing::Not(HasSubstr(dir_.path()))) << l.message();
    EXPECT_EQ(l.attempt(), 1);
    EXPECT_EQ(l.rank(), 0);
  }
  EXPECT_THAT(messages, Contains("attempt 1 rank 0 of 1 started on a cpu worker (1 epochs)"));
  EXPECT_THAT(messages, Contains("loading data"));
  EXPECT_THAT(messages, Contains("run failed while loading data (INVALID_ARGUMENT); the custodian has the whole "
                                 "message"));
  EXPECT_EQ(lines.back().level(), v1::LOG_ERROR);
  // Digits in the lines are only the run's public numbers (attempt, rank, world, epochs).
  const std::string error = done.error();
  const auto count_at = error.find("same ");
  ASSERT_NE(count_at, std::string::npos);
  const std::string count = error.substr(count_at + 5, error.find(' ', count_at + 5) - count_at - 5);
  for (const std::string& m : messages) EXPECT_THAT(m, ::testing::Not(HasSubstr(count))) << m;
}

TEST_F(AgentTest, ASucceededRunShipsItsEpochsAndItsEnd) {
  coordinator_.QueueAssignment(Assignment("job-000001", 2));
  StartAgent();
  coordinator_.AwaitCalls("done", 1);
  stop_ = true;
  agent_thread_.join();
  std::vector<std::string> messages;
  for (const v1::JobLogLine& l : coordinator_.log_lines()) messages.push_back(l.message());
  EXPECT_THAT(messages, Contains(::testing::MatchesRegex("epoch 1 of 2 trained \\([0-9]+ steps\\)")));
  EXPECT_THAT(messages, Contains(::testing::MatchesRegex("epoch 2 of 2 trained \\([0-9]+ steps\\)")));
  EXPECT_THAT(messages, Contains("trained model handed to the coordinator"));
  ASSERT_FALSE(messages.empty());
  EXPECT_EQ(messages.back(), "run finished");
}

}  // namespace
}  // namespace dpfleet::worker
