// `dpctl audit` against a real fleet: an analyst trains a small DP job on a
// registered dataset, the custodian audits it, and the service runs the
// attacks on a worker. The report's empirical ε lower bounds never exceed
// the job's reported ε; the analyst can neither start nor see an audit;
// the report survives a coordinator restart.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <string>

#include "nlohmann/json.hpp"
#include "tests/testing/fleet/cluster.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet {
namespace {

using ::dpfleet::testing::BinPath;
using ::dpfleet::testing::Cluster;
using ::dpfleet::testing::RunCommand;
using ::dpfleet::testing::WaitFor;
using ::testing::HasSubstr;

TEST(AuditTest, CustodianAuditsAnAnalystsJobAndTheBoundsStayBelowItsEpsilon) {
  testing::TempDir dir;
  const std::string data = dir.Join("pums.csv");
  std::string out, err;
  ASSERT_EQ(RunCommand({BinPath("dpctl"), "data", "synth", "--rows", "6000", "--seed", "5", "-o", data}, &out, &err), 0)
      << err;
  Cluster fleet(dir.path());
  fleet.StartServer();
  fleet.StartWorkers(1);
  // Two shards: the audit run (world size 1) must read both and the eval split.
  ASSERT_EQ(fleet.Dpctl({"datasets", "add", "pums", "--path", data, "--shards", "2"}, &out, &err), 0) << err;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto d = fleet.client().GetDataset("pums");
        return d.ok() && d->state() != "PREPARING";
      },
      absl::Seconds(60)));
  const std::string analyst = fleet.CreateToken("ana", "analyst");
  const std::string spec = dir.Join("job.yaml");
  std::ofstream(spec) << "name: audited\ndataset: pums\ntask: employment\nmodel: {type: logistic}\n"
                      << "training: {epochs: 2, batch_size: 256, learning_rate: 0.5}\n"
                      << "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5}\n"
                      << "resources: {workers: 1, device: cpu}\n";
  ASSERT_EQ(fleet.DpctlAs(analyst, {"submit", spec, "--follow", "-o", "json"}, &out, &err), 0) << err << out;
  ASSERT_EQ(fleet.DpctlAs(analyst, {"list", "-o", "json"}, &out, &err), 0) << err;
  const nlohmann::json mine = nlohmann::json::parse(out);
  ASSERT_EQ(mine["jobs"].size(), 1u) << out;
  const std::string job = mine["jobs"][0]["job_id"];
  const double reported = mine["jobs"][0]["epsilon"].get<double>();

  // The analyst may not audit, not even their own job.
  EXPECT_EQ(fleet.DpctlAs(analyst, {"audit", job}, &out, &err), 4) << err;
  EXPECT_THAT(err, HasSubstr("PERMISSION_DENIED"));

  // Few shadows and challenge points keep the run short; the bounds hold
  // for any number (they are confidence bounds, not estimates).
  ASSERT_EQ(
      fleet.Dpctl({"audit", job, "--shadow-models", "2", "--max-challenge", "400", "--canaries", "300", "-o", "json"},
                  &out, &err),
      0)
      << err << out << fleet.Logs();
  const nlohmann::json audit = nlohmann::json::parse(out);
  const std::string audit_id = audit["audit_id"];
  EXPECT_EQ(audit["audit_of"], job);
  EXPECT_EQ(audit["run"]["kind"], "audit");
  EXPECT_EQ(audit["run"]["state"], "SUCCEEDED");
  const nlohmann::json& report = audit["report"];
  ASSERT_TRUE(report.is_object()) << out;
  EXPECT_EQ(report["job_id"], job);
  EXPECT_DOUBLE_EQ(report["reported_epsilon"].get<double>(), reported);
  EXPECT_EQ(report["shadow_models"], 2);
  ASSERT_EQ(report["target"]["membership"].size(), 2u) << report.dump();
  for (const auto& attack : report["target"]["membership"]) {
    EXPECT_LE(attack["epsilon_lower_bound"].get<double>(), reported) << attack.dump();
    EXPECT_GT(attack["members"].get<int64_t>(), 0);
  }
  EXPECT_LE(report["target"]["epsilon_lower_bound"].get<double>(), reported);
  EXPECT_FALSE(report["target"]["inversion"].empty()) << "DIS and MAR are default features";
  // The one-run audit is part of "all": 300 canaries, counts as numbers.
  const nlohmann::json& one_run = report["target"]["one_run"];
  ASSERT_TRUE(one_run.is_object()) << report.dump();
  EXPECT_EQ(one_run["canaries"], 300);
  EXPECT_GT(one_run["included"].get<int64_t>(), 0);
  EXPECT_LE(one_run["correct"].get<int64_t>(), one_run["guesses"].get<int64_t>());
  EXPECT_LE(one_run["epsilon_lower_bound"].get<double>(), reported) << one_run.dump();
  EXPECT_TRUE(report["baseline"]["one_run"].is_object());
  EXPECT_TRUE(report["baseline"].is_object()) << "the non-private baseline is on by default";

  // Nothing was charged: the job's ε is what it was.
  ASSERT_EQ(fleet.Dpctl({"status", job, "-o", "json"}, &out, &err), 0) << err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(out)["epsilon"].get<double>(), reported);

  // The analyst sees neither the run nor its report, as for a missing job.
  EXPECT_NE(fleet.DpctlAs(analyst, {"status", audit_id}, &out, &err), 0);
  EXPECT_THAT(err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(fleet.DpctlAs(analyst, {"audit", "show", audit_id}, &out, &err), 4);
  ASSERT_EQ(fleet.DpctlAs(analyst, {"list", "-o", "json"}, &out, &err), 0) << err;
  EXPECT_EQ(nlohmann::json::parse(out)["jobs"].size(), 1u) << out;
  EXPECT_EQ(fleet.HttpGet("/v1/audits/" + audit_id, analyst).first, 403);
  auto [code, body] = fleet.HttpGet("/v1/audits/" + audit_id);
  ASSERT_EQ(code, 200) << body;
  EXPECT_EQ(nlohmann::json::parse(body)["report"]["job_id"], job);

  // The report is durable: the same after a restart.
  fleet.server().Signal(SIGTERM);
  ASSERT_GE(fleet.server().Wait(absl::Seconds(30)), 0);
  fleet.StartServer();
  ASSERT_EQ(fleet.Dpctl({"audit", "show", audit_id, "-o", "json"}, &out, &err), 0) << err;
  EXPECT_EQ(nlohmann::json::parse(out)["report"], report);
  ASSERT_EQ(fleet.Dpctl({"audit", "show", audit_id}, &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr("lira_offline"));
  EXPECT_THAT(out, HasSubstr("non_private_baseline"));
  EXPECT_THAT(out, HasSubstr("one-run audit"));

  // One attack alone: the order keeps only it, and a bad name is refused
  // naming it.
  ASSERT_EQ(fleet.Dpctl({"audit", job, "--attack", "one-run", "--canaries", "100", "-o", "json"}, &out, &err), 0)
      << err;
  const nlohmann::json only = nlohmann::json::parse(out)["report"];
  EXPECT_TRUE(only["target"]["membership"].empty()) << only.dump();
  EXPECT_TRUE(only["target"]["inversion"].empty());
  EXPECT_EQ(only["target"]["one_run"]["canaries"], 100);
  EXPECT_NE(fleet.Dpctl({"audit", job, "--attack", "membership,canary"}, &out, &err), 0);
  EXPECT_THAT(err, HasSubstr("'canary'"));
}

}  // namespace
}  // namespace dpfleet
