// ReleasedLog (worker/agent/released_log): the fixed sentences, the level
// filter, the stage a failure is reported in, and the bounded buffer.
#include "worker/agent/released_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace dpfleet::worker {
namespace {

using ::testing::ElementsAre;

TEST(ReleasedLogTest, SaysFixedSentencesAndReportsTheStageOfAFailure) {
  ReleasedLog log(log::Level::kInfo);
  log.Started(2, 1, 4, 3, 10, /*cuda=*/true);
  log.Stage(log::RunStage::kLoadingData);
  log.Stage(log::RunStage::kLoadingData);  // said once
  log.Stage(log::RunStage::kTraining);     // debug: below the level
  log.EpochCharged(4);                     // debug
  log.EpochTrained(4, 10, 120);
  log.Stage(log::RunStage::kConnecting);
  log.Failed(absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(log.stage(), log::RunStage::kConnecting);
  EXPECT_THAT(log.Messages(),
              ElementsAre("attempt 2 rank 1 of 4 started on a cuda worker, resuming after epoch 3 (10 epochs)",
                          "loading data", "epoch 4 of 10 trained (120 steps)", "connecting to the other ranks",
                          "run failed while connecting to the other ranks (DEADLINE_EXCEEDED); the custodian has "
                          "the whole message"));
  int64_t dropped = -1;
  const std::vector<v1::JobLogLine> lines = log.Take(&dropped);
  EXPECT_EQ(dropped, 0);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0].level(), v1::LOG_INFO);
  EXPECT_EQ(lines[4].level(), v1::LOG_ERROR);
  EXPECT_GT(lines[0].time_unix_ms(), 0);
  EXPECT_TRUE(log.Take(&dropped).empty());
}

TEST(ReleasedLogTest, DebugLinesAppearAtDebugLevelAndCancelsAreWarnings) {
  ReleasedLog log(log::Level::kDebug);
  log.Stage(log::RunStage::kTraining);
  log.EpochCharged(1);
  log.Failed(absl::StatusCode::kCancelled);
  EXPECT_THAT(log.Messages(), ElementsAre("training", "epoch 1 charged to the privacy ledger", "run cancelled"));
  int64_t dropped = 0;
  EXPECT_EQ(log.Take(&dropped).back().level(), v1::LOG_WARN);
}

TEST(ReleasedLogTest, AFullBufferDropsItsOldestLinesAndCountsThem) {
  ReleasedLog log(log::Level::kInfo, /*capacity=*/2);
  log.EpochTrained(1, 3, 10);
  log.EpochTrained(2, 3, 10);
  log.EpochTrained(3, 3, 10);
  int64_t dropped = 0;
  std::vector<v1::JobLogLine> lines = log.Take(&dropped);
  EXPECT_EQ(dropped, 1);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].message(), "epoch 2 of 3 trained (10 steps)");
  // A batch the coordinator could not take goes back in front, still bounded.
  log.Finished();
  log.PutBack(lines, dropped);
  lines = log.Take(&dropped);
  EXPECT_EQ(dropped, 2);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].message(), "epoch 3 of 3 trained (10 steps)");
  EXPECT_EQ(lines[1].message(), "run finished");
}

// An audit run's lines: fixed sentences with counts; a phase the engine
// does not list is not repeated.
TEST(ReleasedLogTest, AuditLinesAreFixedSentencesAndUnknownPhasesAreNotRepeated) {
  ReleasedLog log(log::Level::kInfo);
  log.AuditStarted(8, /*baseline=*/true);
  log.AuditProgress("training shadow models", 3, 8);
  log.AuditProgress("model inversion", 1, 2);
  log.AuditProgress("row 17: SERIALNO=2019HU0001", 1, 1);
  log.AuditReported();
  EXPECT_THAT(log.Messages(), ElementsAre("audit: 8 shadow models per model, with a non-private baseline",
                                          "audit: training shadow models 3/8", "audit: model inversion 1/2",
                                          "audit: working 1/1", "audit report handed to the coordinator"));
}

}  // namespace
}  // namespace dpfleet::worker
