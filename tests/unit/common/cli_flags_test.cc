#include "common/cli_flags.h"

#include <gtest/gtest.h>

namespace dpfleet {
namespace {

TEST(DashedFlagsTest, RewritesFlagNamesOnly) {
  const char* raw[] = {"prog", "--state-dir=/a-b/c", "--work-dir", "/x-y", "-o", "--", "--keep-me"};
  std::vector<char*> argv;
  for (const char* a : raw) argv.push_back(const_cast<char*>(a));
  DashedFlags f(static_cast<int>(argv.size()), argv.data());
  ASSERT_EQ(f.argc(), 7);
  EXPECT_STREQ(f.argv()[0], "prog");
  EXPECT_STREQ(f.argv()[1], "--state_dir=/a-b/c");
  EXPECT_STREQ(f.argv()[2], "--work_dir");
  EXPECT_STREQ(f.argv()[3], "/x-y");
  EXPECT_STREQ(f.argv()[4], "-o");
  EXPECT_STREQ(f.argv()[6], "--keep-me");
  EXPECT_EQ(f.argv()[7], nullptr);
}

}  // namespace
}  // namespace dpfleet
