#include "server/core/scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace dpfleet::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Placements as "job:w0,w1" strings, for readable expectations.
std::vector<std::string> Describe(const std::vector<Placement>& placements) {
  std::vector<std::string> out;
  for (const Placement& p : placements) {
    std::string s = p.job_id + ":";
    for (std::size_t i = 0; i < p.worker_ids.size(); ++i) s += (i ? "," : "") + p.worker_ids[i];
    out.push_back(s);
  }
  return out;
}

TEST(DeviceMatchesTest, CudaTakesAnyCudaDeviceEverythingElseMustBeEqual) {
  EXPECT_TRUE(DeviceMatches("cuda", "cuda"));
  EXPECT_TRUE(DeviceMatches("cuda", "cuda:1"));
  EXPECT_FALSE(DeviceMatches("cuda", "cpu"));
  EXPECT_TRUE(DeviceMatches("cuda:1", "cuda:1"));
  EXPECT_FALSE(DeviceMatches("cuda:1", "cuda:0"));
  EXPECT_TRUE(DeviceMatches("cpu", "cpu"));
  EXPECT_FALSE(DeviceMatches("cpu", "cuda:0"));
}

TEST(PlaceJobsTest, RanksFollowRegistrationOrderWhateverTheInputOrder) {
  std::vector<IdleWorker> idle = {{"w-c", "cpu", 30}, {"w-a", "cpu", 10}, {"w-b", "cpu", 20}};
  const std::vector<QueuedJob> queued = {{"j1", 3, "cpu"}};
  EXPECT_THAT(Describe(PlaceJobs(queued, idle)), ElementsAre("j1:w-a,w-b,w-c"));
  std::reverse(idle.begin(), idle.end());
  EXPECT_THAT(Describe(PlaceJobs(queued, idle)), ElementsAre("j1:w-a,w-b,w-c"));
}

TEST(PlaceJobsTest, RegistrationTiesAreBrokenByWorkerId) {
  const std::vector<IdleWorker> idle = {{"w-2", "cpu", 5}, {"w-1", "cpu", 5}};
  EXPECT_THAT(Describe(PlaceJobs({{"j1", 2, "cpu"}}, idle)), ElementsAre("j1:w-1,w-2"));
}

TEST(PlaceJobsTest, FirstFitDoesNotBlockSmallJobsBehindABigOne) {
  const std::vector<IdleWorker> idle = {{"w1", "cpu", 1}, {"w2", "cpu", 2}};
  const std::vector<QueuedJob> queued = {{"big", 3, "cpu"}, {"small", 1, "cpu"}, {"pair", 2, "cpu"}};
  // `big` cannot fit and is skipped; `small` takes w1; `pair` then lacks a
  // second worker.
  EXPECT_THAT(Describe(PlaceJobs(queued, idle)), ElementsAre("small:w1"));
}

TEST(PlaceJobsTest, SubmissionOrderDecidesWhoGetsTheWorkers) {
  const std::vector<IdleWorker> idle = {{"w1", "cpu", 1}, {"w2", "cpu", 2}, {"w3", "cpu", 3}};
  EXPECT_THAT(Describe(PlaceJobs({{"a", 2, "cpu"}, {"b", 1, "cpu"}, {"c", 1, "cpu"}}, idle)),
              ElementsAre("a:w1,w2", "b:w3"));
  EXPECT_THAT(Describe(PlaceJobs({{"c", 1, "cpu"}, {"a", 2, "cpu"}, {"b", 1, "cpu"}}, idle)),
              ElementsAre("c:w1", "a:w2,w3"));
}

TEST(PlaceJobsTest, DeviceMustMatchAndSkippedWorkersStayFreeForLaterJobs) {
  const std::vector<IdleWorker> idle = {{"cpu1", "cpu", 1}, {"gpu1", "cuda:0", 2}, {"gpu2", "cuda:1", 3}};
  const std::vector<QueuedJob> queued = {{"on-gpu", 2, "cuda"}, {"on-cpu", 1, "cpu"}, {"on-gpu1", 1, "cuda:1"}};
  EXPECT_THAT(Describe(PlaceJobs(queued, idle)), ElementsAre("on-gpu:gpu1,gpu2", "on-cpu:cpu1"));
}

TEST(PlaceJobsTest, NothingToPlaceOrNobodyToPlaceItOn) {
  EXPECT_THAT(PlaceJobs({}, {{"w1", "cpu", 1}}), IsEmpty());
  EXPECT_THAT(PlaceJobs({{"j1", 1, "cpu"}}, {}), IsEmpty());
  EXPECT_THAT(PlaceJobs({{"j1", 1, "cuda"}}, {{"w1", "cpu", 1}}), IsEmpty());
}

// Pending reasons, one per way a job can wait, on plain data.
TEST(PendingReasonTest, NoWorkerOfTheDeviceRegistered) {
  const SchedulePass pass = PlanJobs({{"j1", 1, "cuda"}}, {{"w-1", "cpu", true, 1}});
  EXPECT_THAT(pass.placements, IsEmpty());
  EXPECT_EQ(pass.pending.at("j1"), "no cuda worker registered");
}

TEST(PendingReasonTest, FewerWorkersRegisteredThanTheJobNeeds) {
  const SchedulePass pass = PlanJobs({{"j1", 4, "cpu"}}, {{"w-1", "cpu", true, 1}, {"w-2", "cpu", false, 2}});
  EXPECT_EQ(pass.pending.at("j1"), "needs 4 cpu workers, 2 registered");
}

TEST(PendingReasonTest, EveryMatchingWorkerIsBusy) {
  const SchedulePass pass = PlanJobs({{"j1", 1, "cuda"}}, {{"w-1", "cuda:0", false, 1}, {"w-2", "cpu", true, 2}});
  EXPECT_EQ(pass.pending.at("j1"), "no idle cuda worker (1 registered, all busy)");
}

TEST(PendingReasonTest, NotEnoughIdleWorkers) {
  const SchedulePass pass =
      PlanJobs({{"j1", 3, "cpu"}}, {{"w-1", "cpu", true, 1}, {"w-2", "cpu", false, 2}, {"w-3", "cpu", true, 3}});
  EXPECT_EQ(pass.pending.at("j1"), "needs 3 cpu workers, 2 idle (3 registered)");
}

TEST(PendingReasonTest, IdleWorkersTakenByJobsAheadInTheQueue) {
  const SchedulePass pass = PlanJobs({{"j1", 2, "cpu"}, {"j2", 2, "cpu"}},
                                     {{"w-1", "cpu", true, 1}, {"w-2", "cpu", true, 2}, {"w-3", "cpu", true, 3}});
  EXPECT_THAT(Describe(pass.placements), ElementsAre("j1:w-1,w-2"));
  EXPECT_EQ(pass.pending.at("j2"), "needs 2 cpu workers, 1 left idle after the jobs ahead of it (3 idle)");
  EXPECT_EQ(pass.pending.count("j1"), 0u) << "a placed job has no pending reason";
}

TEST(PendingReasonTest, ARetriedJobSaysItWaitsForItsRetry) {
  QueuedJob retried{"j1", 2, "cpu", /*attempt=*/1, /*max_attempts=*/3};
  const SchedulePass pass = PlanJobs({retried}, {{"w-1", "cpu", true, 1}});
  EXPECT_EQ(pass.pending.at("j1"), "waiting for a retry (attempt 2 of 3): needs 2 cpu workers, 1 registered");
}

TEST(PendingReasonTest, PlanJobsPlacesExactlyWhatPlaceJobsPlaces) {
  const std::vector<QueuedJob> queued = {{"j1", 2, "cpu"}, {"j2", 1, "cuda"}, {"j3", 1, "cpu"}};
  const std::vector<IdleWorker> idle = {{"w-1", "cpu", 1}, {"w-2", "cuda:0", 2}, {"w-3", "cpu", 3}};
  std::vector<FleetWorker> fleet;
  for (const IdleWorker& w : idle) fleet.push_back({w.worker_id, w.device, true, w.registered_ms});
  fleet.push_back({"w-busy", "cpu", false, 0});
  EXPECT_EQ(Describe(PlanJobs(queued, fleet).placements), Describe(PlaceJobs(queued, idle)));
  EXPECT_EQ(PlanJobs(queued, fleet).pending.at("j3"),
            "needs 1 cpu worker, 0 left idle after the jobs ahead of it (2 idle)");
}

}  // namespace
}  // namespace dpfleet::server
