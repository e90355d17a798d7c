// Test helper: a real fleet on loopback — dpfleet-server and
// dpfleet-worker processes on ports the OS picks — with TLS on by default:
// certificates from `dpctl admin certs`' code (a CA, the server's for
// 127.0.0.1 and localhost, worker-1..worker-8), a custodian token from
// `dpfleet-server token create`, and the test directory as the only data
// root. Clients (in-process and dpctl) get the CA and a token.
#ifndef DPFLEET_TESTS_TESTING_FLEET_CLUSTER_H_
#define DPFLEET_TESTS_TESTING_FLEET_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "client/coordinator_client.h"
#include "tests/testing/process.h"

namespace dpfleet::testing {

struct ClusterOptions {
  bool tls = true;
  // Extra lines of the server's --config YAML. The default lifts the
  // request-rate and watch limits out of the way of tests that poll.
  std::string config = "requests_per_second: 10000\nrequest_burst: 10000\nmax_watch_streams_per_token: 256\n";
  std::vector<std::string> extra_server_flags;
  // A custodian token the state directory already has (a restored one);
  // empty: StartServer creates one.
  std::string custodian_token;
};

// Writes a small CPU job spec (logistic regression, B 256, DP with sigma 1,
// one worker) on `data` to `path`; returns `path`.
std::string WriteSmallJobSpec(const std::string& path, const std::string& name, const std::string& data,
                              int epochs);

class Cluster {
 public:
  Cluster(const std::string& dir, ClusterOptions options = {});

  // Starts the coordinator; port 0 picks a free port the first time, and a
  // restart reuses the same ports.
  void StartServer(int64_t lease_ttl_ms = 3000);
  // Worker k (0-based) presents worker-(k+1)'s certificate.
  void StartWorkers(int n, const std::vector<std::string>& extra_flags = {});

  std::string address() const;
  int http_port() const { return http_port_; }
  const std::string& dir() const { return dir_; }
  std::string certs_dir() const { return dir_ + "/certs"; }
  std::string ca_path() const { return certs_dir() + "/ca.pem"; }
  bool tls() const { return options_.tls; }
  Process& server() { return *server_; }
  Process& worker(int i) { return *workers_[i]; }
  // The custodian's client.
  client::CoordinatorClient& client() { return *client_; }
  const std::string& custodian_token() const { return custodian_token_; }

  // A new token through the Admin API (as the custodian).
  std::string CreateToken(const std::string& name, const std::string& role);
  // A client with `token` (may be empty) over the fleet's transport.
  std::unique_ptr<client::CoordinatorClient> ClientWith(const std::string& token);
  // The client options for `token` (target, CA PEM, token).
  client::ClientOptions OptionsWith(const std::string& token) const;

  // dpctl as the custodian / with `token`, over TLS when the fleet has it.
  int Dpctl(std::vector<std::string> args, std::string* out, std::string* err = nullptr);
  int DpctlAs(const std::string& token, std::vector<std::string> args, std::string* out, std::string* err = nullptr);

  // GET over HTTP(S) with `token` (none when empty): (status, body); status
  // -1 when the request failed.
  std::pair<int, std::string> HttpGet(const std::string& path, const std::string& token);
  std::pair<int, std::string> HttpGet(const std::string& path) { return HttpGet(path, custodian_token_); }

  std::string Logs();

  // Submits the spec at `spec_path` with dpctl and waits until the job
  // ends; the job id, or "" (with a test failure) when it did not.
  std::string SubmitAndWait(const std::string& spec_path, absl::Duration timeout = absl::Seconds(120));

 private:
  std::string dir_;
  ClusterOptions options_;
  int grpc_port_ = 0;
  int http_port_ = 0;
  int server_starts_ = 0;
  std::string custodian_token_;
  std::unique_ptr<Process> server_;
  std::vector<std::unique_ptr<Process>> workers_;
  std::unique_ptr<client::CoordinatorClient> client_;
};

}  // namespace dpfleet::testing

#endif  // DPFLEET_TESTS_TESTING_FLEET_CLUSTER_H_
