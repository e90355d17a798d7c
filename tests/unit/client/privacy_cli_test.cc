// Tests of `dpctl privacy` (client/privacy_cli.h): output shape, both flag
// syntaxes, the epochs/dataset-size/batch-size form, and usage errors that
// name the flag and value with exit code 2.
#include "client/privacy_cli.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "common/privacy/accountant.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {
namespace {

using ::testing::HasSubstr;

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result RunCli(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = RunPrivacyCommand(args, out, err);
  return {code, out.str(), err.str()};
}

TEST(PrivacyCliTest, EpsilonJsonIsOneObjectWithAllFields) {
  const Result r = RunCli({"epsilon", "--sample-rate", "0.01", "--noise-multiplier", "1.0",
                        "--steps", "1000", "--delta", "1e-5", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);  // throws if not one JSON value
  ASSERT_TRUE(j.is_object());
  const double expected = *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp,
                                                   {{0.01, 1.0, 1000}}, 1e-5);
  EXPECT_DOUBLE_EQ(j.at("epsilon").get<double>(), expected);
  EXPECT_DOUBLE_EQ(j.at("delta").get<double>(), 1e-5);
  EXPECT_EQ(j.at("accountant"), "rdp");
  EXPECT_DOUBLE_EQ(j.at("sample_rate").get<double>(), 0.01);
  EXPECT_DOUBLE_EQ(j.at("noise_multiplier").get<double>(), 1.0);
  EXPECT_EQ(j.at("steps").get<int64_t>(), 1000);
  EXPECT_TRUE(r.err.empty());
}

TEST(PrivacyCliTest, EqualsSyntaxAndPldAccountant) {
  const Result r = RunCli({"epsilon", "--sample-rate=0.01", "--noise-multiplier=1",
                        "--steps=1000", "--delta=1e-5", "--accountant=pld", "-o=json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("accountant"), "pld");
  const double rdp = *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp,
                                              {{0.01, 1.0, 1000}}, 1e-5);
  EXPECT_LT(j.at("epsilon").get<double>(), rdp);
}

TEST(PrivacyCliTest, HumanOutputIsOneLine) {
  const Result r = RunCli({"eps", "--sample-rate", "0.01", "--noise-multiplier", "1",
                        "--steps", "1000", "--delta", "1e-5"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("epsilon = "));
  EXPECT_THAT(r.out, HasSubstr("rdp"));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
}

TEST(PrivacyCliTest, EpochsDatasetBatchForm) {
  // q = 256/60000, steps = 3 * round(60000/256) = 3 * 234.
  const Result r = RunCli({"epsilon", "--epochs", "3", "--dataset-size", "60000", "--batch-size",
                        "256", "--noise-multiplier", "1.1", "--delta", "1e-5", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_DOUBLE_EQ(j.at("sample_rate").get<double>(), 256.0 / 60000.0);
  EXPECT_EQ(j.at("steps").get<int64_t>(), 3 * 234);
  // At least one step per epoch even when the batch is the whole dataset.
  const Result full = RunCli({"epsilon", "--epochs=2", "--dataset-size=100", "--batch-size=100",
                           "--noise-multiplier=2", "--delta=1e-5", "-o", "json"});
  ASSERT_EQ(full.code, 0) << full.err;
  EXPECT_EQ(nlohmann::json::parse(full.out).at("steps").get<int64_t>(), 2);
}

TEST(PrivacyCliTest, SigmaCalibratesAndReportsReachedEpsilon) {
  const Result r = RunCli({"sigma", "--target-epsilon", "2", "--delta", "1e-5", "--sample-rate",
                        "0.01", "--steps", "1000", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const double sigma = j.at("noise_multiplier").get<double>();
  EXPECT_GT(sigma, 0.5);
  EXPECT_LT(sigma, 2.0);
  EXPECT_LE(j.at("epsilon").get<double>(), 2.0);
  EXPECT_LE(*privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, {{0.01, sigma, 1000}}, 1e-5),
            2.0);
  const Result human = RunCli({"sigma", "--target-epsilon=2", "--delta=1e-5", "--epochs=1",
                            "--dataset-size=1000", "--batch-size=10"});
  ASSERT_EQ(human.code, 0) << human.err;
  EXPECT_THAT(human.out, HasSubstr("noise multiplier = "));
}

TEST(PrivacyCliTest, UsageErrorsExitTwoAndNameFlagAndValue) {
  struct Bad {
    std::vector<std::string> args;
    std::vector<std::string> mentions;
  };
  const std::vector<std::string> ok_tail = {"--noise-multiplier", "1", "--steps", "10",
                                            "--delta", "1e-5"};
  auto with = [&](std::vector<std::string> head) {
    head.insert(head.end(), ok_tail.begin(), ok_tail.end());
    return head;
  };
  const Bad cases[] = {
      {{}, {"missing verb"}},
      {{"frobnicate"}, {"frobnicate"}},
      {with({"epsilon", "--sample-rate", "abc"}), {"--sample-rate", "abc"}},
      {with({"epsilon", "--sample-rate=0.01", "--bogus", "1"}), {"--bogus"}},
      {{"epsilon", "--sample-rate", "0.01", "--steps", "10", "--delta", "1e-5"},
       {"--noise-multiplier"}},
      {{"epsilon", "--sample-rate", "0.01", "--noise-multiplier", "1", "--steps", "ten",
        "--delta", "1e-5"},
       {"--steps", "ten"}},
      {with({"epsilon", "--sample-rate", "1.5"}), {"--sample-rate", "1.5"}},
      {{"epsilon", "--sample-rate", "0.01", "--noise-multiplier", "1", "--steps", "10",
        "--delta", "2"},
       {"--delta", "2"}},
      {with({"epsilon", "--sample-rate", "0.01", "--accountant", "prv"}),
       {"--accountant", "prv"}},
      {with({"epsilon", "--sample-rate", "0.01", "-o", "yaml"}), {"-o", "yaml"}},
      {with({"epsilon", "--sample-rate"}), {"--sample-rate"}},
      {{"epsilon", "--epochs", "1", "--dataset-size", "100", "--noise-multiplier", "1",
        "--delta", "1e-5"},
       {"--batch-size"}},
      {{"epsilon", "--epochs", "1", "--dataset-size", "100", "--batch-size", "200",
        "--noise-multiplier", "1", "--delta", "1e-5"},
       {"--batch-size", "200"}},
      {with({"epsilon", "--sample-rate", "0.01", "--epochs", "1"}), {"--epochs"}},
      {{"sigma", "--target-epsilon", "-1", "--delta", "1e-5", "--sample-rate", "0.01",
        "--steps", "10"},
       {"--target-epsilon", "-1"}},
      {{"sigma", "--noise-multiplier", "1", "--target-epsilon", "1", "--delta", "1e-5",
        "--sample-rate", "0.01", "--steps", "10"},
       {"--noise-multiplier"}},
  };
  for (const Bad& c : cases) {
    const Result r = RunCli(c.args);
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    EXPECT_EQ(r.code, 2) << joined;
    EXPECT_TRUE(r.out.empty()) << joined;
    for (const std::string& m : c.mentions) EXPECT_THAT(r.err, HasSubstr(m)) << joined;
  }
}

TEST(PrivacyCliTest, HelpGoesToStdout) {
  const Result r = RunCli({"epsilon", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("usage: dpctl privacy"));
}

}  // namespace
}  // namespace dpfleet::client
