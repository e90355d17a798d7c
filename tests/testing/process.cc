#include "tests/testing/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "absl/time/clock.h"

namespace dpfleet::testing {
namespace {

pid_t Spawn(const std::vector<std::string>& argv, const std::string& out_path, const std::string& err_path) {
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = err_path == out_path ? out : open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int in = open("/dev/null", O_RDONLY);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    // Die with the test binary, so a failed test leaves no daemon behind.
    setpgid(0, 0);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());  // a bare name is looked up in PATH
    _exit(127);
  }
  return pid;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int Decode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

Process::Process(std::vector<std::string> argv, std::string log_path) : log_path_(std::move(log_path)) {
  pid_ = Spawn(argv, log_path_, log_path_);
}

Process::~Process() {
  if (!exited_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
}

bool Process::running() {
  if (exited_) return false;
  pid_t r = waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) exited_ = true;
  return !exited_;
}

void Process::Signal(int sig) {
  if (!exited_) kill(pid_, sig);
}

int Process::Wait(absl::Duration timeout) {
  if (!WaitFor([this] { return !running(); }, timeout)) return -1;
  return Decode(status_);
}

std::string Process::Log() const { return ReadFile(log_path_); }

int RunCommand(const std::vector<std::string>& argv, std::string* out, std::string* err, absl::Duration timeout) {
  char out_tmpl[] = "/tmp/dpfleet-cmd-out-XXXXXX";
  char err_tmpl[] = "/tmp/dpfleet-cmd-err-XXXXXX";
  close(mkstemp(out_tmpl));
  close(mkstemp(err_tmpl));
  pid_t pid = Spawn(argv, out_tmpl, err_tmpl);
  int status = 0;
  int code = -1;
  if (WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout)) {
    code = Decode(status);
  } else {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  if (out) *out = ReadFile(out_tmpl);
  if (err) *err = ReadFile(err_tmpl);
  unlink(out_tmpl);
  unlink(err_tmpl);
  return code;
}

bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (cond()) return true;
    if (absl::Now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string BinPath(const std::string& name) {
  const char* dir = std::getenv("DPFLEET_BIN_DIR");
  return std::string(dir ? dir : ".") + "/" + name;
}

}  // namespace dpfleet::testing
