// dpctl's verbs, callable in-process (tests) and from client/main.cc.
//
// Exit codes (also in the README):
//   0 success (for submit --follow and watch: the job SUCCEEDED);
//   1 the job FAILED or was CANCELLED, or the request conflicts with the
//     state (FAILED_PRECONDITION, ALREADY_EXISTS, ABORTED), or the
//     coordinator failed it (INTERNAL, DATA_LOSS, UNKNOWN);
//   2 usage errors, invalid specs or input, unknown ids (INVALID_ARGUMENT,
//     NOT_FOUND, OUT_OF_RANGE, ...);
//   3 the coordinator is unreachable or unavailable, a deadline passed or
//     a rate limit refused the call (UNAVAILABLE, DEADLINE_EXCEEDED,
//     RESOURCE_EXHAUSTED): retrying later may succeed;
//   4 UNAUTHENTICATED or PERMISSION_DENIED.
// Every error message starts with the status code's name.
#ifndef DPFLEET_CLIENT_CLI_H_
#define DPFLEET_CLIENT_CLI_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace dpfleet::client {

inline constexpr int kExitOk = 0;
inline constexpr int kExitJobFailed = 1;
inline constexpr int kExitFailure = 1;  // offline verbs: failed for a reason other than usage
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnavailable = 3;
inline constexpr int kExitDenied = 4;

// The exit code for a failed request (see above).
int ExitCodeFor(absl::StatusCode code);
// Prints "dpctl: CODE: message" and returns ExitCodeFor(s.code()).
int ReportError(const absl::Status& s, std::ostream& err);

struct CliEnv {
  std::string default_server;  // $DPFLEET_SERVER
  std::string token;           // $DPFLEET_TOKEN
  std::string ca;              // $DPFLEET_CA (path of the fleet CA)
  std::string config_path;     // $DPFLEET_CONFIG, else client/connection.h's default
  bool config_required = false;  // $DPFLEET_CONFIG was set: it must exist
  bool interactive = false;    // stdout is a terminal: progress bar
};

// args: everything after the program name.
int RunDpctl(const std::vector<std::string>& args, const CliEnv& env, std::ostream& out,
             std::ostream& err);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_CLI_H_
