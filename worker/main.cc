// dpfleet-worker: one worker daemon per device.
//   dpfleet-worker --server HOST:PORT --device cpu|cuda[:N] --work-dir DIR
//                  [--tls-ca F --tls-cert F --tls-key F]
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log/logging.h"
#include "worker/agent/agent.h"
#include "worker/train/device.h"
#include "common/cli_flags.h"
#include "common/version.h"
#include "torch/headeronly/version.h"
#ifdef DPFLEET_WITH_NCCL
#include "worker/comm/cuda/nccl_communicator.h"
#endif

ABSL_FLAG(std::string, server, "127.0.0.1:7070", "coordinator gRPC address HOST:PORT");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda[:N]");
ABSL_FLAG(std::string, work_dir, "", "directory for trained models and scratch files");
ABSL_FLAG(int, threads, 0, "intra-op threads for training (0 = LibTorch default)");
ABSL_FLAG(std::string, advertise_host, "",
          "address other ranks reach this worker on (Gloo); default 127.0.0.1 when the coordinator is on "
          "loopback, else this host's name");
ABSL_FLAG(bool, fetch_shards, false,
          "always stream dataset shards from the coordinator instead of reading its dataset directory");
ABSL_FLAG(int64_t, collective_timeout_s, 30, "seconds before a stuck collective (dead peer) fails the run");
ABSL_FLAG(std::string, tls_ca, "", "PEM of the fleet CA (checks the coordinator's certificate)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate of this worker, signed by the fleet CA (its identity)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, log_level, "info",
          "least level logged to stderr and shipped to the coordinator: debug, info, warn or error");

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

// The file's text, or "" with a message on stderr.
bool ReadPem(const char* flag, const std::string& path, std::string* out) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  if (!f || out->find("-----BEGIN") == std::string::npos) {
    dpfleet::log::Error(absl::StrFormat("%s %s: not a readable PEM file", flag, path.c_str()));
    return false;
  }
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "dpfleet worker daemon\n  dpfleet-worker --server HOST:PORT --device cpu|cuda[:N] --work-dir DIR");
  absl::FlagsUsageConfig usage;
  usage.version_string = [] {
    std::string v = absl::StrCat(dpfleet::VersionLine("dpfleet-worker"), "\nLibTorch ", TORCH_VERSION_MAJOR, ".",
                                 TORCH_VERSION_MINOR, ".", TORCH_VERSION_PATCH, "\n");
#ifdef DPFLEET_WITH_NCCL
    absl::StrAppend(&v, dpfleet::comm::CudaBuildVersions(), "\n");
#else
    absl::StrAppend(&v, "NCCL: not built (DPFLEET_WITH_CUDA=OFF)\n");
#endif
    return v;
  };
  absl::SetFlagsUsageConfig(usage);
  dpfleet::DashedFlags flags(argc, argv);
  absl::ParseCommandLine(flags.argc(), flags.argv());
  dpfleet::log::Level level = dpfleet::log::Level::kInfo;
  if (absl::Status s = dpfleet::log::ParseLevel(absl::GetFlag(FLAGS_log_level), &level); !s.ok()) {
    dpfleet::log::Error(s.message());
    return 2;
  }
  dpfleet::log::Init("dpfleet-worker", level);
  dpfleet::worker::AgentOptions options;
  options.log_level = level;
  options.server = absl::GetFlag(FLAGS_server);
  options.device = absl::GetFlag(FLAGS_device);
  options.work_dir = absl::GetFlag(FLAGS_work_dir);
  options.threads = absl::GetFlag(FLAGS_threads);
  // A CUDA worker loads libtorch_cuda and checks its GPU now, so that a
  // worker that cannot compute where it says never registers.
  absl::StatusOr<c10::Device> device = dpfleet::train::ResolveDevice(options.device);
  if (!device.ok()) {
    dpfleet::log::Error(absl::StrFormat("--device: %s", std::string(device.status().message()).c_str()));
    return 2;
  }
  options.device = device->str();
  options.gloo_host = absl::GetFlag(FLAGS_advertise_host);
  if (options.gloo_host.empty()) {
    const std::string host = options.server.substr(0, options.server.rfind(':'));
    if (host.rfind("127.", 0) == 0 || host == "localhost" || host == "[::1]") {
      options.gloo_host = "127.0.0.1";
    } else {
      char name[256] = {0};
      gethostname(name, sizeof(name) - 1);
      options.gloo_host = name;
    }
  }
  if (absl::GetFlag(FLAGS_collective_timeout_s) < 1) {
    dpfleet::log::Error("--collective_timeout_s must be >= 1");
    return 2;
  }
  options.collective_timeout = absl::Seconds(absl::GetFlag(FLAGS_collective_timeout_s));
  options.fetch_shards = absl::GetFlag(FLAGS_fetch_shards);
  const int tls_flags = !absl::GetFlag(FLAGS_tls_ca).empty() + !absl::GetFlag(FLAGS_tls_cert).empty() +
                        !absl::GetFlag(FLAGS_tls_key).empty();
  if (tls_flags != 0 && tls_flags != 3) {
    dpfleet::log::Error(
        "--tls-ca, --tls-cert and --tls-key go together (the certificate is the worker's identity)");
    return 2;
  }
  if (tls_flags == 3 && (!ReadPem("--tls-ca", absl::GetFlag(FLAGS_tls_ca), &options.tls_ca) ||
                         !ReadPem("--tls-cert", absl::GetFlag(FLAGS_tls_cert), &options.tls_cert) ||
                         !ReadPem("--tls-key", absl::GetFlag(FLAGS_tls_key), &options.tls_key))) {
    return 2;
  }
  if (options.threads < 0) {
    dpfleet::log::Error(absl::StrFormat("--threads %d must be >= 0", options.threads));
    return 2;
  }
  if (!options.work_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.work_dir, ec);
    if (ec) {
      dpfleet::log::Error(absl::StrFormat("--work-dir %s: %s", options.work_dir.c_str(), ec.message().c_str()));
      return 2;
    }
  }
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  dpfleet::worker::WorkerAgent agent(options);
  absl::Status s = agent.Run(g_stop);
  if (!s.ok()) {
    dpfleet::log::Error(s.ToString());
    return 1;
  }
  return 0;
}
