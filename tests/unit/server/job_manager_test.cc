#include "server/core/job_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "common/privacy/accountant.h"
#include "common/sha256.h"
#include "common/status.h"
#include "server/rpc/access.h"
#include "tests/testing/files.h"
#include "tests/testing/server/fake_data_resolver.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Spec(int workers = 1, int epochs = 3, const std::string& extra_privacy = "") {
  return absl::StrCat("name: test\ndata: {path: /data/p.csv}\n", "training: {epochs: ", epochs, ", batch_size: 100}\n",
                      "privacy: {mode: dp, max_grad_norm: 1.0, ",
                      extra_privacy.empty() ? "noise_multiplier: 1.1" : extra_privacy,
                      ", delta: 1.0e-5}\nresources: {workers: ", workers, "}\n");
}

class JobManagerTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kSplitKey = 0x5eed5eed5eedULL;
  void SetUp() override { Open(); }
  void Open() {
    jobs_.reset();
    resolver_.files = nullptr;
    files_.reset();
    store_.reset();
    store_ = *Store::Open(dir_.path());
    CoordinatorOptions options;
    options.lease_ttl_ms = 1000;
    options.heartbeat_interval_ms = 100;
    options.split_key = kSplitKey;
    options.log_limits = log_limits_;
    files_ = std::make_unique<FileIdentifier>(store_.get(), &clock_);
    resolver_.files = files_.get();
    jobs_ = std::make_unique<JobManager>(store_.get(), &resolver_, &clock_, options);
    ASSERT_TRUE(jobs_->Recover().ok());
  }
  std::string AddWorker(const std::string& device = "cpu") {
    clock_.AdvanceMs(1);  // registration order is by time
    return jobs_->RegisterWorker("host", device, 1, "", std::nullopt).worker_id;
  }
  std::vector<Assignment> Poll(const std::string& worker, const std::string& job = "", int attempt = 0) {
    auto hb = jobs_->Heartbeat(worker, job, attempt);
    EXPECT_TRUE(hb.ok());
    return hb->assignments;
  }
  // A rank waiting for `key` of the job's attempt, with no deadline; returns
  // once the wait is parked in the broker.
  std::thread WaitForKey(const JobRecord& job, const std::string& key, absl::StatusOr<std::string>* got) {
    std::thread waiter(
        [this, job, key, got] { *got = jobs_->RendezvousGet(job.job_id, job.attempt, key, absl::InfiniteFuture()); });
    jobs_->AwaitRendezvousWaiters(job.job_id, job.attempt, key, 1);
    return waiter;
  }
  // Runs epoch `e` of a single-rank job the way a worker does: charge the
  // epoch, train, charge its eval release, report the DP metrics.
  void RunEpoch(const JobRecord& job, const std::string& worker, int e, int rank = 0) {
    ASSERT_TRUE(
        jobs_->Charge(job.job_id, job.attempt, rank, e, job.steps_per_epoch, job.sample_rate, job.noise_multiplier)
            .ok());
    ASSERT_TRUE(
        jobs_->Charge(job.job_id, job.attempt, rank, e, 1, 1.0, job.eval_noise_multiplier, Mechanism::kEval).ok());
    ASSERT_TRUE(jobs_->ReportProgress(job.job_id, job.attempt, rank, worker, WithMetrics(e)).ok());
  }
  static EpochRecord WithMetrics(int e) {
    EpochRecord m;
    m.epoch = e;
    m.eval_accuracy = 0.7;
    m.eval_loss = 0.5;
    m.eval_auc = 0.8;
    m.eval_balanced_accuracy = 0.65;
    m.majority_rate = 0.6;
    return m;
  }

  testing::TempDir dir_;
  LogLimits log_limits_;
  testing::FakeDataResolver resolver_;
  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<FileIdentifier> files_;
  std::unique_ptr<JobManager> jobs_;
};

TEST_F(JobManagerTest, JobWaitsForAWorkerThenRuns) {
  auto job = jobs_->Submit(Spec());
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, JobState::kQueued);
  EXPECT_DOUBLE_EQ(job->sample_rate, 0.01);
  EXPECT_EQ(job->steps_per_epoch, 100);
  const std::string w = AddWorker();
  auto got = jobs_->Get(job->job_id);
  EXPECT_EQ(got->state, JobState::kRunning);
  EXPECT_EQ(got->attempt, 1);
  auto as = Poll(w);
  ASSERT_EQ(as.size(), 1u);
  EXPECT_EQ(as[0].job_id, job->job_id);
  EXPECT_EQ(as[0].rank, 0);
  EXPECT_DOUBLE_EQ(as[0].noise_multiplier, 1.1);
  EXPECT_TRUE(Poll(w, job->job_id, 1).empty()) << "an assignment is delivered once";
}

TEST_F(JobManagerTest, RanksFollowRegistrationOrderAndDeviceMustMatch) {
  const std::string gpu = AddWorker("cuda:0");
  const std::string a = AddWorker();
  const std::string b = AddWorker();
  auto job = jobs_->Submit(Spec(2));
  ASSERT_TRUE(job.ok());
  auto got = jobs_->Get(job->job_id);
  ASSERT_EQ(got->state, JobState::kRunning);
  EXPECT_EQ(got->worker_ids, (std::vector<std::string>{a, b}));
  EXPECT_EQ(Poll(b)[0].rank, 1);
  EXPECT_TRUE(Poll(gpu).empty());
}

TEST_F(JobManagerTest, FirstFitDoesNotBlockSmallJobsBehindBigOnes) {
  AddWorker();
  auto big = jobs_->Submit(Spec(2));
  auto small = jobs_->Submit(Spec(1));
  EXPECT_EQ(jobs_->Get(big->job_id)->state, JobState::kQueued);
  EXPECT_EQ(jobs_->Get(small->job_id)->state, JobState::kRunning);
}

TEST_F(JobManagerTest, ResultsAreRefusedUntilTheEpochIsCharged) {
  const std::string w = AddWorker();
  auto job = *jobs_->Submit(Spec());
  job = *jobs_->Get(job.job_id);
  EpochRecord m;
  m.epoch = 1;
  auto refused = jobs_->ReportProgress(job.job_id, job.attempt, 0, w, m);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("not charged"));
  EXPECT_EQ(jobs_->Get(job.job_id)->epochs_done, 0);

  auto eps1 = jobs_->Charge(job.job_id, job.attempt, 0, 1, job.steps_per_epoch, job.sample_rate, 1.1);
  ASSERT_TRUE(eps1.ok()) << eps1.status();
  auto again = jobs_->Charge(job.job_id, job.attempt, 0, 1, job.steps_per_epoch, job.sample_rate, 1.1);
  EXPECT_DOUBLE_EQ(*again, *eps1) << "a retried charge is not counted twice";
  // The ledger's epsilon is exactly the accountant's for one epoch.
  auto expected =
      privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, {{job.sample_rate, 1.1, job.steps_per_epoch}}, 1e-5);
  EXPECT_DOUBLE_EQ(*eps1, *expected);
  ASSERT_TRUE(jobs_->ReportProgress(job.job_id, job.attempt, 0, w, m).ok());
  auto after = *jobs_->Get(job.job_id);
  EXPECT_EQ(after.epochs_done, 1);
  ASSERT_EQ(after.history.size(), 1u);
  EXPECT_DOUBLE_EQ(after.history[0].epsilon, *eps1);
  auto eps2 = jobs_->Charge(job.job_id, job.attempt, 0, 2, job.steps_per_epoch, job.sample_rate, 1.1);
  EXPECT_GT(*eps2, *eps1);
}

TEST_F(JobManagerTest, EpochEpsilonCountsThatEpochWhileTheJobCountsEveryCharge) {
  const std::string w = AddWorker();
  const std::string w2 = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(2))->job_id);
  auto charge = [&](int rank, int epoch) {
    return *jobs_->Charge(job.job_id, job.attempt, rank, epoch, job.steps_per_epoch, job.sample_rate, 1.1);
  };
  const double eps1 = charge(0, 1);
  const double eps2 = charge(1, 2);  // rank 1 runs ahead into epoch 2
  EpochRecord m;
  m.epoch = 1;
  ASSERT_TRUE(jobs_->ReportProgress(job.job_id, job.attempt, 0, w, m).ok());
  auto got = *jobs_->Get(job.job_id);
  EXPECT_DOUBLE_EQ(got.history[0].epsilon, eps1);
  EXPECT_DOUBLE_EQ(got.epsilon, eps2) << "the job's epsilon is everything charged";
  (void)w2;
}

// The eval release is its own ledger row, charged before its metrics are
// accepted, and the job's epsilon composes both mechanisms.
TEST_F(JobManagerTest, EvalMetricsNeedTheirOwnChargeAndComposeIntoEpsilon) {
  const std::string w = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(1, 3, "noise_multiplier: 1.1, eval: {noise_multiplier: 30}"))->job_id);
  ASSERT_DOUBLE_EQ(job.eval_noise_multiplier, 30);
  ASSERT_EQ(job.eval_every, 1);
  const auto train = jobs_->Charge(job.job_id, job.attempt, 0, 1, job.steps_per_epoch, job.sample_rate, 1.1);
  ASSERT_TRUE(train.ok()) << train.status();
  auto refused = jobs_->ReportProgress(job.job_id, job.attempt, 0, w, WithMetrics(1));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("eval metrics of epoch 1"));
  // An eval charge must be the job's mechanism: sigma_e, one step, q = 1,
  // from rank 0.
  auto eval = [&](int rank, int64_t steps, double q, double sigma) {
    return jobs_->Charge(job.job_id, job.attempt, rank, 1, steps, q, sigma, Mechanism::kEval).status();
  };
  EXPECT_EQ(eval(0, 1, 1.0, 3.0).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(eval(0, 2, 1.0, 30.0).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(eval(0, 1, 0.5, 30.0).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->LedgerForJob(job.job_id)->size(), 1u) << "refused charges record nothing";
  ASSERT_TRUE(eval(0, 1, 1.0, 30.0).ok());
  ASSERT_TRUE(eval(0, 1, 1.0, 30.0).ok()) << "a retried eval charge is idempotent";
  auto rows = *store_->LedgerForJob(job.job_id);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].mechanism, Mechanism::kTrain);
  EXPECT_EQ(rows[1].mechanism, Mechanism::kEval);
  EXPECT_EQ(rows[1].steps, 1);
  EXPECT_DOUBLE_EQ(rows[1].sample_rate, 1.0);
  EXPECT_DOUBLE_EQ(rows[1].noise_multiplier, 30.0);
  ASSERT_TRUE(jobs_->ReportProgress(job.job_id, job.attempt, 0, w, WithMetrics(1)).ok());
  auto got = *jobs_->Get(job.job_id);
  const double train_only =
      *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, {{job.sample_rate, 1.1, job.steps_per_epoch}}, 1e-5);
  const double both = *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp,
                                               {{job.sample_rate, 1.1, job.steps_per_epoch}, {1.0, 30.0, 1}}, 1e-5);
  EXPECT_DOUBLE_EQ(*train, train_only);
  EXPECT_GT(both, train_only);
  EXPECT_DOUBLE_EQ(got.history[0].epsilon, both);
  EXPECT_DOUBLE_EQ(got.epsilon, both);
  ASSERT_TRUE(got.history[0].eval_accuracy.has_value());
  EXPECT_DOUBLE_EQ(*got.history[0].eval_accuracy, 0.7);
  // Partial metrics are malformed.
  ASSERT_TRUE(jobs_->Charge(job.job_id, job.attempt, 0, 2, job.steps_per_epoch, job.sample_rate, 1.1).ok());
  ASSERT_TRUE(jobs_->Charge(job.job_id, job.attempt, 0, 2, 1, 1.0, 30.0, Mechanism::kEval).ok());
  EpochRecord partial;
  partial.epoch = 2;
  partial.eval_accuracy = 0.7;
  EXPECT_EQ(jobs_->ReportProgress(job.job_id, job.attempt, 0, w, partial).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Survives a restart: the ledger keeps both mechanisms.
  Open();
  EXPECT_DOUBLE_EQ(jobs_->Get(job.job_id)->history[0].epsilon, both);
  EXPECT_EQ(store_->LedgerForJob(job.job_id)->size(), 4u);
}

// privacy.eval: none: no eval release can be charged, no metrics are
// accepted, and the job's epsilon is exactly training's.
TEST_F(JobManagerTest, EvalNoneReleasesNoMetricsAndSpendsOnlyTraining) {
  const std::string w = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(1, 2, "noise_multiplier: 1.1, eval: none"))->job_id);
  EXPECT_EQ(job.eval_every, 0);
  ASSERT_TRUE(jobs_->Charge(job.job_id, job.attempt, 0, 1, job.steps_per_epoch, job.sample_rate, 1.1).ok());
  auto eval = jobs_->Charge(job.job_id, job.attempt, 0, 1, 1, 1.0, kDefaultEvalNoiseMultiplier, Mechanism::kEval);
  EXPECT_EQ(eval.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(eval.status().message()), HasSubstr("privacy.eval: none"));
  EXPECT_EQ(jobs_->ReportProgress(job.job_id, job.attempt, 0, w, WithMetrics(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EpochRecord bare;
  bare.epoch = 1;
  ASSERT_TRUE(jobs_->ReportProgress(job.job_id, job.attempt, 0, w, bare).ok());
  auto got = *jobs_->Get(job.job_id);
  EXPECT_FALSE(got.history[0].has_eval());
  EXPECT_TRUE(ToJson(got)["history"][0]["eval_accuracy"].is_null()) << "no metrics is null, not 0";
  EXPECT_DOUBLE_EQ(got.epsilon, *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp,
                                                         {{job.sample_rate, 1.1, job.steps_per_epoch}}, 1e-5));
}

// privacy.eval.every: releases (and their charges) only after every E-th
// epoch and the last; the budget plan counts exactly those.
TEST_F(JobManagerTest, EvalEveryChargesOnlyItsEpochs) {
  AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(1, 5, "noise_multiplier: 1.1, eval: {every: 2}"))->job_id);
  for (int e : {1, 3}) {
    EXPECT_EQ(jobs_->Charge(job.job_id, job.attempt, 0, e, 1, 1.0, job.eval_noise_multiplier, Mechanism::kEval)
                  .status()
                  .code(),
              absl::StatusCode::kFailedPrecondition)
        << e;
  }
  for (int e : {2, 4, 5}) {
    EXPECT_TRUE(jobs_->Charge(job.job_id, job.attempt, 0, e, 1, 1.0, job.eval_noise_multiplier, Mechanism::kEval).ok())
        << e;
  }
  ASSERT_TRUE(jobs_->Cancel(job.job_id).ok());
  auto next = *jobs_->Submit(Spec(1, 5, "noise_multiplier: 1.1, eval: {every: 2}"));
  auto view = (*jobs_->GetBudgets("/data/p.csv"))[0];
  const double spent =
      *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, {{1.0, job.eval_noise_multiplier, 3}}, view.delta);
  EXPECT_NEAR(view.spent, spent, 1e-9);
  const double committed = *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp,
                                                    {{1.0, job.eval_noise_multiplier, 3},
                                                     {next.sample_rate, 1.1, 5 * next.steps_per_epoch},
                                                     {1.0, next.eval_noise_multiplier, 3}},
                                                    view.delta);
  EXPECT_NEAR(view.committed, committed, 1e-9) << "the queued job's plan includes its 3 eval releases";
}

// privacy.noise_split: full — every rank adds the spec's sigma itself, so
// the total (what the ledger charges and what the ranks share out) is
// sigma * sqrt(W).
TEST_F(JobManagerTest, FullNoiseSplitChargesSigmaTimesRootW) {
  for (int i = 0; i < 4; ++i) AddWorker();
  auto full = *jobs_->Get(jobs_->Submit(Spec(4, 1, "noise_multiplier: 1.5, noise_split: full"))->job_id);
  auto split = *jobs_->Submit(Spec(4, 1, "noise_multiplier: 1.5"));
  EXPECT_DOUBLE_EQ(full.noise_multiplier, 3.0);
  EXPECT_DOUBLE_EQ(split.noise_multiplier, 1.5);
  auto eps = jobs_->Charge(full.job_id, full.attempt, 2, 1, full.steps_per_epoch, full.sample_rate, 3.0);
  ASSERT_TRUE(eps.ok()) << eps.status();
  EXPECT_DOUBLE_EQ(*eps, *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp,
                                                  {{full.sample_rate, 3.0, full.steps_per_epoch}}, 1e-5));
  EXPECT_EQ(jobs_->Charge(full.job_id, full.attempt, 2, 1, full.steps_per_epoch, full.sample_rate, 1.5).status().code(),
            absl::StatusCode::kFailedPrecondition)
      << "a rank that would add only the per-rank share is refused";
  EXPECT_EQ(Poll(full.worker_ids[0])[0].noise_multiplier, 3.0);
  EXPECT_FALSE(jobs_->Submit(Spec(1, 1, "noise_multiplier: 1.5, noise_split: half")).ok());
  // A target: sigma calibrated for it, every rank adds it whole, the total
  // (and the job's epsilon) is that of sigma * 2.
  auto target = *jobs_->Submit(Spec(4, 1, "target_epsilon: 2.0, noise_split: full"));
  auto per_rank = *jobs_->Submit(Spec(4, 1, "target_epsilon: 2.0"));
  EXPECT_NEAR(target.noise_multiplier, 2 * per_rank.noise_multiplier, 1e-12);
}

// The held-out split of raw files is the coordinator's: its key goes to the
// ranks of a data.path job in the assignment and to nobody else.
TEST_F(JobManagerTest, DataPathAssignmentsCarryTheCoordinatorsSplitKey) {
  const std::string w = AddWorker();
  auto job = *jobs_->Submit(Spec());
  auto as = Poll(w);
  ASSERT_EQ(as.size(), 1u);
  EXPECT_EQ(as[0].split_key, kSplitKey);
  const std::string json = ToJson(*jobs_->Get(job.job_id)).dump();
  EXPECT_EQ(json.find(std::to_string(kSplitKey)), std::string::npos) << "the job record never holds the key";
}

TEST_F(JobManagerTest, ChargeWithParametersOtherThanTheJobsIsRefused) {
  AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec())->job_id);
  EXPECT_EQ(jobs_->Charge(job.job_id, job.attempt, 0, 1, job.steps_per_epoch - 1, job.sample_rate, 1.1).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(jobs_->Charge(job.job_id, job.attempt, 0, 1, job.steps_per_epoch, job.sample_rate, 0.5).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(jobs_->Charge(job.job_id, job.attempt + 1, 0, 1, job.steps_per_epoch, job.sample_rate, 1.1).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store_->LedgerForJob(job.job_id)->empty());
}

TEST_F(JobManagerTest, SuccessFreesTheWorkerForTheNextJob) {
  const std::string w = AddWorker();
  auto first = *jobs_->Get(jobs_->Submit(Spec(1, 2))->job_id);
  auto second = jobs_->Submit(Spec(1, 2));
  EXPECT_EQ(jobs_->Get(second->job_id)->state, JobState::kQueued);
  Poll(w);
  RunEpoch(first, w, 1);
  RunEpoch(first, w, 2);
  ASSERT_TRUE(jobs_->ReportDone(first.job_id, first.attempt, 0, w, true, "").ok());
  EXPECT_EQ(jobs_->Get(first.job_id)->state, JobState::kSucceeded);
  EXPECT_EQ(jobs_->Get(second->job_id)->state, JobState::kRunning);
  EXPECT_EQ(Poll(w)[0].job_id, second->job_id);
}

TEST_F(JobManagerTest, FinishingEarlyIsAFailure) {
  const std::string w = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(1, 2))->job_id);
  RunEpoch(job, w, 1);
  ASSERT_TRUE(jobs_->ReportDone(job.job_id, job.attempt, 0, w, true, "").ok());
  auto got = *jobs_->Get(job.job_id);
  EXPECT_EQ(got.state, JobState::kFailed);
  EXPECT_THAT(got.reason, HasSubstr("1 of 2 epochs"));
}

TEST_F(JobManagerTest, RankFailureFailsTheJobAndStopsTheOtherRanks) {
  const std::string a = AddWorker();
  const std::string b = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(2))->job_id);
  Poll(a);
  Poll(b);
  ASSERT_TRUE(jobs_->ReportDone(job.job_id, job.attempt, 1, b, false, "out of memory").ok());
  auto got = *jobs_->Get(job.job_id);
  EXPECT_EQ(got.state, JobState::kFailed);
  EXPECT_THAT(got.reason, HasSubstr("out of memory"));
  auto hb = jobs_->Heartbeat(a, job.job_id, job.attempt);
  EXPECT_THAT(hb->cancel_job_ids, ::testing::Contains(job.job_id));
}

// resources.max_attempts > 1: a lost worker sends the job back to the queue;
// the next attempt resumes from the checkpoint after the last finished
// epoch, every attempt's charges stay in the ledger, and the checkpoints go
// when the job ends.
TEST_F(JobManagerTest, FailedAttemptResumesFromTheLastCheckpoint) {
  const std::string a = AddWorker();
  const std::string spec = absl::StrReplaceAll(Spec(1, 3), {{"workers: 1}", "workers: 1, max_attempts: 2}"}});
  auto job = *jobs_->Get(jobs_->Submit(spec)->job_id);
  ASSERT_EQ(job.state, JobState::kRunning);
  ASSERT_EQ(job.attempt, 1);
  // Epoch 1 finishes with a checkpoint; epoch 2 is charged, then `a` dies.
  ASSERT_TRUE(jobs_->Charge(job.job_id, 1, 0, 1, job.steps_per_epoch, job.sample_rate, job.noise_multiplier).ok());
  EpochRecord m;
  m.epoch = 1;
  ASSERT_TRUE(jobs_->ReportProgress(job.job_id, 1, 0, a, m, "state-after-epoch-1").ok());
  ASSERT_TRUE(jobs_->Charge(job.job_id, 1, 0, 2, job.steps_per_epoch, job.sample_rate, job.noise_multiplier).ok());
  clock_.AdvanceMs(1500);
  const std::string b = AddWorker();
  jobs_->Tick();
  auto resumed = *jobs_->Get(job.job_id);
  EXPECT_EQ(resumed.state, JobState::kRunning) << resumed.reason;
  EXPECT_EQ(resumed.attempt, 2);
  EXPECT_THAT(resumed.reason, HasSubstr("attempt 1 of 2 failed"));
  EXPECT_THAT(resumed.reason, HasSubstr("lost"));
  ASSERT_EQ(resumed.worker_ids, std::vector<std::string>{b});
  auto assigned = Poll(b, "", 0);
  ASSERT_EQ(assigned.size(), 1u);
  EXPECT_EQ(assigned[0].attempt, 2);
  EXPECT_EQ(assigned[0].start_epoch, 1);
  auto chunk = jobs_->FetchCheckpoint(job.job_id, 2, 0, 0, 1 << 20);
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  EXPECT_EQ(chunk->data, "state-after-epoch-1");
  EXPECT_EQ(chunk->epoch, 1);
  EXPECT_EQ(chunk->total_bytes, 19);
  auto part = jobs_->FetchCheckpoint(job.job_id, 2, 0, 6, 5);
  ASSERT_TRUE(part.ok());
  EXPECT_EQ(part->data, "after");
  EXPECT_FALSE(jobs_->FetchCheckpoint(job.job_id, 1, 0, 0, 100).ok()) << "the failed attempt gets nothing";

  // Attempt 2 trains epochs 2 and 3 (epoch 2 charged again: fresh noise).
  for (int e : {2, 3}) {
    ASSERT_TRUE(jobs_->Charge(job.job_id, 2, 0, e, job.steps_per_epoch, job.sample_rate, job.noise_multiplier).ok());
    m.epoch = e;
    ASSERT_TRUE(jobs_->ReportProgress(job.job_id, 2, 0, b, m, absl::StrCat("state-after-epoch-", e)).ok());
  }
  ASSERT_TRUE(jobs_->ReportDone(job.job_id, 2, 0, b, true, "").ok());
  auto done = *jobs_->Get(job.job_id);
  EXPECT_EQ(done.state, JobState::kSucceeded);
  ASSERT_EQ(done.history.size(), 3u);
  for (int e = 0; e < 3; ++e) EXPECT_EQ(done.history[e].epoch, e + 1);
  const privacy::SubsampledGaussian epoch{job.sample_rate, job.noise_multiplier, job.steps_per_epoch};
  const double four = *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, {epoch, epoch, epoch, epoch}, 1e-5);
  EXPECT_NEAR(done.epsilon, four, 1e-9) << "the repeated epoch is charged too";
  EXPECT_EQ(store_->ReadCheckpoint(job.job_id, 3, 0, 100).status().code(), absl::StatusCode::kNotFound)
      << "checkpoints go when the job ends";
}

TEST_F(JobManagerTest, LastAttemptFailsTheJob) {
  const std::string spec = absl::StrReplaceAll(Spec(1, 3), {{"workers: 1}", "workers: 1, max_attempts: 2}"}});
  const std::string a = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(spec)->job_id);
  ASSERT_TRUE(jobs_->ReportDone(job.job_id, 1, 0, a, false, "out of memory").ok());
  auto second = *jobs_->Get(job.job_id);
  ASSERT_EQ(second.state, JobState::kRunning) << "rescheduled on the same, now idle, worker";
  ASSERT_EQ(second.attempt, 2);
  ASSERT_TRUE(jobs_->ReportDone(job.job_id, 2, 0, a, false, "out of memory again").ok());
  auto failed = *jobs_->Get(job.job_id);
  EXPECT_EQ(failed.state, JobState::kFailed);
  EXPECT_THAT(failed.reason, HasSubstr("out of memory again (attempt 2 of 2)"));
  EXPECT_FALSE(jobs_->FetchCheckpoint(job.job_id, 2, 0, 0, 100).ok());
}

// Subscribers get every event after their snapshot, in order, on the
// publishing thread; none after Unsubscribe; nullptr once at Shutdown.
TEST_F(JobManagerTest, SubscribersSeeEveryLaterEventInOrder) {
  auto job = *jobs_->Submit(Spec());
  std::vector<int64_t> first, second;
  auto a = jobs_->Subscribe(job.job_id, [&](const JobEvent* e) { first.push_back(e ? e->seq : -1); });
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->job.state, JobState::kQueued);
  const std::string w = AddWorker();  // schedules: QUEUED -> RUNNING
  auto running = *jobs_->Get(job.job_id);
  RunEpoch(running, w, 1);
  auto b = jobs_->Subscribe(job.job_id, [&](const JobEvent* e) { second.push_back(e ? e->seq : -1); });
  ASSERT_TRUE(b.ok());
  jobs_->Unsubscribe(a->id);
  ASSERT_TRUE(jobs_->Cancel(job.job_id).ok());
  ASSERT_EQ(first.size(), 2u) << "RUNNING and epoch 1";
  EXPECT_EQ(first[0], a->seq + 1);
  EXPECT_EQ(first[1], a->seq + 2);
  ASSERT_EQ(second.size(), 1u) << "the cancel only";
  EXPECT_EQ(second[0], b->seq + 1);
  EXPECT_EQ(jobs_->Subscribe("job-999", [](const JobEvent*) {}).status().code(), absl::StatusCode::kNotFound);
  jobs_->Shutdown();
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[1], -1) << "shutdown is announced";
  EXPECT_EQ(first.size(), 2u);
  EXPECT_FALSE(jobs_->Subscribe(job.job_id, [](const JobEvent*) {}).ok());
}

// The trained model: only rank 0 of the current attempt, only after the
// last epoch; served only once the job SUCCEEDED, in chunks.
TEST_F(JobManagerTest, ModelIsStoredAfterTheLastEpochAndServedOnceSucceeded) {
  const std::string a = AddWorker();
  const std::string b = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(2, 1))->job_id);
  ASSERT_EQ(job.state, JobState::kRunning);
  EXPECT_EQ(jobs_->StoreModel(job.job_id, 1, 0, "weights").code(), absl::StatusCode::kFailedPrecondition)
      << "no epoch done yet";
  RunEpoch(job, a, 1);
  EXPECT_EQ(jobs_->StoreModel(job.job_id, 1, 1, "weights").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(jobs_->StoreModel(job.job_id, 2, 0, "weights").ok()) << "not the current attempt";
  EXPECT_EQ(jobs_->GetModel(job.job_id, 0, 100).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(jobs_->StoreModel(job.job_id, 1, 0, "trained-weights").ok());
  EXPECT_EQ(jobs_->GetModel(job.job_id, 0, 100).status().code(), absl::StatusCode::kFailedPrecondition)
      << "still RUNNING";
  ASSERT_TRUE(jobs_->ReportDone(job.job_id, 1, 1, b, true, "").ok());
  ASSERT_TRUE(jobs_->ReportDone(job.job_id, 1, 0, a, true, "").ok());
  ASSERT_EQ(jobs_->Get(job.job_id)->state, JobState::kSucceeded);
  auto all = jobs_->GetModel(job.job_id, 0, 100);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->data, "trained-weights");
  EXPECT_EQ(all->total_bytes, 15);
  auto tail = jobs_->GetModel(job.job_id, 8, 100);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->data, "weights");
  EXPECT_FALSE(jobs_->GetModel(job.job_id, 16, 100).ok());
  // It survives a restart.
  Open();
  auto again = jobs_->GetModel(job.job_id, 0, 100);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->data, "trained-weights");
}

TEST_F(JobManagerTest, ReadinessCountsLiveWorkersAndEndsAtShutdown) {
  EXPECT_EQ(*jobs_->Ready(), 0);
  const std::string a = AddWorker();
  AddWorker();
  EXPECT_EQ(*jobs_->Ready(), 2);
  clock_.AdvanceMs(600);
  Poll(a);
  clock_.AdvanceMs(600);
  jobs_->Tick();  // the second worker's lease ran out
  EXPECT_EQ(*jobs_->Ready(), 1);
  jobs_->Shutdown();
  EXPECT_EQ(jobs_->Ready().status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(JobManagerTest, LostWorkerFailsItsJobWithAReason) {
  const std::string a = AddWorker();
  const std::string b = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(2))->job_id);
  clock_.AdvanceMs(600);
  Poll(a, job.job_id, job.attempt);  // a stays alive, b goes silent
  clock_.AdvanceMs(600);
  jobs_->Tick();
  auto got = *jobs_->Get(job.job_id);
  EXPECT_EQ(got.state, JobState::kFailed);
  EXPECT_THAT(got.reason, HasSubstr(b));
  EXPECT_THAT(got.reason, HasSubstr("lost"));
  auto workers = jobs_->ListWorkers();
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[1].state, WorkerState::kLost);
  EXPECT_TRUE(jobs_->Heartbeat(b, "", 0)->reregister);
}

TEST_F(JobManagerTest, CancelQueuedRunningAndTerminal) {
  auto queued = *jobs_->Submit(Spec(2));
  EXPECT_EQ(jobs_->Cancel(queued.job_id)->state, JobState::kCancelled);
  const std::string w = AddWorker();
  auto running = *jobs_->Get(jobs_->Submit(Spec())->job_id);
  EXPECT_EQ(running.state, JobState::kRunning);
  Poll(w);
  EXPECT_EQ(jobs_->Cancel(running.job_id)->state, JobState::kCancelled);
  auto hb = jobs_->Heartbeat(w, running.job_id, running.attempt);
  EXPECT_THAT(hb->cancel_job_ids, ::testing::Contains(running.job_id));
  EXPECT_EQ(jobs_->Cancel(running.job_id).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(jobs_->Cancel("job-nope").status().code(), absl::StatusCode::kNotFound);
  // The worker is free once it confirms.
  ASSERT_TRUE(jobs_->ReportDone(running.job_id, running.attempt, 0, w, false, "cancelled").ok());
  EXPECT_EQ(jobs_->ListWorkers()[0].state, WorkerState::kIdle);
}

TEST_F(JobManagerTest, InvalidSpecsAreRefusedAndNotStored) {
  auto bad = jobs_->Submit("name: x\ndata: {path: /d.csv}\ntraining: {epochs: -3}\n");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("training.epochs"));
  auto missing = jobs_->Submit(absl::StrReplaceAll(Spec(), {{"/data/p.csv", "/missing.csv"}}));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/missing.csv"));
  resolver_.train_rows = 50;
  auto too_big = jobs_->Submit(Spec());
  EXPECT_THAT(std::string(too_big.status().message()), HasSubstr("training.batch_size"));
  EXPECT_TRUE(jobs_->List().empty());
}

TEST_F(JobManagerTest, TargetEpsilonIsCalibratedAtSubmit) {
  auto job = jobs_->Submit(Spec(1, 3, "target_epsilon: 2.0"));
  ASSERT_TRUE(job.ok()) << job.status();
  // The target covers training and the three eval releases together.
  ASSERT_EQ(job->eval_every, 1);
  auto eps = privacy::ComputeEpsilon(
      privacy::AccountantKind::kRdp,
      {{job->sample_rate, job->noise_multiplier, job->steps_per_epoch * 3}, {1.0, job->eval_noise_multiplier, 3}},
      1e-5);
  EXPECT_LE(*eps, 2.0);
  EXPECT_GT(*eps, 1.9);
  // Eval releases alone above the target: refused, naming the field.
  auto unreachable = jobs_->Submit(Spec(1, 3, "target_epsilon: 0.01, eval: {noise_multiplier: 2}"));
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unreachable.status().message()), HasSubstr("privacy.target_epsilon"));
}

TEST_F(JobManagerTest, EveryWatcherSeesEveryEventInOrder) {
  auto job = *jobs_->Submit(Spec(1, 2));
  std::vector<std::vector<JobEvent>> seen(2);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(jobs_
                    ->Subscribe(job.job_id,
                                [&seen, i](const JobEvent* e) {
                                  if (e != nullptr) seen[i].push_back(*e);
                                })
                    .ok());
  }
  const std::string w = AddWorker();
  auto running = *jobs_->Get(job.job_id);
  RunEpoch(running, w, 1);
  RunEpoch(running, w, 2);
  ASSERT_TRUE(jobs_->ReportDone(job.job_id, running.attempt, 0, w, true, "").ok());
  for (const auto& events : seen) {
    ASSERT_EQ(events.size(), 4u);  // RUNNING, epoch 1, epoch 2, SUCCEEDED
    EXPECT_EQ(events[0].state, JobState::kRunning);
    EXPECT_EQ(events[1].epoch.epoch, 1);
    EXPECT_EQ(events[2].epoch.epoch, 2);
    EXPECT_EQ(events[3].state, JobState::kSucceeded);
    for (std::size_t i = 1; i < events.size(); ++i) EXPECT_EQ(events[i].seq, events[i - 1].seq + 1);
  }
}

TEST_F(JobManagerTest, RestartKeepsJobsEpochsAndLedger) {
  auto queued = *jobs_->Submit(Spec(2));
  const std::string w = AddWorker();
  auto running = *jobs_->Get(jobs_->Submit(Spec(1, 3))->job_id);
  Poll(w);
  RunEpoch(running, w, 1);
  const double eps = jobs_->Get(running.job_id)->epsilon;
  Open();  // coordinator restart on the same state
  EXPECT_EQ(jobs_->List().size(), 2u);
  EXPECT_EQ(jobs_->Get(queued.job_id)->state, JobState::kQueued);
  auto back = *jobs_->Get(running.job_id);
  EXPECT_EQ(back.state, JobState::kRunning);
  EXPECT_EQ(back.epochs_done, 1);
  EXPECT_DOUBLE_EQ(back.epsilon, eps);
  // The worker re-attaches with its run and continues.
  jobs_->RegisterWorker("host", "cpu", 1, w, RunningRun{running.job_id, running.attempt, 0});
  clock_.AdvanceMs(1500);
  ASSERT_TRUE(jobs_->Heartbeat(w, running.job_id, running.attempt).ok());
  jobs_->Tick();
  EXPECT_EQ(jobs_->Get(running.job_id)->state, JobState::kRunning);
  RunEpoch(running, w, 2);
  RunEpoch(running, w, 3);
  ASSERT_TRUE(jobs_->ReportDone(running.job_id, running.attempt, 0, w, true, "").ok());
  EXPECT_EQ(jobs_->Get(running.job_id)->state, JobState::kSucceeded);
  EXPECT_EQ(jobs_->Get(running.job_id)->history.size(), 3u);
}

// Ranks are bound to the certificate identity of the worker that holds
// them, durably: only that identity holds the run, also after a restart,
// and only it gets the rank back when it re-registers.
TEST_F(JobManagerTest, RunsBelongToTheIdentityOfTheirWorkerAcrossARestart) {
  clock_.AdvanceMs(1);
  const std::string w1 = jobs_->RegisterWorker("h1", "cpu", 1, "", std::nullopt, "worker-1").worker_id;
  clock_.AdvanceMs(1);
  const std::string w2 = jobs_->RegisterWorker("h2", "cpu", 2, "", std::nullopt, "worker-2").worker_id;
  auto job = *jobs_->Get(jobs_->Submit(Spec(1, 3), "alice")->job_id);
  EXPECT_EQ(job.owner, "alice");
  ASSERT_EQ(job.worker_identities, std::vector<std::string>{"worker-1"});
  EXPECT_TRUE(jobs_->HoldsRun("worker-1", job.job_id, job.attempt, 0));
  EXPECT_TRUE(jobs_->HoldsRun("worker-1", job.job_id, job.attempt, -1));
  EXPECT_FALSE(jobs_->HoldsRun("worker-2", job.job_id, job.attempt, 0));
  EXPECT_FALSE(jobs_->HoldsRun("worker-1", job.job_id, job.attempt, 1));
  EXPECT_FALSE(jobs_->HoldsRun("worker-1", job.job_id, job.attempt + 1, 0));
  EXPECT_FALSE(jobs_->HoldsRun("worker-1", "job-999999", job.attempt, 0));
  EXPECT_EQ(jobs_->WorkerIdentity(w2), "worker-2");
  EXPECT_EQ(jobs_->WorkerIdentity("w-unknown"), std::nullopt);
  Poll(w1);
  RunEpoch(job, w1, 1);
  Open();  // coordinator restart: no worker is known, the binding is
  EXPECT_TRUE(jobs_->HoldsRun("worker-1", job.job_id, job.attempt, 0));
  EXPECT_EQ(jobs_->Get(job.job_id)->owner, "alice");
  // Another identity claiming the rank (under the holder's old id) is told
  // to stop; the holder gets it back.
  const std::string imposter =
      jobs_->RegisterWorker("h2", "cpu", 2, w1, RunningRun{job.job_id, job.attempt, 0}, "worker-2").worker_id;
  auto told = jobs_->Heartbeat(imposter, job.job_id, job.attempt);
  ASSERT_TRUE(told.ok());
  EXPECT_THAT(told->cancel_job_ids, ::testing::Contains(job.job_id));
  const std::string back =
      jobs_->RegisterWorker("h1", "cpu", 1, "", RunningRun{job.job_id, job.attempt, 0}, "worker-1").worker_id;
  EXPECT_EQ(jobs_->Get(job.job_id)->worker_ids[0], back);
  RunEpoch(job, back, 2);
  EXPECT_EQ(jobs_->Get(job.job_id)->epochs_done, 2);
}

TEST_F(JobManagerTest, RunningJobWhoseWorkersDoNotReturnFailsAfterRestart) {
  const std::string w = AddWorker();
  auto running = *jobs_->Get(jobs_->Submit(Spec())->job_id);
  Open();
  jobs_->Tick();
  EXPECT_EQ(jobs_->Get(running.job_id)->state, JobState::kRunning) << "waits one lease";
  clock_.AdvanceMs(1001);
  jobs_->Tick();
  auto got = *jobs_->Get(running.job_id);
  EXPECT_EQ(got.state, JobState::kFailed);
  EXPECT_THAT(got.reason, HasSubstr("did not re-attach"));
}

TEST_F(JobManagerTest, RendezvousGetWaitsForSetAndTimesOut) {
  const std::string a = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec())->job_id);
  std::thread setter([&] { ASSERT_TRUE(jobs_->RendezvousSet(job.job_id, job.attempt, "nccl_id", "abc").ok()); });
  auto v = jobs_->RendezvousGet(job.job_id, job.attempt, "nccl_id", absl::Now() + absl::Seconds(10));
  setter.join();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "abc");
  auto missing = jobs_->RendezvousGet(job.job_id, job.attempt, "other", absl::Now() + absl::Milliseconds(50));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kDeadlineExceeded);
  auto stale = jobs_->RendezvousGet(job.job_id, job.attempt + 1, "nccl_id", absl::Now());
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(JobManagerTest, RendezvousWaitHoldsNothingHeartbeatsAndStatusReadsNeed) {
  const std::string a = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec())->job_id);
  absl::StatusOr<std::string> got;
  std::thread waiter = WaitForKey(job, "nccl_id", &got);
  // Each of these takes the job lock; a wait that held it would hang here.
  EXPECT_TRUE(jobs_->Heartbeat(a, job.job_id, job.attempt).ok());
  EXPECT_EQ(jobs_->Get(job.job_id)->state, JobState::kRunning);
  EXPECT_EQ(jobs_->ListWorkers().size(), 1u);
  EXPECT_TRUE(
      jobs_->Charge(job.job_id, job.attempt, 0, 1, job.steps_per_epoch, job.sample_rate, job.noise_multiplier).ok());
  ASSERT_TRUE(jobs_->RendezvousSet(job.job_id, job.attempt, "nccl_id", "abc").ok());
  waiter.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "abc");
}

TEST_F(JobManagerTest, RendezvousWaitEndsWithTheAttemptAndSaysWhy) {
  AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec())->job_id);
  absl::StatusOr<std::string> got;
  std::thread waiter = WaitForKey(job, "nccl_id", &got);
  ASSERT_TRUE(jobs_->Cancel(job.job_id).ok());
  waiter.join();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(got.status().message(), HasSubstr("is CANCELLED, not RUNNING"));
}

TEST_F(JobManagerTest, ShutdownEndsRendezvousWaits) {
  AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec())->job_id);
  absl::StatusOr<std::string> got;
  std::thread waiter = WaitForKey(job, "nccl_id", &got);
  jobs_->Shutdown();
  waiter.join();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace dpfleet::server

namespace dpfleet::server {
namespace {

// Composed epsilon of k jobs like `job` (training and one eval release per
// epoch) under RDP at delta 1e-5.
double PlannedEpsilon(const JobRecord& job, int k = 1) {
  std::vector<privacy::SubsampledGaussian> plans;
  for (int i = 0; i < k; ++i) {
    plans.push_back({job.sample_rate, job.noise_multiplier, job.steps_per_epoch * job.epochs});
    plans.push_back({1.0, job.eval_noise_multiplier, job.epochs});
  }
  return *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, plans, 1e-5);
}

TEST_F(JobManagerTest, BudgetRefusesAJobThatWouldOvershoot) {
  auto first = jobs_->Submit(Spec(1, 3));
  ASSERT_TRUE(first.ok());
  const double one = PlannedEpsilon(*first);
  const double two = PlannedEpsilon(*first, 2);
  ASSERT_TRUE(jobs_->Cancel(first->job_id).ok());
  // Room for one such job but not two.
  const double budget = (one + two) / 2;
  auto set = jobs_->SetBudget("/data/p.csv", budget, 1e-5);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->size(), 1u);
  EXPECT_EQ((*set)[0].file, *resolver_.FileKey("dataset", "/data/p.csv"));
  auto ok = jobs_->Submit(Spec(1, 3));
  ASSERT_TRUE(ok.ok()) << ok.status();
  auto refused = jobs_->Submit(Spec(1, 3));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("budget"));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("/data/p.csv"));
  auto view = jobs_->GetBudgets("/data/p.csv");
  ASSERT_TRUE(view.ok());
  ASSERT_EQ(view->size(), 1u);
  EXPECT_DOUBLE_EQ((*view)[0].spent, 0.0);
  EXPECT_NEAR((*view)[0].committed, one, 1e-9) << "the queued job's whole plan is committed";
  EXPECT_NEAR((*view)[0].remaining, budget - one, 1e-9);
  // A non-private job has no finite epsilon: refused on a budgeted dataset.
  auto none = jobs_->Submit("name: x\ndata: {path: /data/p.csv}\ntraining: {batch_size: 100}\nprivacy: {mode: none}\n");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  // A budget below what is committed is refused and leaves the old one.
  EXPECT_EQ(jobs_->SetBudget("/data/p.csv", 0.5 * one, 1e-5).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_DOUBLE_EQ((*jobs_->GetBudgets("/data/p.csv"))[0].epsilon_budget, budget);
  // Bad input names the field.
  EXPECT_THAT(std::string(jobs_->SetBudget("/data/p.csv", -1, 1e-5).status().message()), HasSubstr("epsilon"));
  EXPECT_THAT(std::string(jobs_->SetBudget("/data/p.csv", 1, 2).status().message()), HasSubstr("delta"));
}

TEST_F(JobManagerTest, ConcurrentSubmissionsCannotOvershootABudget) {
  auto probe = *jobs_->Submit(Spec(1, 1));
  ASSERT_TRUE(jobs_->Cancel(probe.job_id).ok());
  // Room for exactly three such jobs.
  const double budget = (PlannedEpsilon(probe, 3) + PlannedEpsilon(probe, 4)) / 2;
  ASSERT_TRUE(jobs_->SetBudget("/data/p.csv", budget, 1e-5).ok());
  std::atomic<int> accepted{0}, refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto r = jobs_->Submit(Spec(1, 1));
      (r.ok() ? accepted : refused)++;
      if (!r.ok()) {
        EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(accepted + refused, 8);
  EXPECT_EQ(accepted.load(), 3);
  auto view = (*jobs_->GetBudgets("/data/p.csv"))[0];
  EXPECT_LE(view.committed, budget) << "never overshoots";
  // One more would overshoot.
  EXPECT_EQ(jobs_->Submit(Spec(1, 1)).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(JobManagerTest, CrashBetweenChargeAndReleaseKeepsTheCharge) {
  const std::string w = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(1, 3))->job_id);
  auto eps = jobs_->Charge(job.job_id, job.attempt, 0, 1, job.steps_per_epoch, job.sample_rate, 1.1);
  ASSERT_TRUE(eps.ok());
  Open();  // crash: the epoch's result was never released
  auto back = *jobs_->Get(job.job_id);
  EXPECT_EQ(back.epochs_done, 0);
  EXPECT_DOUBLE_EQ(back.epsilon, *eps) << "the spent budget survives the crash";
  auto view = (*jobs_->GetBudgets("/data/p.csv"))[0];
  EXPECT_DOUBLE_EQ(view.spent, *eps);
  EXPECT_EQ(view.jobs, 1);
  // Listing every dataset includes one that only has ledger entries.
  EXPECT_EQ(jobs_->GetBudgets("")->size(), 1u);
}

TEST_F(JobManagerTest, LedgerComposesAcrossJobsOfADataset) {
  const std::string w = AddWorker();
  auto a = *jobs_->Get(jobs_->Submit(Spec(1, 1))->job_id);
  RunEpoch(a, w, 1);
  ASSERT_TRUE(jobs_->ReportDone(a.job_id, a.attempt, 0, w, true, "").ok());
  auto b = *jobs_->Get(jobs_->Submit(Spec(1, 1, "noise_multiplier: 2.0"))->job_id);
  RunEpoch(b, w, 1);
  const double se = a.eval_noise_multiplier;
  auto expected = *privacy::ComputeEpsilon(
      privacy::AccountantKind::kRdp,
      {{a.sample_rate, 1.1, a.steps_per_epoch}, {1.0, se, 1}, {b.sample_rate, 2.0, b.steps_per_epoch}, {1.0, se, 1}},
      1e-5);
  auto view = (*jobs_->GetBudgets("/data/p.csv"))[0];
  EXPECT_NEAR(view.spent, expected, 1e-12);
  EXPECT_EQ(view.jobs, 2);
  EXPECT_LT(view.spent, jobs_->Get(a.job_id)->epsilon + jobs_->Get(b.job_id)->epsilon) << "composed, not summed";
}

}  // namespace
}  // namespace dpfleet::server

namespace dpfleet::server {
namespace {

TEST_F(JobManagerTest, NonPrivateUseOfADatasetIsRecordedAndBlocksABudget) {
  const std::string w = AddWorker();
  auto job = *jobs_->Get(
      jobs_
          ->Submit(
              "name: base\ndata: {path: /data/p.csv}\ntraining: {epochs: 1, batch_size: 100}\nprivacy: {mode: none}\n")
          ->job_id);
  ASSERT_EQ(job.state, JobState::kRunning);
  ASSERT_TRUE(jobs_->Charge(job.job_id, job.attempt, 0, 1, job.steps_per_epoch, job.sample_rate, 0).ok());
  auto view = (*jobs_->GetBudgets("/data/p.csv"))[0];
  EXPECT_TRUE(std::isinf(view.spent)) << "a non-private epoch has no finite epsilon";
  EXPECT_EQ(view.jobs, 1);
  EXPECT_EQ(jobs_->SetBudget("/data/p.csv", 100, 1e-5).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace dpfleet::server

#include "common/pums/shards.h"
#include "common/pums/synth.h"

namespace dpfleet::server {
namespace {

TEST_F(JobManagerTest, FetchShardServesOnlyTheRanksOwnFiles) {
  const std::string csv = dir_.Join("pums.csv");
  ASSERT_TRUE(data::WriteSyntheticPums({/*rows=*/4000, /*seed=*/2}, csv).ok());
  DatasetRegistry registry(store_.get(), &clock_, dir_.path());
  registry.set_data_roots(*DataRoots::Create({dir_.path()}));
  jobs_->set_datasets(&registry);
  DatasetRecord req;
  req.name = "tiny";
  req.paths = {csv};
  req.shards = 4;
  ASSERT_TRUE(registry.Add(req).ok());
  auto ready = registry.WaitPrepared("tiny", absl::Seconds(60));
  ASSERT_TRUE(ready.ok());
  ASSERT_EQ(ready->state, "READY") << ready->reason;
  EXPECT_EQ(ready->rows_prepared, ready->rows_train + ready->rows_eval) << "progress reached the end";
  EXPECT_GT(ready->rows_train, 0);
  AddWorker();
  AddWorker();
  auto job = jobs_->Submit("name: t\ndataset: tiny\ntraining: {epochs: 1, batch_size: 64}\nresources: {workers: 2}\n");
  ASSERT_TRUE(job.ok()) << job.status();
  auto running = *jobs_->Get(job->job_id);
  ASSERT_EQ(running.state, JobState::kRunning);
  EXPECT_EQ(running.train_rows, ready->rows_train);
  const auto fetch = [&](int rank, const std::string& file) {
    return jobs_->FetchShard(running.job_id, running.attempt, rank, file, 0, 1 << 20);
  };
  // Shards 0 and 2 belong to rank 0; 1 and 3 to rank 1.
  EXPECT_TRUE(fetch(0, data::TrainShardFileName(2, 4)).ok());
  EXPECT_TRUE(fetch(1, data::TrainShardFileName(3, 4)).ok());
  EXPECT_EQ(fetch(1, data::TrainShardFileName(0, 4)).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(fetch(1, data::kEvalShardFile).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(fetch(0, "../coordinator.db").status().code(), absl::StatusCode::kPermissionDenied);
  auto manifest = fetch(1, data::kManifestFile);
  ASSERT_TRUE(manifest.ok());
  EXPECT_EQ(static_cast<int64_t>(manifest->first.size()), manifest->second);
  // Chunks: a small max_bytes gives a prefix and the full size.
  auto part = jobs_->FetchShard(running.job_id, running.attempt, 0, data::kEvalShardFile, 10, 100);
  ASSERT_TRUE(part.ok());
  EXPECT_EQ(part->first.size(), 100u);
  EXPECT_GT(part->second, 110);
  EXPECT_EQ(jobs_->FetchShard(running.job_id, running.attempt + 1, 0, data::kManifestFile, 0, 10).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Removing a dataset: refused while a live job uses it; then its shards go,
// the registration is forgotten across a restart, and the budget spent on
// its files stays (the ledger is keyed by the raw files).
TEST_F(JobManagerTest, RemoveDatasetRefusedWhileInUseAndKeepsTheLedger) {
  const std::string csv = dir_.Join("pums.csv");
  ASSERT_TRUE(data::WriteSyntheticPums({/*rows=*/4000, /*seed=*/2}, csv).ok());
  auto registry = std::make_unique<DatasetRegistry>(store_.get(), &clock_, dir_.path());
  registry->set_data_roots(*DataRoots::Create({dir_.path()}));
  jobs_->set_datasets(registry.get());
  DatasetRecord req;
  req.name = "tiny";
  req.paths = {csv};
  ASSERT_TRUE(registry->Add(req).ok());
  auto ready = registry->WaitPrepared("tiny", absl::Seconds(60));
  ASSERT_TRUE(ready.ok() && ready->state == "READY");
  ASSERT_TRUE(std::filesystem::exists(ready->dir + "/manifest.json"));
  const std::string key = DatasetKey(ready->paths);

  const std::string w = AddWorker();
  auto job = jobs_->Submit("name: t\ndataset: tiny\ntraining: {epochs: 2, batch_size: 64}\n");
  ASSERT_TRUE(job.ok()) << job.status();
  auto running = *jobs_->Get(job->job_id);
  ASSERT_EQ(running.state, JobState::kRunning);
  auto refused = jobs_->RemoveDataset("tiny");
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(job->job_id + " (RUNNING)"));
  EXPECT_TRUE(registry->Get("tiny").ok()) << "a refused removal changes nothing";

  RunEpoch(running, w, 1);
  ASSERT_TRUE(jobs_->Cancel(job->job_id).ok());
  auto spent = jobs_->GetBudgets(key);
  ASSERT_TRUE(spent.ok() && spent->size() == 1);
  const double eps = (*spent)[0].spent;
  EXPECT_GT(eps, 0);

  auto removed = jobs_->RemoveDataset("tiny");
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->name, "tiny");
  EXPECT_FALSE(std::filesystem::exists(ready->dir)) << "the coordinator's shards are deleted";
  EXPECT_TRUE(std::filesystem::exists(csv)) << "the raw file is not";
  EXPECT_EQ(registry->Get("tiny").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(jobs_->RemoveDataset("tiny").status().code(), absl::StatusCode::kNotFound);
  auto orphan = jobs_->Submit("name: t2\ndataset: tiny\ntraining: {epochs: 1, batch_size: 64}\n");
  EXPECT_EQ(orphan.status().code(), absl::StatusCode::kInvalidArgument);
  auto after = jobs_->GetBudgets(key);
  ASSERT_TRUE(after.ok() && after->size() == 1);
  EXPECT_DOUBLE_EQ((*after)[0].spent, eps) << "removal never forgets spent budget";

  // A restart does not bring it back; re-adding the same files prepares
  // them again, and the ledger still holds what was spent on them.
  registry.reset();
  Open();
  registry = std::make_unique<DatasetRegistry>(store_.get(), &clock_, dir_.path());
  registry->set_data_roots(*DataRoots::Create({dir_.path()}));
  ASSERT_TRUE(registry->Recover().ok());
  jobs_->set_datasets(registry.get());
  EXPECT_TRUE(registry->List().empty());
  ASSERT_TRUE(registry->Add(req).ok());
  auto again = registry->WaitPrepared("tiny", absl::Seconds(60));
  ASSERT_TRUE(again.ok() && again->state == "READY") << (again.ok() ? again->reason : again.status().ToString());
  auto restarted = jobs_->GetBudgets(key);
  ASSERT_TRUE(restarted.ok() && restarted->size() == 1);
  EXPECT_DOUBLE_EQ((*restarted)[0].spent, eps);
}

// Removing a dataset while it is being prepared cancels the preparation,
// which then deletes what it wrote; the name is free again afterwards.
TEST_F(JobManagerTest, RemovingAPreparingDatasetCancelsItsPreparation) {
  const std::string csv = dir_.Join("pums.csv");
  ASSERT_TRUE(data::WriteSyntheticPums({/*rows=*/100, /*seed=*/5}, csv).ok());
  // The first preparation writes a partial shard, then holds until it is
  // cancelled and the test lets it go: every step below happens in a known
  // state. Later ones (the re-add at the end) fail at once.
  absl::Notification started, release;
  std::atomic<bool> saw_cancel{false};
  std::atomic<int> calls{0};
  DatasetRegistry registry(store_.get(), &clock_, dir_.path(),
                           [&](const data::PrepareOptions& o) -> absl::StatusOr<data::Manifest> {
                             if (calls++ > 0) return absl::InvalidArgumentError("not this time");
                             std::filesystem::create_directories(o.out_dir);
                             std::ofstream(o.out_dir + "/train-00000-of-00004.bin.partial") << "x";
                             started.Notify();
                             while (!o.cancel->load()) std::this_thread::yield();
                             saw_cancel = true;
                             release.WaitForNotification();
                             return absl::CancelledError("preparation cancelled");
                           });
  registry.set_data_roots(*DataRoots::Create({dir_.path()}));
  jobs_->set_datasets(&registry);
  DatasetRecord req;
  req.name = "big";
  req.paths = {csv};
  auto added = registry.Add(req);
  ASSERT_TRUE(added.ok());
  started.WaitForNotification();
  auto removed = jobs_->RemoveDataset("big");
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->state, "PREPARING");
  EXPECT_EQ(registry.Get("big").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.Add(req).status().code(), absl::StatusCode::kUnavailable)
      << "the name is refused while the cancelled preparation is still stopping";
  release.Notify();
  ASSERT_TRUE(registry.WaitRemoved("big", absl::Seconds(60)).ok());
  EXPECT_TRUE(saw_cancel) << "the registry hands its cancel flag to the preparation";
  EXPECT_FALSE(std::filesystem::exists(added->dir)) << "what the preparation wrote is deleted";
  auto stored = store_->LoadDatasets();
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->empty());
  EXPECT_TRUE(registry.Add(req).ok()) << "the name is free once the preparation has stopped";
}

// A crash between forgetting a dataset and deleting its shards leaves a
// directory no record names; the next start deletes it.
TEST_F(JobManagerTest, RecoverDeletesShardDirectoriesNoDatasetNames) {
  const std::string orphan = dir_.Join("datasets/gone");
  std::filesystem::create_directories(orphan);
  std::ofstream(orphan + "/manifest.json") << "{}";
  DatasetRegistry registry(store_.get(), &clock_, dir_.path());
  ASSERT_TRUE(registry.Recover().ok());
  EXPECT_FALSE(std::filesystem::exists(orphan));
  EXPECT_TRUE(std::filesystem::exists(dir_.path())) << "only the orphan goes";
}

}  // namespace
}  // namespace dpfleet::server

namespace dpfleet::server {
namespace {

std::string SpecOn(const std::string& paths, const std::string& privacy = "noise_multiplier: 1.1, delta: 1.0e-5") {
  return absl::StrCat("name: t\ndata: {path: [", paths, "]}\ntraining: {epochs: 1, batch_size: 100}\n",
                      "privacy: {mode: dp, max_grad_norm: 1.0, ", privacy, "}\n");
}

// Item 4 of issue 9: a budget on A holds whatever name A is read by — in a
// list with B, in another order, through a symlink, a hard link or a copy
// — because every job on it charges A's content key.
class LedgerFilesTest : public JobManagerTest {
 protected:
  void SetUp() override {
    JobManagerTest::SetUp();
    std::filesystem::create_directories(dir_.Join("data"));
    std::filesystem::create_directories(dir_.Join("other"));
    a_ = dir_.Join("data/a.csv");
    b_ = dir_.Join("data/b.csv");
    testing::WriteAll(a_, "SERIALNO,SPORDER\n2024HU0000001,1\n");
    testing::WriteAll(b_, "SERIALNO,SPORDER\n2024HU0000002,1\n");
    std::filesystem::create_symlink(a_, dir_.Join("data/a-link.csv"));
    std::filesystem::create_hard_link(a_, dir_.Join("other/a-hard.csv"));
    std::filesystem::copy_file(a_, dir_.Join("other/a-copy.csv"));
    key_a_ = "sha256:" + Sha256Hex(testing::ReadAll(a_));
    key_b_ = "sha256:" + Sha256Hex(testing::ReadAll(b_));
  }
  std::string a_, b_, key_a_, key_b_;
};

TEST_F(LedgerFilesTest, EveryNameOfAFileIsChargedToItsBudget) {
  auto probe = jobs_->Submit(SpecOn(a_));
  ASSERT_TRUE(probe.ok()) << probe.status();
  ASSERT_TRUE(jobs_->Cancel(probe->job_id).ok());
  // Room on A for five such jobs, not six.
  const double budget = (PlannedEpsilon(*probe, 5) + PlannedEpsilon(*probe, 6)) / 2;
  auto set = jobs_->SetBudget(a_, budget, 1e-5);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->size(), 1u);
  EXPECT_EQ((*set)[0].file, key_a_);

  std::vector<std::string> ids;
  for (const std::string& paths :
       {a_ + ", " + b_, b_ + ", " + dir_.Join("data/a-link.csv"), dir_.Join("data/a-link.csv"),
        dir_.Join("other/a-hard.csv"), dir_.Join("other/a-copy.csv")}) {
    auto job = jobs_->Submit(SpecOn(paths));
    ASSERT_TRUE(job.ok()) << paths << ": " << job.status();
    EXPECT_THAT(job->input_files, ::testing::Contains(key_a_)) << paths;
    ids.push_back(job->job_id);
  }
  // A sixth, by yet another name, would overshoot A's budget.
  auto refused = jobs_->Submit(SpecOn(dir_.Join("other/a-copy.csv") + ", " + b_));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("other/a-copy.csv has a budget"));
  EXPECT_TRUE(jobs_->Submit(SpecOn(b_)).ok()) << "B alone has no budget";

  // Charged, the rows land on A whichever name a job used, and B carries
  // only the two jobs that read it.
  const std::string w = AddWorker();
  for (const std::string& id : ids) {
    auto job = *jobs_->Get(id);
    ASSERT_EQ(job.state, JobState::kRunning) << id;
    RunEpoch(job, w, 1);
    ASSERT_TRUE(jobs_->ReportDone(job.job_id, job.attempt, 0, w, true, "").ok());
  }
  std::vector<privacy::SubsampledGaussian> five;
  for (int i = 0; i < 5; ++i) {
    five.push_back({probe->sample_rate, 1.1, probe->steps_per_epoch});
    five.push_back({1.0, probe->eval_noise_multiplier, 1});
  }
  for (const std::string& name :
       {a_, dir_.Join("data/a-link.csv"), dir_.Join("other/a-hard.csv"), dir_.Join("other/a-copy.csv"), key_a_}) {
    auto views = jobs_->GetBudgets(name);
    ASSERT_TRUE(views.ok()) << name << ": " << views.status();
    ASSERT_EQ(views->size(), 1u) << name;
    EXPECT_EQ((*views)[0].file, key_a_) << name;
    EXPECT_NEAR((*views)[0].spent, *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, five, 1e-5), 1e-12);
    EXPECT_EQ((*views)[0].jobs, 5);
  }
  auto on_b = *jobs_->GetBudgets(b_);
  EXPECT_EQ(on_b[0].jobs, 3) << "[A, B], [B, A-link] and B alone (still queued)";
  // The views name the file by every path that holds its content.
  const BudgetView v = (*jobs_->GetBudgets(a_))[0];
  const auto canonical = [](const std::string& p) { return std::filesystem::canonical(p).string(); };
  EXPECT_THAT(v.names, ::testing::IsSupersetOf({canonical(a_), canonical(dir_.Join("other/a-hard.csv")),
                                                canonical(dir_.Join("other/a-copy.csv"))}));
  auto listing = jobs_->ListLedger(dir_.Join("other/a-copy.csv"));
  ASSERT_TRUE(listing.ok()) << listing.status();
  ASSERT_EQ(listing->size(), 1u);
  EXPECT_EQ((*listing)[0].charges.size(), 10u) << "five epochs and their eval releases";
  auto both = jobs_->ListLedger(a_ + "+" + b_);
  ASSERT_TRUE(both.ok()) << both.status();
  ASSERT_EQ(both->size(), 2u) << "one listing per file";
}

TEST_F(LedgerFilesTest, TheSameContentTwiceIsRefusedBeforeAnyCharge) {
  ASSERT_TRUE(jobs_->SetBudget(a_, 100, 1e-5).ok());
  for (const std::string& twice : {a_, dir_.Join("data/a-link.csv"), dir_.Join("other/a-copy.csv")}) {
    auto refused = jobs_->Submit(SpecOn(a_ + ", " + twice));
    ASSERT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << twice;
    EXPECT_THAT(std::string(refused.status().message()), HasSubstr("has the same content as data.path[0]"));
  }
  EXPECT_TRUE(jobs_->List().empty());
  const BudgetView v = (*jobs_->GetBudgets(a_))[0];
  EXPECT_EQ(v.jobs, 0);
  EXPECT_EQ(v.committed, 0) << "nothing reserved, nothing charged";
}

TEST_F(LedgerFilesTest, ABudgetOnANameThatMatchesNothingIsNotFound) {
  auto missing = jobs_->SetBudget("/missing.csv", 1, 1e-5);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("dataset: '/missing.csv'"));
  auto key = jobs_->SetBudget("sha256:" + std::string(64, '0'), 1, 1e-5);
  EXPECT_EQ(key.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(jobs_->GetBudgets("/missing.csv").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(jobs_->GetBudgets("")->empty()) << "no silent new key";
  // A file's key works once the coordinator has seen the file.
  ASSERT_TRUE(jobs_->GetBudgets(a_).ok());
  EXPECT_TRUE(jobs_->SetBudget(key_a_, 1, 1e-5).ok());
}

// A file gone (or a state directory restored under other roots): its
// charges stay viewable by the path that last held it, but a budget on a
// file that cannot be read protects nothing and is refused.
TEST_F(LedgerFilesTest, AGoneFileIsStillViewableByItsLastPath) {
  const std::string w = AddWorker();
  auto job = jobs_->Submit(SpecOn(a_));
  ASSERT_TRUE(job.ok()) << job.status();
  RunEpoch(*jobs_->Get(job->job_id), w, 1);
  const double spent = (*jobs_->GetBudgets(a_))[0].spent;
  ASSERT_GT(spent, 0);
  std::filesystem::remove(a_);
  auto views = jobs_->GetBudgets(a_);
  ASSERT_TRUE(views.ok()) << views.status();
  EXPECT_EQ((*views)[0].file, key_a_);
  EXPECT_DOUBLE_EQ((*views)[0].spent, spent);
  EXPECT_EQ(jobs_->ListLedger(a_)->front().charges.size(), 2u);
  EXPECT_EQ(jobs_->SetBudget(a_, 10, 1e-5).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(jobs_->SetBudget(dir_.Join("other/a-copy.csv"), 10, 1e-5).ok()) << "its copy still names the content";
}

TEST_F(LedgerFilesTest, ABudgetOnADatasetAppliesToEachOfItsFiles) {
  const std::string a = dir_.Join("data/pa.csv"), b = dir_.Join("data/pb.csv");
  ASSERT_TRUE(data::WriteSyntheticPums({/*rows=*/2000, /*seed=*/2}, a).ok());
  ASSERT_TRUE(data::WriteSyntheticPums({/*rows=*/2000, /*seed=*/3}, b).ok());
  DatasetRegistry registry(store_.get(), &clock_, dir_.path());
  registry.set_data_roots(*DataRoots::Create({dir_.Join("data")}));
  jobs_->set_datasets(&registry);
  DatasetRecord req;
  req.name = "two";
  req.paths = {a, b};
  auto added = registry.Add(req);
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_EQ(added->input_files.size(), 2u);
  EXPECT_EQ(added->input_files[0], "sha256:" + *Sha256FileHex(a));
  req.name = "again";
  req.paths = {a, dir_.Join("data/pa.csv")};
  EXPECT_THAT(std::string(registry.Add(req).status().message()), HasSubstr("path[1]: '"));
  auto ready = registry.WaitPrepared("two", absl::Seconds(60));
  ASSERT_TRUE(ready.ok() && ready->state == "READY") << (ready.ok() ? ready->reason : ready.status().ToString());

  auto set = jobs_->SetBudget("two", 50, 1e-5);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->size(), 2u) << "one budget per file of the dataset";
  for (const BudgetView& v : *set) {
    EXPECT_EQ(v.epsilon_budget, 50);
    EXPECT_EQ(v.names.front(), "two") << "named by the dataset first, then its paths";
  }
  // A raw-path job on one of the files sees that file's budget.
  auto views = jobs_->GetBudgets(b);
  ASSERT_TRUE(views.ok());
  EXPECT_TRUE((*views)[0].has_budget);
  const std::string w = AddWorker();
  auto job = jobs_->Submit("name: t\ndataset: two\ntraining: {epochs: 1, batch_size: 64}\n");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->input_files, added->input_files);
  RunEpoch(*jobs_->Get(job->job_id), w, 1);
  auto spent = jobs_->GetBudgets("two");
  ASSERT_TRUE(spent.ok()) << spent.status();
  ASSERT_EQ(spent->size(), 2u);
  for (const BudgetView& v : *spent) EXPECT_GT(v.spent, 0) << v.file << " is charged for the job on the dataset";
}

// Item 5: δ at most 1/N (N the training records the resolver counted),
// refused with both numbers, also when σ is calibrated to a target.
TEST_F(JobManagerTest, DeltaAboveOneOverNIsRefusedAtSubmit) {
  resolver_.train_rows = 2000;
  for (const char* privacy : {"noise_multiplier: 1.1, delta: 1.0e-3", "target_epsilon: 3.0, delta: 1.0e-3"}) {
    auto refused = jobs_->Submit(SpecOn("/data/p.csv", privacy));
    ASSERT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << privacy;
    EXPECT_THAT(std::string(refused.status().message()),
                HasSubstr("privacy.delta: '0.001' must be at most 1/N = 0.0005, N being the job's 2000 training"));
  }
  EXPECT_TRUE(jobs_->Submit(SpecOn("/data/p.csv", "noise_multiplier: 1.1, delta: 5.0e-4")).ok());
  auto plain =
      jobs_->Submit("name: b\ndata: {path: /data/p.csv}\ntraining: {batch_size: 100}\nprivacy: {mode: none}\n");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->dp);
  EXPECT_STREQ(JobModeName(*plain), "none");
  EXPECT_EQ(ReportedEpsilon(*plain), std::nullopt) << "no epsilon, not 0";
}

// A job queued before the ledger followed file content gets its files'
// keys when the coordinator starts, before anything can charge it.
TEST_F(JobManagerTest, AJobQueuedAcrossTheUpgradeGetsItsFilesKeys) {
  JobRecord old;
  old.job_id = "job-000042";
  old.name = "old";
  old.spec_yaml = Spec();
  old.data_paths = {"/data/p.csv"};
  old.epochs = 3;
  old.sample_rate = 0.01;
  old.steps_per_epoch = 100;
  old.noise_multiplier = 1.1;
  old.delta = 1e-5;
  ASSERT_TRUE(store_->PutJob(old).ok());
  Open();
  auto back = jobs_->Get("job-000042");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->input_files, std::vector<std::string>{*resolver_.FileKey("data.path", "/data/p.csv")});
  auto stored = store_->LoadJobs();
  EXPECT_EQ((*stored)[0].input_files, back->input_files) << "stored before it is used";
}

// A queued job's pending reason follows the fleet: it changes as workers
// register and is gone once the job runs.
TEST_F(JobManagerTest, APendingReasonChangesAsWorkersRegister) {
  auto job = *jobs_->Submit(Spec(2));
  EXPECT_EQ(jobs_->Get(job.job_id)->pending_reason, "no cpu worker registered");
  const std::string a = AddWorker();
  EXPECT_EQ(jobs_->Get(job.job_id)->pending_reason, "needs 2 cpu workers, 1 registered");
  EXPECT_EQ(jobs_->List()[0].pending_reason, "needs 2 cpu workers, 1 registered");
  AddWorker();
  auto running = *jobs_->Get(job.job_id);
  EXPECT_EQ(running.state, JobState::kRunning);
  EXPECT_EQ(running.pending_reason, "");
  // A second job waits for the busy ones.
  auto next = *jobs_->Submit(Spec(1));
  EXPECT_EQ(jobs_->Get(next.job_id)->pending_reason, "no idle cpu worker (2 registered, all busy)");
  ASSERT_TRUE(jobs_->ReportDone(job.job_id, running.attempt, 0, a, false, "boom").ok());
  EXPECT_EQ(jobs_->Get(next.job_id)->state, JobState::kRunning);
}

// Every attempt stays in the record (workers, times, outcome, reason), and
// a worker's message stays out of what analysts see.
TEST_F(JobManagerTest, AttemptsAreKeptWithTheirReasonsAcrossARestart) {
  const std::string spec = absl::StrReplaceAll(Spec(1, 3), {{"workers: 1}", "workers: 1, max_attempts: 2}"}});
  const std::string a = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(spec)->job_id);
  clock_.AdvanceMs(10);
  const std::string secret = "row 17: 'H,2019HU0001,1,00101,01,42,37,...' has SCHL 99";
  ASSERT_TRUE(
      jobs_->ReportDone(job.job_id, 1, 0, a, false, secret, "failed while loading data (INVALID_ARGUMENT)").ok());
  auto retried = *jobs_->Get(job.job_id);
  ASSERT_EQ(retried.attempt, 2);
  EXPECT_THAT(retried.reason, HasSubstr(secret)) << "custodians get the whole story";
  EXPECT_THAT(retried.public_reason, Not(HasSubstr("row 17")));
  EXPECT_THAT(retried.public_reason, HasSubstr("attempt 1 of 2 failed: rank 0 (worker " + a +
                                               "): failed while loading data (INVALID_ARGUMENT)"));
  ASSERT_TRUE(
      jobs_->ReportDone(job.job_id, 2, 0, a, false, "worker stopped (SIGTERM)", "worker stopped (SIGTERM)").ok());
  Open();  // a coordinator restart
  auto after = *jobs_->Get(job.job_id);
  EXPECT_EQ(after.state, JobState::kFailed);
  ASSERT_EQ(after.attempts.size(), 2u);
  EXPECT_EQ(after.attempts[0].attempt, 1);
  EXPECT_EQ(after.attempts[0].worker_ids, std::vector<std::string>{a});
  EXPECT_EQ(after.attempts[0].outcome, JobState::kFailed);
  EXPECT_GT(after.attempts[0].ended_ms, after.attempts[0].started_ms);
  EXPECT_THAT(after.attempts[0].reason, HasSubstr(secret));
  EXPECT_EQ(after.attempts[0].public_reason, "rank 0 (worker " + a + "): failed while loading data (INVALID_ARGUMENT)");
  EXPECT_EQ(after.attempts[1].outcome, JobState::kFailed);
  EXPECT_EQ(after.attempts[1].public_reason, "rank 0 (worker " + a + "): worker stopped (SIGTERM)");
  EXPECT_THAT(after.public_reason, HasSubstr("(attempt 2 of 2)"));
}

TEST_F(JobManagerTest, ASucceededAndACancelledAttemptSaySo) {
  const std::string a = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(1, 1))->job_id);
  RunEpoch(job, a, 1);
  ASSERT_TRUE(jobs_->ReportDone(job.job_id, 1, 0, a, true, "").ok());
  auto done = *jobs_->Get(job.job_id);
  ASSERT_EQ(done.attempts.size(), 1u);
  EXPECT_EQ(done.attempts[0].outcome, JobState::kSucceeded);
  EXPECT_EQ(done.attempts[0].reason, "");
  auto other = *jobs_->Get(jobs_->Submit(Spec(1, 1))->job_id);
  ASSERT_TRUE(jobs_->Cancel(other.job_id).ok());
  auto cancelled = *jobs_->Get(other.job_id);
  ASSERT_EQ(cancelled.attempts.size(), 1u);
  EXPECT_EQ(cancelled.attempts[0].outcome, JobState::kCancelled);
  EXPECT_EQ(cancelled.attempts[0].public_reason, "cancelled by user");
  EXPECT_EQ(cancelled.public_reason, "cancelled by user");
}

// A worker's log lines for its rank: kept with the job (durably), the
// oldest dropped past the per-job cap and counted, filtered by rank and
// attempt, refused for a stale attempt or a bad level.
TEST_F(JobManagerTest, ShippedLogLinesAreKeptWithinTheCapOldestFirstOut) {
  log_limits_.max_lines = 3;
  log_limits_.max_bytes = 1 << 20;
  Open();
  const std::string a = AddWorker();
  const std::string b = AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(2))->job_id);
  auto line = [](const std::string& m, int32_t level = 2) {
    LogLine l;
    l.level = level;
    l.time_ms = 5;
    l.message = m;
    return l;
  };
  auto shipped = jobs_->ShipLogs(job.job_id, 1, 0, {line("one"), line("two")}, 0);
  ASSERT_TRUE(shipped.ok()) << shipped.status();
  EXPECT_EQ(shipped->stored, 2);
  EXPECT_EQ(shipped->dropped, 0);
  shipped = jobs_->ShipLogs(job.job_id, 1, 1, {line("three"), line("four", 4)}, 2);
  ASSERT_TRUE(shipped.ok());
  EXPECT_EQ(shipped->dropped, 1) << "the oldest line goes";
  auto view = jobs_->ReadLogs(job.job_id, LogQuery{});
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_EQ(view->page.lines.size(), 3u);
  EXPECT_EQ(view->page.lines[0].message, "two");
  EXPECT_EQ(view->page.lines[0].seq, 2);
  EXPECT_EQ(view->page.lines[2].message, "four");
  EXPECT_EQ(view->page.lines[2].level, 4);
  EXPECT_EQ(view->page.lines[2].rank, 1);
  EXPECT_EQ(view->page.lines[2].attempt, 1);
  EXPECT_EQ(view->page.last_seq, 4);
  EXPECT_EQ(view->page.dropped_lines, 1);
  EXPECT_EQ(view->page.dropped_bytes, 3);
  EXPECT_EQ(view->page.worker_dropped, 2);
  EXPECT_EQ(view->state, JobState::kRunning);
  LogQuery rank1;
  rank1.rank = 1;
  rank1.after_seq = 3;
  view = jobs_->ReadLogs(job.job_id, rank1);
  ASSERT_EQ(view->page.lines.size(), 1u);
  EXPECT_EQ(view->page.lines[0].message, "four");
  // Refusals name what is wrong.
  auto stale = jobs_->ShipLogs(job.job_id, 2, 0, {line("x")}, 0);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.status().message(), HasSubstr("attempt 2 is stale"));
  auto bad = jobs_->ShipLogs(job.job_id, 1, 0, {line("x"), line("y", 9)}, 0);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("lines[1].level: 9"));
  auto outside = jobs_->ShipLogs(job.job_id, 1, 2, {line("x")}, 0);
  EXPECT_EQ(outside.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(jobs_->ReadLogs("job-nope", LogQuery{}).status().code(), absl::StatusCode::kNotFound);
  // A long line is cut; lines of an ended job still come in.
  ASSERT_TRUE(jobs_->ReportDone(job.job_id, 1, 1, b, false, "boom").ok());
  ASSERT_TRUE(jobs_->ShipLogs(job.job_id, 1, 0, {line(std::string(5000, 'x'))}, 0).ok());
  Open();  // kept across a restart
  view = jobs_->ReadLogs(job.job_id, LogQuery{});
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->state, JobState::kFailed);
  ASSERT_EQ(view->page.lines.size(), 3u);
  EXPECT_EQ(view->page.lines.back().message.size(), static_cast<std::size_t>(kMaxLogLineBytes) + 6);
  EXPECT_EQ(view->page.dropped_lines, 2);
}

TEST_F(JobManagerTest, ALogPastTheByteCapDropsItsOldestLines) {
  log_limits_.max_lines = 1000;
  log_limits_.max_bytes = 10;
  Open();
  AddWorker();
  auto job = *jobs_->Get(jobs_->Submit(Spec(1))->job_id);
  std::vector<LogLine> lines(3);
  for (int i = 0; i < 3; ++i) lines[i].message = std::string(4, static_cast<char>('a' + i));
  auto shipped = jobs_->ShipLogs(job.job_id, 1, 0, lines, 0);
  ASSERT_TRUE(shipped.ok()) << shipped.status();
  EXPECT_EQ(shipped->dropped, 1);
  auto view = jobs_->ReadLogs(job.job_id, LogQuery{});
  ASSERT_EQ(view->page.lines.size(), 2u);
  EXPECT_EQ(view->page.lines[0].message, "bbbb");
  EXPECT_EQ(view->page.dropped_bytes, 4);
}

// --- Audit runs (`dpctl audit`) ---

class JobManagerAuditTest : public JobManagerTest {
 protected:
  // A single-rank job run to SUCCEEDED with `model` stored; returns it.
  JobRecord Trained(const std::string& worker, const std::string& model = "trained-weights") {
    JobRecord job = *jobs_->Get(jobs_->Submit(Spec(1, 1))->job_id);
    EXPECT_EQ(job.state, JobState::kRunning);
    Poll(worker);
    RunEpoch(job, worker, 1);
    EXPECT_TRUE(jobs_->StoreModel(job.job_id, job.attempt, 0, model).ok());
    EXPECT_TRUE(jobs_->ReportDone(job.job_id, job.attempt, 0, worker, true, "").ok());
    return *jobs_->Get(job.job_id);
  }
};

TEST_F(JobManagerAuditTest, OnlyASucceededJobWithAModelCanBeAudited) {
  EXPECT_EQ(jobs_->StartAudit("job-999999", AuditOrder{}, "cus").status().code(), absl::StatusCode::kNotFound);
  const std::string w = AddWorker();
  auto running = *jobs_->Get(jobs_->Submit(Spec(1, 2))->job_id);
  auto refused = jobs_->StartAudit(running.job_id, AuditOrder{}, "cus");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr(running.job_id));
  EXPECT_THAT(refused.status().message(), HasSubstr("RUNNING"));
  ASSERT_TRUE(jobs_->Cancel(running.job_id).ok());
  EXPECT_THAT(jobs_->StartAudit(running.job_id, AuditOrder{}, "cus").status().message(), HasSubstr("CANCELLED"));
  Poll(w);  // the worker confirms it stopped: idle again

  const JobRecord done = Trained(w);
  ASSERT_EQ(done.state, JobState::kSucceeded);
  AuditOrder no_shadows;
  no_shadows.shadow_models = 0;
  EXPECT_THAT(jobs_->StartAudit(done.job_id, no_shadows, "cus").status().message(), HasSubstr("shadow_models"));
  AuditOrder nothing;
  nothing.membership = nothing.inversion = nothing.one_run = false;
  EXPECT_EQ(jobs_->StartAudit(done.job_id, nothing, "cus").status().code(), absl::StatusCode::kInvalidArgument);
  AuditOrder one_canary;
  one_canary.canaries = 1;
  EXPECT_THAT(jobs_->StartAudit(done.job_id, one_canary, "cus").status().message(), HasSubstr("canaries: '1'"));
  auto run = jobs_->StartAudit(done.job_id, AuditOrder{}, "cus");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(jobs_->StartAudit(run->job_id, AuditOrder{}, "cus").status().code(), absl::StatusCode::kInvalidArgument)
      << "an audit run is not audited";
}

TEST(AuditAttacksTest, ACommaListSetsExactlyTheNamedAttacks) {
  AuditOrder o;
  ASSERT_TRUE(ParseAuditAttacks("", &o).ok());
  EXPECT_TRUE(o.membership && o.inversion && o.one_run);
  ASSERT_TRUE(ParseAuditAttacks("one-run", &o).ok());
  EXPECT_TRUE(!o.membership && !o.inversion && o.one_run);
  ASSERT_TRUE(ParseAuditAttacks("membership, inversion", &o).ok());
  EXPECT_TRUE(o.membership && o.inversion && !o.one_run);
  ASSERT_TRUE(ParseAuditAttacks("all", &o).ok());
  EXPECT_TRUE(o.membership && o.inversion && o.one_run);
  const absl::Status bad = ParseAuditAttacks("membership,lira", &o);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("'lira'"));
  EXPECT_THAT(ParseAuditAttacks("membership,", &o).message(), HasSubstr("empty attack name"));
}

TEST(AuditAttacksTest, AnOrderStoredBeforeTheOneRunAuditRanNone) {
  JobRecord r;
  r.job_id = "job-000002";
  AuditOrder order;
  order.target = "job-000001";
  order.canaries = 250;
  r.audit = order;
  nlohmann::json stored = ToJson(r);
  auto back = JobFromJson(stored);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->audit.has_value());
  EXPECT_TRUE(back->audit->one_run);
  EXPECT_EQ(back->audit->canaries, 250);
  // The same record as an older release wrote it: no one_run, no canaries.
  stored["audit"].erase("one_run");
  stored["audit"].erase("canaries");
  back = JobFromJson(stored);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->audit->one_run);
  EXPECT_EQ(back->audit->canaries, 1000);
}

TEST_F(JobManagerAuditTest, AnAuditRunIsOneRankOfTheTargetsSpecAndIsNeverCharged) {
  const std::string w = AddWorker();
  const JobRecord target = Trained(w, "the-model-bytes");
  const double eps = target.epsilon;
  AuditOrder order;
  order.shadow_models = 3;
  order.baseline = false;
  auto started = jobs_->StartAudit(target.job_id, order, "custodian-1");
  ASSERT_TRUE(started.ok()) << started.status();
  const JobRecord run = *jobs_->Get(started->job_id);
  ASSERT_TRUE(run.audit.has_value());
  EXPECT_EQ(run.audit->target, target.job_id);
  EXPECT_EQ(run.audit->shadow_models, 3);
  ASSERT_TRUE(run.audit->reported_epsilon.has_value());
  EXPECT_DOUBLE_EQ(*run.audit->reported_epsilon, eps);
  EXPECT_EQ(run.owner, "custodian-1");
  EXPECT_EQ(run.world_size, 1);
  EXPECT_FALSE(run.dp) << "it spends no epsilon of its own";
  EXPECT_STREQ(JobKindName(run), "audit");
  EXPECT_EQ(run.state, JobState::kRunning);
  // The worker gets the target's spec and sigma with the audit order.
  std::vector<Assignment> got = Poll(w);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].spec_yaml, target.spec_yaml);
  EXPECT_DOUBLE_EQ(got[0].noise_multiplier, target.noise_multiplier);
  EXPECT_EQ(got[0].split_key, kSplitKey);
  ASSERT_TRUE(got[0].audit.has_value());
  EXPECT_EQ(got[0].audit->target, target.job_id);
  EXPECT_FALSE(got[0].audit->baseline);

  // Never charged, never an epoch, never a model of its own.
  auto charged =
      jobs_->Charge(run.job_id, run.attempt, 0, 1, target.steps_per_epoch, target.sample_rate, target.noise_multiplier);
  EXPECT_EQ(charged.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(charged.status().message(), HasSubstr("never charged"));
  EXPECT_TRUE(store_->LedgerForJob(run.job_id)->empty());
  EXPECT_FALSE(jobs_->ReportProgress(run.job_id, run.attempt, 0, w, WithMetrics(1)).ok());
  EXPECT_FALSE(jobs_->StoreModel(run.job_id, run.attempt, 0, "x").ok());
  EXPECT_DOUBLE_EQ(jobs_->Get(target.job_id)->epsilon, eps);

  // The run's rank 0 reads the target's model; a training job reads none.
  auto model = jobs_->FetchModel(run.job_id, run.attempt, 0, 4, 100);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->data, "model-bytes");
  EXPECT_EQ(model->total_bytes, 15);
  EXPECT_FALSE(jobs_->FetchModel(run.job_id, run.attempt + 1, 0, 0, 100).ok()) << "stale attempt";
  const std::string w2 = AddWorker();
  auto other = *jobs_->Get(jobs_->Submit(Spec(1, 1))->job_id);
  ASSERT_EQ(other.state, JobState::kRunning);
  EXPECT_EQ(jobs_->FetchModel(other.job_id, other.attempt, 0, 0, 100).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(JobManagerAuditTest, TheReportLandsWithSucceededAndSurvivesARestart) {
  const std::string w = AddWorker();
  const JobRecord target = Trained(w);
  const JobRecord run = *jobs_->StartAudit(target.job_id, AuditOrder{}, "cus");
  auto before = jobs_->GetAudit(run.job_id);
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(before->report.has_value());
  EXPECT_EQ(jobs_->GetAudit(target.job_id).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(jobs_->ReportAudit(run.job_id, run.attempt, 0, "").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(jobs_->ReportAudit(target.job_id, target.attempt, 0, "{}").code(), absl::StatusCode::kFailedPrecondition)
      << "not running, and not an audit";
  const std::string report = R"({"job_id":"x","target":{"model":"target"}})";
  ASSERT_TRUE(jobs_->ReportAudit(run.job_id, run.attempt, 0, report).ok());
  auto after = jobs_->GetAudit(run.job_id);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->run.state, JobState::kSucceeded);
  ASSERT_TRUE(after->report.has_value());
  EXPECT_EQ(*after->report, report);
  // The worker's ReportDone that follows changes nothing.
  ASSERT_TRUE(jobs_->ReportDone(run.job_id, run.attempt, 0, w, true, "").ok());
  EXPECT_EQ(jobs_->Get(run.job_id)->state, JobState::kSucceeded);
  Open();
  auto recovered = jobs_->GetAudit(run.job_id);
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_EQ(recovered->run.state, JobState::kSucceeded);
  ASSERT_TRUE(recovered->report.has_value());
  EXPECT_EQ(*recovered->report, report);
  ASSERT_TRUE(recovered->run.audit.has_value());
  EXPECT_EQ(recovered->run.audit->target, target.job_id);
}

TEST_F(JobManagerAuditTest, FinishingWithoutAReportFailsTheRunAndSpendsNoBudget) {
  const std::string w = AddWorker();
  const JobRecord target = Trained(w);
  // An audit is never checked against budgets and reserves nothing on the
  // files it reads.
  auto before = jobs_->GetBudgets("");
  ASSERT_TRUE(before.ok());
  const JobRecord run = *jobs_->StartAudit(target.job_id, AuditOrder{}, "cus");
  auto during = jobs_->GetBudgets("");
  ASSERT_TRUE(during.ok());
  ASSERT_EQ(during->size(), before->size());
  for (std::size_t i = 0; i < during->size(); ++i) {
    EXPECT_DOUBLE_EQ((*during)[i].committed, (*before)[i].committed) << "an audit commits nothing";
  }
  Poll(w);
  ASSERT_TRUE(jobs_->ReportDone(run.job_id, run.attempt, 0, w, true, "").ok());
  const JobRecord failed = *jobs_->Get(run.job_id);
  EXPECT_EQ(failed.state, JobState::kFailed) << "one attempt, whatever the spec allows";
  EXPECT_THAT(failed.reason, HasSubstr("without sending its audit report"));
  EXPECT_FALSE(jobs_->GetAudit(run.job_id)->report.has_value());
}

// The audit run's model and report RPCs are bound to the certificate that
// holds its rank, as every other worker RPC of a run.
TEST_F(JobManagerAuditTest, OnlyTheRunsWorkerMayFetchTheAuditedModel) {
  const std::string w = jobs_->RegisterWorker("host", "cpu", 1, "", std::nullopt, "worker-1").worker_id;
  const JobRecord target = Trained(w);
  const JobRecord run = *jobs_->StartAudit(target.job_id, AuditOrder{}, "cus");
  ASSERT_EQ(jobs_->Get(run.job_id)->worker_ids, std::vector<std::string>{w});
  EXPECT_TRUE(CheckRun(Identity::Worker("worker-1"), jobs_.get(), run.job_id, run.attempt, 0).ok());
  EXPECT_EQ(CheckRun(Identity::Worker("worker-2"), jobs_.get(), run.job_id, run.attempt, 0).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CheckRun(Identity::User("cus", Role::kCustodian), jobs_.get(), run.job_id, run.attempt, 0).code(),
            absl::StatusCode::kPermissionDenied);
  // The worker that trained the target holds no run of it any more that
  // could read a model.
  EXPECT_EQ(jobs_->FetchModel(target.job_id, target.attempt, 0, 0, 100).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace dpfleet::server
