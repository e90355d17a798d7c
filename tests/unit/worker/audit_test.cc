// End-to-end tests of the privacy audit (worker/audit/audit.h): a DP target
// proves no more than its reported ε (membership attacks and the one-run
// audit with canaries) and its attacks sit near chance, while the
// non-private baseline of the same spec memorises and is far more exposed;
// model inversion recovers a planted attribute; validation names
// the field; cancel stops the audit.
#include "worker/audit/audit.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/privacy/accountant.h"
#include "worker/comm/communicator.h"
#include "worker/train/dp_sgd.h"

namespace dpfleet::audit {
namespace {

using ::testing::HasSubstr;

// Random labels independent of the features: whatever a model learns about
// its training records is memorisation, which membership attacks detect.
// (Test data only; the audit's own sampling is from the OS CSPRNG.)
AuditData NoiseTask(int64_t n_train, int64_t n_eval, int64_t d, uint64_t seed) {
  at::manual_seed(seed);
  AuditData data;
  data.x_train = at::randn({n_train, d});
  data.y_train = (at::rand({n_train}) < 0.5).to(at::kFloat);
  data.x_eval = at::randn({n_eval, d});
  data.y_eval = (at::rand({n_eval}) < 0.5).to(at::kFloat);
  return data;
}

std::vector<std::string> PlainColumns(int64_t d) {
  std::vector<std::string> columns;
  for (int64_t i = 0; i < d; ++i) columns.push_back("x" + std::to_string(i));
  return columns;
}

// Trains the target as a job would (one rank) and fills AuditTarget.
AuditTarget TrainTarget(const train::ModelConfig& model, const train::TrainConfig& config, int epochs,
                        const AuditData& data, std::vector<std::string> columns) {
  comm::LocalCommunicator comm;
  auto trainer = train::DpSgdTrainer::Create(model, config, data.x_train.size(1), &comm);
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  for (int e = 0; e < epochs; ++e) EXPECT_TRUE((*trainer)->TrainEpoch(data.x_train, data.y_train).ok());
  AuditTarget target;
  target.model = model;
  target.train = config;
  target.epochs = epochs;
  target.flat_params = (*trainer)->model().flat().clone();
  target.columns = std::move(columns);
  return target;
}

// The memorisation spec: 512 records of 64 features with random labels, a
// wide MLP, 400 steps at q = 1/4 (about 9 s on one core for the whole audit).
constexpr int64_t kN = 512, kDim = 64, kBatch = 128;
constexpr int kEpochs = 100;

train::ModelConfig WideMlp() {
  train::ModelConfig m;
  m.type = train::ModelType::kMlp;
  m.hidden = {256, 256};
  return m;
}

train::TrainConfig MemorisingConfig() {
  train::TrainConfig c;
  c.dataset_size = kN;
  c.batch_size = kBatch;
  c.learning_rate = 0.2;
  c.max_grad_norm = 1.0;
  c.seed = 3;
  return c;
}

// One intra-op thread while it lives: the audit's matrices are small, and
// on a loaded machine ATen's thread pool makes them several times slower.
class OneThread {
 public:
  OneThread() : before_(at::get_num_threads()) { at::set_num_threads(1); }
  ~OneThread() { at::set_num_threads(before_); }

 private:
  int before_;
};

TEST(AuditTest, DpTargetStaysUnderItsEpsilonAndBaselineIsMoreExposed) {
  const OneThread one_thread;
  const AuditData data = NoiseTask(kN, kN, kDim, 11);
  train::TrainConfig config = MemorisingConfig();
  const double q = static_cast<double>(kBatch) / kN, delta = 1e-5;
  const int64_t steps = static_cast<int64_t>(kEpochs) * (kN / kBatch);
  auto sigma = privacy::CalibrateNoiseMultiplier(privacy::AccountantKind::kRdp, 1.0, delta, q, steps);
  ASSERT_TRUE(sigma.ok()) << sigma.status();
  config.noise_multiplier = *sigma;
  auto epsilon = privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, {{q, *sigma, steps}}, delta);
  ASSERT_TRUE(epsilon.ok());
  ASSERT_LE(*epsilon, 1.0);

  AuditTarget target = TrainTarget(WideMlp(), config, kEpochs, data, PlainColumns(kDim));
  target.reported_epsilon = *epsilon;
  target.delta = delta;
  AuditOptions options;
  options.shadow_models = 4;
  std::vector<std::string> phases;
  auto report =
      RunAudit(target, data, options, nullptr, [&](const std::string& phase, int, int) { phases.push_back(phase); });
  ASSERT_TRUE(report.ok()) << report.status();

  ASSERT_TRUE(report->baseline.has_value());
  ASSERT_EQ(report->target.membership.size(), 2u);
  ASSERT_EQ(report->baseline->membership.size(), 2u);
  EXPECT_EQ(report->shadow_models, 4);
  EXPECT_TRUE(report->target.inversion.empty());  // no DIS or MAR columns
  EXPECT_THAT(phases, ::testing::Contains("training shadow models"));
  EXPECT_THAT(phases, ::testing::Contains("training baseline shadow models"));

  // Challenge points: half of each split (the rest is the shadow pool).
  const MembershipResult& dp_loss = report->target.membership[0];
  const MembershipResult& base_loss = report->baseline->membership[0];
  EXPECT_EQ(dp_loss.attack, "loss_threshold");
  EXPECT_EQ(report->target.membership[1].attack, "lira_offline");
  EXPECT_EQ(dp_loss.members, kN / 2);
  EXPECT_EQ(dp_loss.non_members, kN / 2);

  // The bound holds at 95 % if the target is (ε, δ)-DP. And it is far from
  // binding here: the DP model's scores barely depend on membership, while
  // a bound above 1 on 128 + 128 evaluation points would need e.g. TPR_lo /
  // FPR_hi > e, i.e. an observed TPR several times the FPR — a deviation
  // of many standard errors from TPR = FPR.
  for (const MembershipResult& r : report->target.membership) {
    EXPECT_LE(r.epsilon_lower_bound, *epsilon) << r.attack;
    // Without membership signal the AUC of 256 vs 256 points has standard
    // deviation sqrt((256 + 256 + 1) / (12 * 256 * 256)) = 0.026; 0.15 is
    // 5.8 of them (and ε = 1 leaves little room for real signal).
    EXPECT_NEAR(r.auc, 0.5, 0.15) << r.attack;
  }
  EXPECT_LE(report->target.epsilon_lower_bound, *epsilon);

  // The baseline memorises random labels: members get low loss, non-members
  // a coin flip's. Measured over repeated runs: loss AUC 0.92 (DP target
  // 0.46..0.53), LiRA 0.81..0.88. The difference of two AUCs on 256 + 256
  // points has a sampling standard deviation of about 0.036 (two 0.026's)
  // plus training variance, about 0.04 in all. Margins: 0.25 for the loss
  // attack (4 standard deviations below the measured 0.41, 7 above a null
  // difference of 0) and 0.15 for LiRA (measured 0.33: 4.5 below, 4 above
  // the null). A broken attack, or a baseline that is not trained or is
  // trained with DP, lands near 0.5 and fails.
  EXPECT_GT(base_loss.auc - dp_loss.auc, 0.25) << base_loss.auc << " vs " << dp_loss.auc;
  EXPECT_GT(report->baseline->membership[1].auc - report->target.membership[1].auc, 0.15);
  // The memorising baseline proves a clearly positive ε (measured 1.8..3.0)
  // where the DP target proves none.
  EXPECT_GT(report->baseline->epsilon_lower_bound, 0.5);
  EXPECT_GT(report->seconds, 0.0);

  // The one-run audit: 512 canaries (the whole eval split), each trained
  // on with probability 1/2 (included ~ Binomial(512, 1/2): 256 +- 11, so
  // 200..312 is 5 sd either side). It is a proof from one run: the DP
  // training must not refute its ε.
  EXPECT_THAT(phases, ::testing::Contains("training with canaries"));
  ASSERT_TRUE(report->target.one_run.has_value());
  ASSERT_TRUE(report->baseline->one_run.has_value());
  const OneRunResult& dp_run = *report->target.one_run;
  const OneRunResult& base_run = *report->baseline->one_run;
  EXPECT_EQ(dp_run.canaries, kN);
  EXPECT_EQ(base_run.included, dp_run.included);  // the same canaries and coins
  EXPECT_GT(dp_run.included, 200);
  EXPECT_LT(dp_run.included, 312);
  EXPECT_GT(dp_run.guesses, 0);
  // The canary run is the job's mechanism, whatever the coins: q = B / N
  // and the job's steps (not N + included records at a rescaled batch).
  for (const OneRunResult* run : {&dp_run, &base_run}) {
    EXPECT_DOUBLE_EQ(run->sample_rate, q);
    EXPECT_EQ(run->steps, steps);
  }
  EXPECT_LE(dp_run.correct, dp_run.guesses);
  EXPECT_LE(dp_run.epsilon_lower_bound, *epsilon);
  EXPECT_GE(report->target.epsilon_lower_bound, dp_run.epsilon_lower_bound);
  // The non-private training memorises its canaries' (random) labels: the
  // included ones get a high likelihood, the rest a coin flip's. Measured
  // over 6 runs: 226..246 of 256 guesses right, bound 1.49..2.35 (the DP
  // target: 3..153 right, bound 0..0.03).
  EXPECT_GT(base_run.epsilon_lower_bound, 0.5) << base_run.correct << " of " << base_run.guesses;
}

// Columns AGEP, DIS=1, DIS=2, SEX=1, SEX=2; DIS=1 for 30 % of records and
// the label is exactly "DIS = 1": a model of the label is a model of DIS.
AuditData PlantedDisability(int64_t n_train, int64_t n_eval, uint64_t seed) {
  at::manual_seed(seed);
  auto make = [](int64_t n, at::Tensor& x, at::Tensor& y) {
    const at::Tensor dis = (at::rand({n}) < 0.3).to(at::kFloat);
    const at::Tensor sex = (at::rand({n}) < 0.5).to(at::kFloat);
    x = at::stack({at::rand({n}), dis, 1 - dis, sex, 1 - sex}, 1).contiguous();
    y = dis.clone();
  };
  AuditData data;
  make(n_train, data.x_train, data.y_train);
  make(n_eval, data.x_eval, data.y_eval);
  return data;
}

const std::vector<std::string> kPlantedColumns = {"AGEP", "DIS=1", "DIS=2", "SEX=1", "SEX=2"};

AuditTarget PlantedTarget(const AuditData& data) {
  train::ModelConfig model;
  model.type = train::ModelType::kLogistic;
  train::TrainConfig config;
  config.dataset_size = data.x_train.size(0);
  config.batch_size = 100;
  config.dp = false;
  config.learning_rate = 1.0;
  return TrainTarget(model, config, 20, data, kPlantedColumns);
}

AuditOptions InversionOnly() {
  AuditOptions options;
  options.membership = false;
  options.baseline = false;
  options.one_run = false;
  return options;
}

TEST(AuditInversionTest, RecoversAPlantedAttributeFarAboveBaseRate) {
  const AuditData data = PlantedDisability(2000, 1000, 5);
  const AuditTarget target = PlantedTarget(data);
  AuditOptions options = InversionOnly();
  auto report = RunAudit(target, data, options);  // default features: DIS (no MAR here)
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->target.inversion.size(), 1u);
  const InversionResult& r = report->target.inversion[0];
  EXPECT_EQ(r.feature, "DIS");
  EXPECT_EQ(r.records, 500);  // half the eval split bounds the challenge sides
  // The label determines DIS and the model learnt the label, so the attack
  // recovers (nearly) every record; always guessing "not disabled" scores
  // about 0.7: the share in 500 of the 2000 records drawn has a standard
  // error of at most 0.02, so 0.6..0.8 is 5 of them either side (a normal
  // tail below 1e-6).
  EXPECT_GT(r.accuracy, 0.95);
  EXPECT_GT(r.base_rate, 0.6);
  EXPECT_LT(r.base_rate, 0.8);
  EXPECT_TRUE(report->target.membership.empty());
  EXPECT_FALSE(report->baseline.has_value());
}

TEST(AuditInversionTest, RefusesNumericAndAbsentFeatures) {
  const AuditData data = PlantedDisability(200, 100, 6);
  const AuditTarget target = PlantedTarget(data);
  AuditOptions options = InversionOnly();
  options.inversion_features = {"AGEP"};
  auto numeric = RunAudit(target, data, options);
  ASSERT_FALSE(numeric.ok());
  EXPECT_EQ(numeric.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(numeric.status().message(), HasSubstr("inversion_features"));
  EXPECT_THAT(numeric.status().message(), HasSubstr("AGEP"));
  options.inversion_features = {"MAR"};
  auto absent = RunAudit(target, data, options);
  ASSERT_FALSE(absent.ok());
  EXPECT_THAT(absent.status().message(), HasSubstr("MAR"));
}

TEST(AuditTest, ValidationNamesTheField) {
  const AuditData data = PlantedDisability(200, 100, 7);
  AuditTarget target = PlantedTarget(data);
  AuditOptions options;
  options.shadow_models = 0;
  auto r = RunAudit(target, data, options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("shadow_models"));

  options.shadow_models = 1;
  target.flat_params = at::zeros({3});
  r = RunAudit(target, data, options);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("flat_params"));

  target = PlantedTarget(data);
  AuditData empty = data;
  empty.x_eval = at::zeros({0, 5});
  empty.y_eval = at::zeros({0});
  r = RunAudit(target, empty, options);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("x_eval"));

  target.columns.pop_back();
  r = RunAudit(target, data, options);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("columns"));

  target = PlantedTarget(data);
  options.canaries = 1;
  r = RunAudit(target, data, options);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("canaries"));
}

TEST(AuditTest, CancelStopsBetweenTrainingSteps) {
  const AuditData data = PlantedDisability(400, 200, 8);
  const AuditTarget target = PlantedTarget(data);
  std::atomic<bool> cancel{false};
  int shadow_progress = 0;
  // Cancel as soon as the first shadow model starts training.
  auto report = RunAudit(target, data, AuditOptions{}, &cancel, [&](const std::string& phase, int, int) {
    if (phase == "training shadow models") ++shadow_progress, cancel = true;
  });
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(shadow_progress, 1);  // stopped inside the first shadow
}

}  // namespace
}  // namespace dpfleet::audit
