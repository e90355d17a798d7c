#include "server/core/ledger.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kData[] = "/data/p.csv";
constexpr char kOtherData[] = "/data/q.csv";

// A private job's terms as Submit fixes them.
JobRecord Job(const std::string& id, bool dp = true) {
  JobRecord r;
  r.job_id = id;
  r.dp = dp;
  r.accountant = "rdp";
  r.delta = dp ? 1e-5 : 0;
  r.epochs = 3;
  r.sample_rate = 0.01;
  r.steps_per_epoch = 100;
  r.noise_multiplier = dp ? 1.1 : 0;
  r.attempt = 1;
  return r;
}

// ε of `epochs` epochs of `r` composed one row per epoch, as the ledger does.
double EpsilonOfEpochs(const JobRecord& r, int64_t epochs, privacy::AccountantKind kind = privacy::AccountantKind::kRdp,
                       double delta = 1e-5) {
  std::vector<privacy::SubsampledGaussian> rows(epochs, {r.sample_rate, r.noise_multiplier, r.steps_per_epoch});
  return *privacy::ComputeEpsilon(kind, rows, delta);
}

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void Open() {
    ledger_.reset();
    store_.reset();
    store_ = *Store::Open(dir_.path());
    ledger_ = std::make_unique<Ledger>(store_.get(), &clock_);
    ASSERT_TRUE(ledger_->Recover().ok());
  }
  // Charges like JobManager does and composes the job's ε from the rows
  // the charge returns.
  absl::StatusOr<double> ChargeEpoch(const JobRecord& r, int32_t epoch, int32_t attempt = 1,
                                     const std::string& dataset = kData) {
    absl::StatusOr<ChargeResult> charged = ledger_->Charge(r, dataset, attempt, /*rank=*/0, epoch, r.steps_per_epoch,
                                                           r.sample_rate, r.noise_multiplier, Mechanism::kTrain);
    if (!charged.ok()) return charged.status();
    return Ledger::EpsilonOf(r, charged->rows);
  }
  BudgetView ViewOf(const std::string& dataset, const std::vector<LivePlan>& live = {}) {
    auto views = ledger_->GetBudgets(dataset, live);
    EXPECT_TRUE(views.ok()) << views.status();
    EXPECT_EQ(views->size(), 1u);
    return views->front();
  }

  testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Ledger> ledger_;
};

TEST_F(LedgerTest, NoiseMultiplierIsTheSpecsOrCalibratedToTheTarget) {
  const std::string base = "name: t\ndata: {path: /data/p.csv}\ntraining: {epochs: 3, batch_size: 100}\n";
  JobRecord plan = Job("j");
  auto fixed = ParseJobSpec(base + "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 0.7, delta: 1.0e-5}\n");
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ(*Ledger::NoiseMultiplierFor(*fixed, plan), 0.7);
  auto none = ParseJobSpec(base + "privacy: {mode: none}\n");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*Ledger::NoiseMultiplierFor(*none, plan), 0.0);

  auto target = ParseJobSpec(base + "privacy: {mode: dp, max_grad_norm: 1.0, target_epsilon: 2.0, delta: 1.0e-5}\n");
  ASSERT_TRUE(target.ok()) << target.status();
  auto sigma = Ledger::NoiseMultiplierFor(*target, plan);
  ASSERT_TRUE(sigma.ok()) << sigma.status();
  plan.noise_multiplier = *sigma;
  EXPECT_LE(EpsilonOfEpochs(plan, plan.epochs), 2.0);
  plan.noise_multiplier = *sigma * 0.95;
  EXPECT_GT(EpsilonOfEpochs(plan, plan.epochs), 2.0);  // calibrated, not merely safe

  JobRecord hopeless = Job("h");
  hopeless.sample_rate = 1.0;
  hopeless.steps_per_epoch = 100000;
  auto tiny = ParseJobSpec(base + "privacy: {mode: dp, max_grad_norm: 1.0, target_epsilon: 1.0e-9, delta: 1.0e-5}\n");
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  auto refused = Ledger::NoiseMultiplierFor(*tiny, hopeless);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("privacy.target_epsilon: '1e-09' cannot be met"));
}

TEST_F(LedgerTest, ChargesAreDurableIdempotentAndComposeEveryRow) {
  const JobRecord r = Job("job-1");
  EXPECT_EQ(*ChargeEpoch(r, 1), EpsilonOfEpochs(r, 1));
  EXPECT_EQ(*ChargeEpoch(r, 2), EpsilonOfEpochs(r, 2));
  EXPECT_EQ(*ChargeEpoch(r, 2), EpsilonOfEpochs(r, 2));  // a retried charge records nothing
  EXPECT_EQ(store_->LedgerForJob("job-1")->size(), 2u);
  // A new attempt pays again for the epoch it repeats.
  EXPECT_EQ(*ChargeEpoch(r, 2, /*attempt=*/2), EpsilonOfEpochs(r, 3));
  auto rows = *store_->LedgerForJob("job-1");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2].dataset, kData);
  EXPECT_EQ(rows[2].noise_multiplier, r.noise_multiplier);
  EXPECT_EQ(rows[2].recorded_ms, clock_.NowMs());

  Open();  // what a restarted coordinator reads
  EXPECT_EQ(*ledger_->JobEpsilon(r), EpsilonOfEpochs(r, 3));
}

TEST_F(LedgerTest, AChargeMustBeTheJobsOwnAndInsideItsEpochs) {
  const JobRecord r = Job("job-1");
  auto steps = ledger_->Charge(r, kData, 1, 0, 1, r.steps_per_epoch + 1, r.sample_rate, r.noise_multiplier, Mechanism::kTrain);
  EXPECT_EQ(steps.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(steps.status().message(), HasSubstr("does not match the job: steps 101 vs 100"));
  auto sigma = ledger_->Charge(r, kData, 1, 0, 1, r.steps_per_epoch, r.sample_rate, 0.5, Mechanism::kTrain);
  EXPECT_EQ(sigma.status().code(), absl::StatusCode::kFailedPrecondition);
  auto q = ledger_->Charge(r, kData, 1, 0, 1, r.steps_per_epoch, 0.02, r.noise_multiplier, Mechanism::kTrain);
  EXPECT_EQ(q.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ChargeEpoch(r, 0).status().code(), absl::StatusCode::kInvalidArgument);
  auto late = ChargeEpoch(r, 4);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(late.status().message(), HasSubstr("epoch 4 is outside 1..3"));
  EXPECT_THAT(*store_->LedgerForJob("job-1"), IsEmpty());
}

TEST_F(LedgerTest, ReleaseNeedsTheChargeAndStatesEpsilonThroughTheEpoch) {
  const JobRecord r = Job("job-1");
  auto early = ledger_->CheckRelease(r, 1, 1, /*with_eval=*/false);
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(early.status().message(), HasSubstr("was not charged to the privacy ledger"));
  ASSERT_TRUE(ChargeEpoch(r, 1).ok());
  ASSERT_TRUE(ChargeEpoch(r, 2).ok());  // another rank charged ahead
  auto first = ledger_->CheckRelease(r, 1, 1, /*with_eval=*/false);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->epoch, EpsilonOfEpochs(r, 1));
  EXPECT_EQ(first->job, EpsilonOfEpochs(r, 2));
  EXPECT_LT(first->epoch, first->job);
  // Only the current attempt's own charge releases its epoch.
  EXPECT_EQ(ledger_->CheckRelease(r, 2, 1, /*with_eval=*/false).status().code(), absl::StatusCode::kFailedPrecondition);
}

// The eval release is its own row: only rank 0, only after the epochs
// privacy.eval releases after, only with the job's σ_e, one step and q 1;
// metrics need it; ε and the budget plans compose both mechanisms.
TEST_F(LedgerTest, EvalReleasesAreTheirOwnCheckedRowsAndComposeWithTraining) {
  JobRecord r = Job("job-e");
  r.eval_every = 2;  // 3 epochs: releases after epochs 2 and 3
  r.eval_noise_multiplier = 30;
  auto eval = [&](int32_t rank, int32_t epoch, int64_t steps, double q, double sigma) {
    return ledger_->Charge(r, kData, 1, rank, epoch, steps, q, sigma, Mechanism::kEval).status();
  };
  ASSERT_TRUE(ChargeEpoch(r, 1).ok());
  EXPECT_THAT(eval(0, 1, 1, 1.0, 30).message(), HasSubstr("every epoch that is a multiple of 2 and after the last"));
  EXPECT_THAT(eval(1, 2, 1, 1.0, 30).message(), HasSubstr("only rank 0 releases eval metrics"));
  EXPECT_THAT(eval(0, 2, 1, 1.0, 3).message(), HasSubstr("eval charge for job 'job-e' epoch 2 does not match"));
  EXPECT_EQ(eval(0, 2, 2, 1.0, 30).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(eval(0, 2, 1, 0.5, 30).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->LedgerForJob("job-e")->size(), 1u) << "refused charges record nothing";
  EXPECT_TRUE(ledger_->CheckRelease(r, 1, 1, /*with_eval=*/false).ok());
  EXPECT_THAT(ledger_->CheckRelease(r, 1, 1, /*with_eval=*/true).status().message(),
              HasSubstr("the eval metrics of epoch 1 of job 'job-e' were not charged"));

  ASSERT_TRUE(ChargeEpoch(r, 2).ok());
  ASSERT_TRUE(eval(0, 2, 1, 1.0, 30).ok());
  ASSERT_TRUE(eval(0, 2, 1, 1.0, 30).ok()) << "idempotent";
  const std::vector<privacy::SubsampledGaussian> through_2 = {{r.sample_rate, r.noise_multiplier, r.steps_per_epoch},
                                                              {r.sample_rate, r.noise_multiplier, r.steps_per_epoch},
                                                              {1.0, 30, 1}};
  auto released = ledger_->CheckRelease(r, 1, 2, /*with_eval=*/true);
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(released->epoch, *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, through_2, 1e-5));
  EXPECT_GT(released->epoch, EpsilonOfEpochs(r, 2));

  // The live plan reserves epoch 3's training and its eval release.
  std::vector<privacy::SubsampledGaussian> committed = through_2;
  committed.push_back({r.sample_rate, r.noise_multiplier, r.steps_per_epoch});
  committed.push_back({1.0, 30, 1});
  EXPECT_EQ(ViewOf(kData, {PlanOf(r, kData)}).committed,
            *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, committed, 1e-5));

  JobRecord silent = Job("job-s");  // privacy.eval: none
  ASSERT_TRUE(ChargeEpoch(silent, 1).ok());
  EXPECT_THAT(ledger_->CheckRelease(silent, 1, 1, /*with_eval=*/true).status().message(),
              HasSubstr("releases no eval metrics (privacy.eval: none)"));
}

TEST_F(LedgerTest, ANonPrivateEpochIsRecordedAndLeavesTheDatasetWithoutAFiniteEpsilon) {
  const JobRecord r = Job("plain", /*dp=*/false);
  EXPECT_EQ(*ChargeEpoch(r, 1), 0.0);
  auto rows = *store_->LedgerForJob("plain");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].noise_multiplier, 0.0);
  const BudgetView v = ViewOf(kData);
  EXPECT_TRUE(std::isinf(v.spent));
  EXPECT_TRUE(std::isinf(v.committed));
  EXPECT_EQ(ledger_->SetBudget(kData, 10, 1e-5, {}).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(LedgerTest, BudgetViewsComposeSpentAndTheRemainingPlansOfLiveJobs) {
  const JobRecord a = Job("job-a");
  const JobRecord b = Job("job-b");
  const JobRecord elsewhere = Job("job-c");
  ASSERT_TRUE(ChargeEpoch(a, 1).ok());
  const std::vector<LivePlan> live = {PlanOf(a, kData), PlanOf(b, kData), PlanOf(elsewhere, kOtherData)};
  auto set = ledger_->SetBudget(kData, 50, 1e-5, live);
  ASSERT_TRUE(set.ok()) << set.status();

  const BudgetView v = ViewOf(kData, live);
  EXPECT_TRUE(v.has_budget);
  EXPECT_EQ(v.epsilon_budget, 50);
  EXPECT_EQ(v.delta, 1e-5);
  EXPECT_EQ(v.jobs, 2);
  EXPECT_EQ(v.spent, EpsilonOfEpochs(a, 1));
  // a's row, a's two epochs left, b's whole plan; c reads other data.
  const std::vector<privacy::SubsampledGaussian> committed = {
      {a.sample_rate, a.noise_multiplier, a.steps_per_epoch},
      {a.sample_rate, a.noise_multiplier, 2 * a.steps_per_epoch},
      {b.sample_rate, b.noise_multiplier, 3 * b.steps_per_epoch}};
  EXPECT_EQ(v.committed, *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, committed, 1e-5));
  EXPECT_EQ(v.remaining, 50 - v.committed);
  EXPECT_EQ(set->committed, v.committed);

  // A retried attempt reserves its whole plan again.
  JobRecord a_retried = a;
  a_retried.attempt = 2;
  const BudgetView retried = ViewOf(kData, {PlanOf(a_retried, kData)});
  EXPECT_GT(retried.committed, EpsilonOfEpochs(a, 3));

  auto all = ledger_->GetBudgets("", live);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1u);  // a budget or a ledger row, not a mere plan
  EXPECT_EQ((*all)[0].dataset, kData);
}

TEST_F(LedgerTest, SubmitIsRefusedWhenItsPlanWouldOvershootTheBudget) {
  const JobRecord first = Job("job-1");
  const JobRecord second = Job("job-2");
  EXPECT_TRUE(ledger_->CheckSubmit(kData, first, {}).ok());  // no budget: nothing to refuse
  const double one_plan = EpsilonOfEpochs(first, 3);
  ASSERT_TRUE(ledger_->SetBudget(kData, one_plan * 1.2, 1e-5, {}).ok());
  EXPECT_TRUE(ledger_->CheckSubmit(kData, first, {}).ok());
  // With the first job queued, the second would bring the total over.
  auto over = ledger_->CheckSubmit(kData, second, {PlanOf(first, kData)});
  EXPECT_EQ(over.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(over.message(), HasSubstr("this job would bring the composed total to"));
  EXPECT_TRUE(ledger_->CheckSubmit(kData, second, {PlanOf(first, kOtherData)}).ok());
  auto plain = ledger_->CheckSubmit(kData, Job("job-3", /*dp=*/false), {});
  EXPECT_EQ(plain.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(plain.message(), HasSubstr("privacy.mode: 'none' cannot run on dataset /data/p.csv"));
}

TEST_F(LedgerTest, AChargeOverTheBudgetIsRefusedAndNotRecorded) {
  const JobRecord r = Job("job-1");
  ASSERT_TRUE(ledger_->SetBudget(kData, EpsilonOfEpochs(r, 1) * 0.5, 1e-5, {}).ok());
  auto refused = ChargeEpoch(r, 1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("over its budget"));
  EXPECT_THAT(*store_->LedgerForJob("job-1"), IsEmpty());
  EXPECT_TRUE(ChargeEpoch(r, 1, 1, kOtherData).ok());  // another dataset's budget is its own
}

TEST_F(LedgerTest, ABudgetIsValidatedKeptAboveWhatIsCommittedAndDurable) {
  EXPECT_THAT(ledger_->SetBudget("", 1, 1e-5, {}).status().message(), HasSubstr("dataset:"));
  EXPECT_THAT(ledger_->SetBudget(kData, 0, 1e-5, {}).status().message(), HasSubstr("epsilon: '0'"));
  EXPECT_THAT(ledger_->SetBudget(kData, INFINITY, 1e-5, {}).status().message(), HasSubstr("epsilon:"));
  EXPECT_THAT(ledger_->SetBudget(kData, 1, 1, {}).status().message(), HasSubstr("delta: '1'"));

  const JobRecord r = Job("job-1");
  ASSERT_TRUE(ledger_->SetBudget(kData, 40, 1e-5, {}).ok());
  auto below = ledger_->SetBudget(kData, EpsilonOfEpochs(r, 3) * 0.5, 1e-5, {PlanOf(r, kData)});
  EXPECT_EQ(below.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(below.status().message(), HasSubstr("a budget of"));
  EXPECT_EQ(ViewOf(kData).epsilon_budget, 40);  // the refused budget did not replace it

  Open();
  EXPECT_EQ(ViewOf(kData).epsilon_budget, 40);
  // Paths joined by '+' are keyed as normalised absolute paths.
  ASSERT_TRUE(ledger_->SetBudget("/data/./a.csv+/data/x/../b.csv", 5, 1e-6, {}).ok());
  EXPECT_EQ(ViewOf("/data/a.csv+/data/b.csv").delta, 1e-6);
}

}  // namespace
}  // namespace dpfleet::server

namespace dpfleet::server {
namespace {

// `dpctl ledger`: every charge of a dataset in recorded order, each with
// the dataset's composed ε after it and what it added.
TEST_F(LedgerTest, ListingGivesEveryChargeWithItsEpsilonIncrement) {
  const JobRecord a = Job("job-a");
  const JobRecord b = Job("job-b");
  ASSERT_TRUE(ChargeEpoch(a, 1).ok());
  clock_.AdvanceMs(1);
  ASSERT_TRUE(ChargeEpoch(b, 1).ok());
  clock_.AdvanceMs(1);
  ASSERT_TRUE(ChargeEpoch(a, 2).ok());
  ASSERT_TRUE(ChargeEpoch(a, 1, 1, kOtherData).ok()) << "another dataset's row is not listed";
  auto listing = ledger_->List(kData, {});
  ASSERT_TRUE(listing.ok()) << listing.status();
  EXPECT_EQ(listing->dataset, kData);
  EXPECT_DOUBLE_EQ(listing->delta, 1e-5);
  ASSERT_EQ(listing->charges.size(), 3u);
  EXPECT_EQ(listing->charges[0].entry.job_id, "job-a");
  EXPECT_EQ(listing->charges[1].entry.job_id, "job-b");
  EXPECT_EQ(listing->charges[2].entry.epoch, 2);
  double sum = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    const ListedCharge& c = listing->charges[i];
    EXPECT_NEAR(c.epsilon_total, EpsilonOfEpochs(a, static_cast<int64_t>(i) + 1), 1e-12) << i;
    EXPECT_GT(c.epsilon_increment, 0);
    sum += c.epsilon_increment;
  }
  EXPECT_NEAR(sum, listing->charges.back().epsilon_total, 1e-12);
  // After a non-private epoch nothing is finite, and nothing more is added.
  const JobRecord plain = Job("job-c", /*dp=*/false);
  clock_.AdvanceMs(1);
  ASSERT_TRUE(ChargeEpoch(plain, 1).ok());
  clock_.AdvanceMs(1);
  ASSERT_TRUE(ChargeEpoch(b, 2).ok());
  listing = ledger_->List(kData, {});
  ASSERT_EQ(listing->charges.size(), 5u);
  EXPECT_TRUE(std::isinf(listing->charges[3].epsilon_total));
  EXPECT_TRUE(std::isinf(listing->charges[3].epsilon_increment));
  EXPECT_TRUE(std::isinf(listing->charges[4].epsilon_total));
  EXPECT_EQ(listing->charges[4].epsilon_increment, 0);
  EXPECT_TRUE(ledger_->List("/data/nothing.csv", {})->charges.empty());
}

}  // namespace
}  // namespace dpfleet::server
