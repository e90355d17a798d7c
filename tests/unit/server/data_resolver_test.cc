// Tests for the coordinator's data resolver: N and the eval size come from
// the coordinator's split key, never from the spec.
#include "server/core/data_resolver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "common/pums/dataset.h"
#include "common/pums/synth.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

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
  PipelineDataResolver resolver(kKey);
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
  PipelineDataResolver resolver(1);
  auto spec = ParseJobSpec(absl::StrCat("name: r\ndata: {path: [", csv, ", ", csv, "]}\n"));
  ASSERT_TRUE(spec.ok());
  auto facts = resolver.Resolve(*spec);
  EXPECT_EQ(facts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(facts.status().message()),
              ::testing::AllOf(::testing::HasSubstr("data.path"), ::testing::HasSubstr("the same data given twice")));
}

}  // namespace
}  // namespace dpfleet::server
