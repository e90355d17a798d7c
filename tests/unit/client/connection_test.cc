// Where dpctl finds the coordinator, its CA and its token
// (client/connection.h), and the exit codes (client/cli.h).
#include "client/connection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "client/cli.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class ConnectionTest : public ::testing::Test {
 protected:
  std::string Config(const std::string& yaml) {
    const std::string path = dir_.Join("dpctl.yaml");
    std::ofstream(path) << yaml;
    return path;
  }
  std::string TokenFile(const std::string& token, mode_t mode) {
    const std::string path = dir_.Join("token");
    std::ofstream(path) << token << "\n";
    chmod(path.c_str(), mode);
    return path;
  }
  testing::TempDir dir_;
};

TEST_F(ConnectionTest, FlagsBeatTheEnvironmentWhichBeatsTheConfigFile) {
  TokenFile("from-file", 0600);
  const std::string config = Config("server: cfg:1\nca: ca.pem\ntoken_file: token\n");
  auto all_config = ResolveConnection({}, {}, config, true);
  ASSERT_TRUE(all_config.ok()) << all_config.status();
  EXPECT_EQ(all_config->server, "cfg:1");
  EXPECT_EQ(all_config->ca, dir_.Join("ca.pem")) << "relative to the config file";
  EXPECT_EQ(all_config->token, "from-file");
  auto env = ResolveConnection({}, {"env:2", "/env/ca.pem", "from-env"}, config, true);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->server, "env:2");
  EXPECT_EQ(env->ca, "/env/ca.pem");
  EXPECT_EQ(env->token, "from-env");
  auto flags = ResolveConnection({"flag:3", "/flag/ca.pem", "from-flag"}, {"env:2", "/env/ca.pem", "from-env"},
                                 config, true);
  ASSERT_TRUE(flags.ok());
  EXPECT_EQ(flags->server, "flag:3");
  EXPECT_EQ(flags->token, "from-flag");
  auto none = ResolveConnection({}, {}, dir_.Join("absent.yaml"), false);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->server, "127.0.0.1:7070");
  EXPECT_TRUE(none->token.empty());
  EXPECT_FALSE(ResolveConnection({}, {}, dir_.Join("absent.yaml"), true).ok()) << "$DPFLEET_CONFIG must exist";
}

TEST_F(ConnectionTest, RefusesATokenFileOthersCanReadAndUnknownKeys) {
  TokenFile("secret", 0644);
  auto loose = ResolveConnection({}, {}, Config("token_file: token\n"), true);
  EXPECT_EQ(loose.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(loose.status().message(), HasSubstr("readable by others (mode 0644)"));
  EXPECT_THAT(loose.status().message(), Not(HasSubstr("secret")));
  auto unknown = ResolveConnection({}, {}, Config("servr: x\n"), true);
  EXPECT_THAT(unknown.status().message(), HasSubstr("servr is not a known setting"));
  auto bad_ca = ToClientOptions({"h:1", dir_.Join("nope.pem"), ""});
  EXPECT_THAT(bad_ca.status().message(), HasSubstr("--ca"));
}

TEST(ExitCodesTest, FollowTheDocumentedContract) {
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kOk), 0);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kFailedPrecondition), 1);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kAlreadyExists), 1);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kInvalidArgument), 2);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kNotFound), 2);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kUnavailable), 3);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kDeadlineExceeded), 3);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kResourceExhausted), 3);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kUnauthenticated), 4);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kPermissionDenied), 4);
  std::ostringstream err;
  EXPECT_EQ(ReportError(absl::PermissionDeniedError("no"), err), 4);
  EXPECT_EQ(err.str(), "dpctl: PERMISSION_DENIED: no\n");
}

}  // namespace
}  // namespace dpfleet::client
