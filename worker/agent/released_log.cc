#include "worker/agent/released_log.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace dpfleet::worker {
namespace {

v1::LogLevel ToProto(log::Level level) {
  switch (level) {
    case log::Level::kDebug:
      return v1::LOG_DEBUG;
    case log::Level::kInfo:
      return v1::LOG_INFO;
    case log::Level::kWarn:
      return v1::LOG_WARN;
    case log::Level::kError:
      return v1::LOG_ERROR;
  }
  return v1::LOG_INFO;
}

}  // namespace

ReleasedLog::ReleasedLog(log::Level min_level, std::size_t capacity)
    : min_level_(min_level), capacity_(std::max<std::size_t>(1, capacity)) {}

void ReleasedLog::Add(log::Level level, std::string message) {
  if (level < min_level_) return;
  // The operator's log gets the same sentence.
  switch (level) {
    case log::Level::kDebug:
      log::Debug(message);
      break;
    case log::Level::kInfo:
      log::Info(message);
      break;
    case log::Level::kWarn:
      log::Warn(message);
      break;
    case log::Level::kError:
      log::Error(message);
      break;
  }
  v1::JobLogLine line;
  line.set_level(ToProto(level));
  line.set_time_unix_ms(absl::ToUnixMillis(absl::Now()));
  line.set_message(message);
  absl::MutexLock lock(&mu_);
  said_.push_back(std::move(message));
  lines_.push_back(std::move(line));
  while (lines_.size() > capacity_) {
    lines_.pop_front();
    ++dropped_;
  }
}

void ReleasedLog::Started(int32_t attempt, int32_t rank, int32_t world_size, int32_t start_epoch, int32_t epochs,
                          bool cuda) {
  Add(log::Level::kInfo,
      absl::StrCat("attempt ", attempt, " rank ", rank, " of ", world_size, " started on a ", cuda ? "cuda" : "cpu",
                   " worker", start_epoch > 0 ? absl::StrCat(", resuming after epoch ", start_epoch) : "", " (", epochs,
                   " epochs)"));
}

void ReleasedLog::Stage(log::RunStage stage) {
  {
    absl::MutexLock lock(&mu_);
    if (stage_ == stage) return;
    stage_ = stage;
  }
  // Training and reporting alternate every epoch: the epoch lines say it.
  const log::Level level =
      stage == log::RunStage::kTraining || stage == log::RunStage::kReporting ? log::Level::kDebug : log::Level::kInfo;
  Add(level, log::RunStageName(stage));
}

void ReleasedLog::Connected(int32_t world_size, bool nccl) {
  Add(log::Level::kInfo, absl::StrCat("connected to the ", world_size, " ranks (", nccl ? "nccl" : "gloo", ")"));
}

void ReleasedLog::Resumed(int32_t epoch) {
  Add(log::Level::kInfo, absl::StrCat("resumed from the checkpoint after epoch ", epoch));
}

void ReleasedLog::EpochCharged(int32_t epoch) {
  Add(log::Level::kDebug, absl::StrCat("epoch ", epoch, " charged to the privacy ledger"));
}

void ReleasedLog::EpochTrained(int32_t epoch, int32_t epochs, int64_t steps) {
  Add(log::Level::kInfo, absl::StrCat("epoch ", epoch, " of ", epochs, " trained (", steps, " steps)"));
}

void ReleasedLog::EvalReleased(int32_t epoch) {
  Add(log::Level::kInfo, absl::StrCat("epoch ", epoch, ": eval metrics reported"));
}

void ReleasedLog::ModelUploaded() { Add(log::Level::kInfo, "trained model handed to the coordinator"); }

void ReleasedLog::AuditStarted(int32_t shadow_models, bool baseline) {
  Add(log::Level::kInfo, absl::StrCat("audit: ", shadow_models, " shadow models per model",
                                      baseline ? ", with a non-private baseline" : ", no baseline"));
}

void ReleasedLog::AuditProgress(const std::string& phase, int done, int total) {
  // The phase comes from the engine's code, but this class takes no free
  // text: a name outside the fixed list is not repeated.
  static constexpr const char* kPhases[] = {
      "training shadow models", "training baseline model", "training baseline shadow models",
      "membership inference",   "model inversion",         "training with canaries"};
  const char* said = "working";
  for (const char* p : kPhases) {
    if (phase == p) said = p;
  }
  Add(log::Level::kInfo, absl::StrCat("audit: ", said, " ", done, "/", total));
}

void ReleasedLog::AuditReported() { Add(log::Level::kInfo, "audit report handed to the coordinator"); }

void ReleasedLog::Finished() { Add(log::Level::kInfo, "run finished"); }

void ReleasedLog::Failed(absl::StatusCode code) {
  const log::RunStage at = stage();
  if (code == absl::StatusCode::kCancelled) {
    Add(log::Level::kWarn, "run cancelled");
  } else if (at == log::RunStage::kStopping) {
    Add(log::Level::kWarn, log::PublicRunFailure(at, code));  // "worker stopped (SIGTERM)"
  } else {
    Add(log::Level::kError,
        absl::StrCat("run ", log::PublicRunFailure(at, code), "; the custodian has the whole message"));
  }
}

log::RunStage ReleasedLog::stage() const {
  absl::MutexLock lock(&mu_);
  return stage_;
}

std::vector<v1::JobLogLine> ReleasedLog::Take(int64_t* dropped) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::JobLogLine> out(std::make_move_iterator(lines_.begin()), std::make_move_iterator(lines_.end()));
  lines_.clear();
  *dropped = std::exchange(dropped_, 0);
  return out;
}

void ReleasedLog::PutBack(std::vector<v1::JobLogLine> lines, int64_t dropped) {
  absl::MutexLock lock(&mu_);
  dropped_ += dropped;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) lines_.push_front(std::move(*it));
  while (lines_.size() > capacity_) {
    lines_.pop_front();
    ++dropped_;
  }
}

std::vector<std::string> ReleasedLog::Messages() const {
  absl::MutexLock lock(&mu_);
  return said_;
}

}  // namespace dpfleet::worker
