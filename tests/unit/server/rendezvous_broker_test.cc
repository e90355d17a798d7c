#include "server/core/rendezvous_broker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace dpfleet::server {
namespace {

using ::testing::HasSubstr;

// A deadline no test reaches: waits here end by publication, drop or
// shutdown, never by time.
absl::Time Never() { return absl::InfiniteFuture(); }

class RendezvousBrokerTest : public ::testing::Test {
 protected:
  void SetUp() override { broker_.OpenAttempt("job-1", 1); }
  RendezvousBroker broker_;
};

TEST_F(RendezvousBrokerTest, SetThenGetAndKeysBelongToTheirAttempt) {
  ASSERT_TRUE(broker_.Set("job-1", 1, "nccl_id", "abc").ok());
  auto v = broker_.Get("job-1", 1, "nccl_id", Never());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "abc");
  ASSERT_TRUE(broker_.Set("job-1", 1, "nccl_id", "def").ok());
  EXPECT_EQ(*broker_.Get("job-1", 1, "nccl_id", Never()), "def");

  broker_.OpenAttempt("job-1", 2);
  auto other_attempt = broker_.Get("job-1", 2, "nccl_id", absl::InfinitePast());
  EXPECT_EQ(other_attempt.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(other_attempt.status().message(), HasSubstr("'nccl_id' of job 'job-1' attempt 2"));
}

TEST_F(RendezvousBrokerTest, AnAttemptThatIsNotOpenIsRefused) {
  EXPECT_EQ(broker_.Set("job-1", 7, "k", "v").code(), absl::StatusCode::kAborted);
  EXPECT_EQ(broker_.Add("job-2", 1, "k", 1).status().code(), absl::StatusCode::kAborted);
  auto v = broker_.Get("job-1", 7, "k", Never());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(v.status().message(), HasSubstr("job 'job-1' attempt 7 is closed"));
}

TEST_F(RendezvousBrokerTest, AddCountsAndRefusesAKeyThatIsNotACounter) {
  EXPECT_EQ(*broker_.Add("job-1", 1, "ready", 1), 1);
  EXPECT_EQ(*broker_.Add("job-1", 1, "ready", 2), 3);
  EXPECT_EQ(*broker_.Get("job-1", 1, "ready", Never()), "3");
  ASSERT_TRUE(broker_.Set("job-1", 1, "id", "not-a-number").ok());
  auto bad = broker_.Add("job-1", 1, "id", 1);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(bad.status().message(), HasSubstr("'id' is not a counter"));
  EXPECT_EQ(*broker_.Get("job-1", 1, "id", Never()), "not-a-number");
}

TEST_F(RendezvousBrokerTest, GetBlocksUntilAnotherThreadPublishes) {
  absl::StatusOr<std::string> got;
  std::thread waiter([&] { got = broker_.Get("job-1", 1, "nccl_id", Never()); });
  broker_.AwaitWaiters("job-1", 1, "nccl_id", 1);
  ASSERT_TRUE(broker_.Set("job-1", 1, "nccl_id", "abc").ok());
  waiter.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "abc");
}

TEST_F(RendezvousBrokerTest, ACounterWakesItsWaitersWithTheSum) {
  std::vector<absl::StatusOr<std::string>> got(3);
  std::vector<std::thread> waiters;
  for (auto& g : got) waiters.emplace_back([&] { g = broker_.Get("job-1", 1, "arrived", Never()); });
  broker_.AwaitWaiters("job-1", 1, "arrived", 3);
  ASSERT_EQ(*broker_.Add("job-1", 1, "arrived", 5), 5);
  for (auto& t : waiters) t.join();
  for (const auto& g : got) EXPECT_EQ(*g, "5");
}

TEST_F(RendezvousBrokerTest, AWaitDoesNotBlockOtherAttempts) {
  broker_.OpenAttempt("job-2", 1);
  absl::StatusOr<std::string> got;
  std::thread waiter([&] { got = broker_.Get("job-1", 1, "late", Never()); });
  broker_.AwaitWaiters("job-1", 1, "late", 1);
  // With the waiter parked, the broker still serves everyone else.
  ASSERT_TRUE(broker_.Set("job-2", 1, "k", "v").ok());
  EXPECT_EQ(*broker_.Get("job-2", 1, "k", Never()), "v");
  EXPECT_EQ(*broker_.Add("job-1", 1, "other", 1), 1);
  ASSERT_TRUE(broker_.Set("job-1", 1, "late", "now").ok());
  waiter.join();
  EXPECT_EQ(*got, "now");
}

TEST_F(RendezvousBrokerTest, DroppingTheJobEndsItsWaitsAndForgetsItsKeys) {
  broker_.OpenAttempt("job-2", 1);
  ASSERT_TRUE(broker_.Set("job-1", 1, "kept-until-drop", "x").ok());
  ASSERT_TRUE(broker_.Set("job-2", 1, "k", "v").ok());
  absl::StatusOr<std::string> got;
  std::thread waiter([&] { got = broker_.Get("job-1", 1, "never", Never()); });
  broker_.AwaitWaiters("job-1", 1, "never", 1);
  broker_.DropJob("job-1");
  waiter.join();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(broker_.Get("job-1", 1, "kept-until-drop", Never()).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(*broker_.Get("job-2", 1, "k", Never()), "v");  // another job's keys stay
}

TEST_F(RendezvousBrokerTest, ShutdownEndsWaitsAndLaterWaitsForMissingKeys) {
  ASSERT_TRUE(broker_.Set("job-1", 1, "published", "yes").ok());
  absl::StatusOr<std::string> got;
  std::thread waiter([&] { got = broker_.Get("job-1", 1, "missing", Never()); });
  broker_.AwaitWaiters("job-1", 1, "missing", 1);
  broker_.Shutdown();
  waiter.join();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(broker_.Get("job-1", 1, "missing", Never()).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(*broker_.Get("job-1", 1, "published", Never()), "yes");
}

TEST_F(RendezvousBrokerTest, APassedDeadlineAnswersAtOnceAndLeavesNoWaiter) {
  auto v = broker_.Get("job-1", 1, "k", absl::InfinitePast());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(v.status().message(), HasSubstr("was not published in time"));
  // The timed-out wait was withdrawn: a later publication reaches only the
  // async waiter registered here.
  int calls = 0;
  const int64_t id = broker_.GetAsync("job-1", 1, "k", [&](absl::StatusOr<std::string>) { ++calls; });
  ASSERT_NE(id, 0);
  ASSERT_TRUE(broker_.Set("job-1", 1, "k", "v").ok());
  EXPECT_EQ(calls, 1);
}

TEST_F(RendezvousBrokerTest, GetAsyncAnswersOnceInlineOrOnPublication) {
  ASSERT_TRUE(broker_.Set("job-1", 1, "ready", "1").ok());
  std::vector<std::string> answers;
  auto record = [&](absl::StatusOr<std::string> v) { answers.push_back(v.ok() ? *v : v.status().ToString()); };
  EXPECT_EQ(broker_.GetAsync("job-1", 1, "ready", record), 0);  // already there: answered inline
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0], "1");

  const int64_t id = broker_.GetAsync("job-1", 1, "later", record);
  EXPECT_NE(id, 0);
  EXPECT_EQ(answers.size(), 1u);
  ASSERT_TRUE(broker_.Set("job-1", 1, "later", "2").ok());
  ASSERT_TRUE(broker_.Set("job-1", 1, "later", "3").ok());
  ASSERT_EQ(answers.size(), 2u);  // once, with the first value
  EXPECT_EQ(answers[1], "2");
  EXPECT_FALSE(broker_.CancelWait(id));  // already answered
}

TEST_F(RendezvousBrokerTest, ACancelledAsyncWaitIsNeverAnswered) {
  bool called = false;
  const int64_t id = broker_.GetAsync("job-1", 1, "k", [&](absl::StatusOr<std::string>) { called = true; });
  EXPECT_TRUE(broker_.CancelWait(id));
  ASSERT_TRUE(broker_.Set("job-1", 1, "k", "v").ok());
  broker_.DropJob("job-1");
  broker_.Shutdown();
  EXPECT_FALSE(called);
}

TEST_F(RendezvousBrokerTest, AsyncWaitersOfADroppedAttemptHearWhy) {
  absl::StatusOr<std::string> got = "unanswered";
  broker_.OpenAttempt("job-1", 2);
  broker_.GetAsync("job-1", 1, "k", [&](absl::StatusOr<std::string> v) { got = std::move(v); });
  broker_.GetAsync("job-1", 2, "k", [&](absl::StatusOr<std::string> v) { got = std::move(v); });
  broker_.DropJob("job-1");  // every attempt of the job
  EXPECT_EQ(got.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(broker_.Set("job-1", 2, "k", "v").code(), absl::StatusCode::kAborted);
}

}  // namespace
}  // namespace dpfleet::server
