// Installing and running dpfleet as an operator would: `cmake --install`
// into a prefix that is then moved (the binaries find their libraries by
// RPATH $ORIGIN/../lib/dpfleet, never in the build tree or the virtual
// environment) and a job trained by the installed binaries; the Debian
// packages and what they hold; systemd readiness (sd_notify).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/version.h"
#include "httplib.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet {
namespace {

namespace fs = std::filesystem;
using ::dpfleet::testing::BinPath;
using ::dpfleet::testing::Process;
using ::dpfleet::testing::RunCommand;
using ::dpfleet::testing::TempDir;
using ::dpfleet::testing::WaitFor;
using ::testing::HasSubstr;

std::string BuildDir() { return fs::path(BinPath("dpctl")).parent_path().parent_path().string(); }

// Starts `server` on free loopback ports (plaintext; raw files from `dir`);
// returns "127.0.0.1:PORT" (gRPC) or "" (the log says why), and the HTTP port.
std::string StartServer(const std::string& server, const std::string& dir, std::unique_ptr<Process>* process,
                        int* http_port_out = nullptr) {
  const std::string port_file = dir + "/ports";
  *process = std::make_unique<Process>(
      std::vector<std::string>{server, "--listen=127.0.0.1:0", "--http=127.0.0.1:0", "--state-dir=" + dir + "/state",
                               "--data-root=" + dir, "--heartbeat_interval_ms=200", "--port_file=" + port_file},
      dir + "/server.log");
  if (!WaitFor([&] { return std::ifstream(port_file).good() || !(*process)->running(); }, absl::Seconds(30))) {
    return "";
  }
  int grpc_port = 0, http_port = 0;
  std::ifstream f(port_file);
  if (!(f >> grpc_port >> http_port)) return "";
  if (http_port_out != nullptr) *http_port_out = http_port;
  return absl::StrCat("127.0.0.1:", grpc_port);
}

TEST(InstallTest, AMovedPrefixRunsAJobWithTheInstalledBinariesOnly) {
  TempDir dir;
  std::string out, err;
  const std::string staged = dir.Join("staged"), moved = dir.Join("moved");
  ASSERT_EQ(RunCommand({"cmake", "--install", BuildDir(), "--prefix", staged}, &out, &err), 0) << out << err;
  fs::rename(staged, moved);
  const std::string bin = moved + "/bin/";

  ASSERT_EQ(RunCommand({bin + "dpctl", "--version"}, &out, &err), 0) << err;
  EXPECT_EQ(out, VersionLine("dpctl") + "\n");
  ASSERT_EQ(RunCommand({bin + "dpfleet-worker", "--version"}, &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr(VersionLine("dpfleet-worker")));
  EXPECT_THAT(out, HasSubstr("LibTorch 2.11.0"));
  ASSERT_EQ(RunCommand({bin + "dpfleet-server", "--version"}, &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr(VersionLine("dpfleet-server")));

  // Every library the installed worker loads is either the system's or one
  // installed beside it; none comes from the build tree or .venv.
  ASSERT_EQ(RunCommand({"ldd", bin + "dpfleet-worker"}, &out, &err), 0) << err;
  int bundled = 0;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    const size_t arrow = line.find("=> ");
    if (arrow == absl::string_view::npos) continue;
    absl::string_view path = line.substr(arrow + 3);
    path = path.substr(0, path.find(' '));
    const bool system = absl::StartsWith(path, "/lib/") || absl::StartsWith(path, "/usr/lib/");
    const bool ours = absl::StartsWith(path, moved + "/bin/../lib/dpfleet/");
    EXPECT_TRUE(system || ours) << line;
    bundled += ours;
  }
  EXPECT_GE(bundled, 2) << out;  // libtorch_cpu and libc10 at least

  // The installed server makes its first token offline.
  ASSERT_EQ(RunCommand({bin + "dpfleet-server", "token", "create", "--state-dir", dir.Join("state"), "--name", "ops",
                        "--role", "custodian"},
                       &out, &err),
            0)
      << err;
  const std::string token(absl::StripAsciiWhitespace(out));
  std::unique_ptr<Process> server;
  int http_port = 0;
  const std::string address = StartServer(bin + "dpfleet-server", dir.path(), &server, &http_port);
  ASSERT_FALSE(address.empty()) << server->Log();
  httplib::Client http("127.0.0.1", http_port);
  auto ready = http.Get("/readyz");
  ASSERT_TRUE(ready) << "no answer from /readyz";
  EXPECT_EQ(ready->status, 200);
  EXPECT_THAT(ready->body, HasSubstr("\"workers\": 0"));
  Process worker({bin + "dpfleet-worker", "--server=" + address, "--device=cpu", "--work-dir=" + dir.Join("w"),
                  "--threads=1"},
                 dir.Join("worker.log"));
  const std::string data = dir.Join("pums.csv");
  ASSERT_EQ(RunCommand({bin + "dpctl", "data", "synth", "--rows", "20000", "--seed", "3", "-o", data}, &out, &err),
            0)
      << err;
  const std::string spec = dir.Join("job.yaml");
  std::ofstream(spec) << "name: installed\ndata: {path: " << data
                      << "}\nmodel: {type: logistic}\ntraining: {epochs: 2, batch_size: 256}\n";
  const int rc = RunCommand({bin + "dpctl", "--server", address, "--token", token, "submit", spec, "--follow", "-o",
                             "json"},
                            &out, &err, absl::Minutes(2));
  EXPECT_EQ(rc, 0) << out << err << server->Log() << worker.Log();
  EXPECT_THAT(out, HasSubstr("\"SUCCEEDED\""));
  ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_THAT(ready->body, HasSubstr("\"workers\": 1"));

  ASSERT_EQ(RunCommand({bin + "dpctl", "--server", address, "--token", token, "version", "-o", "json"}, &out, &err),
            0)
      << err;
  EXPECT_THAT(out, HasSubstr(absl::StrCat("\"protocol_version\": ", kProtocolVersion)));
  EXPECT_THAT(out, HasSubstr("\"server\""));
}

// The files of a .deb (dpkg-deb -c), directories left out.
std::set<std::string> PackageFiles(const std::string& deb) {
  std::string out, err;
  std::set<std::string> files;
  if (RunCommand({"dpkg-deb", "-c", deb}, &out, &err) != 0) return files;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    absl::string_view path = line.substr(line.rfind(' ') + 1);
    if (!absl::EndsWith(path, "/")) files.emplace(path);
  }
  return files;
}

TEST(InstallTest, DebianPackagesHoldTheirBinariesUnitsAndDependencies) {
  if (RunCommand({"dpkg-deb", "--version"}, nullptr, nullptr) != 0) GTEST_SKIP() << "dpkg-deb is not installed";
  TempDir dir;
  std::string out, err;
  // The worker package (~0.5 GB of LibTorch) is what the install test above
  // covers file by file; building it here would take minutes.
  ASSERT_EQ(RunCommand({"cpack", "-G", "DEB", "--config", BuildDir() + "/CPackConfig.cmake", "-B", dir.path(), "-D",
                        "CPACK_COMPONENTS_ALL=server;dpctl"},
                       &out, &err, absl::Minutes(5)),
            0)
      << out << err;
  const std::string version = GetBuildInfo().version;
  const std::string server_deb = dir.Join(absl::StrCat("dpfleet-server_", version, "_amd64.deb"));
  const std::string dpctl_deb = dir.Join(absl::StrCat("dpfleet-dpctl_", version, "_amd64.deb"));
  const std::set<std::string> server = PackageFiles(server_deb), dpctl = PackageFiles(dpctl_deb);
  EXPECT_TRUE(server.count("./usr/bin/dpfleet-server")) << out;
  EXPECT_TRUE(server.count("./usr/lib/systemd/system/dpfleet-server.service"));
  EXPECT_TRUE(server.count("./usr/share/doc/dpfleet-server/README.md"));
  EXPECT_TRUE(dpctl.count("./usr/bin/dpctl"));
  EXPECT_TRUE(dpctl.count("./usr/share/doc/dpfleet-dpctl/examples/employment-dp.yaml"));
  for (const std::string& f : server) EXPECT_FALSE(dpctl.count(f)) << f << " is in both packages";

  ASSERT_EQ(RunCommand({"dpkg-deb", "-f", server_deb, "Depends"}, &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr("libgrpc++1.51"));
  EXPECT_THAT(out, HasSubstr("libsqlite3-0"));
  // A package's binary runs once unpacked.
  const std::string root = dir.Join("root");
  ASSERT_EQ(RunCommand({"dpkg-deb", "-x", dpctl_deb, root}, &out, &err), 0) << err;
  ASSERT_EQ(RunCommand({root + "/usr/bin/dpctl", "--version"}, &out, &err), 0) << err;
  EXPECT_EQ(out, VersionLine("dpctl") + "\n");
}

TEST(SystemdTest, TheCoordinatorSaysReadyOnceServing) {
  TempDir dir;
  const std::string socket_path = dir.Join("notify");
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(socket_path.size(), sizeof(addr.sun_path));
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  setenv("NOTIFY_SOCKET", socket_path.c_str(), 1);
  std::unique_ptr<Process> server;
  const std::string address = StartServer(BinPath("dpfleet-server"), dir.path(), &server);
  unsetenv("NOTIFY_SOCKET");
  ASSERT_FALSE(address.empty()) << server->Log();
  // The port file is written before READY, so the datagram is already
  // queued or on its way; wait for it without a fixed sleep.
  timeval timeout{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  char buf[512] = {0};
  const ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
  close(fd);
  ASSERT_GT(n, 0) << "no readiness notification; server log:\n" << server->Log();
  const std::string message(buf, static_cast<size_t>(n));
  EXPECT_THAT(message, HasSubstr("READY=1"));
  EXPECT_THAT(message, HasSubstr(absl::StrCat("STATUS=gRPC on port ", address.substr(address.rfind(':') + 1))));
}

}  // namespace
}  // namespace dpfleet
