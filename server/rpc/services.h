// gRPC adapters: convert proto <-> plain records, apply the object-level
// access rules (server/rpc/access.h) to the caller the Gate admitted, call
// the core, map the status, and put state-changing calls in the audit
// trail. No logic of their own.
//
// Two methods wait, and both are served with the callback API so that a
// waiting client holds no thread: WatchJob (a reactor per watcher, fed by
// JobManager::Subscribe) and RendezvousGet (a reactor per waiting rank, fed
// by JobManager::RendezvousGetAsync, with a gRPC alarm for its deadline).
// Every other method is synchronous and returns as soon as the core does.
#ifndef DPFLEET_SERVER_RPC_SERVICES_H_
#define DPFLEET_SERVER_RPC_SERVICES_H_

#include <atomic>

#include "dpfleet/v1/admin.grpc.pb.h"
#include "dpfleet/v1/coordinator.grpc.pb.h"
#include "dpfleet/v1/worker.grpc.pb.h"
#include "server/core/job_manager.h"
#include "server/core/tokens.h"
#include "server/rpc/audit.h"
#include "server/rpc/auth.h"

namespace dpfleet::server {

// What every service adapter works with.
struct ServiceDeps {
  JobManager* jobs = nullptr;
  DatasetRegistry* datasets = nullptr;
  Store* store = nullptr;
  Tokens* tokens = nullptr;
  Gate* gate = nullptr;
  AuditTrail* audit = nullptr;
};

class CoordinatorServiceImpl final : public v1::Coordinator::WithCallbackMethod_WatchJob<v1::Coordinator::Service> {
 public:
  explicit CoordinatorServiceImpl(ServiceDeps deps) : deps_(deps) {}

  grpc::Status SubmitJob(grpc::ServerContext*, const v1::SubmitJobRequest*, v1::SubmitJobResponse*) override;
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest*, v1::Job*) override;
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*, v1::ListJobsResponse*) override;
  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest*, v1::CancelJobResponse*) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext*,
                                                   const v1::WatchJobRequest*) override;
  grpc::Status GetModel(grpc::ServerContext*, const v1::GetModelRequest*, v1::ModelChunk*) override;
  grpc::Status ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                           v1::ListWorkersResponse*) override;
  grpc::Status GetVersion(grpc::ServerContext*, const v1::GetVersionRequest*, v1::VersionInfo*) override;
  grpc::Status SetBudget(grpc::ServerContext*, const v1::SetBudgetRequest*, v1::SetBudgetResponse*) override;
  grpc::Status GetBudgets(grpc::ServerContext*, const v1::GetBudgetsRequest*, v1::GetBudgetsResponse*) override;
  grpc::Status AddDataset(grpc::ServerContext*, const v1::AddDatasetRequest*, v1::Dataset*) override;
  grpc::Status GetDataset(grpc::ServerContext*, const v1::GetDatasetRequest*, v1::Dataset*) override;
  grpc::Status ListDatasets(grpc::ServerContext*, const v1::ListDatasetsRequest*, v1::ListDatasetsResponse*) override;
  grpc::Status RemoveDataset(grpc::ServerContext*, const v1::RemoveDatasetRequest*, v1::Dataset*) override;
  grpc::Status GetJobLogs(grpc::ServerContext*, const v1::GetJobLogsRequest*, v1::GetJobLogsResponse*) override;
  grpc::Status AuditJob(grpc::ServerContext*, const v1::AuditJobRequest*, v1::Job*) override;
  grpc::Status GetAudit(grpc::ServerContext*, const v1::GetAuditRequest*, v1::GetAuditResponse*) override;

 private:
  ServiceDeps deps_;
};

class AdminServiceImpl final : public v1::Admin::Service {
 public:
  explicit AdminServiceImpl(ServiceDeps deps) : deps_(deps) {}

  grpc::Status CreateToken(grpc::ServerContext*, const v1::CreateTokenRequest*, v1::CreateTokenResponse*) override;
  grpc::Status ListTokens(grpc::ServerContext*, const v1::ListTokensRequest*, v1::ListTokensResponse*) override;
  grpc::Status RevokeToken(grpc::ServerContext*, const v1::RevokeTokenRequest*, v1::RevokeTokenResponse*) override;
  grpc::Status ListAudit(grpc::ServerContext*, const v1::ListAuditRequest*, v1::ListAuditResponse*) override;
  grpc::Status GetLedger(grpc::ServerContext*, const v1::GetLedgerRequest*, v1::GetLedgerResponse*) override;

 private:
  ServiceDeps deps_;
};

class WorkerServiceImpl final
    : public v1::WorkerService::WithCallbackMethod_RendezvousGet<v1::WorkerService::Service> {
 public:
  explicit WorkerServiceImpl(ServiceDeps deps) : deps_(deps) {}

  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest*, v1::RegisterResponse*) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*, v1::HeartbeatResponse*) override;
  grpc::Status ChargeBudget(grpc::ServerContext*, const v1::ChargeBudgetRequest*,
                            v1::ChargeBudgetResponse*) override;
  grpc::Status ReportProgress(grpc::ServerContext*, const v1::ProgressReport*, v1::ProgressAck*) override;
  grpc::Status ReportDone(grpc::ServerContext*, const v1::DoneReport*, v1::DoneAck*) override;
  grpc::Status RendezvousSet(grpc::ServerContext*, const v1::RendezvousSetRequest*,
                             v1::RendezvousSetResponse*) override;
  grpc::ServerUnaryReactor* RendezvousGet(grpc::CallbackServerContext*, const v1::RendezvousGetRequest*,
                                          v1::RendezvousGetResponse*) override;
  grpc::Status RendezvousAdd(grpc::ServerContext*, const v1::RendezvousAddRequest*,
                             v1::RendezvousAddResponse*) override;
  grpc::Status FetchShard(grpc::ServerContext*, const v1::FetchShardRequest*, v1::FetchShardResponse*) override;
  grpc::Status FetchCheckpoint(grpc::ServerContext*, const v1::FetchCheckpointRequest*,
                               v1::FetchCheckpointResponse*) override;
  grpc::Status UploadModel(grpc::ServerContext*, const v1::UploadModelRequest*, v1::UploadModelResponse*) override;
  grpc::Status ShipLogs(grpc::ServerContext*, const v1::ShipLogsRequest*, v1::ShipLogsResponse*) override;
  grpc::Status FetchModel(grpc::ServerContext*, const v1::FetchModelRequest*, v1::FetchModelResponse*) override;
  grpc::Status ReportAudit(grpc::ServerContext*, const v1::ReportAuditRequest*, v1::ReportAuditResponse*) override;

 private:
  ServiceDeps deps_;
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_SERVICES_H_
