// dpctl's one argument parser (client/args.h).
#include "client/args.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace dpfleet::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ArgSpec Spec() {
  ArgSpec spec;
  spec.values = {"--task", "--seed", "-o"};
  spec.lists = {"--input"};
  spec.switches = {"--follow"};
  return spec;
}

std::string Error(const std::vector<std::string>& args, const ArgSpec& spec = Spec()) {
  absl::StatusOr<Args> parsed = ParseArgs(args, spec);
  EXPECT_FALSE(parsed.ok());
  if (parsed.ok()) return "";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

TEST(ArgsTest, ValuesListsSwitchesAndPositionals) {
  absl::StatusOr<Args> a = ParseArgs(
      {"spec.yaml", "--task", "employment", "--input", "a.csv", "b.csv", "--follow", "--seed=-1", "-o=json",
       "--input=c.csv", "extra"},
      Spec());
  ASSERT_TRUE(a.ok()) << a.status();
  // A list stops at the next flag; positionals after a list are positionals
  // only once another flag has ended it.
  EXPECT_THAT(a->positional, ElementsAre("spec.yaml"));
  EXPECT_EQ(a->values.at("--task"), "employment");
  EXPECT_EQ(a->values.at("--seed"), "-1");
  EXPECT_THAT(a->lists.at("--input"), ElementsAre("a.csv", "b.csv", "c.csv", "extra"));
  EXPECT_TRUE(a->has("--follow"));
  EXPECT_TRUE(a->has("--input"));
  EXPECT_FALSE(a->has("--other"));
  EXPECT_TRUE(*JsonOutputRequested(*a));
}

TEST(ArgsTest, ASingleDashValueIsAValueNotAFlag) {
  absl::StatusOr<Args> a = ParseArgs({"--seed", "-5", "-"}, Spec());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->values.at("--seed"), "-5");
  EXPECT_THAT(a->positional, ElementsAre("-"));
}

TEST(ArgsTest, RefusalsNameTheArgument) {
  EXPECT_THAT(Error({"--bogus", "1"}), HasSubstr("unknown flag --bogus"));
  EXPECT_THAT(Error({"-x"}), HasSubstr("unknown flag -x"));
  EXPECT_THAT(Error({"--task"}), HasSubstr("flag --task needs a value"));
  EXPECT_THAT(Error({"--task", "--follow"}), HasSubstr("flag --task needs a value"));
  EXPECT_THAT(Error({"--task", "a", "--task=b"}), HasSubstr("flag --task given more than once"));
  EXPECT_THAT(Error({"--input", "--follow"}), HasSubstr("flag --input needs at least one value"));
  EXPECT_THAT(Error({"--follow=yes"}), HasSubstr("flag --follow takes no value"));
  ArgSpec no_positionals = Spec();
  no_positionals.positionals = false;
  EXPECT_THAT(Error({"stray"}, no_positionals), HasSubstr("unexpected argument \"stray\""));
}

TEST(ArgsTest, OutputFormat) {
  EXPECT_FALSE(*JsonOutputRequested(*ParseArgs({}, Spec())));
  EXPECT_FALSE(*JsonOutputRequested(*ParseArgs({"-o", "text"}, Spec())));
  absl::StatusOr<bool> yaml = JsonOutputRequested(*ParseArgs({"-o", "yaml"}, Spec()));
  ASSERT_FALSE(yaml.ok());
  EXPECT_THAT(std::string(yaml.status().message()), HasSubstr("\"yaml\""));
}

}  // namespace
}  // namespace dpfleet::client
