#include "server/core/worker_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace dpfleet::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int64_t kLeaseMs = 1000;

Assignment RunOf(const std::string& job_id, int32_t attempt, int32_t rank) {
  Assignment a;
  a.job_id = job_id;
  a.attempt = attempt;
  a.rank = rank;
  return a;
}

class WorkerRegistryTest : public ::testing::Test {
 protected:
  std::string Add(const std::string& device = "cpu", const std::string& previous_id = "") {
    clock_.AdvanceMs(1);  // registration order is by time
    return registry_.Register("host", device, 42, previous_id).worker_id;
  }
  HeartbeatResult Beat(const std::string& id, const std::string& running = "", bool* freed = nullptr) {
    bool ignored = false;
    return registry_.Heartbeat(id, running, freed ? freed : &ignored);
  }
  WorkerState StateOf(const std::string& id) { return registry_.Find(id)->state; }

  ManualClock clock_;
  WorkerRegistry registry_{&clock_, kLeaseMs};
};

TEST_F(WorkerRegistryTest, NewWorkersGetDistinctIdsAndStartIdle) {
  const std::string a = Add();
  const std::string b = Add("cuda:0");
  EXPECT_NE(a, b);
  const WorkerRecord* w = registry_.Find(b);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->device, "cuda:0");
  EXPECT_EQ(w->pid, 42);
  EXPECT_EQ(w->state, WorkerState::kIdle);
  EXPECT_EQ(w->registered_ms, clock_.NowMs());
  EXPECT_EQ(registry_.Find("w-unknown"), nullptr);
}

TEST_F(WorkerRegistryTest, AReturningWorkerKeepsItsIdUnlessSomeoneHoldsIt) {
  const std::string taken = Add();
  EXPECT_EQ(Add("cpu", "w-from-before"), "w-from-before");  // re-attach after a coordinator restart
  const std::string fresh = Add("cpu", taken);
  EXPECT_NE(fresh, taken);
  EXPECT_NE(fresh, "w-from-before");
}

TEST_F(WorkerRegistryTest, AnAssignmentIsDeliveredOnceAndTheWorkerStaysBusy) {
  const std::string w = Add();
  registry_.Assign(w, RunOf("job-1", 1, 0));
  EXPECT_EQ(StateOf(w), WorkerState::kBusy);
  bool freed = true;
  HeartbeatResult first = Beat(w, "", &freed);
  ASSERT_EQ(first.assignments.size(), 1u);
  EXPECT_EQ(first.assignments[0].job_id, "job-1");
  EXPECT_FALSE(freed);  // it had not started the run yet
  EXPECT_EQ(StateOf(w), WorkerState::kBusy);
  EXPECT_THAT(Beat(w, "job-1").assignments, IsEmpty());
  EXPECT_EQ(StateOf(w), WorkerState::kBusy);
}

TEST_F(WorkerRegistryTest, ABusyWorkerThatReportsNoRunIsIdleAgain) {
  const std::string w = Add();
  registry_.Assign(w, RunOf("job-1", 1, 0));
  Beat(w);  // delivers the assignment
  bool freed = false;
  Beat(w, "", &freed);  // the run ended but its ReportDone never came
  EXPECT_TRUE(freed);
  EXPECT_EQ(StateOf(w), WorkerState::kIdle);
  EXPECT_TRUE(registry_.Find(w)->job_id.empty());
}

TEST_F(WorkerRegistryTest, CancellingARunTellsItsBusyWorkersAndWithdrawsUndeliveredAssignments) {
  const std::string started = Add();
  const std::string not_yet = Add();
  const std::string other_attempt = Add();
  registry_.Assign(started, RunOf("job-1", 2, 0));
  Beat(started);
  registry_.Assign(not_yet, RunOf("job-1", 2, 1));
  registry_.Assign(other_attempt, RunOf("job-1", 1, 0));
  Beat(other_attempt);
  registry_.CancelRun("job-1", 2);
  EXPECT_THAT(Beat(started, "job-1").cancel_job_ids, ElementsAre("job-1"));
  HeartbeatResult undelivered = Beat(not_yet);
  EXPECT_THAT(undelivered.assignments, IsEmpty());
  EXPECT_THAT(undelivered.cancel_job_ids, ElementsAre("job-1"));
  EXPECT_THAT(Beat(other_attempt, "job-1").cancel_job_ids, IsEmpty());
  // Told to stop, a worker counts as busy until it confirms.
  EXPECT_EQ(StateOf(started), WorkerState::kBusy);
}

TEST_F(WorkerRegistryTest, FinishRunFreesOnlyTheRunTheWorkerHolds) {
  const std::string w = Add();
  registry_.Assign(w, RunOf("job-1", 2, 0));
  registry_.FinishRun(w, "job-1", 1);  // a stale attempt's report
  EXPECT_EQ(StateOf(w), WorkerState::kBusy);
  registry_.FinishRun(w, "job-1", 2);
  EXPECT_EQ(StateOf(w), WorkerState::kIdle);
}

TEST_F(WorkerRegistryTest, ReattachedAndCancelledRunsReachTheWorker) {
  const std::string w = Add("cpu", "w-old");
  registry_.Attach(w, "job-1", 3, 1);
  const WorkerRecord* r = registry_.Find(w);
  EXPECT_EQ(r->state, WorkerState::kBusy);
  EXPECT_EQ(r->job_id, "job-1");
  EXPECT_EQ(r->attempt, 3);
  EXPECT_EQ(r->rank, 1);
  registry_.QueueCancel(w, "job-0");
  HeartbeatResult hb = Beat(w, "job-1");
  EXPECT_THAT(hb.assignments, IsEmpty());  // it already runs it
  EXPECT_THAT(hb.cancel_job_ids, ElementsAre("job-0"));
}

TEST_F(WorkerRegistryTest, ALeaseRunsOutOnlyAfterItsTtlWithoutAHeartbeat) {
  const std::string a = Add();
  const std::string b = Add();  // one ms after a
  clock_.AdvanceMs(kLeaseMs - 2);
  Beat(b);
  clock_.AdvanceMs(1);  // a: exactly the TTL since it registered
  EXPECT_THAT(registry_.ExpiredLeases(clock_.NowMs()), IsEmpty());
  clock_.AdvanceMs(1);
  EXPECT_THAT(registry_.ExpiredLeases(clock_.NowMs()), ElementsAre(a));
  clock_.AdvanceMs(kLeaseMs);
  EXPECT_THAT(registry_.ExpiredLeases(clock_.NowMs()), ElementsAre(a, b));
}

TEST_F(WorkerRegistryTest, ALostWorkerIsReportedOnceThenMustRegisterAgain) {
  const std::string w = Add();
  registry_.Assign(w, RunOf("job-1", 1, 0));
  clock_.AdvanceMs(kLeaseMs + 1);
  const WorkerRecord before = registry_.MarkLost(w);
  EXPECT_EQ(before.state, WorkerState::kBusy);
  EXPECT_EQ(before.job_id, "job-1");
  EXPECT_EQ(StateOf(w), WorkerState::kLost);
  EXPECT_THAT(registry_.ExpiredLeases(clock_.NowMs()), IsEmpty());
  EXPECT_THAT(registry_.Idle(), IsEmpty());
  EXPECT_TRUE(Beat(w).reregister);
  EXPECT_EQ(registry_.Find(w), nullptr);
  EXPECT_TRUE(Beat("w-never-seen").reregister);
}

TEST_F(WorkerRegistryTest, IdleAndListSayWhoIsFreeAndInWhatOrder) {
  const std::string a = Add();
  const std::string b = Add("cuda:0");
  const std::string c = Add();
  registry_.Assign(b, RunOf("job-1", 1, 0));
  std::vector<std::string> idle;
  for (const IdleWorker& w : registry_.Idle()) idle.push_back(w.worker_id + "@" + w.device);
  EXPECT_THAT(idle, ::testing::UnorderedElementsAre(a + "@cpu", c + "@cpu"));
  std::vector<std::string> listed;
  for (const WorkerRecord& w : registry_.List()) listed.push_back(w.worker_id);
  EXPECT_THAT(listed, ElementsAre(a, b, c));
}

}  // namespace
}  // namespace dpfleet::server
