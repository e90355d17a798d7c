// CoordinatorStore: the c10d::Store Gloo and NCCL meet through, over the
// rendezvous RPCs of a scripted coordinator (in-process channel).
#include "worker/agent/coordinator_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "tests/testing/worker/fake_coordinator.h"

namespace dpfleet::worker {
namespace {

std::vector<uint8_t> Bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

class CoordinatorStoreTest : public ::testing::Test {
 protected:
  CoordinatorStore Store(int32_t attempt, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    return CoordinatorStore(v1::WorkerService::NewStub(coordinator_.channel()), "job-1", attempt, timeout);
  }
  testing::FakeCoordinator coordinator_;
};

TEST_F(CoordinatorStoreTest, KeysAreSharedByTheRanksOfOneAttemptOnly) {
  CoordinatorStore rank0 = Store(1), rank1 = Store(1), next_attempt = Store(2, std::chrono::milliseconds(50));
  std::vector<uint8_t> got;
  std::thread waiter([&] { got = rank1.get("nccl_id"); });  // waits for rank 0
  rank0.set("nccl_id", Bytes(std::string("\0id", 3)));
  waiter.join();
  EXPECT_EQ(got, Bytes(std::string("\0id", 3)));
  EXPECT_TRUE(rank1.check({"nccl_id"}));
  EXPECT_FALSE(next_attempt.check({"nccl_id"})) << "another attempt's keys are its own";
  EXPECT_EQ(rank0.add("ready", 1), 1);
  EXPECT_EQ(rank1.add("ready", 1), 2);
  auto clone = rank0.clone();
  EXPECT_EQ(clone->get("nccl_id"), Bytes(std::string("\0id", 3)));
}

TEST_F(CoordinatorStoreTest, AKeyThatNeverComesIsADistStoreErrorInBoundedTime) {
  CoordinatorStore store = Store(1, std::chrono::milliseconds(50));
  EXPECT_THROW(store.get("never"), c10::DistStoreError);
  EXPECT_THROW(store.wait({"never"}, std::chrono::milliseconds(20)), c10::DistStoreError);
  EXPECT_FALSE(store.deleteKey("never")) << "ranks never delete keys";
  EXPECT_THROW(store.getNumKeys(), c10::Error);
}

}  // namespace
}  // namespace dpfleet::worker
