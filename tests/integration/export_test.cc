// `dpctl export` and `dpctl report` against a real fleet: the files come out
// with the job's released numbers, and another analyst's job answers like a
// missing one. (tests/unit/worker/model_export_test.cc checks the exported
// predictions against the worker's in Python.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/testing/files.h"
#include "tests/testing/fleet/cluster.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet {
namespace {

using ::dpfleet::testing::BinPath;
using ::dpfleet::testing::Cluster;
using ::dpfleet::testing::ReadAll;
using ::dpfleet::testing::RunCommand;
using ::testing::HasSubstr;

TEST(ExportTest, OwnerExportsBothFormatsAndReportsOthersGetNothing) {
  testing::TempDir dir;
  const std::string data = dir.Join("pums.csv");
  std::string out, err;
  ASSERT_EQ(RunCommand({BinPath("dpctl"), "data", "synth", "--rows", "6000", "--seed", "9", "-o", data}, &out, &err), 0)
      << err;
  Cluster fleet(dir.path());
  fleet.StartServer();
  fleet.StartWorkers(1);
  const std::string job = fleet.SubmitAndWait(testing::WriteSmallJobSpec(dir.Join("job.yaml"), "exp", data, 3));
  ASSERT_FALSE(job.empty());

  const std::string ts = dir.Join("model.pt"), st = dir.Join("model.safetensors");
  ASSERT_EQ(fleet.Dpctl({"export", job, "--format", "torchscript", "-o", ts, "--json"}, &out, &err), 0) << err;
  const nlohmann::json result = nlohmann::json::parse(out);
  const nlohmann::json& card = result.at("card");
  ASSERT_EQ(fleet.Dpctl({"status", job, "-o", "json"}, &out, &err), 0) << err;
  const nlohmann::json status = nlohmann::json::parse(out);
  EXPECT_EQ(card["job_id"], job);
  EXPECT_EQ(card["privacy"]["private"], true);
  EXPECT_DOUBLE_EQ(card["privacy"]["epsilon"].get<double>(), status["epsilon"].get<double>());
  EXPECT_DOUBLE_EQ(card["privacy"]["sample_rate"].get<double>(), status["sample_rate"].get<double>());
  EXPECT_EQ(card["privacy"]["train_rows"], status["train_rows"]);
  EXPECT_EQ(card.dump().find(data), std::string::npos) << "the data path is custodian-only";
  // A TorchScript archive (zip) with the card inside.
  const std::string ts_bytes = ReadAll(ts);
  EXPECT_EQ(ts_bytes.substr(0, 2), "PK");
  EXPECT_THAT(ts_bytes, HasSubstr("model_card.json"));
  EXPECT_FALSE(std::filesystem::exists(ts + ".partial"));

  ASSERT_EQ(fleet.Dpctl({"export", job, "--format", "safetensors", "-o", st}, &out, &err), 0) << err;
  const std::string st_bytes = ReadAll(st);
  ASSERT_GT(st_bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(st_bytes[i]);
  const nlohmann::json header = nlohmann::json::parse(st_bytes.substr(8, n));
  EXPECT_EQ(nlohmann::json::parse(header["__metadata__"]["model_card"].get<std::string>())["job_id"], job);
  EXPECT_TRUE(header.contains("0.weight"));

  EXPECT_EQ(fleet.Dpctl({"export", job, "--format", "onnx", "-o", st}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("onnx"));

  // The report: one vertex per epoch, the job's own accuracies.
  const std::string rdir = dir.Join("report");
  ASSERT_EQ(fleet.Dpctl({"report", job, "-o", rdir}, &out, &err), 0) << err;
  const std::string svg = ReadAll(rdir + "/" + job + "-accuracy.svg");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("data-series=\"eval accuracy\" points=\"([^\"]*)\"")));
  int with_eval = 0;
  for (const auto& e : status["history"]) with_eval += !e["eval_accuracy"].is_null();
  EXPECT_EQ(static_cast<int>(std::vector<std::string>(absl::StrSplit(m[1].str(), ' ')).size()), with_eval);
  EXPECT_THAT(ReadAll(rdir + "/index.html"), HasSubstr(job + "-epsilon.svg"));

  // Another analyst: the job answers like a missing one, for both verbs.
  const std::string other = fleet.CreateToken("other", "analyst");
  std::string missing_err;
  const int missing =
      fleet.DpctlAs(other, {"export", "job-999999", "--format", "torchscript", "-o", ts}, &out, &missing_err);
  EXPECT_EQ(fleet.DpctlAs(other, {"export", job, "--format", "torchscript", "-o", dir.Join("stolen.pt")}, &out, &err),
            missing);
  EXPECT_THAT(err, HasSubstr("NOT_FOUND"));
  EXPECT_FALSE(std::filesystem::exists(dir.Join("stolen.pt")));
  EXPECT_NE(fleet.DpctlAs(other, {"report", job, "-o", dir.Join("stolen")}, &out, &err), 0);
  EXPECT_THAT(err, HasSubstr("NOT_FOUND"));
}

}  // namespace
}  // namespace dpfleet
