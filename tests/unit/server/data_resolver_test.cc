// DataRoots (server/core/data_resolver.h): raw paths stay inside the data
// roots, and a refusal never tells whether a file outside exists.
#include "server/core/data_resolver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_replace.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::testing::HasSubstr;

class DataRootsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.Join("root");
    std::filesystem::create_directories(root_ + "/sub");
    std::filesystem::create_directories(dir_.Join("state"));
    std::ofstream(root_ + "/sub/pums.csv") << "RT,SERIALNO\n";
    std::ofstream(outside_.Join("secret.csv")) << "x\n";
    roots_ = *DataRoots::Create({root_}, dir_.Join("state"));
  }
  // The refusal with the path itself blanked: what is left must not
  // depend on what exists outside.
  std::string Refusal(const std::string& path) {
    auto r = roots_.Resolve("data.path", path);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << path;
    return absl::StrReplaceAll(std::string(r.status().message()), {{path, "P"}});
  }
  testing::TempDir dir_, outside_;
  std::string root_;
  DataRoots roots_;
};

TEST_F(DataRootsTest, AcceptsAFileInsideAndReturnsItsRealPath) {
  auto r = roots_.Resolve("data.path", root_ + "/sub/../sub/./pums.csv");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, std::filesystem::canonical(root_ + "/sub/pums.csv").string());
  std::filesystem::create_symlink(root_ + "/sub/pums.csv", root_ + "/alias.csv");
  EXPECT_EQ(*roots_.Resolve("data.path", root_ + "/alias.csv"), *r) << "a symlink inside the root is its target";
}

TEST_F(DataRootsTest, EscapesAreRefusedAlikeWhetherTheTargetExistsOrNot) {
  std::filesystem::create_symlink(outside_.Join("secret.csv"), root_ + "/out.csv");
  std::filesystem::create_symlink(outside_.Join("missing.csv"), root_ + "/dangling.csv");
  std::filesystem::create_directory_symlink(outside_.path(), root_ + "/outdir");
  const std::string expected = Refusal(outside_.Join("secret.csv"));
  EXPECT_EQ(expected, "data.path: 'P' is not a readable file under the coordinator's data roots");
  for (const std::string& p :
       {outside_.Join("missing.csv"), root_ + "/../../" + std::filesystem::path(outside_.path()).filename().string() +
                                          "/secret.csv",
        root_ + "/sub/../../root/../x.csv", root_ + "/out.csv", root_ + "/dangling.csv", root_ + "/outdir/secret.csv",
        root_ + "/outdir/missing.csv", root_ + "/sub/missing.csv", root_ + "/sub", root_,
        std::string("/etc/passwd"), std::string("/etc/no-such-file"), dir_.Join("state/coordinator.db")}) {
    EXPECT_EQ(Refusal(p), expected) << p;
  }
}

TEST_F(DataRootsTest, HardLinksRelativePathsAndNoRootsAreRefusedByName) {
  ASSERT_EQ(link(outside_.Join("secret.csv").c_str(), (root_ + "/hard.csv").c_str()), 0);
  auto hard = roots_.Resolve("path[0]", root_ + "/hard.csv");
  EXPECT_EQ(hard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(hard.status().message(), HasSubstr("path[0]"));
  EXPECT_THAT(hard.status().message(), HasSubstr("has 2 hard links"));
  EXPECT_THAT(roots_.Resolve("data.path", "sub/pums.csv").status().message(), HasSubstr("not an absolute path"));
  DataRoots none;
  auto refused = none.Resolve("data.path", root_ + "/sub/pums.csv");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("without --data-root"));
  EXPECT_EQ(DataRoots::Create({dir_.Join("nope")}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DataRootsTest, TheResolverChecksBeforeReading) {
  PipelineDataResolver resolver(roots_);
  JobSpec spec;
  spec.data_paths = {outside_.Join("secret.csv")};
  auto r = resolver.Resolve(spec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("is not a readable file under the coordinator's data roots"));
}

}  // namespace
}  // namespace dpfleet::server
