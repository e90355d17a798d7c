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
using ::testing::Not;

// Ledger keys of two files (content keys; the ledger takes them as given).
const std::string kData = "sha256:" + std::string(64, 'a');
const std::string kOtherData = "sha256:" + std::string(64, 'b');

// A private job's terms as Submit fixes them, reading `files`.
JobRecord Job(const std::string& id, bool dp = true, std::vector<std::string> files = {kData}) {
  JobRecord r;
  r.job_id = id;
  r.input_files = std::move(files);
  for (std::size_t i = 0; i < r.input_files.size(); ++i) r.data_paths.push_back(absl::StrCat("/data/f", i, ".csv"));
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
  absl::StatusOr<double> ChargeEpoch(const JobRecord& r, int32_t epoch, int32_t attempt = 1) {
    absl::StatusOr<ChargeResult> charged = ledger_->Charge(r, attempt, /*rank=*/0, epoch, r.steps_per_epoch,
                                                           r.sample_rate, r.noise_multiplier, Mechanism::kTrain);
    if (!charged.ok()) return charged.status();
    return Ledger::EpsilonOf(r, charged->rows);
  }
  BudgetView ViewOf(const std::string& file, const std::vector<LivePlan>& live = {}) {
    auto views = ledger_->GetBudgets({file}, live);
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
  EXPECT_EQ(rows[2].files, std::vector<std::string>{kData});
  EXPECT_EQ(rows[2].dataset, "/data/f0.csv") << "the data as the job named it";
  EXPECT_EQ(rows[2].noise_multiplier, r.noise_multiplier);
  EXPECT_EQ(rows[2].recorded_ms, clock_.NowMs());

  Open();  // what a restarted coordinator reads
  EXPECT_EQ(*ledger_->JobEpsilon(r), EpsilonOfEpochs(r, 3));
}

TEST_F(LedgerTest, AChargeMustBeTheJobsOwnAndInsideItsEpochs) {
  const JobRecord r = Job("job-1");
  auto steps = ledger_->Charge(r, 1, 0, 1, r.steps_per_epoch + 1, r.sample_rate, r.noise_multiplier, Mechanism::kTrain);
  EXPECT_EQ(steps.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(steps.status().message(), HasSubstr("does not match the job: steps 101 vs 100"));
  auto sigma = ledger_->Charge(r, 1, 0, 1, r.steps_per_epoch, r.sample_rate, 0.5, Mechanism::kTrain);
  EXPECT_EQ(sigma.status().code(), absl::StatusCode::kFailedPrecondition);
  auto q = ledger_->Charge(r, 1, 0, 1, r.steps_per_epoch, 0.02, r.noise_multiplier, Mechanism::kTrain);
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
    return ledger_->Charge(r, 1, rank, epoch, steps, q, sigma, Mechanism::kEval).status();
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
  EXPECT_EQ(ViewOf(kData, {PlanOf(r)}).committed,
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
  EXPECT_EQ(ledger_->SetBudget({kData}, 10, 1e-5, {}).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(LedgerTest, BudgetViewsComposeSpentAndTheRemainingPlansOfLiveJobs) {
  const JobRecord a = Job("job-a");
  const JobRecord b = Job("job-b");
  const JobRecord elsewhere = Job("job-c", true, {kOtherData});
  ASSERT_TRUE(ChargeEpoch(a, 1).ok());
  const std::vector<LivePlan> live = {PlanOf(a), PlanOf(b), PlanOf(elsewhere)};
  auto set = ledger_->SetBudget({kData}, 50, 1e-5, live);
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
  ASSERT_EQ(set->size(), 1u);
  EXPECT_EQ((*set)[0].committed, v.committed);

  // A retried attempt reserves its whole plan again.
  JobRecord a_retried = a;
  a_retried.attempt = 2;
  const BudgetView retried = ViewOf(kData, {PlanOf(a_retried)});
  EXPECT_GT(retried.committed, EpsilonOfEpochs(a, 3));

  auto all = ledger_->GetBudgets({}, live);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1u);  // a budget or a ledger row, not a mere plan
  EXPECT_EQ((*all)[0].file, kData);
}

TEST_F(LedgerTest, SubmitIsRefusedWhenItsPlanWouldOvershootTheBudget) {
  const JobRecord first = Job("job-1");
  const JobRecord second = Job("job-2");
  EXPECT_TRUE(ledger_->CheckSubmit(first, {}).ok());  // no budget: nothing to refuse
  const double one_plan = EpsilonOfEpochs(first, 3);
  ASSERT_TRUE(ledger_->SetBudget({kData}, one_plan * 1.2, 1e-5, {}).ok());
  EXPECT_TRUE(ledger_->CheckSubmit(first, {}).ok());
  // With the first job queued, the second would bring the total over.
  auto over = ledger_->CheckSubmit(second, {PlanOf(first)});
  EXPECT_EQ(over.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(over.message(), HasSubstr("this job would bring the composed total to"));
  EXPECT_TRUE(ledger_->CheckSubmit(second, {PlanOf(Job("job-1", true, {kOtherData}))}).ok());
  auto plain = ledger_->CheckSubmit(Job("job-3", /*dp=*/false), {});
  EXPECT_EQ(plain.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(plain.message(), HasSubstr("privacy.mode: 'none' cannot run on input file /data/f0.csv"));
  // A registered dataset's files are named by their place, not by path.
  JobRecord on_dataset = second;
  on_dataset.dataset = "acs";
  auto named = ledger_->CheckSubmit(on_dataset, {PlanOf(first)});
  EXPECT_THAT(named.message(), HasSubstr("file 1 of 1 of dataset 'acs' has a budget"));
  EXPECT_THAT(named.message(), Not(HasSubstr("/data/"))) << "the custodian's paths are not the analyst's";
}

TEST_F(LedgerTest, AChargeOverTheBudgetIsRefusedAndNotRecorded) {
  const JobRecord r = Job("job-1");
  ASSERT_TRUE(ledger_->SetBudget({kData}, EpsilonOfEpochs(r, 1) * 0.5, 1e-5, {}).ok());
  auto refused = ChargeEpoch(r, 1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("over its budget"));
  EXPECT_THAT(*store_->LedgerForJob("job-1"), IsEmpty());
  EXPECT_TRUE(ChargeEpoch(Job("job-1", true, {kOtherData}), 1).ok());  // another file's budget is its own
}

TEST_F(LedgerTest, ABudgetIsValidatedKeptAboveWhatIsCommittedAndDurable) {
  EXPECT_THAT(ledger_->SetBudget({}, 1, 1e-5, {}).status().message(), HasSubstr("dataset:"));
  EXPECT_THAT(ledger_->SetBudget({kData}, 0, 1e-5, {}).status().message(), HasSubstr("epsilon: '0'"));
  EXPECT_THAT(ledger_->SetBudget({kData}, INFINITY, 1e-5, {}).status().message(), HasSubstr("epsilon:"));
  EXPECT_THAT(ledger_->SetBudget({kData}, 1, 1, {}).status().message(), HasSubstr("delta: '1'"));

  const JobRecord r = Job("job-1");
  ASSERT_TRUE(ledger_->SetBudget({kData}, 40, 1e-5, {}).ok());
  auto below = ledger_->SetBudget({kData}, EpsilonOfEpochs(r, 3) * 0.5, 1e-5, {PlanOf(r)});
  EXPECT_EQ(below.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(below.status().message(), HasSubstr("a budget of"));
  EXPECT_EQ(ViewOf(kData).epsilon_budget, 40);  // the refused budget did not replace it

  Open();
  EXPECT_EQ(ViewOf(kData).epsilon_budget, 40);
  // A budget on several files is one per file.
  auto both = ledger_->SetBudget({kData, kOtherData}, 45, 1e-6, {});
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->size(), 2u);
  Open();
  EXPECT_EQ(ViewOf(kData).delta, 1e-6);
  EXPECT_EQ(ViewOf(kOtherData).epsilon_budget, 45);
}

}  // namespace
}  // namespace dpfleet::server

namespace dpfleet::server {
namespace {

// `dpctl ledger`: every charge of a file in recorded order, each with the
// file's composed ε after it and what it added.
TEST_F(LedgerTest, ListingGivesEveryChargeWithItsEpsilonIncrement) {
  const JobRecord a = Job("job-a");
  const JobRecord b = Job("job-b");
  ASSERT_TRUE(ChargeEpoch(a, 1).ok());
  clock_.AdvanceMs(1);
  ASSERT_TRUE(ChargeEpoch(b, 1).ok());
  clock_.AdvanceMs(1);
  ASSERT_TRUE(ChargeEpoch(a, 2).ok());
  ASSERT_TRUE(ChargeEpoch(Job("job-x", true, {kOtherData}), 1).ok()) << "another file's row is not listed";
  auto listing = ledger_->List(kData, {});
  ASSERT_TRUE(listing.ok()) << listing.status();
  EXPECT_EQ(listing->file, kData);
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
  EXPECT_TRUE(ledger_->List("sha256:" + std::string(64, 'c'), {})->charges.empty());
}

// The ledger follows the files: a job on [A, B] is one charge that counts
// against A and B alike, once each, and once in the job's own ε; a job is
// refused, and nothing is recorded, as soon as any of its files would go
// over its budget.
TEST_F(LedgerTest, AChargeAppliesToEveryFileTheJobReads) {
  const JobRecord both = Job("job-ab", true, {kData, kOtherData});
  const JobRecord only_b = Job("job-b", true, {kOtherData});
  EXPECT_EQ(*ChargeEpoch(both, 1), EpsilonOfEpochs(both, 1)) << "one charge in the job's epsilon, not two";
  auto rows = *store_->LedgerForJob("job-ab");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].files, (std::vector<std::string>{kData, kOtherData}));
  ASSERT_TRUE(ChargeEpoch(only_b, 1).ok());
  EXPECT_DOUBLE_EQ(ViewOf(kData).spent, EpsilonOfEpochs(both, 1));
  EXPECT_DOUBLE_EQ(ViewOf(kOtherData).spent, EpsilonOfEpochs(both, 2)) << "B carries both jobs";
  EXPECT_EQ(ViewOf(kOtherData).jobs, 2);
  EXPECT_EQ(ledger_->List(kData, {})->charges.size(), 1u);
  EXPECT_EQ(ledger_->List(kOtherData, {})->charges.size(), 2u);

  // Room on A, none left on B: a job on [A, B] is refused, one on A is not.
  ASSERT_TRUE(ledger_->SetBudget({kData}, 100, 1e-5, {}).ok());
  ASSERT_TRUE(ledger_->SetBudget({kOtherData}, EpsilonOfEpochs(both, 2) * 1.01, 1e-5, {}).ok());
  auto refused = ledger_->CheckSubmit(Job("job-ab2", true, {kData, kOtherData}), {});
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("input file /data/f1.csv has a budget"));
  EXPECT_TRUE(ledger_->CheckSubmit(Job("job-a2", true, {kData}), {}).ok());
  // The same at charge time: B's budget stops the charge on A too.
  auto over = ChargeEpoch(both, 2);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(over.status().message(), HasSubstr("input file /data/f1.csv to epsilon"));
  EXPECT_EQ(store_->LedgerForJob("job-ab")->size(), 1u) << "refused: recorded for neither file";
  EXPECT_DOUBLE_EQ(ViewOf(kData).spent, EpsilonOfEpochs(both, 1));
  // A live plan on [A, B] is committed on both.
  const BudgetView a = ViewOf(kData, {PlanOf(Job("job-live", true, {kData, kOtherData}))});
  EXPECT_GT(a.committed, a.spent);
}

TEST_F(LedgerTest, DeltaMustBeAtMostOneOverN) {
  const std::string base =
      "name: t\ndata: {path: /data/p.csv}\ntraining: {epochs: 3, batch_size: 100}\nprivacy: {mode: dp, "
      "max_grad_norm: 1.0, ";
  auto spec = [&](const std::string& rest) {
    auto s = ParseJobSpec(base + rest + "}\n");
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  };
  EXPECT_TRUE(Ledger::CheckDelta(spec("noise_multiplier: 1.0, delta: 1.0e-4"), 10000).ok()) << "delta = 1/N";
  const absl::Status over = Ledger::CheckDelta(spec("noise_multiplier: 1.0, delta: 2.0e-4"), 10000);
  EXPECT_EQ(over.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(over.message(), HasSubstr("privacy.delta: '0.0002' must be at most 1/N = 0.0001"));
  EXPECT_THAT(over.message(), HasSubstr("10000 training records"));
  EXPECT_EQ(Ledger::CheckDelta(spec("target_epsilon: 2.0, delta: 0.5"), 10000).code(),
            absl::StatusCode::kInvalidArgument)
      << "a target epsilon does not excuse a large delta";
  auto none = ParseJobSpec("name: t\ndata: {path: /data/p.csv}\ntraining: {batch_size: 100}\nprivacy: {mode: none}\n");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(Ledger::CheckDelta(*none, 10).ok()) << "a non-private job has no delta";
}

}  // namespace
}  // namespace dpfleet::server
