// Heartbeat latency of a real coordinator while the ledger works and while
// ranks wait in rendezvous: the number a fleet's leases depend on.
//
//   dpfleet-heartbeat-bench --server-bin PATH [--seconds S] [--ranks N] [--json]
//
// Starts PATH (any dpfleet-server: this build's or an older one, so one
// binary of this benchmark measures before and after) on loopback with a
// fresh state directory and synthetic PUMS data, then, in three phases of S
// seconds each, sends a heartbeat every 2 ms from one idle worker and times
// each one at the client:
//   idle        nothing else happens;
//   pld-charges one rank of a PLD-accounted job charges and reports epochs
//               back to back (every charge and release composes a PLD ε);
//   rendezvous  the N ranks of an N-rank job wait in RendezvousGet for a
//               key nobody sets (the client's callback API: no client
//               thread per wait).
// Columns: phase, heartbeats, p50/p99/max latency (ms), what the background
// did, and the server's thread count at the end of the phase. Measures only.
//
// A server with access control (`dpfleet-server token create` works) gets
// a custodian token for the coordinator's methods and the work directory as
// its data root; an older one is spoken to as it was, without either.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/pums/synth.h"
#include "common/version.h"
#include "dpfleet/v1/coordinator.grpc.pb.h"
#include "dpfleet/v1/worker.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string server_bin;
  double seconds = 4;
  int ranks = 100;
  bool json = false;
};

int ServerThreads(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    int n = 0;
    if (line.rfind("Threads:", 0) == 0 && absl::SimpleAtoi(line.substr(8), &n)) return n;
  }
  return -1;
}

// A custodian token made by `SERVER token create` on the state directory;
// empty for a server without tokens.
std::string CreateToken(const std::string& server_bin, const std::string& state_dir) {
  const std::string cmd = absl::StrCat("'", server_bin, "' token create --state-dir '", state_dir,
                                       "' --name bench --role custodian 2>/dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char line[256] = {0};
  const bool got = std::fgets(line, sizeof(line), p) != nullptr;
  const int rc = pclose(p);
  if (!got || rc != 0) return "";
  std::string token(line);
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  return token;
}

class Server {
 public:
  Server(const Options& o, const std::string& dir) {
    const std::string ports = dir + "/ports";
    std::filesystem::remove(ports);
    token_ = CreateToken(o.server_bin, dir + "/state");
    pid_ = fork();
    if (pid_ == 0) {
      const int log = open((dir + "/server.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(log, 1);
      dup2(log, 2);
      const std::string state = "--state-dir=" + dir + "/state";
      const std::string port_file = "--port_file=" + ports;
      const std::string data_root = "--data-root=" + dir;
      std::vector<const char*> argv = {
          o.server_bin.c_str(),    "--listen=127.0.0.1:0",         "--http=",        state.c_str(),
          "--lease_ttl_ms=120000", "--heartbeat_interval_ms=1000", port_file.c_str()};
      if (!token_.empty()) argv.push_back(data_root.c_str());
      argv.push_back(nullptr);
      execv(o.server_bin.c_str(), const_cast<char* const*>(argv.data()));
      _exit(127);
    }
    for (int i = 0; i < 3000 && port_ == 0; ++i) {
      std::ifstream f(ports);
      int http = 0;
      if (!(f >> port_ >> http)) port_ = 0;
      if (port_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~Server() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& token() const { return token_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string token_;
};

std::chrono::system_clock::time_point In(int ms) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
}

class Fleet {
 public:
  Fleet(int port, std::string token) : token_(std::move(token)) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    channel_ = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), args);
    workers_ = dpfleet::v1::WorkerService::NewStub(channel_);
    coordinator_ = dpfleet::v1::Coordinator::NewStub(channel_);
  }

  // A worker on `device`; the probe registers on a device no job asks for,
  // so it only ever heartbeats.
  std::string Register(const std::string& host, const std::string& device = "cpu") {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10000));
    ctx.set_wait_for_ready(true);
    dpfleet::v1::RegisterRequest req;
    req.set_hostname(host);
    req.set_device(device);
    req.set_protocol_version(dpfleet::kProtocolVersion);
    dpfleet::v1::RegisterResponse resp;
    const grpc::Status s = workers_->Register(&ctx, req, &resp);
    if (!s.ok()) Die("register " + host + ": " + s.error_message());
    return resp.worker_id();
  }

  dpfleet::v1::HeartbeatResponse Heartbeat(const std::string& worker, double* ms = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10000));
    dpfleet::v1::HeartbeatRequest req;
    req.set_worker_id(worker);
    dpfleet::v1::HeartbeatResponse resp;
    const auto t0 = Clock::now();
    const grpc::Status s = workers_->Heartbeat(&ctx, req, &resp);
    if (ms) *ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!s.ok()) Die("heartbeat: " + s.error_message());
    return resp;
  }

  dpfleet::v1::Job Submit(const std::string& spec) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(60000));
    Authorize(&ctx);
    dpfleet::v1::SubmitJobRequest req;
    req.set_spec_yaml(spec);
    dpfleet::v1::SubmitJobResponse resp;
    const grpc::Status s = coordinator_->SubmitJob(&ctx, req, &resp);
    if (!s.ok()) Die("submit: " + s.error_message());
    return resp.job();
  }

  dpfleet::v1::Job Get(const std::string& job_id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10000));
    Authorize(&ctx);
    dpfleet::v1::GetJobRequest req;
    req.set_job_id(job_id);
    dpfleet::v1::Job job;
    const grpc::Status s = coordinator_->GetJob(&ctx, req, &job);
    if (!s.ok()) Die("get job: " + s.error_message());
    return job;
  }

  dpfleet::v1::WorkerService::Stub& workers() { return *workers_; }
  // The coordinator's methods as the custodian (when the server has tokens).
  void Authorize(grpc::ClientContext* ctx) const {
    if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  }

  [[noreturn]] static void Die(const std::string& why) {
    std::fprintf(stderr, "dpfleet-heartbeat-bench: %s\n", why.c_str());
    std::exit(1);
  }

 private:
  const std::string token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<dpfleet::v1::WorkerService::Stub> workers_;
  std::unique_ptr<dpfleet::v1::Coordinator::Stub> coordinator_;
};

struct PhaseResult {
  std::string phase;
  std::vector<double> ms;
  std::string background;
  int server_threads = 0;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * (v.size() - 1) + 0.5))];
}

// One heartbeat every 2 ms from `worker` for `seconds`.
std::vector<double> Probe(Fleet& fleet, const std::string& worker, double seconds) {
  std::vector<double> ms;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  auto next = Clock::now();
  while (Clock::now() < end) {
    double t = 0;
    fleet.Heartbeat(worker, &t);
    ms.push_back(t);
    next += std::chrono::milliseconds(2);
    std::this_thread::sleep_until(std::max(next, Clock::now()));
  }
  return ms;
}

void Usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s --server-bin PATH [--seconds S] [--ranks N] [--json]\n", argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(argv[0]);
      return argv[++i];
    };
    if (a == "--server-bin") {
      o.server_bin = value();
    } else if (a == "--seconds") {
      if (!absl::SimpleAtod(value(), &o.seconds) || o.seconds <= 0) Usage(argv[0]);
    } else if (a == "--ranks") {
      if (!absl::SimpleAtoi(value(), &o.ranks) || o.ranks < 2) Usage(argv[0]);
    } else if (a == "--json") {
      o.json = true;
    } else {
      Usage(argv[0]);
    }
  }
  if (o.server_bin.empty()) Usage(argv[0]);
  char tmpl[] = "/tmp/dpfleet-heartbeat-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) Fleet::Die("cannot create a work directory");
  const std::string dir = tmpl;
  const std::string csv = dir + "/pums.csv";
  if (!dpfleet::data::WriteSyntheticPums({/*rows=*/20000, /*seed=*/5}, csv).ok()) Fleet::Die("cannot write data");

  std::vector<PhaseResult> results;
  {
    Server server(o, dir);
    if (server.port() == 0) Fleet::Die("the server did not start (see " + dir + "/server.log)");
    Fleet fleet(server.port(), server.token());
    const std::string probe = fleet.Register("probe", "bench-probe");
    Probe(fleet, probe, 0.3);  // warm the connection

    results.push_back({"idle", Probe(fleet, probe, o.seconds), "-", ServerThreads(server.pid())});

    // One rank of a PLD job charges and reports epochs as fast as it can.
    const std::string charger = fleet.Register("charger");
    const dpfleet::v1::Job job = fleet.Submit(absl::StrCat(
        "name: pld\ndata: {path: ", csv, "}\ntraining: {epochs: 100000, batch_size: 200}\n",
        "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5, accountant: pld}\n"));
    dpfleet::v1::HeartbeatResponse assigned = fleet.Heartbeat(charger);
    if (assigned.assignments_size() != 1) Fleet::Die("the PLD job was not assigned");
    const dpfleet::v1::Job running = fleet.Get(job.job_id());
    std::atomic<bool> stop{false};
    std::atomic<int> epochs{0};
    std::thread background([&] {
      for (int e = 1; !stop; ++e) {
        grpc::ClientContext cctx;
        dpfleet::v1::ChargeBudgetRequest charge;
        charge.set_job_id(running.job_id());
        charge.set_attempt(running.attempt());
        charge.set_epoch(e);
        charge.set_steps(running.steps_per_epoch());
        charge.set_sample_rate(running.sample_rate());
        charge.set_noise_multiplier(running.noise_multiplier());
        dpfleet::v1::ChargeBudgetResponse charged;
        if (!fleet.workers().ChargeBudget(&cctx, charge, &charged).ok()) Fleet::Die("charge failed");
        grpc::ClientContext pctx;
        dpfleet::v1::ProgressReport report;
        report.set_job_id(running.job_id());
        report.set_attempt(running.attempt());
        report.set_worker_id(charger);
        report.mutable_metrics()->set_epoch(e);
        dpfleet::v1::ProgressAck ack;
        if (!fleet.workers().ReportProgress(&pctx, report, &ack).ok()) Fleet::Die("progress failed");
        ++epochs;
      }
    });
    const auto t0 = Clock::now();
    std::vector<double> during = Probe(fleet, probe, o.seconds);
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const int threads = ServerThreads(server.pid());
    stop = true;
    background.join();
    char bg[128];
    std::snprintf(bg, sizeof(bg), "%.1f PLD epochs/s (charge + release)", epochs / secs);
    results.push_back({"pld-charges", during, bg, threads});
  }
  {
    // A fresh coordinator: N ranks of one job wait for a key nobody sets.
    std::filesystem::remove_all(dir + "/state");
    Server server(o, dir);
    if (server.port() == 0) Fleet::Die("the server did not start (see " + dir + "/server.log)");
    Fleet fleet(server.port(), server.token());
    const std::string probe = fleet.Register("probe", "bench-probe");
    for (int r = 0; r < o.ranks; ++r) fleet.Register(absl::StrCat("rank-", r));
    const dpfleet::v1::Job job =
        fleet.Submit(absl::StrCat("name: wide\ndata: {path: ", csv, "}\ntraining: {epochs: 1, batch_size: 200}\n",
                                  "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5}\n",
                                  "resources: {workers: ", o.ranks, "}\n"));
    const dpfleet::v1::Job running = fleet.Get(job.job_id());
    if (running.state() != dpfleet::v1::RUNNING) Fleet::Die("the wide job did not start");
    Probe(fleet, probe, 0.3);
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<dpfleet::v1::RendezvousGetResponse> responses(o.ranks);
    dpfleet::v1::RendezvousGetRequest req;
    req.set_job_id(running.job_id());
    req.set_attempt(running.attempt());
    req.set_key("never-published");
    req.set_timeout_ms(static_cast<int64_t>(o.seconds * 1000) + 60'000);
    absl::Mutex mu;
    int answered = 0;
    for (int r = 0; r < o.ranks; ++r) {
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      fleet.workers().async()->RendezvousGet(contexts.back().get(), &req, &responses[r], [&](grpc::Status) {
        absl::MutexLock lock(&mu);
        ++answered;
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the waits arrive
    std::vector<double> during = Probe(fleet, probe, o.seconds);
    const int threads = ServerThreads(server.pid());
    for (auto& c : contexts) c->TryCancel();
    absl::MutexLock lock(&mu);
    auto all_answered = [&] { return answered == o.ranks; };
    mu.Await(absl::Condition(&all_answered));
    results.push_back({"rendezvous", during, absl::StrCat(o.ranks, " ranks waiting"), threads});
  }
  std::filesystem::remove_all(dir);

  if (o.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const PhaseResult& r : results) {
      rows.push_back({{"phase", r.phase},
                      {"heartbeats", r.ms.size()},
                      {"p50_ms", Percentile(r.ms, 0.5)},
                      {"p99_ms", Percentile(r.ms, 0.99)},
                      {"max_ms", Percentile(r.ms, 1.0)},
                      {"background", r.background},
                      {"server_threads", r.server_threads}});
    }
    std::printf("%s\n", nlohmann::json{{"server_bin", o.server_bin}, {"rows", rows}}.dump(2).c_str());
    return 0;
  }
  std::printf("# %s\n", o.server_bin.c_str());
  std::printf("%-12s %10s %8s %8s %8s %8s  %s\n", "phase", "heartbeats", "p50_ms", "p99_ms", "max_ms", "threads",
              "background");
  for (const PhaseResult& r : results) {
    std::printf("%-12s %10zu %8.3f %8.3f %8.3f %8d  %s\n", r.phase.c_str(), r.ms.size(), Percentile(r.ms, 0.5),
                Percentile(r.ms, 0.99), Percentile(r.ms, 1.0), r.server_threads, r.background.c_str());
  }
  return 0;
}
