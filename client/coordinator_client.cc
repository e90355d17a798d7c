#include "client/coordinator_client.h"

#include <grpcpp/grpcpp.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "client/privacy_format.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {
namespace {

absl::Status FromGrpc(const grpc::Status& s, const ClientOptions& options) {
  if (s.ok()) return absl::OkStatus();
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    std::string hint;
    const std::string& m = s.error_message();
    if (!options.ca_pem.empty() && m.find("andshake") != std::string::npos) {
      hint = " (TLS handshake failed: is --ca the fleet's CA, does the coordinator serve TLS, and does its "
             "certificate name this host?)";
    } else if (options.ca_pem.empty() && m.find("Socket closed") != std::string::npos) {
      hint = " (if the coordinator serves TLS, pass --ca or set $DPFLEET_CA)";
    }
    return absl::UnavailableError(absl::StrCat("cannot reach the coordinator at ", options.target, ": ", m, hint));
  }
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace

const char* StateName(v1::JobState s) {
  switch (s) {
    case v1::QUEUED: return "QUEUED";
    case v1::RUNNING: return "RUNNING";
    case v1::SUCCEEDED: return "SUCCEEDED";
    case v1::FAILED: return "FAILED";
    case v1::CANCELLED: return "CANCELLED";
    default: return "UNKNOWN";
  }
}

bool IsTerminal(v1::JobState s) {
  return s == v1::SUCCEEDED || s == v1::FAILED || s == v1::CANCELLED;
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsFor(const std::string& ca_pem) {
  if (ca_pem.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem;
  return grpc::SslCredentials(ssl);
}

CoordinatorClient::CoordinatorClient(const ClientOptions& options) : options_(options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options_.target, ChannelCredentialsFor(options_.ca_pem), args);
  stub_ = v1::Coordinator::NewStub(channel);
  admin_ = v1::Admin::NewStub(channel);
}

CoordinatorClient::CoordinatorClient(const std::string& target, absl::Duration timeout)
    : CoordinatorClient(ClientOptions{target, "", "", timeout}) {}

void CoordinatorClient::Prepare(grpc::ClientContext* ctx) const {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  if (!options_.token.empty()) ctx->AddMetadata("authorization", "Bearer " + options_.token);
}

#define DPFLEET_CALL(stub, method, request, response)                              \
  grpc::ClientContext ctx;                                                           \
  Prepare(&ctx);                                                                     \
  grpc::Status st = stub->method(&ctx, request, &response);                          \
  if (!st.ok()) return FromGrpc(st, options_)
#define DPFLEET_UNARY(method, request, response) DPFLEET_CALL(stub_, method, request, response)

absl::StatusOr<v1::Job> CoordinatorClient::Submit(const std::string& spec_yaml) {
  v1::SubmitJobRequest req;
  req.set_spec_yaml(spec_yaml);
  v1::SubmitJobResponse resp;
  DPFLEET_UNARY(SubmitJob, req, resp);
  return resp.job();
}

absl::StatusOr<v1::Job> CoordinatorClient::Get(const std::string& job_id) {
  v1::GetJobRequest req;
  req.set_job_id(job_id);
  v1::Job resp;
  DPFLEET_UNARY(GetJob, req, resp);
  return resp;
}

absl::StatusOr<std::vector<v1::Job>> CoordinatorClient::List(const v1::ListJobsRequest& filter) {
  v1::ListJobsRequest req = filter;
  v1::ListJobsResponse resp;
  DPFLEET_UNARY(ListJobs, req, resp);
  return std::vector<v1::Job>(resp.jobs().begin(), resp.jobs().end());
}

absl::StatusOr<v1::Job> CoordinatorClient::Cancel(const std::string& job_id) {
  v1::CancelJobRequest req;
  req.set_job_id(job_id);
  v1::CancelJobResponse resp;
  DPFLEET_UNARY(CancelJob, req, resp);
  return resp.job();
}

absl::StatusOr<std::vector<v1::WorkerInfo>> CoordinatorClient::Workers() {
  v1::ListWorkersRequest req;
  v1::ListWorkersResponse resp;
  DPFLEET_UNARY(ListWorkers, req, resp);
  return std::vector<v1::WorkerInfo>(resp.workers().begin(), resp.workers().end());
}

absl::StatusOr<v1::GetJobLogsResponse> CoordinatorClient::GetJobLogs(const v1::GetJobLogsRequest& request) {
  const v1::GetJobLogsRequest& req = request;
  v1::GetJobLogsResponse resp;
  DPFLEET_UNARY(GetJobLogs, req, resp);
  return resp;
}

absl::StatusOr<v1::VersionInfo> CoordinatorClient::Version() {
  v1::GetVersionRequest req;
  v1::VersionInfo resp;
  DPFLEET_UNARY(GetVersion, req, resp);
  return resp;
}

absl::StatusOr<std::vector<v1::DatasetBudget>> CoordinatorClient::SetBudget(const std::string& dataset,
                                                                            double epsilon, double delta) {
  v1::SetBudgetRequest req;
  req.set_dataset(dataset);
  req.set_epsilon(epsilon);
  req.set_delta(delta);
  v1::SetBudgetResponse resp;
  DPFLEET_UNARY(SetBudget, req, resp);
  return std::vector<v1::DatasetBudget>(resp.budgets().begin(), resp.budgets().end());
}

absl::StatusOr<std::vector<v1::DatasetBudget>> CoordinatorClient::Budgets(const std::string& dataset) {
  v1::GetBudgetsRequest req;
  req.set_dataset(dataset);
  v1::GetBudgetsResponse resp;
  DPFLEET_UNARY(GetBudgets, req, resp);
  return std::vector<v1::DatasetBudget>(resp.budgets().begin(), resp.budgets().end());
}

absl::StatusOr<v1::Dataset> CoordinatorClient::AddDataset(const v1::AddDatasetRequest& req) {
  v1::Dataset resp;
  DPFLEET_UNARY(AddDataset, req, resp);
  return resp;
}

absl::StatusOr<v1::Dataset> CoordinatorClient::GetDataset(const std::string& name) {
  v1::GetDatasetRequest req;
  req.set_name(name);
  v1::Dataset resp;
  DPFLEET_UNARY(GetDataset, req, resp);
  return resp;
}

absl::StatusOr<std::vector<v1::Dataset>> CoordinatorClient::ListDatasets() {
  v1::ListDatasetsRequest req;
  v1::ListDatasetsResponse resp;
  DPFLEET_UNARY(ListDatasets, req, resp);
  return std::vector<v1::Dataset>(resp.datasets().begin(), resp.datasets().end());
}

absl::StatusOr<v1::Dataset> CoordinatorClient::RemoveDataset(const std::string& name) {
  v1::RemoveDatasetRequest req;
  req.set_name(name);
  v1::Dataset resp;
  DPFLEET_UNARY(RemoveDataset, req, resp);
  return resp;
}

absl::StatusOr<v1::Job> CoordinatorClient::AuditJob(const v1::AuditJobRequest& request) {
  v1::Job resp;
  DPFLEET_UNARY(AuditJob, request, resp);
  return resp;
}

absl::StatusOr<v1::GetAuditResponse> CoordinatorClient::GetAudit(const std::string& audit_id) {
  v1::GetAuditRequest req;
  req.set_audit_id(audit_id);
  v1::GetAuditResponse resp;
  DPFLEET_UNARY(GetAudit, req, resp);
  return resp;
}

absl::StatusOr<std::string> CoordinatorClient::GetModel(const std::string& job_id) {
  std::string model;
  int64_t total = -1;
  while (total < 0 || static_cast<int64_t>(model.size()) < total) {
    v1::GetModelRequest req;
    req.set_job_id(job_id);
    req.set_offset(static_cast<int64_t>(model.size()));
    req.set_max_bytes(1 << 20);
    v1::ModelChunk resp;
    DPFLEET_UNARY(GetModel, req, resp);
    if (total >= 0 && resp.total_bytes() != total) return absl::DataLossError("the model changed while it was fetched");
    if (resp.data().empty() && resp.total_bytes() != static_cast<int64_t>(model.size())) {
      return absl::DataLossError(absl::StrCat("empty model chunk at ", model.size()));
    }
    total = resp.total_bytes();
    model += resp.data();
  }
  return model;
}

absl::StatusOr<v1::CreateTokenResponse> CoordinatorClient::CreateToken(const std::string& name,
                                                                       const std::string& role) {
  v1::CreateTokenRequest req;
  req.set_name(name);
  req.set_role(role);
  v1::CreateTokenResponse resp;
  DPFLEET_CALL(admin_, CreateToken, req, resp);
  return resp;
}

absl::StatusOr<std::vector<v1::TokenInfo>> CoordinatorClient::ListTokens() {
  v1::ListTokensRequest req;
  v1::ListTokensResponse resp;
  DPFLEET_CALL(admin_, ListTokens, req, resp);
  return std::vector<v1::TokenInfo>(resp.tokens().begin(), resp.tokens().end());
}

absl::Status CoordinatorClient::RevokeToken(const std::string& name) {
  v1::RevokeTokenRequest req;
  req.set_name(name);
  v1::RevokeTokenResponse resp;
  DPFLEET_CALL(admin_, RevokeToken, req, resp);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::AuditEntry>> CoordinatorClient::ListAudit(int64_t after_id, int32_t limit) {
  v1::ListAuditRequest req;
  req.set_after_id(after_id);
  req.set_limit(limit);
  v1::ListAuditResponse resp;
  DPFLEET_CALL(admin_, ListAudit, req, resp);
  return std::vector<v1::AuditEntry>(resp.entries().begin(), resp.entries().end());
}

absl::StatusOr<v1::GetLedgerResponse> CoordinatorClient::GetLedger(const std::string& dataset) {
  v1::GetLedgerRequest req;
  req.set_dataset(dataset);
  v1::GetLedgerResponse resp;
  DPFLEET_CALL(admin_, GetLedger, req, resp);
  return resp;
}

#undef DPFLEET_UNARY
#undef DPFLEET_CALL

absl::StatusOr<v1::Job> CoordinatorClient::Watch(
    const std::string& job_id, const std::function<bool(const v1::JobEvent&)>& on_event) {
  int64_t last_seq = -1;
  int32_t epochs_seen = 0;
  absl::Time unreachable_since = absl::InfiniteFuture();
  while (true) {
    grpc::ClientContext ctx;
    if (!options_.token.empty()) ctx.AddMetadata("authorization", "Bearer " + options_.token);
    v1::WatchJobRequest req;
    req.set_job_id(job_id);
    std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader = stub_->WatchJob(&ctx, req);
    v1::JobEvent ev;
    while (reader->Read(&ev)) {
      unreachable_since = absl::InfiniteFuture();
      if (ev.type() == v1::JobEvent::SNAPSHOT) {
        // After a reconnect, replay the epochs this watcher has not seen.
        if (last_seq >= 0) {
          for (const v1::EpochMetrics& m : ev.job().history()) {
            if (m.epoch() <= epochs_seen) continue;
            v1::JobEvent replay;
            replay.set_job_id(job_id);
            replay.set_type(v1::JobEvent::EPOCH);
            replay.set_state(ev.state());
            *replay.mutable_epoch() = m;
            epochs_seen = m.epoch();
            if (!on_event(replay)) return ev.job();
          }
          if (IsTerminal(ev.state())) {
            v1::JobEvent st = ev;
            st.set_type(v1::JobEvent::STATE);
            on_event(st);
          }
        } else {
          for (const v1::EpochMetrics& m : ev.job().history()) epochs_seen = std::max(epochs_seen, m.epoch());
          if (!on_event(ev)) return ev.job();
        }
      } else {
        if (ev.type() == v1::JobEvent::EPOCH) epochs_seen = std::max(epochs_seen, ev.epoch().epoch());
        if (!on_event(ev)) {
          ctx.TryCancel();
          return Get(job_id);
        }
      }
      last_seq = ev.seq();
      if ((ev.type() != v1::JobEvent::EPOCH) && IsTerminal(ev.state())) {
        ctx.TryCancel();
        return Get(job_id);
      }
    }
    grpc::Status st = reader->Finish();
    if (!st.ok() && st.error_code() != grpc::StatusCode::UNAVAILABLE) return FromGrpc(st, options_);
    // The coordinator went away (restart): retry for up to the client timeout.
    if (unreachable_since == absl::InfiniteFuture()) unreachable_since = absl::Now();
    if (absl::Now() - unreachable_since > options_.timeout) return FromGrpc(st, options_);
    // A stream that broke before its first event leaves last_seq < 0, so
    // the next snapshot is delivered as the first one, not as a replay.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

nlohmann::json EpochJson(const v1::EpochMetrics& m) {
  // An epoch without an eval release has null metrics, never zeros.
  auto metric = [](bool has, double v) { return has ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"epoch", m.epoch()},
          {"eval_loss", metric(m.has_eval_loss(), m.eval_loss())},
          {"eval_accuracy", metric(m.has_eval_accuracy(), m.eval_accuracy())},
          {"eval_auc", metric(m.has_eval_auc(), m.eval_auc())},
          {"eval_balanced_accuracy", metric(m.has_eval_balanced_accuracy(), m.eval_balanced_accuracy())},
          {"majority_rate", metric(m.has_majority_rate(), m.majority_rate())},
          {"epsilon", EpsilonJson(EpochEpsilon(m))},
          {"steps", m.steps()},
          {"train_seconds", m.train_seconds()}};
}

std::string JobToJson(const v1::Job& job, int indent) {
  nlohmann::json history = nlohmann::json::array();
  for (const v1::EpochMetrics& m : job.history()) history.push_back(EpochJson(m));
  nlohmann::json attempts = nlohmann::json::array();
  for (const v1::JobAttempt& a : job.attempts()) {
    attempts.push_back({{"attempt", a.attempt()},
                        {"worker_ids", std::vector<std::string>(a.worker_ids().begin(), a.worker_ids().end())},
                        {"started_unix_ms", a.started_unix_ms()},
                        {"ended_unix_ms", a.ended_unix_ms()},
                        {"outcome", StateName(a.outcome())},
                        {"reason", a.reason()}});
  }
  nlohmann::json j = {{"job_id", job.job_id()},
                      {"name", job.name()},
                      {"state", StateName(job.state())},
                      {"epochs_done", job.epochs_done()},
                      {"epochs", job.epochs()},
                      {"mode", job.mode()},
                      {"private", IsPrivate(job)},
                      {"epsilon", EpsilonJson(JobEpsilon(job))},
                      {"delta", job.delta()},
                      {"noise_multiplier", job.noise_multiplier()},
                      {"accountant", job.accountant()},
                      {"sample_rate", job.sample_rate()},
                      {"steps_per_epoch", job.steps_per_epoch()},
                      {"train_rows", job.train_rows()},
                      {"owner", job.owner()},
                      {"kind", job.kind().empty() ? "train" : job.kind()},
                      {"audit_of", job.audit_of()},
                      {"eval_noise_multiplier", job.eval_noise_multiplier()},
                      {"eval_every", job.eval_every()},
                      {"world_size", job.world_size()},
                      {"attempt", job.attempt()},
                      {"worker_ids", std::vector<std::string>(job.worker_ids().begin(), job.worker_ids().end())},
                      {"reason", job.reason()},
                      {"pending_reason", job.pending_reason()},
                      {"attempts", attempts},
                      {"created_unix_ms", job.created_unix_ms()},
                      {"started_unix_ms", job.started_unix_ms()},
                      {"finished_unix_ms", job.finished_unix_ms()},
                      {"history", history}};
  return j.dump(indent);
}

}  // namespace dpfleet::client
