#include "common/spec/job_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace dpfleet {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

const char kSpec[] = R"(name: employment-dp
data: {path: /data/pums.csv}
task: employment
features: [AGEP, SCHL, MAR, SEX, RAC1P, DIS, CIT, NATIVITY, MIL, DREM]
model: {type: mlp, hidden: [64, 32]}
training: {epochs: 5, batch_size: 512, optimizer: sgd, learning_rate: 0.5, momentum: 0.0, seed: 1}
privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5}
resources: {workers: 1, device: cpu}
)";

TEST(JobSpecTest, ParsesTheDocumentedSpec) {
  auto spec = ParseJobSpec(kSpec);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "employment-dp");
  EXPECT_EQ(spec->data_paths, std::vector<std::string>{"/data/pums.csv"});
  EXPECT_EQ(spec->features.size(), 10u);
  EXPECT_EQ(spec->model.hidden, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(spec->training.epochs, 5);
  EXPECT_EQ(spec->training.batch_size, 512);
  EXPECT_DOUBLE_EQ(*spec->privacy.noise_multiplier, 1.0);
  EXPECT_DOUBLE_EQ(spec->privacy.delta, 1e-5);
  EXPECT_TRUE(spec->dp());
}

TEST(JobSpecTest, TheShippedExamplesAreValid) {
  const char* src = std::getenv("DPFLEET_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  for (const char* example : {"employment-dp.yaml", "small-dp.yaml"}) {
    std::ifstream f(std::string(src) + "/deploy/examples/" + example);
    ASSERT_TRUE(f.good()) << example;
    std::stringstream ss;
    ss << f.rdbuf();
    auto spec = ParseJobSpec(ss.str());
    EXPECT_TRUE(spec.ok()) << example << ": " << spec.status();
  }
}

TEST(JobSpecTest, RoundTripsThroughCanonicalYaml) {
  auto spec = ParseJobSpec(kSpec);
  ASSERT_TRUE(spec.ok());
  auto again = ParseJobSpec(JobSpecToYaml(*spec));
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << JobSpecToYaml(*spec);
  EXPECT_EQ(JobSpecToYaml(*again), JobSpecToYaml(*spec));
  EXPECT_EQ(again->features, spec->features);
  EXPECT_EQ(again->model.hidden, spec->model.hidden);
}

struct BadCase {
  std::string from, to;
  std::string field, value;
};

class JobSpecErrorTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(JobSpecErrorTest, NamesFieldAndValue) {
  const BadCase& c = GetParam();
  const std::string yaml = absl::StrReplaceAll(kSpec, {{c.from, c.to}});
  ASSERT_NE(yaml, kSpec) << "test case does not change the spec";
  auto spec = ParseJobSpec(yaml);
  ASSERT_FALSE(spec.ok()) << yaml;
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), AllOf(HasSubstr(c.field), HasSubstr(c.value)));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, JobSpecErrorTest,
    ::testing::Values(BadCase{"epochs: 5", "epochs: -1", "training.epochs", "-1"},
                      BadCase{"epochs: 5", "epochs: 2.5", "training.epochs", "2.5"},
                      BadCase{"type: mlp", "type: transformer", "model.type", "transformer"},
                      BadCase{"MIL, DREM", "MIL, XYZZY", "features[9]", "XYZZY"},
                      BadCase{"MIL, DREM", "MIL, ESR", "features[9]", "ESR"},
                      BadCase{"MIL, DREM", "MIL, MIL", "features[9]", "MIL"},
                      BadCase{"delta: 1.0e-5", "delta: 1.0", "privacy.delta", "1"},
                      BadCase{"delta: 1.0e-5", "delta: 0", "privacy.delta", "0"},
                      BadCase{"batch_size: 512", "batch_size: 0", "training.batch_size", "0"},
                      BadCase{"batch_size: 512", "batch_size: many", "training.batch_size", "many"},
                      BadCase{"learning_rate: 0.5", "learning_rate: -0.5", "training.learning_rate", "-0.5"},
                      BadCase{"momentum: 0.0", "momentum: 1.5", "training.momentum", "1.5"},
                      BadCase{"noise_multiplier: 1.0", "noise_multiplier: -1", "privacy.noise_multiplier", "-1"},
                      BadCase{"noise_multiplier: 1.0", "noise_multiplier: 1.0, target_epsilon: 3",
                              "privacy.target_epsilon", "3"},
                      BadCase{"max_grad_norm: 1.0", "max_grad_norm: 0", "privacy.max_grad_norm", "0"},
                      BadCase{"mode: dp", "mode: maybe", "privacy.mode", "maybe"},
                      BadCase{"workers: 1", "workers: 0", "resources.workers", "0"},
                      BadCase{"device: cpu", "device: tpu", "resources.device", "tpu"},
                      BadCase{"task: employment", "task: income", "task", "income"},
                      BadCase{"seed: 1}", "seed: 1, eval_fraction: 0.01}", "training.eval_fraction", "0.01"},
                      BadCase{"seed: 1}", "seed: 1, eval_fraction: 0.6}", "training.eval_fraction", "0.6"},
                      BadCase{"delta: 1.0e-5}", "delta: 1.0e-5, secure_rng: false}", "privacy.secure_rng",
                              "false"},
                      BadCase{"delta: 1.0e-5}", "delta: 1.0e-5, eval: {noise_multiplier: 0}}",
                              "privacy.eval.noise_multiplier", "0"},
                      BadCase{"delta: 1.0e-5}", "delta: 1.0e-5, eval: {bins: 7}}", "privacy.eval.bins", "7"},
                      BadCase{"delta: 1.0e-5}", "delta: 1.0e-5, eval: {every: 6}}", "privacy.eval.every", "6"},
                      BadCase{"delta: 1.0e-5}", "delta: 1.0e-5, eval: {sigma: 2}}", "privacy.eval.sigma",
                              "not a known field"},
                      BadCase{"delta: 1.0e-5}", "delta: 1.0e-5, eval: off}", "privacy.eval", "off"},
                      BadCase{"optimizer: sgd", "optimizer: lbfgs", "training.optimizer", "lbfgs"},
                      BadCase{"seed: 1}", "seed: 1, epoch: 3}", "training.epoch", "not a known field"},
                      BadCase{"name: employment-dp", "name: employment-dp\ncolor: blue", "color",
                              "not a known field"},
                      BadCase{"hidden: [64, 32]", "hidden: [64, -2]", "model.hidden[1]", "-2"},
                      BadCase{"data: {path: /data/pums.csv}", "data: {}", "data.path", "required"}));

TEST(JobSpecTest, DatasetReplacesDataPath) {
  auto spec = ParseJobSpec(absl::StrReplaceAll(kSpec, {{"data: {path: /data/pums.csv}", "dataset: acs-vt"}}));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->dataset, "acs-vt");
  EXPECT_TRUE(spec->data_paths.empty());
  auto again = ParseJobSpec(JobSpecToYaml(*spec));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->dataset, "acs-vt");
  auto both = ParseJobSpec(absl::StrReplaceAll(kSpec, {{"data: {path: /data/pums.csv}",
                                                        "data: {path: /data/pums.csv}\ndataset: acs-vt"}}));
  ASSERT_FALSE(both.ok());
  EXPECT_THAT(std::string(both.status().message()), HasSubstr("dataset"));
}

TEST(JobSpecTest, EncodeOptionsComeFromTheSpecAndTheSplitFromTheCoordinatorsKey) {
  auto spec = ParseJobSpec(absl::StrReplaceAll(
      kSpec, {{"task: employment", "task: unemployment"}, {"seed: 1}", "seed: 7, eval_fraction: 0.3}"}}));
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto options = EncodeOptionsFor(*spec, 0xfeedbeefULL);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->task, data::Task::kUnemployment);
  EXPECT_EQ(options->features, spec->features);
  EXPECT_EQ(options->split_seed, 0xfeedbeefULL) << "the split is keyed by the coordinator, never by training.seed";
  EXPECT_DOUBLE_EQ(options->eval_fraction, 0.3);
  // Another training.seed changes nothing about the split.
  auto other = ParseJobSpec(absl::StrReplaceAll(kSpec, {{"seed: 1}", "seed: 8, eval_fraction: 0.3}"}}));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(EncodeOptionsFor(*other, 0xfeedbeefULL)->split_seed, options->split_seed);
  // Unset: the default share.
  EXPECT_DOUBLE_EQ(EncodeOptionsFor(*ParseJobSpec(kSpec), 1)->eval_fraction, kDefaultEvalFraction);
  // The bounds themselves are allowed.
  for (const char* f : {"0.05", "0.5"}) {
    EXPECT_TRUE(ParseJobSpec(absl::StrReplaceAll(kSpec, {{"seed: 1}", absl::StrCat("seed: 1, eval_fraction: ", f, "}")}}))
                    .ok())
        << f;
  }
}

TEST(JobSpecTest, ADatasetsSplitIsNotTheSubmitters) {
  const std::string on_dataset = absl::StrReplaceAll(
      kSpec, {{"data: {path: /data/pums.csv}", "dataset: acs-vt"}, {"seed: 1}", "seed: 1, eval_fraction: 0.2}"}});
  auto spec = ParseJobSpec(on_dataset);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()),
              AllOf(HasSubstr("training.eval_fraction"), HasSubstr("acs-vt"), HasSubstr("fixed")));
}

TEST(JobSpecTest, EvalReleaseDefaultsScheduleAndNone) {
  auto spec = ParseJobSpec(kSpec);
  ASSERT_TRUE(spec.ok());
  const EvalSpec& d = spec->privacy.eval;
  EXPECT_TRUE(d.enabled);
  EXPECT_DOUBLE_EQ(d.noise_multiplier, kDefaultEvalNoiseMultiplier);
  EXPECT_EQ(d.bins, kDefaultEvalBins);
  EXPECT_EQ(d.Releases(5), 5);
  for (int e = 1; e <= 5; ++e) EXPECT_TRUE(d.ReleasedAfter(e, 5));

  auto every = ParseJobSpec(absl::StrReplaceAll(
      kSpec, {{"delta: 1.0e-5}", "delta: 1.0e-5, eval: {noise_multiplier: 40, bins: 10, every: 2}}"}}));
  ASSERT_TRUE(every.ok()) << every.status();
  const EvalSpec& e = every->privacy.eval;
  EXPECT_DOUBLE_EQ(e.noise_multiplier, 40);
  EXPECT_EQ(e.bins, 10);
  // Epochs 2 and 4, and the last one (5).
  std::vector<int> released;
  for (int epoch = 0; epoch <= 6; ++epoch) {
    if (e.ReleasedAfter(epoch, 5)) released.push_back(epoch);
  }
  EXPECT_EQ(released, (std::vector<int>{2, 4, 5}));
  EXPECT_EQ(e.Releases(5), 3);
  EXPECT_EQ(e.Releases(4), 2);
  auto round_trip = ParseJobSpec(JobSpecToYaml(*every));
  ASSERT_TRUE(round_trip.ok()) << JobSpecToYaml(*every);
  EXPECT_EQ(round_trip->privacy.eval.every, 2);
  EXPECT_EQ(round_trip->privacy.eval.bins, 10);

  auto none = ParseJobSpec(absl::StrReplaceAll(kSpec, {{"delta: 1.0e-5}", "delta: 1.0e-5, eval: none}"}}));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->privacy.eval.enabled);
  EXPECT_EQ(none->privacy.eval.Releases(5), 0);
  EXPECT_FALSE(none->privacy.eval.ReleasedAfter(5, 5));
  EXPECT_FALSE(ParseJobSpec(JobSpecToYaml(*none))->privacy.eval.enabled);

  // secure_rng: true is what every DP job does now; accepted, changes nothing.
  EXPECT_TRUE(ParseJobSpec(absl::StrReplaceAll(kSpec, {{"delta: 1.0e-5}", "delta: 1.0e-5, secure_rng: true}"}})).ok());
  // A noisy eval release makes no sense for a non-private job.
  auto baseline = ParseJobSpec(absl::StrReplaceAll(
      kSpec, {{"privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5}",
               "privacy: {mode: none, eval: {noise_multiplier: 5}}"}}));
  ASSERT_FALSE(baseline.ok());
  EXPECT_THAT(std::string(baseline.status().message()), HasSubstr("privacy.eval"));
  EXPECT_TRUE(ParseJobSpec(absl::StrReplaceAll(kSpec, {{"privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, "
                                                        "delta: 1.0e-5}",
                                                        "privacy: {mode: none, eval: none}"}}))
                  .ok());
}

TEST(JobSpecTest, UnknownAccountantIsRefused) {
  auto spec = ParseJobSpec(absl::StrReplaceAll(kSpec, {{"delta: 1.0e-5}", "delta: 1.0e-5, accountant: gdp}"}}));
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), AllOf(HasSubstr("privacy.accountant"), HasSubstr("gdp")));
}

TEST(JobSpecTest, MalformedYamlSaysWhere) {
  auto spec = ParseJobSpec("name: [unclosed\n");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("line"));
  EXPECT_FALSE(ParseJobSpec("").ok());
  EXPECT_FALSE(ParseJobSpec("- a\n- b\n").ok());
}

TEST(JobSpecTest, NonPrivateBaselineNeedsNoNoise) {
  auto spec = ParseJobSpec(absl::StrReplaceAll(
      kSpec, {{"privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5}",
               "privacy: {mode: none}"}}));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_FALSE(spec->dp());
}

// Found by tests/fuzz/job_spec_fuzzer: a name with bytes that are not UTF-8
// (or a control character) was accepted, and its canonical YAML was not.
TEST(JobSpecTest, ASpecMustBeUtf8AndANameMustBePrintable) {
  auto latin1 = ParseJobSpec(absl::StrReplaceAll(kSpec, {{"name: employment-dp", "name: caf\xe9"}}));
  EXPECT_EQ(latin1.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(latin1.status().message()), HasSubstr("spec is not UTF-8 text: invalid UTF-8 byte at index 10"));
  auto bell = ParseJobSpec(absl::StrReplaceAll(kSpec, {{"name: employment-dp", "name: \"ding\\a\""}}));
  EXPECT_EQ(bell.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bell.status().message(), HasSubstr("name: has a control character (byte 7) at position 4"));
  auto nul = ParseJobSpec(absl::StrReplaceAll(kSpec, {{"name: employment-dp", std::string("name: a\0b", 9)}}));
  EXPECT_THAT(std::string(nul.status().message()), HasSubstr("spec: byte 7 is a control character (0)"));
  const std::string escaped = absl::StrReplaceAll(kSpec, {{"data: {path: /data/pums.csv}", "dataset: \"a\\0b\""}});
  EXPECT_THAT(std::string(ParseJobSpec(escaped).status().message()),
              HasSubstr("dataset: has a control character (byte 0) at position 1"));
  auto accented = ParseJobSpec(absl::StrReplaceAll(kSpec, {{"name: employment-dp", "name: caf\xc3\xa9"}}));
  ASSERT_TRUE(accented.ok()) << accented.status();
  EXPECT_EQ(ParseJobSpec(JobSpecToYaml(*accented))->name, "caf\xc3\xa9") << "the canonical YAML reads back";
}

}  // namespace
}  // namespace dpfleet
