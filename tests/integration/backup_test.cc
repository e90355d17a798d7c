// Backup and restore of a serving coordinator's state, end to end with real
// processes: `dpfleet-server backup` while it serves, a restore and a second
// coordinator refused while it holds the directory, and a coordinator
// started on the restored state serving the same job, ledger and model.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "client/coordinator_client.h"
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

TEST(BackupTest, AServingCoordinatorIsBackedUpAndItsStateServedAgainFromTheRestore) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.Join("a"));
  const std::string data = dir.Join("a/pums.csv");  // inside cluster a's data root
  std::string out, err;
  ASSERT_EQ(RunCommand({BinPath("dpctl"), "data", "synth", "--rows", "8000", "--seed", "4", "-o", data}, &out, &err), 0)
      << err;
  Cluster a(dir.Join("a"));
  a.StartServer();
  a.StartWorkers(1);
  const std::string job = a.SubmitAndWait(testing::WriteSmallJobSpec(dir.Join("a/job.yaml"), "kept", data, 2));
  ASSERT_FALSE(job.empty());
  ASSERT_EQ(a.Dpctl({"status", job, "-o", "json"}, &out, &err), 0) << err;
  const nlohmann::json status = nlohmann::json::parse(out);
  ASSERT_EQ(status.at("state"), "SUCCEEDED") << out;
  ASSERT_EQ(a.Dpctl({"ledger", data, "-o", "json"}, &out, &err), 0) << err;
  const nlohmann::json ledger = nlohmann::json::parse(out);
  ASSERT_EQ(a.Dpctl({"model", job, "--out", dir.Join("model-a.pt")}, &out, &err), 0) << err;

  // Backed up while it serves.
  const std::string backup = dir.Join("state.backup");
  ASSERT_EQ(RunCommand({BinPath("dpfleet-server"), "backup", "--state-dir", dir.Join("a/state"), "--out", backup}, &out,
                       &err),
            0)
      << err;
  EXPECT_THAT(out, HasSubstr("1 jobs"));
  EXPECT_THAT(out, HasSubstr(backup));
  EXPECT_EQ(RunCommand({BinPath("dpfleet-server"), "backup", "--state-dir", dir.Join("a/state"), "--out", backup}, &out,
                       &err),
            1)
      << "a backup is never overwritten";
  EXPECT_THAT(err, HasSubstr("never overwrites"));

  // The serving coordinator holds its directory: no restore into it, no
  // second coordinator on it.
  EXPECT_EQ(RunCommand({BinPath("dpfleet-server"), "restore", "--from", backup, "--state-dir", dir.Join("a/state"),
                        "--replace"},
                       &out, &err),
            1);
  EXPECT_THAT(err, HasSubstr(absl::StrCat("in use by dpfleet-server (pid ", a.server().pid(), ")")));
  EXPECT_NE(RunCommand({BinPath("dpfleet-server"), "--listen=127.0.0.1:0", "--http=127.0.0.1:0",
                        "--state-dir=" + dir.Join("a/state")},
                       &out, &err, absl::Seconds(60)),
            0);
  EXPECT_THAT(err, HasSubstr(absl::StrCat("--state-dir ", dir.Join("a/state"), " is in use by dpfleet-server")));
  EXPECT_EQ(RunCommand({BinPath("dpfleet-server"), "restore", "--state-dir", dir.Join("b/state")}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("--from is required"));

  // Restored elsewhere and served: the same job, ledger and model.
  ASSERT_EQ(RunCommand({BinPath("dpfleet-server"), "restore", "--from", backup, "--state-dir", dir.Join("b/state")},
                       &out, &err),
            0)
      << err;
  EXPECT_THAT(out, HasSubstr("restored"));
  std::filesystem::create_directories(dir.Join("b"));
  // The restored state has cluster a's tokens.
  testing::ClusterOptions restored_options;
  restored_options.custodian_token = a.custodian_token();
  Cluster b(dir.Join("b"), restored_options);
  b.StartServer();
  ASSERT_EQ(b.Dpctl({"status", job, "-o", "json"}, &out, &err), 0) << err << b.Logs();
  const nlohmann::json restored = nlohmann::json::parse(out);
  EXPECT_EQ(restored.at("state"), "SUCCEEDED");
  EXPECT_EQ(restored.at("epsilon"), status.at("epsilon"));
  EXPECT_EQ(restored.at("history"), status.at("history"));
  ASSERT_EQ(b.Dpctl({"ledger", data, "-o", "json"}, &out, &err), 0) << err;
  EXPECT_EQ(nlohmann::json::parse(out), ledger) << "every charge survives the restore";
  ASSERT_EQ(b.Dpctl({"model", job, "--out", dir.Join("model-b.pt")}, &out, &err), 0) << err;
  EXPECT_EQ(ReadAll(dir.Join("model-b.pt")), ReadAll(dir.Join("model-a.pt")));
  ASSERT_EQ(b.Dpctl({"admin", "audit", "-o", "json"}, &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr("RestoreState"));
}

}  // namespace
}  // namespace dpfleet
