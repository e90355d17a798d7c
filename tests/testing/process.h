// Test helper: starts a real binary as a child process with its output in
// files, and stops it (SIGTERM or SIGKILL). The destructor kills it.
#ifndef DPFLEET_TESTS_TESTING_PROCESS_H_
#define DPFLEET_TESTS_TESTING_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace dpfleet::testing {

class Process {
 public:
  // argv[0] is the program path; output goes to log_path.
  Process(std::vector<std::string> argv, std::string log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int sig);
  // Waits for exit; returns the exit code, 128+signal if killed, -1 on timeout.
  int Wait(absl::Duration timeout);
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool exited_ = false;
  std::string log_path_;
};

// Runs to completion; returns the exit code (127 when argv[0] is not found;
// a name without a slash is looked up in PATH) and fills stdout/stderr.
int RunCommand(const std::vector<std::string>& argv, std::string* out, std::string* err,
               absl::Duration timeout = absl::Minutes(3));

// Polls `cond` until it is true or the timeout passes.
bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout);

// $DPFLEET_BIN_DIR/name
std::string BinPath(const std::string& name);

}  // namespace dpfleet::testing

#endif  // DPFLEET_TESTS_TESTING_PROCESS_H_
