// dpctl's verb table (client/commands.h): the completion scripts it
// generates, run in a real bash, and the named contexts of the config
// file (client/connection.h, client/config_cli.h).
#include "client/commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli.h"
#include "client/config_cli.h"
#include "client/connection.h"
#include "nlohmann/json.hpp"
#include "tests/testing/files.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class CompletionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ostringstream out, err;
    ASSERT_EQ(RunDpctl({"completion", "bash"}, CliEnv{}, out, err), kExitOk) << err.str();
    script_ = dir_.Join("dpctl.bash");
    testing::WriteAll(script_, out.str());
  }
  // What bash completes for the command line `words` (the last one being
  // the word under the cursor), through the generated script.
  std::string Complete(const std::vector<std::string>& words) {
    std::string array;
    for (const std::string& w : words) absl::StrAppend(&array, " '", w, "'");
    const std::string program =
        absl::StrCat("source '", script_, "' && COMP_WORDS=(dpctl", array, ") && COMP_CWORD=", words.size(),
                     " && _dpctl && printf '%s\\n' \"${COMPREPLY[@]}\"");
    std::string out, err;
    EXPECT_EQ(testing::RunCommand({"bash", "-c", program}, &out, &err), 0) << err;
    return out;
  }
  testing::TempDir dir_;
  std::string script_;
};

TEST_F(CompletionTest, CompletesVerbsSubVerbsFlagsAndOutputFormats) {
  EXPECT_EQ(Complete({"da"}), "data\ndatasets\n");
  EXPECT_EQ(Complete({"datasets", ""}), "add\nlist\nrm\nshow\n");
  EXPECT_EQ(Complete({"admin", "token", "re"}), "revoke\n");
  EXPECT_EQ(Complete({"--server", "h:1", "list", "--st"}), "--state\n");
  EXPECT_EQ(Complete({"list", "-o", ""}), "json\nname\ntext\nwide\nyaml\n");
  EXPECT_EQ(Complete({"submit", "spec.yaml", "-o", "n"}), "name\n");
  EXPECT_EQ(Complete({"submit", "--f"}), "--follow\n");
  EXPECT_EQ(Complete({"completion", ""}), "bash\nzsh\n");
  EXPECT_EQ(Complete({"config", "use"}), "use-context\n");
}

TEST_F(CompletionTest, EveryVerbInTheTableIsCompleted) {
  for (const VerbDef& verb : Verbs()) {
    std::vector<std::string> words(verb.path.begin(), verb.path.end() - 1);
    words.push_back(verb.path.back());
    EXPECT_THAT(Complete(words), HasSubstr(verb.path.back() + "\n")) << absl::StrJoin(verb.path, " ");
  }
}

TEST(CompletionScriptTest, ZshUsesTheSameFunctionAndOtherShellsAreRefused) {
  absl::StatusOr<std::string> zsh = CompletionScript("zsh");
  ASSERT_TRUE(zsh.ok());
  EXPECT_THAT(*zsh, HasSubstr("#compdef dpctl"));
  EXPECT_THAT(*zsh, HasSubstr("bashcompinit"));
  EXPECT_THAT(*zsh, HasSubstr("complete -F _dpctl dpctl"));
  std::ostringstream out, err;
  EXPECT_EQ(RunDpctl({"completion", "fish"}, CliEnv{}, out, err), kExitUsage);
  EXPECT_THAT(err.str(), HasSubstr("\"fish\" is not a shell (expected bash or zsh)"));
}

class ContextsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string token = dir_.Join("prod.token");
    testing::WriteAll(token, "dpf_prod\n");
    chmod(token.c_str(), 0600);
    config_ = dir_.Join("config.yaml");
    testing::WriteAll(config_,
                      "current-context: prod\n"
                      "contexts:\n"
                      "  prod: {server: prod:7070, ca: ca.pem, token_file: prod.token}\n"
                      "  lab: {server: lab:7070}\n");
  }
  int Config(const std::vector<std::string>& args) {
    out_.str("");
    err_.str("");
    return RunConfigCommand(args, config_, true, out_, err_);
  }
  testing::TempDir dir_;
  std::string config_;
  std::ostringstream out_, err_;
};

TEST_F(ContextsTest, TheCurrentOrTheNamedContextFillsTheSettings) {
  absl::StatusOr<ConnectionSettings> current = ResolveConnection({}, {}, config_, true);
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_EQ(current->server, "prod:7070");
  EXPECT_EQ(current->ca, dir_.Join("ca.pem")) << "relative to the file";
  EXPECT_EQ(current->token, "dpf_prod");
  absl::StatusOr<ConnectionSettings> lab = ResolveConnection({}, {}, config_, true, "lab");
  ASSERT_TRUE(lab.ok()) << lab.status();
  EXPECT_EQ(lab->server, "lab:7070");
  EXPECT_EQ(lab->token, "");
  absl::StatusOr<ConnectionSettings> flag = ResolveConnection({"flag:1", "", ""}, {"env:2", "", ""}, config_, true);
  EXPECT_EQ(flag->server, "flag:1") << "flags and the environment still come first";
  absl::StatusOr<ConnectionSettings> unknown = ResolveConnection({}, {}, config_, true, "staging");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), HasSubstr("--context: 'staging' is not a context"));
  EXPECT_THAT(unknown.status().message(), HasSubstr("known: lab, prod"));
}

TEST_F(ContextsTest, UseContextRewritesTheFileAndTheOthersReadIt) {
  ASSERT_EQ(Config({"current-context"}), kExitOk);
  EXPECT_EQ(out_.str(), "prod\n");
  ASSERT_EQ(Config({"get-contexts", "-o", "json"}), kExitOk);
  const nlohmann::json j = nlohmann::json::parse(out_.str());
  ASSERT_EQ(j.at("contexts").size(), 2u);
  EXPECT_EQ(j.at("contexts")[1].at("name"), "prod");
  EXPECT_EQ(j.at("contexts")[1].at("current"), true);
  EXPECT_THAT(out_.str(), Not(HasSubstr("dpf_prod"))) << "never the token itself";
  ASSERT_EQ(Config({"use-context", "lab"}), kExitOk) << err_.str();
  ASSERT_EQ(Config({"current-context"}), kExitOk);
  EXPECT_EQ(out_.str(), "lab\n");
  ASSERT_EQ(Config({"get-contexts"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("*        lab"));
  EXPECT_EQ(ResolveConnection({}, {}, config_, true)->server, "lab:7070");
  EXPECT_EQ(Config({"use-context", "nope"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("'nope' is not a context"));
  ASSERT_EQ(Config({"get-contexts", "-o", "name"}), kExitOk);
  EXPECT_EQ(out_.str(), "lab\nprod\n");
}

TEST_F(ContextsTest, TheContextFlagReachesTheCoordinatorSettings) {
  CliEnv env;
  env.config_path = config_;
  env.config_required = true;
  std::ostringstream out, err;
  // Nothing listens on lab:7070's resolution; the point is the error names it.
  EXPECT_EQ(RunDpctl({"--context", "staging", "list"}, env, out, err), kExitUsage);
  EXPECT_THAT(err.str(), HasSubstr("--context: 'staging' is not a context"));
  EXPECT_EQ(RunDpctl({"list", "--context", "staging"}, env, out, err), kExitUsage);
}

TEST_F(ContextsTest, TheSingleContextFileStillWorks) {
  testing::WriteAll(config_, "server: old:7070\n");
  absl::StatusOr<ConnectionSettings> s = ResolveConnection({}, {}, config_, true);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->server, "old:7070");
  EXPECT_EQ(Config({"current-context"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("sets no current-context"));
}

}  // namespace
}  // namespace dpfleet::client
