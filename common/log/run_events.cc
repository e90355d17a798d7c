#include "common/log/run_events.h"

#include "absl/strings/str_cat.h"

namespace dpfleet::log {
namespace {

constexpr RunStage kStages[] = {
    RunStage::kStarting,   RunStage::kLoadingData, RunStage::kConnecting, RunStage::kResuming, RunStage::kTraining,
    RunStage::kEvaluating, RunStage::kReporting,   RunStage::kUploading,  RunStage::kStopping, RunStage::kAuditing};

}  // namespace

const char* RunStageName(RunStage stage) {
  switch (stage) {
    case RunStage::kStarting:
      return "starting";
    case RunStage::kLoadingData:
      return "loading data";
    case RunStage::kConnecting:
      return "connecting to the other ranks";
    case RunStage::kResuming:
      return "resuming from the checkpoint";
    case RunStage::kTraining:
      return "training";
    case RunStage::kEvaluating:
      return "evaluating";
    case RunStage::kReporting:
      return "reporting to the coordinator";
    case RunStage::kUploading:
      return "uploading the model";
    case RunStage::kStopping:
      return "stopping";
    case RunStage::kAuditing:
      return "auditing";
  }
  return "starting";
}

std::optional<RunStage> ParseRunStage(absl::string_view name) {
  for (RunStage s : kStages) {
    if (name == RunStageName(s)) return s;
  }
  return std::nullopt;
}

std::string PublicRunFailure(RunStage stage, absl::StatusCode code) {
  if (code == absl::StatusCode::kCancelled) return "cancelled";
  if (stage == RunStage::kStopping) return "worker stopped (SIGTERM)";
  return absl::StrCat("failed while ", RunStageName(stage), " (", absl::StatusCodeToString(code), ")");
}

}  // namespace dpfleet::log
