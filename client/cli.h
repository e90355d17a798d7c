// dpctl's verbs, callable in-process (tests) and from client/main.cc.
//
// Exit codes: 0 success (for submit --follow and watch: the job SUCCEEDED);
// 1 the job FAILED or was CANCELLED, or the server refused a request on a
// job's state; 2 usage errors, invalid input, unknown ids or an unreachable
// coordinator.
#ifndef DPFLEET_CLIENT_CLI_H_
#define DPFLEET_CLIENT_CLI_H_

#include <ostream>
#include <string>
#include <vector>

namespace dpfleet::client {

inline constexpr int kExitOk = 0;
inline constexpr int kExitJobFailed = 1;
inline constexpr int kExitFailure = 1;  // offline verbs: failed for a reason other than usage
inline constexpr int kExitUsage = 2;

struct CliEnv {
  std::string default_server;  // from DPFLEET_SERVER, else 127.0.0.1:7070
  bool interactive = false;    // stdout is a terminal: progress bar
};

// args: everything after the program name.
int RunDpctl(const std::vector<std::string>& args, const CliEnv& env, std::ostream& out,
             std::ostream& err);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_CLI_H_
