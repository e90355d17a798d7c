// The coordinator's data resolver (server/core/data_resolver.h): raw paths
// stay inside the data roots, a refusal never tells whether a file outside
// exists, and N and the eval size come from the coordinator's split key,
// never from the spec.
#include "server/core/data_resolver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/pums/dataset.h"
#include "common/pums/synth.h"
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
  PipelineDataResolver resolver(roots_, /*split_key=*/1);
  JobSpec spec;
  spec.data_paths = {outside_.Join("secret.csv")};
  auto r = resolver.Resolve(spec);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("is not a readable file under the coordinator's data roots"));
}

JobSpec SpecFor(const std::string& path, uint64_t seed, const std::string& eval_fraction = "") {
  auto spec = ParseJobSpec(absl::StrCat("name: r\ndata: {path: ", path, "}\ntraining: {seed: ", seed,
                                        eval_fraction.empty() ? "" : ", eval_fraction: " + eval_fraction, "}\n"));
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

std::set<uint64_t> EvalKeys(const std::string& path, uint64_t split_seed) {
  data::EncodeOptions o;
  o.split_seed = split_seed;
  auto ds = data::LoadAndEncode({path}, o);
  EXPECT_TRUE(ds.ok()) << ds.status();
  return {ds->eval.keys.begin(), ds->eval.keys.end()};
}

TEST(DataResolverTest, TheSplitIsTheCoordinatorsKeyNotTheSpecsSeed) {
  testing::TempDir dir;
  const std::string csv = dir.Join("p.csv");
  ASSERT_TRUE(data::WriteSyntheticPums({/*rows=*/3000, /*seed=*/4}, csv).ok());
  constexpr uint64_t kKey = 0x9d2c5680a1b2c3d4ULL;
  PipelineDataResolver resolver(*DataRoots::Create({dir.path()}), kKey);
  auto a = resolver.Resolve(SpecFor(csv, 1));
  auto b = resolver.Resolve(SpecFor(csv, 987654321));
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  EXPECT_EQ(a->eval_rows, b->eval_rows) << "another training.seed, the same held-out persons";
  EXPECT_EQ(a->train_rows, b->train_rows);
  // The held-out persons are exactly the ones the key picks...
  const std::set<uint64_t> by_key = EvalKeys(csv, kKey);
  EXPECT_EQ(a->eval_rows, static_cast<int64_t>(by_key.size()));
  // ...and not the ones a submitter's seed would pick.
  EXPECT_NE(by_key, EvalKeys(csv, 1));
  EXPECT_NE(by_key, EvalKeys(csv, 987654321));
  // The fraction the submitter may choose (within bounds) moves the size.
  auto half = resolver.Resolve(SpecFor(csv, 1, "0.5"));
  auto small = resolver.Resolve(SpecFor(csv, 1, "0.05"));
  ASSERT_TRUE(half.ok() && small.ok());
  EXPECT_GT(half->eval_rows, 4 * small->eval_rows);
  EXPECT_EQ(half->eval_rows + half->train_rows, a->eval_rows + a->train_rows);
}

TEST(DataResolverTest, TheSameFileTwiceIsRefusedOnDataPath) {
  testing::TempDir dir;
  const std::string csv = dir.Join("p.csv");
  ASSERT_TRUE(data::WriteSyntheticPums({/*rows=*/500, /*seed=*/4}, csv).ok());
  PipelineDataResolver resolver(*DataRoots::Create({dir.path()}), 1);
  auto spec = ParseJobSpec(absl::StrCat("name: r\ndata: {path: [", csv, ", ", csv, "]}\n"));
  ASSERT_TRUE(spec.ok());
  auto facts = resolver.Resolve(*spec);
  EXPECT_EQ(facts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(facts.status().message()),
              ::testing::AllOf(::testing::HasSubstr("data.path"), ::testing::HasSubstr("the same data given twice")));
}

}  // namespace
}  // namespace dpfleet::server
