// Structured logging for the daemons (dpfleet-server, dpfleet-worker): one
// spdlog logger on stderr with a level set by --log-level, each line
// "TIME LEVEL [daemon pid] message". Under systemd the journal keeps it.
//
// What goes here stays on the operator's host (stderr, the journal). Lines
// that leave for an analyst go through the worker's released-log vocabulary
// (common/log/run_events.h) instead, never through these calls.
#ifndef DPFLEET_COMMON_LOG_LOGGING_H_
#define DPFLEET_COMMON_LOG_LOGGING_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace dpfleet::log {

enum class Level { kDebug, kInfo, kWarn, kError };

// "debug" | "info" | "warn" | "error" (case-insensitive); InvalidArgument
// naming the flag and the value otherwise.
absl::Status ParseLevel(absl::string_view text, Level* out);
const char* LevelName(Level level);  // lower case, as ParseLevel reads it

// Sets up the process's logger: `daemon` names it in every line. Safe to
// call again (the level changes).
void Init(const std::string& daemon, Level level);

void Debug(absl::string_view message);
void Info(absl::string_view message);
void Warn(absl::string_view message);
void Error(absl::string_view message);

}  // namespace dpfleet::log

#endif  // DPFLEET_COMMON_LOG_LOGGING_H_
