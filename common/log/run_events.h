// The fixed words a worker may use about a run in anything an analyst
// reads: the stage a run was in, and the category of a failure composed
// from a stage and a status code. A worker's error *message* can quote
// record values (a CSV row, the exact number of persons in a private file)
// and never goes to an analyst; only these words do. The coordinator
// composes a failure's public text itself from (stage, code), so a worker
// cannot put anything else there.
#ifndef DPFLEET_COMMON_LOG_RUN_EVENTS_H_
#define DPFLEET_COMMON_LOG_RUN_EVENTS_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace dpfleet::log {

enum class RunStage {
  kStarting,     // spec, device
  kLoadingData,  // shards or raw files, the eval split
  kConnecting,   // rendezvous and the collective
  kResuming,     // the checkpoint of a retried attempt
  kTraining,
  kEvaluating,  // the eval release
  kReporting,   // charges and progress to the coordinator
  kUploading,   // the trained model
  kStopping,    // the worker itself stops (SIGTERM)
  kAuditing,    // an audit run's attacks (`dpctl audit`)
};

const char* RunStageName(RunStage stage);  // "loading data"
// The stage a name stands for; nullopt for anything else.
std::optional<RunStage> ParseRunStage(absl::string_view name);

// What an analyst sees of a failed run: "failed while loading data
// (INVALID_ARGUMENT)", "worker stopped (SIGTERM)", "cancelled". Only these
// fixed words and the code's name.
std::string PublicRunFailure(RunStage stage, absl::StatusCode code);

}  // namespace dpfleet::log

#endif  // DPFLEET_COMMON_LOG_RUN_EVENTS_H_
