#include "tests/testing/fleet/cluster.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/certs.h"

namespace dpfleet::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

Cluster::Cluster(const std::string& dir, ClusterOptions options)
    : dir_(dir), options_(std::move(options)), custodian_token_(options_.custodian_token) {}

std::string Cluster::address() const { return absl::StrCat("127.0.0.1:", grpc_port_); }

client::ClientOptions Cluster::OptionsWith(const std::string& token) const {
  client::ClientOptions o;
  o.target = address();
  o.ca_pem = options_.tls ? Slurp(ca_path()) : "";
  o.token = token;
  o.timeout = absl::Seconds(10);
  return o;
}

void Cluster::StartServer(int64_t lease_ttl_ms) {
  const std::string state = dir_ + "/state";
  if (options_.tls && !std::filesystem::exists(ca_path())) {
    client::FleetCertOptions certs;
    certs.out_dir = certs_dir();
    certs.server_names = {"127.0.0.1", "localhost"};
    certs.workers = 8;
    auto written = client::WriteFleetCertificates(certs);
    ASSERT_TRUE(written.ok()) << written.status();
  }
  if (custodian_token_.empty()) {
    std::string out, err;
    ASSERT_EQ(RunCommand({BinPath("dpfleet-server"), "token", "create", "--state-dir", state, "--name", "custodian",
                          "--role", "custodian"},
                         &out, &err),
              0)
        << err;
    custodian_token_ = std::string(absl::StripAsciiWhitespace(out));
  }
  const std::string config = dir_ + "/server.yaml";
  std::ofstream(config) << options_.config;
  const std::string port_file = dir_ + "/ports";
  std::remove(port_file.c_str());
  std::vector<std::string> argv = {BinPath("dpfleet-server"),
                                   absl::StrCat("--listen=127.0.0.1:", grpc_port_),
                                   absl::StrCat("--http=127.0.0.1:", http_port_),
                                   "--state-dir=" + state,
                                   "--config=" + config,
                                   "--data-root=" + dir_,
                                   absl::StrCat("--lease_ttl_ms=", lease_ttl_ms),
                                   "--heartbeat_interval_ms=200",
                                   "--port_file=" + port_file};
  if (options_.tls) {
    argv.insert(argv.end(), {"--tls-cert=" + certs_dir() + "/server.pem", "--tls-key=" + certs_dir() + "/server-key.pem",
                             "--client-ca=" + ca_path()});
  }
  argv.insert(argv.end(), options_.extra_server_flags.begin(), options_.extra_server_flags.end());
  server_ = std::make_unique<Process>(argv, absl::StrCat(dir_, "/server-", ++server_starts_, ".log"));
  ASSERT_TRUE(WaitFor([&] { return std::ifstream(port_file).good() || !server_->running(); }, absl::Seconds(30)))
      << server_->Log();
  std::ifstream f(port_file);
  ASSERT_TRUE(f >> grpc_port_ >> http_port_) << server_->Log();
  client_ = ClientWith(custodian_token_);
}

void Cluster::StartWorkers(int n, const std::vector<std::string>& extra_flags) {
  for (int i = 0; i < n; ++i) {
    const int id = static_cast<int>(workers_.size());
    std::vector<std::string> argv = {BinPath("dpfleet-worker"), "--server=" + address(), "--device=cpu",
                                     absl::StrCat("--work-dir=", dir_, "/worker", id), "--threads=1"};
    if (options_.tls) {
      const std::string name = absl::StrCat(certs_dir(), "/worker-", id + 1);
      argv.insert(argv.end(), {"--tls-ca=" + ca_path(), "--tls-cert=" + name + ".pem", "--tls-key=" + name + "-key.pem"});
    }
    argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
    workers_.push_back(std::make_unique<Process>(argv, absl::StrCat(dir_, "/worker", id, ".log")));
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        auto w = client_->Workers();
        return w.ok() && static_cast<int>(w->size()) >= static_cast<int>(workers_.size());
      },
      absl::Seconds(60)))
      << Logs();
}

std::string Cluster::CreateToken(const std::string& name, const std::string& role) {
  auto r = client_->CreateToken(name, role);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->token() : "";
}

std::unique_ptr<client::CoordinatorClient> Cluster::ClientWith(const std::string& token) {
  return std::make_unique<client::CoordinatorClient>(OptionsWith(token));
}

int Cluster::Dpctl(std::vector<std::string> args, std::string* out, std::string* err) {
  return DpctlAs(custodian_token_, std::move(args), out, err);
}

int Cluster::DpctlAs(const std::string& token, std::vector<std::string> args, std::string* out, std::string* err) {
  std::vector<std::string> head = {BinPath("dpctl"), "--server", address()};
  if (options_.tls) head.insert(head.end(), {"--ca", ca_path()});
  if (!token.empty()) head.insert(head.end(), {"--token", token});
  args.insert(args.begin(), head.begin(), head.end());
  std::string e;
  const int rc = RunCommand(args, out, &e);
  if (err) *err = e;
  return rc;
}

std::pair<int, std::string> Cluster::HttpGet(const std::string& path, const std::string& token) {
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  auto answer = [](const httplib::Result& r) -> std::pair<int, std::string> {
    if (!r) return {-1, httplib::to_string(r.error())};
    return {r->status, r->body};
  };
  if (options_.tls) {
    httplib::SSLClient c("127.0.0.1", http_port_);
    c.set_ca_cert_path(ca_path().c_str());
    c.enable_server_certificate_verification(true);
    return answer(c.Get(path.c_str(), headers));
  }
  httplib::Client c("127.0.0.1", http_port_);
  return answer(c.Get(path.c_str(), headers));
}

std::string Cluster::Logs() {
  std::string all = server_ ? "--- server ---\n" + server_->Log() : "";
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    all += absl::StrCat("--- worker ", i, " ---\n", workers_[i]->Log());
  }
  return all;
}

std::string WriteSmallJobSpec(const std::string& path, const std::string& name, const std::string& data,
                              int epochs) {
  std::ofstream(path) << "name: " << name << "\ndata: {path: " << data << "}\ntask: employment\n"
                      << "model: {type: logistic}\ntraining: {epochs: " << epochs
                      << ", batch_size: 256, learning_rate: 0.5}\n"
                      << "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5}\n"
                      << "resources: {workers: 1, device: cpu}\n";
  return path;
}

std::string Cluster::SubmitAndWait(const std::string& spec_path, absl::Duration timeout) {
  std::string out, err;
  EXPECT_EQ(Dpctl({"submit", spec_path, "-o", "json"}, &out, &err), 0) << err;
  const std::string marker = "\"job_id\": \"";
  const std::size_t at = out.find(marker);
  if (at == std::string::npos) {
    ADD_FAILURE() << "no job id in: " << out << err;
    return "";
  }
  const std::string job = out.substr(at + marker.size(), out.find('"', at + marker.size()) - at - marker.size());
  const bool ended = WaitFor(
      [&] {
        auto j = client_->Get(job);
        return j.ok() && client::IsTerminal(j->state());
      },
      timeout);
  EXPECT_TRUE(ended) << job << " did not end\n" << Logs();
  return ended ? job : "";
}

}  // namespace dpfleet::testing
