// The fixed words of released run logs (common/log/run_events) and the
// daemons' --log-level (common/log/logging).
#include "common/log/run_events.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/log/logging.h"

namespace dpfleet::log {
namespace {

using ::testing::HasSubstr;

TEST(RunEventsTest, EveryStageNameParsesBackAndNothingElseDoes) {
  for (RunStage s :
       {RunStage::kStarting, RunStage::kLoadingData, RunStage::kConnecting, RunStage::kResuming, RunStage::kTraining,
        RunStage::kEvaluating, RunStage::kReporting, RunStage::kUploading, RunStage::kStopping, RunStage::kAuditing}) {
    ASSERT_TRUE(ParseRunStage(RunStageName(s)).has_value()) << RunStageName(s);
    EXPECT_EQ(*ParseRunStage(RunStageName(s)), s);
  }
  EXPECT_FALSE(ParseRunStage("loading data: row 7 is 'H,2019,...'").has_value());
  EXPECT_FALSE(ParseRunStage("").has_value());
}

TEST(RunEventsTest, APublicFailureIsTheStageAndTheCodeOnly) {
  EXPECT_EQ(PublicRunFailure(RunStage::kLoadingData, absl::StatusCode::kInvalidArgument),
            "failed while loading data (INVALID_ARGUMENT)");
  EXPECT_EQ(PublicRunFailure(RunStage::kConnecting, absl::StatusCode::kDeadlineExceeded),
            "failed while connecting to the other ranks (DEADLINE_EXCEEDED)");
  EXPECT_EQ(PublicRunFailure(RunStage::kTraining, absl::StatusCode::kCancelled), "cancelled");
  EXPECT_EQ(PublicRunFailure(RunStage::kAuditing, absl::StatusCode::kInvalidArgument),
            "failed while auditing (INVALID_ARGUMENT)");
  EXPECT_EQ(PublicRunFailure(RunStage::kStopping, absl::StatusCode::kAborted), "worker stopped (SIGTERM)");
}

TEST(LoggingTest, LevelsParseByNameAndAnythingElseNamesTheFlag) {
  Level level = Level::kError;
  ASSERT_TRUE(ParseLevel("DEBUG", &level).ok());
  EXPECT_EQ(level, Level::kDebug);
  ASSERT_TRUE(ParseLevel("warning", &level).ok());
  EXPECT_EQ(level, Level::kWarn);
  for (const char* name : {"debug", "info", "warn", "error"}) {
    ASSERT_TRUE(ParseLevel(name, &level).ok());
    EXPECT_STREQ(LevelName(level), name);
  }
  const absl::Status bad = ParseLevel("loud", &level);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("--log-level: 'loud' is not a level"));
}

}  // namespace
}  // namespace dpfleet::log
