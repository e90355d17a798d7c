// dpfleet-load-bench: the coordinator under the load its users and tools put
// on it. Starts a real dpfleet-server (loopback, TLS on and/or off) and
// measures, one after the other:
//
//   * HTTP status polls: T threads on keep-alive connections GET
//     /v1/jobs/ID for S seconds (anchor: >= 10,000 polls/s on 2 cores);
//   * WatchJob fan-out: W concurrent streams on one job (callback-API
//     reactors spread over C connections); once every stream has its
//     snapshot the job is cancelled and each stream's delay from the Cancel
//     call to its CANCELLED event is one sample, over R rounds; so is its
//     delay from the round's first stream to get it (the fan-out itself,
//     without the Cancel's commit) (anchor: p99 < 100 ms for W = 1000);
//   * submissions: K threads submit N jobs (no workers: they stay QUEUED),
//     on a registered dataset (N from its manifest) and on a data.path file
//     (the coordinator reads the file to count N at every submission), and
//     the rate is N / wall time.
//
//   dpfleet-load-bench --server-bin build/bin/dpfleet-server [--tls both|on|off]
//       [--http-seconds 5] [--http-threads 8] [--watchers 1000] [--rounds 5]
//       [--connections 8] [--submits 400] [--submit-threads 8]
//
// Prints one Markdown table row per TLS mode. Everything is loopback; the
// client shares the cores with the server, as a co-located tool would.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/certs.h"
#include "client/coordinator_client.h"
#include "common/pums/synth.h"
#include "dpfleet/v1/coordinator.grpc.pb.h"

namespace {

namespace v1 = dpfleet::v1;

struct Flags {
  std::string server_bin;
  std::string tls = "both";
  double http_seconds = 5;
  int http_threads = 8;
  int watchers = 1000;
  int rounds = 5;
  int connections = 8;
  int submits = 400;
  int submit_threads = 8;
};

[[noreturn]] void Die(const std::string& why) {
  std::cerr << "dpfleet-load-bench: " << why << "\n";
  std::exit(1);
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string v;
    if (auto eq = a.find('='); eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      Die(a + " needs a value");
    }
    try {
      if (a == "--server-bin")
        f.server_bin = v;
      else if (a == "--tls")
        f.tls = v;
      else if (a == "--http-seconds")
        f.http_seconds = std::stod(v);
      else if (a == "--http-threads")
        f.http_threads = std::stoi(v);
      else if (a == "--watchers")
        f.watchers = std::stoi(v);
      else if (a == "--rounds")
        f.rounds = std::stoi(v);
      else if (a == "--connections")
        f.connections = std::stoi(v);
      else if (a == "--submits")
        f.submits = std::stoi(v);
      else if (a == "--submit-threads")
        f.submit_threads = std::stoi(v);
      else
        Die("unknown flag " + a);
    } catch (const std::exception&) {
      Die(a + ": '" + v + "' is not a number");
    }
  }
  if (f.server_bin.empty()) Die("--server-bin is required (build/bin/dpfleet-server)");
  if (f.tls != "both" && f.tls != "on" && f.tls != "off") Die("--tls: '" + f.tls + "' is not one of both, on, off");
  if (f.http_threads < 1 || f.watchers < 1 || f.rounds < 1 || f.connections < 1 || f.submits < 1 ||
      f.submit_threads < 1 || !(f.http_seconds > 0)) {
    Die("every count must be >= 1 and --http-seconds > 0");
  }
  return f;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A dpfleet-server on loopback in its own directory, stopped at the end.
class Server {
 public:
  Server(const Flags& flags, const std::string& dir, bool tls) : dir_(dir), tls_(tls) {
    const std::string state = dir + "/state";
    if (tls) {
      dpfleet::client::FleetCertOptions certs;
      certs.out_dir = dir + "/certs";
      certs.server_names = {"127.0.0.1", "localhost"};
      auto written = dpfleet::client::WriteFleetCertificates(certs);
      if (!written.ok()) Die(std::string(written.status().message()));
    }
    const std::string token_cmd = absl::StrCat(flags.server_bin, " token create --state-dir ", state,
                                               " --name bench --role custodian 2>/dev/null");
    FILE* p = popen(token_cmd.c_str(), "r");
    char buf[256] = {};
    if (p == nullptr || std::fgets(buf, sizeof(buf), p) == nullptr) Die("token create failed: " + token_cmd);
    pclose(p);
    token_ = buf;
    while (!token_.empty() && (token_.back() == '\n' || token_.back() == '\r')) token_.pop_back();
    std::ofstream(dir + "/server.yaml") << "requests_per_second: 10000000\nrequest_burst: 10000000\n"
                                        << "max_watch_streams_per_token: 100000\n";
    std::vector<std::string> args = {flags.server_bin,
                                     "--listen=127.0.0.1:0",
                                     "--http=127.0.0.1:0",
                                     "--state-dir=" + state,
                                     "--config=" + dir + "/server.yaml",
                                     "--data-root=" + dir,
                                     "--port_file=" + dir + "/ports"};
    if (tls) {
      args.insert(args.end(), {"--tls-cert=" + dir + "/certs/server.pem", "--tls-key=" + dir + "/certs/server-key.pem",
                               "--client-ca=" + dir + "/certs/ca.pem"});
    }
    pid_ = fork();
    if (pid_ == 0) {
      const int log = open((dir + "/server.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(log, 1);
      dup2(log, 2);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!(std::ifstream(dir + "/ports") >> grpc_port_ >> http_port_)) {
      if (absl::Now() > deadline) Die("the server did not start:\n" + Slurp(dir + "/server.log"));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~Server() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  dpfleet::client::ClientOptions Options() const {
    dpfleet::client::ClientOptions o;
    o.target = absl::StrCat("127.0.0.1:", grpc_port_);
    o.ca_pem = tls_ ? Slurp(dir_ + "/certs/ca.pem") : "";
    o.token = token_;
    return o;
  }
  std::unique_ptr<httplib::Client> Http() const {
    auto c = std::make_unique<httplib::Client>(absl::StrCat(tls_ ? "https" : "http", "://127.0.0.1:", http_port_));
    if (tls_) {
      c->set_ca_cert_path((dir_ + "/certs/ca.pem").c_str());
      c->enable_server_certificate_verification(true);
    }
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);
    c->set_default_headers({{"Authorization", "Bearer " + token_}});
    return c;
  }
  std::shared_ptr<grpc::Channel> Channel(int index) const {
    grpc::ChannelArguments args;
    args.SetInt("dpfleet.bench.connection", index);  // a distinct connection per index
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (tls_) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = Slurp(dir_ + "/certs/ca.pem");
      creds = grpc::SslCredentials(ssl);
    }
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", grpc_port_), creds, args);
  }
  const std::string& token() const { return token_; }

 private:
  std::string dir_;
  bool tls_;
  pid_t pid_ = -1;
  int grpc_port_ = 0, http_port_ = 0;
  std::string token_;
};

// A job on `data`: a raw file's path, or "dataset:NAME" for a registered
// dataset.
std::string SpecFor(const std::string& data, int i) {
  const std::string source = data.rfind("dataset:", 0) == 0 ? absl::StrCat("dataset: ", data.substr(8))
                                                            : absl::StrCat("data: {path: ", data, "}");
  return absl::StrCat("name: load-", i, "\n", source,
                      "\ntask: employment\nmodel: {type: logistic}\n"
                      "training: {epochs: 1, batch_size: 256, learning_rate: 0.5}\n"
                      "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5}\n"
                      "resources: {workers: 1, device: cpu}\n");
}

double HttpPollsPerSecond(const Server& server, const std::string& job, const Flags& flags) {
  std::atomic<int64_t> ok{0}, failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  const std::string path = "/v1/jobs/" + job;
  for (int t = 0; t < flags.http_threads; ++t) {
    threads.emplace_back([&] {
      auto c = server.Http();
      while (!stop.load(std::memory_order_relaxed)) {
        auto r = c->Get(path.c_str());
        (r && r->status == 200 ? ok : failed).fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  const absl::Time start = absl::Now();
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(flags.http_seconds * 1000)));
  stop = true;
  for (auto& t : threads) t.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (failed.load() > 0) std::cerr << "  (" << failed.load() << " HTTP polls failed)\n";
  return static_cast<double>(ok.load()) / seconds;
}

// One WatchJob stream: counts its snapshot, stamps its CANCELLED event's arrival.
class Watcher final : public grpc::ClientReadReactor<v1::JobEvent> {
 public:
  Watcher(v1::Coordinator::Stub* stub, const std::string& job, const std::string& token, std::atomic<int>* ready)
      : ready_(ready) {
    ctx_.AddMetadata("authorization", "Bearer " + token);
    req_.set_job_id(job);
    stub->async()->WatchJob(&ctx_, &req_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (event_.type() == v1::JobEvent::SNAPSHOT) ready_->fetch_add(1);
    if (event_.state() == v1::CANCELLED && received_ns_ < 0) received_ns_ = absl::GetCurrentTimeNanos();
    StartRead(&event_);
  }
  void OnDone(const grpc::Status&) override { done_.Notify(); }
  void Wait() { done_.WaitForNotification(); }
  int64_t received_ns() const { return received_ns_; }

 private:
  grpc::ClientContext ctx_;
  v1::WatchJobRequest req_;
  v1::JobEvent event_;
  std::atomic<int>* ready_;
  int64_t received_ns_ = -1;
  absl::Notification done_;
};

struct FanOut {
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  int64_t samples = 0, missed = 0;
  double cancel_ms = 0;  // the slowest Cancel call itself
  double spread_p50_ms = 0, spread_p99_ms = 0;
};

FanOut WatchFanOut(const Server& server, dpfleet::client::CoordinatorClient& client, const std::string& data,
                   const Flags& flags) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::Coordinator::Stub>> stubs;
  for (int c = 0; c < flags.connections; ++c) {
    channels.push_back(server.Channel(c));
    stubs.push_back(v1::Coordinator::NewStub(channels.back()));
  }
  std::vector<int64_t> latencies;  // from the Cancel call
  std::vector<int64_t> spread;     // from the round's first receipt
  FanOut out;
  for (int round = 0; round < flags.rounds; ++round) {
    auto job = client.Submit(SpecFor(data, 100000 + round));
    if (!job.ok()) Die("submit: " + std::string(job.status().message()));
    std::atomic<int> ready{0};
    std::atomic<int64_t> cancel_ns{0};
    std::vector<std::unique_ptr<Watcher>> watchers;
    for (int w = 0; w < flags.watchers; ++w) {
      watchers.push_back(
          std::make_unique<Watcher>(stubs[w % stubs.size()].get(), job->job_id(), server.token(), &ready));
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(120);
    while (ready.load() < flags.watchers) {
      if (absl::Now() > deadline) Die(absl::StrCat("only ", ready.load(), " of ", flags.watchers, " streams opened"));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    cancel_ns = absl::GetCurrentTimeNanos();
    auto cancelled = client.Cancel(job->job_id());
    if (!cancelled.ok()) Die("cancel: " + std::string(cancelled.status().message()));
    out.cancel_ms = std::max(out.cancel_ms, static_cast<double>(absl::GetCurrentTimeNanos() - cancel_ns.load()) / 1e6);
    int64_t first = INT64_MAX;
    for (auto& w : watchers) {
      w->Wait();
      if (w->received_ns() >= 0) first = std::min(first, w->received_ns());
    }
    for (auto& w : watchers) {
      if (w->received_ns() < 0) {
        out.missed++;
        continue;
      }
      latencies.push_back(w->received_ns() - cancel_ns.load());
      spread.push_back(w->received_ns() - first);
    }
  }
  auto pct = [](std::vector<int64_t>& v, double p) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(p * v.size()));
    return static_cast<double>(v[i]) / 1e6;
  };
  out.samples = static_cast<int64_t>(latencies.size());
  out.p50_ms = pct(latencies, 0.50);
  out.p99_ms = pct(latencies, 0.99);
  out.max_ms = pct(latencies, 1.0);
  out.spread_p50_ms = pct(spread, 0.50);
  out.spread_p99_ms = pct(spread, 0.99);
  return out;
}

double SubmitsPerSecond(const Server& server, const std::string& data, const Flags& flags) {
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int t = 0; t < flags.submit_threads; ++t) {
    threads.emplace_back([&] {
      dpfleet::client::CoordinatorClient c(server.Options());
      for (int i = next++; i < flags.submits; i = next++) {
        if (!c.Submit(SpecFor(data, i)).ok()) failed++;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (failed.load() > 0) std::cerr << "  (" << failed.load() << " submissions failed)\n";
  return (flags.submits - failed.load()) / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  char tmpl[] = "/tmp/dpfleet-load-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) Die("mkdtemp failed");
  const std::string root = tmpl;
  const std::string data = root + "/pums.csv";
  if (auto s = dpfleet::data::WriteSyntheticPums({/*rows=*/20000, /*seed=*/1}, data); !s.ok()) {
    Die(std::string(s.message()));
  }
  std::vector<bool> modes;
  if (flags.tls != "on") modes.push_back(false);
  if (flags.tls != "off") modes.push_back(true);
  std::cout << absl::StrFormat(
      "| TLS | HTTP polls/s (%d threads) | WatchJob fan-out from the first receipt p50 / p99 ms (%d streams x %d "
      "rounds) | from the Cancel call p50 / p99 / max ms (slowest Cancel) | submits/s (%d threads): registered "
      "dataset / data.path |\n|---|---|---|---|---|\n",
      flags.http_threads, flags.watchers, flags.rounds, flags.submit_threads);
  for (bool tls : modes) {
    const std::string dir = root + (tls ? "/tls" : "/plain");
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(data, dir + "/pums.csv");
    Server server(flags, dir, tls);
    dpfleet::client::CoordinatorClient client(server.Options());
    auto polled = client.Submit(SpecFor(dir + "/pums.csv", 0));
    if (!polled.ok()) Die("submit: " + std::string(polled.status().message()));
    const double polls = HttpPollsPerSecond(server, polled->job_id(), flags);
    const FanOut fan = WatchFanOut(server, client, dir + "/pums.csv", flags);
    const double submits_path = SubmitsPerSecond(server, dir + "/pums.csv", flags);
    v1::AddDatasetRequest add;
    add.set_name("load");
    add.add_paths(dir + "/pums.csv");
    if (auto added = client.AddDataset(add); !added.ok()) Die("datasets add: " + std::string(added.status().message()));
    const absl::Time ready_by = absl::Now() + absl::Seconds(120);
    for (;;) {
      auto d = client.GetDataset("load");
      if (d.ok() && d->state() == "READY") break;
      if (!d.ok() || d->state() == "FAILED" || absl::Now() > ready_by) Die("dataset 'load' did not become READY");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const double submits_dataset = SubmitsPerSecond(server, "dataset:load", flags);
    std::cout << absl::StrFormat(
                     "| %s | %.0f | %.1f / %.1f | %.1f / %.1f / %.1f (%.1f)%s | %.0f / %.0f |\n", tls ? "on" : "off",
                     polls, fan.spread_p50_ms, fan.spread_p99_ms, fan.p50_ms, fan.p99_ms, fan.max_ms, fan.cancel_ms,
                     fan.missed > 0 ? absl::StrCat(" (", fan.missed, " missed)") : "", submits_dataset, submits_path)
              << std::flush;
  }
  std::filesystem::remove_all(root);
  return 0;
}
