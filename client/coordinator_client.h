// Client library for the coordinator's gRPC API: one call per RPC, each with
// a deadline, errors as absl::Status (the server's code and message kept).
// dpctl and other C++ programs use it; it never links LibTorch.
//
// With a CA it speaks TLS and checks that the coordinator's certificate
// names the host it dials; with a token it sends "authorization: Bearer"
// on every call. It never prints or logs the token.
#ifndef DPFLEET_CLIENT_COORDINATOR_CLIENT_H_
#define DPFLEET_CLIENT_COORDINATOR_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/security/credentials.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dpfleet/v1/admin.grpc.pb.h"
#include "dpfleet/v1/coordinator.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {

struct ClientOptions {
  std::string target;  // HOST:PORT
  std::string ca_pem;  // the fleet CA (PEM text); empty = plaintext
  std::string token;   // empty = no token
  absl::Duration timeout = absl::Seconds(30);
};

class CoordinatorClient {
 public:
  // Does not connect yet.
  explicit CoordinatorClient(const ClientOptions& options);
  // Plaintext, no token.
  explicit CoordinatorClient(const std::string& target, absl::Duration timeout = absl::Seconds(30));

  absl::StatusOr<v1::Job> Submit(const std::string& spec_yaml);
  absl::StatusOr<v1::Job> Get(const std::string& job_id);
  absl::StatusOr<std::vector<v1::Job>> List(const v1::ListJobsRequest& filter = {});
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id);
  absl::StatusOr<std::vector<v1::WorkerInfo>> Workers();
  absl::StatusOr<v1::VersionInfo> Version();
  // One budget per file the name maps to.
  absl::StatusOr<std::vector<v1::DatasetBudget>> SetBudget(const std::string& dataset, double epsilon, double delta);
  absl::StatusOr<std::vector<v1::DatasetBudget>> Budgets(const std::string& dataset);
  absl::StatusOr<v1::Dataset> AddDataset(const v1::AddDatasetRequest& request);
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& name);
  absl::StatusOr<std::vector<v1::Dataset>> ListDatasets();
  absl::StatusOr<v1::Dataset> RemoveDataset(const std::string& name);
  // One page of a job's shipped log lines (client/logs_cli.h follows them).
  absl::StatusOr<v1::GetJobLogsResponse> GetJobLogs(const v1::GetJobLogsRequest& request);
  // The whole trained model of a SUCCEEDED job (fetched in chunks).
  absl::StatusOr<std::string> GetModel(const std::string& job_id);
  // Privacy audits (custodian tokens only): starts one, and reads a run
  // with its report.
  absl::StatusOr<v1::Job> AuditJob(const v1::AuditJobRequest& request);
  absl::StatusOr<v1::GetAuditResponse> GetAudit(const std::string& audit_id);
  // Streams events until the job is terminal (returns its final record) or
  // on_event returns false. Reconnects if the coordinator restarts.
  absl::StatusOr<v1::Job> Watch(const std::string& job_id,
                                const std::function<bool(const v1::JobEvent&)>& on_event);

  // The Admin service (custodian tokens only).
  absl::StatusOr<v1::CreateTokenResponse> CreateToken(const std::string& name, const std::string& role);
  absl::StatusOr<std::vector<v1::TokenInfo>> ListTokens();
  absl::Status RevokeToken(const std::string& name);
  absl::StatusOr<std::vector<v1::AuditEntry>> ListAudit(int64_t after_id, int32_t limit);
  absl::StatusOr<v1::GetLedgerResponse> GetLedger(const std::string& dataset);

 private:
  // A context with the deadline and the token.
  void Prepare(grpc::ClientContext* ctx) const;

  ClientOptions options_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::unique_ptr<v1::Admin::Stub> admin_;
};

// The channel credentials for `ca_pem` (TLS) or plaintext when it is empty.
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsFor(const std::string& ca_pem);

// The JSON form of a job that `dpctl status -o json` prints ("epsilon" null
// and "private" false for a non-private job).
std::string JobToJson(const v1::Job& job, int indent = 2);
// One epoch of a job's history as JSON: eval metrics null when the epoch had
// no eval release, epsilon null when the job is not private.
nlohmann::json EpochJson(const v1::EpochMetrics& m);
const char* StateName(v1::JobState s);
bool IsTerminal(v1::JobState s);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_COORDINATOR_CLIENT_H_
