#include "server/rpc/services.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/log/run_events.h"
#include "common/status.h"
#include "common/version.h"
#include "grpcpp/alarm.h"
#include "server/rpc/convert.h"

namespace dpfleet::server {

grpc::Status CoordinatorServiceImpl::SubmitJob(grpc::ServerContext* ctx, const v1::SubmitJobRequest* req,
                                               v1::SubmitJobResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<JobRecord> job = [&]() -> absl::StatusOr<JobRecord> {
    const int64_t size = static_cast<int64_t>(req->spec_yaml().size());
    if (size > deps_.gate->limits().max_spec_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("spec_yaml: ", size, " bytes exceeds the coordinator's ",
                                                       "max_spec_bytes (", deps_.gate->limits().max_spec_bytes, ")"));
    }
    RETURN_IF_ERROR(CheckSubmit(caller, req->spec_yaml()));
    return deps_.jobs->Submit(req->spec_yaml(), caller.name);
  }();
  deps_.audit->Record(caller, "SubmitJob", job.ok() ? job->job_id : "", job.status());
  if (!job.ok()) return ToGrpc(job.status());
  ToProto(JobView(caller, *job), resp->mutable_job());
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req, v1::Job* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<JobRecord> job = deps_.jobs->Get(req->job_id());
  if (job.ok()) job = VisibleJob(caller, *job);
  if (!job.ok()) return ToGrpc(job.status());
  ToProto(*job, resp);
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* req,
                                              v1::ListJobsResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  JobFilterQuery query;
  // An enum number the proto does not know is named by its number, so the
  // error shows what was sent.
  if (req->state() != v1::JOB_STATE_UNSPECIFIED) {
    query.state = v1::JobState_IsValid(req->state()) ? v1::JobState_Name(req->state()) : absl::StrCat(req->state());
  }
  query.owner = req->owner();
  query.dataset = req->dataset();
  query.limit = req->limit();
  absl::StatusOr<JobFilter> filter = ParseJobFilter(query);
  if (!filter.ok()) return ToGrpc(filter.status());
  for (const JobRecord& r : VisibleJobs(caller, deps_.jobs->List(), *filter)) ToProto(r, resp->add_jobs());
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req,
                                               v1::CancelJobResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<JobRecord> job = deps_.jobs->Get(req->job_id());
  if (job.ok()) {
    absl::Status allowed = CheckMayActOnJob(caller, *job);
    job = allowed.ok() ? deps_.jobs->Cancel(req->job_id()) : allowed;
  }
  deps_.audit->Record(caller, "CancelJob", req->job_id(), job.status());
  if (!job.ok()) return ToGrpc(job.status());
  ToProto(JobView(caller, *job), resp->mutable_job());
  return grpc::Status::OK;
}

namespace {

// The reason as `caller` may see it (ReasonView).
v1::JobEvent EventToProto(const Identity& caller, const std::string& job_id, const JobEvent& e) {
  v1::JobEvent out;
  out.set_job_id(job_id);
  out.set_seq(e.seq);
  out.set_type(e.type == JobEvent::Type::kEpoch ? v1::JobEvent::EPOCH : v1::JobEvent::STATE);
  out.set_state(ToProto(e.state));
  out.set_reason(ReasonView(caller, e.reason, e.public_reason));
  if (e.type == JobEvent::Type::kEpoch) ToProto(e.epoch, e.dp, out.mutable_epoch());
  return out;
}

// One watcher: the snapshot, then every event as the JobManager publishes
// it, one write in flight at a time; finishes after a terminal state, when
// the client goes away, or at shutdown. Deletes itself in OnDone, after
// unsubscribing (no listener call can then be in flight).
class WatchReactor final : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  WatchReactor(JobManager* jobs, Gate* gate, Identity caller, const std::string& job_id)
      : jobs_(jobs), gate_(gate), caller_(std::move(caller)), job_id_(job_id) {
    // A stream holds no thread, but each is memory and a listener under the
    // job lock: a token gets a bounded number.
    absl::Status admitted = gate_->AcquireWatch(caller_);
    leased_ = admitted.ok();
    absl::StatusOr<JobManager::Subscription> sub =
        admitted.ok() ? jobs_->Subscribe(job_id_, [this](const JobEvent* e) { OnEvent(e); })
                      : absl::StatusOr<JobManager::Subscription>(admitted);
    if (sub.ok()) {
      if (absl::Status allowed = CheckMayActOnJob(caller_, sub->job); !allowed.ok()) {
        jobs_->Unsubscribe(sub->id);
        sub = allowed;
      }
    }
    absl::MutexLock lock(&mu_);
    started_ = true;
    if (!sub.ok()) {
      FinishLocked(ToGrpc(sub.status()));
      return;
    }
    subscription_ = sub->id;
    v1::JobEvent first;
    first.set_job_id(job_id_);
    first.set_seq(sub->seq);
    first.set_type(v1::JobEvent::SNAPSHOT);
    first.set_state(ToProto(sub->job.state));
    // What GetJob would show this caller (reasons, paths).
    const JobRecord seen = JobView(caller_, sub->job);
    first.set_reason(seen.reason);
    ToProto(seen, first.mutable_job());
    // Events may have arrived between Subscribe and here; they all follow
    // the snapshot, which therefore goes first.
    queue_.push_front(std::move(first));
    if (IsTerminal(sub->job.state)) end_ = grpc::Status::OK;
    PumpLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) end_ = grpc::Status(grpc::StatusCode::CANCELLED, "watcher went away");
    if (!ok || cancelled_) queue_.clear();
    PumpLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    queue_.clear();
    if (!end_) end_ = grpc::Status(grpc::StatusCode::CANCELLED, "watcher went away");
    PumpLocked();
  }

  void OnDone() override {
    if (subscription_ != 0) jobs_->Unsubscribe(subscription_);
    if (leased_) gate_->ReleaseWatch(caller_);
    delete this;
  }

 private:
  // Called by the JobManager under its lock: queue, maybe start a write.
  void OnEvent(const JobEvent* e) {
    absl::MutexLock lock(&mu_);
    if (end_) return;
    if (e == nullptr) {
      end_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down");
    } else {
      queue_.push_back(EventToProto(caller_, job_id_, *e));
      if (e->type == JobEvent::Type::kState && IsTerminal(e->state)) end_ = grpc::Status::OK;
    }
    PumpLocked();
  }

  // Starts the next write, or finishes once the queue is drained and the
  // stream has an end.
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!started_ || writing_ || finished_) return;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      StartWrite(&current_);
      return;
    }
    if (end_) FinishLocked(*end_);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  JobManager* const jobs_;
  Gate* const gate_;
  const Identity caller_;
  const std::string job_id_;
  bool leased_ = false;       // holds one of the caller's watch streams
  int64_t subscription_ = 0;  // set in the constructor, read in OnDone
  absl::Mutex mu_;
  std::deque<v1::JobEvent> queue_ ABSL_GUARDED_BY(mu_);
  v1::JobEvent current_ ABSL_GUARDED_BY(mu_);  // the write in flight
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // the snapshot is queued
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerWriteReactor<v1::JobEvent>* CoordinatorServiceImpl::WatchJob(grpc::CallbackServerContext* ctx,
                                                                         const v1::WatchJobRequest* req) {
  return new WatchReactor(deps_.jobs, deps_.gate, deps_.gate->Caller(*ctx, false), req->job_id());
}

grpc::Status CoordinatorServiceImpl::GetModel(grpc::ServerContext* ctx, const v1::GetModelRequest* req,
                                              v1::ModelChunk* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<JobRecord> job = deps_.jobs->Get(req->job_id());
  if (!job.ok()) return ToGrpc(job.status());
  if (absl::Status allowed = CheckMayActOnJob(caller, *job); !allowed.ok()) return ToGrpc(allowed);
  auto r = deps_.jobs->GetModel(req->job_id(), req->offset(), req->max_bytes());
  if (!r.ok()) return ToGrpc(r.status());
  resp->set_data(std::move(r->data));
  resp->set_total_bytes(r->total_bytes);
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                                                 v1::ListWorkersResponse* resp) {
  for (const WorkerRecord& w : deps_.jobs->ListWorkers()) ToProto(w, resp->add_workers());
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::GetVersion(grpc::ServerContext*, const v1::GetVersionRequest*,
                                                v1::VersionInfo* resp) {
  const BuildInfo& b = GetBuildInfo();
  resp->set_version(b.version);
  resp->set_git(b.git);
  resp->set_build_type(b.build_type);
  resp->set_protocol_version(kProtocolVersion);
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::SetBudget(grpc::ServerContext* ctx, const v1::SetBudgetRequest* req,
                                               v1::SetBudgetResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<std::vector<BudgetView>> b = deps_.jobs->SetBudget(req->dataset(), req->epsilon(), req->delta());
  deps_.audit->Record(caller, "SetBudget",
                      absl::StrCat(req->dataset(), " epsilon=", req->epsilon(), " delta=", req->delta()), b.status());
  if (!b.ok()) return ToGrpc(b.status());
  for (const BudgetView& v : BudgetViews(caller, *std::move(b), deps_.datasets->List())) {
    ToProto(v, resp->add_budgets());
  }
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::GetBudgets(grpc::ServerContext* ctx, const v1::GetBudgetsRequest* req,
                                                v1::GetBudgetsResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  const std::vector<DatasetRecord> datasets = deps_.datasets->List();
  absl::StatusOr<std::vector<BudgetView>> b = [&]() -> absl::StatusOr<std::vector<BudgetView>> {
    RETURN_IF_ERROR(CheckBudgetArgument(caller, req->dataset(), datasets));
    return deps_.jobs->GetBudgets(req->dataset());
  }();
  if (!b.ok()) return ToGrpc(b.status());
  for (const BudgetView& v : BudgetViews(caller, *std::move(b), datasets)) ToProto(v, resp->add_budgets());
  return grpc::Status::OK;
}

namespace {
void ToProto(const DatasetRecord& d, v1::Dataset* out) {
  out->set_name(d.name);
  for (const std::string& p : d.paths) out->add_paths(p);
  out->set_task(d.task);
  out->set_state(d.state);
  out->set_reason(d.reason);
  out->set_dir(d.dir);
  out->set_manifest_json(d.manifest_json);
  out->set_created_unix_ms(d.created_ms);
  out->set_ready_unix_ms(d.ready_ms);
  out->set_rows_train(d.rows_train);
  out->set_rows_eval(d.rows_eval);
  out->set_rows_prepared(d.rows_prepared);
}

// Many paths or features are a mistake or an attack, never a dataset.
constexpr int kMaxListItems = 1024;
}  // namespace

grpc::Status CoordinatorServiceImpl::AddDataset(grpc::ServerContext* ctx, const v1::AddDatasetRequest* req,
                                                v1::Dataset* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<DatasetRecord> r = [&]() -> absl::StatusOr<DatasetRecord> {
    if (req->paths_size() > kMaxListItems || req->features_size() > kMaxListItems) {
      return absl::ResourceExhaustedError(absl::StrCat("paths/features: at most ", kMaxListItems, " each"));
    }
    DatasetRecord d;
    d.name = req->name();
    d.paths.assign(req->paths().begin(), req->paths().end());
    if (!req->task().empty()) d.task = req->task();
    d.features.assign(req->features().begin(), req->features().end());
    if (req->shards() != 0) d.shards = req->shards();
    d.split_seed = req->split_seed();
    if (req->eval_fraction() != 0) d.eval_fraction = req->eval_fraction();
    return deps_.datasets->Add(std::move(d));
  }();
  deps_.audit->Record(caller, "AddDataset", req->name(), r.status());
  if (!r.ok()) return ToGrpc(r.status());
  ToProto(*r, resp);
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::GetDataset(grpc::ServerContext* ctx, const v1::GetDatasetRequest* req,
                                                v1::Dataset* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<DatasetRecord> r = deps_.datasets->Get(req->name());
  if (!r.ok()) return ToGrpc(r.status());
  ToProto(DatasetView(caller, *r), resp);
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::ListDatasets(grpc::ServerContext* ctx, const v1::ListDatasetsRequest*,
                                                  v1::ListDatasetsResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  for (const DatasetRecord& d : deps_.datasets->List()) ToProto(DatasetView(caller, d), resp->add_datasets());
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::RemoveDataset(grpc::ServerContext* ctx, const v1::RemoveDatasetRequest* req,
                                                   v1::Dataset* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<DatasetRecord> r = deps_.jobs->RemoveDataset(req->name());
  deps_.audit->Record(caller, "RemoveDataset", req->name(), r.status());
  if (!r.ok()) return ToGrpc(r.status());
  ToProto(*r, resp);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext* ctx, const v1::RegisterRequest* req,
                                         v1::RegisterResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (req->protocol_version() != kProtocolVersion) {
    // An old or newer worker may train or report under rules this
    // coordinator does not account for: it must not get a job.
    const absl::Status refused = absl::FailedPreconditionError(
        absl::StrCat("worker speaks protocol version ", req->protocol_version(), "; this coordinator (dpfleet ",
                     GetBuildInfo().version, ") speaks ", kProtocolVersion, ": run a worker of the same release"));
    deps_.audit->Record(caller, "Register", req->hostname(), refused);
    return ToGrpc(refused);
  }
  if (req->device().empty()) {
    const absl::Status bad = absl::InvalidArgumentError("device: must be cpu or cuda[:N]");
    deps_.audit->Record(caller, "Register", req->hostname(), bad);
    return ToGrpc(bad);
  }
  std::optional<RunningRun> running;
  if (!req->running_job_id().empty()) {
    running = RunningRun{req->running_job_id(), req->running_attempt(), req->running_rank()};
  }
  RegisterResult r = deps_.jobs->RegisterWorker(req->hostname(), req->device(), req->pid(), req->previous_worker_id(),
                                                running, caller.name);
  deps_.audit->Record(caller, "Register", absl::StrCat(r.worker_id, " on ", req->hostname()), absl::OkStatus());
  resp->set_worker_id(r.worker_id);
  resp->set_lease_ttl_ms(r.lease_ttl_ms);
  resp->set_heartbeat_interval_ms(r.heartbeat_interval_ms);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest* req,
                                          v1::HeartbeatResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (absl::Status s = CheckWorkerId(caller, deps_.jobs, req->worker_id()); !s.ok()) return ToGrpc(s);
  absl::StatusOr<HeartbeatResult> r = deps_.jobs->Heartbeat(req->worker_id(), req->job_id(), req->attempt());
  if (!r.ok()) return ToGrpc(r.status());
  resp->set_reregister(r->reregister);
  for (const Assignment& a : r->assignments) {
    v1::Assignment* out = resp->add_assignments();
    out->set_job_id(a.job_id);
    out->set_attempt(a.attempt);
    out->set_rank(a.rank);
    out->set_world_size(a.world_size);
    out->set_spec_yaml(a.spec_yaml);
    out->set_noise_multiplier(a.noise_multiplier);
    for (const std::string& p : a.data_paths) out->add_data_paths(p);
    out->set_shard_dir(a.shard_dir);
    out->set_start_epoch(a.start_epoch);
    out->set_split_key(a.split_key);
    if (a.audit) ToProto(*a.audit, out->mutable_audit());
  }
  for (const std::string& id : r->cancel_job_ids) resp->add_cancel_job_ids(id);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ChargeBudget(grpc::ServerContext* ctx, const v1::ChargeBudgetRequest* req,
                                             v1::ChargeBudgetResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (absl::Status s = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), req->rank()); !s.ok()) {
    return ToGrpc(s);
  }
  Mechanism mechanism = Mechanism::kTrain;
  switch (req->mechanism()) {
    case v1::MECHANISM_TRAIN:
      break;
    case v1::MECHANISM_EVAL:
      mechanism = Mechanism::kEval;
      break;
    default:
      return ToGrpc(absl::InvalidArgumentError(
          absl::StrCat("mechanism: ", req->mechanism(), " is not a known mechanism (train, eval)")));
  }
  absl::StatusOr<double> eps = deps_.jobs->Charge(req->job_id(), req->attempt(), req->rank(), req->epoch(),
                                                  req->steps(), req->sample_rate(), req->noise_multiplier(), mechanism);
  if (!eps.ok()) return ToGrpc(eps.status());
  resp->set_epsilon_after(*eps);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReportProgress(grpc::ServerContext* ctx, const v1::ProgressReport* req,
                                               v1::ProgressAck* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  absl::Status allowed = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), req->rank());
  if (allowed.ok()) allowed = CheckWorkerId(caller, deps_.jobs, req->worker_id());
  if (!allowed.ok()) return ToGrpc(allowed);
  absl::StatusOr<ProgressResult> r = deps_.jobs->ReportProgress(
      req->job_id(), req->attempt(), req->rank(), req->worker_id(), FromProto(req->metrics()), req->checkpoint());
  if (!r.ok()) return ToGrpc(r.status());
  resp->set_stop(r->stop);
  resp->set_reason(r->reason);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReportDone(grpc::ServerContext* ctx, const v1::DoneReport* req, v1::DoneAck*) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  absl::Status allowed = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), req->rank());
  if (allowed.ok()) allowed = CheckWorkerId(caller, deps_.jobs, req->worker_id());
  if (!allowed.ok()) return ToGrpc(allowed);
  // The analysts' text is composed here from fixed words (a stage the
  // vocabulary knows and a status code), never taken from the worker.
  std::string public_error;
  if (!req->success()) {
    const std::optional<log::RunStage> stage = log::ParseRunStage(req->error_stage());
    const int code = req->error_code();
    // kUnauthenticated is the highest code absl (and gRPC) define; anything
    // outside (0, it] is not a failure code a worker can have meant.
    const absl::StatusCode status_code = code > 0 && code <= static_cast<int>(absl::StatusCode::kUnauthenticated)
                                             ? static_cast<absl::StatusCode>(code)
                                             : absl::StatusCode::kUnknown;
    if (stage) public_error = log::PublicRunFailure(*stage, status_code);
  }
  return ToGrpc(deps_.jobs->ReportDone(req->job_id(), req->attempt(), req->rank(), req->worker_id(), req->success(),
                                       req->error(), public_error));
}

grpc::Status WorkerServiceImpl::RendezvousSet(grpc::ServerContext* ctx, const v1::RendezvousSetRequest* req,
                                              v1::RendezvousSetResponse*) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (absl::Status s = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), -1); !s.ok()) return ToGrpc(s);
  return ToGrpc(deps_.jobs->RendezvousSet(req->job_id(), req->attempt(), req->key(), req->value()));
}

namespace {

// One waiting rank. Finished exactly once, by whichever comes first: the
// key is published, the attempt ends (with JobManager's reason), the
// deadline's alarm fires, or the caller goes away. Nothing waits on a
// thread. What can outlive the reactor (the alarm and its callback, a
// broker callback racing a cancel) shares `State` and touches the reactor
// only on the one path that finishes it; gRPC deletes it (OnDone) after.
class RendezvousGetReactor final : public grpc::ServerUnaryReactor {
 public:
  // `max_wait_ms` caps the caller's timeout (every server-side wait has a
  // deadline).
  RendezvousGetReactor(JobManager* jobs, int64_t max_wait_ms, grpc::CallbackServerContext* ctx,
                       const v1::RendezvousGetRequest* req, v1::RendezvousGetResponse* resp)
      : state_(std::make_shared<State>()) {
    state_->jobs = jobs;
    state_->reactor = this;
    state_->response = resp;
    const int64_t timeout_ms = std::clamp<int64_t>(req->timeout_ms(), 0, max_wait_ms);
    const absl::Time deadline =
        std::min(absl::Now() + absl::Milliseconds(timeout_ms), absl::FromChrono(ctx->deadline()));
    state_->timeout =
        absl::DeadlineExceededError(absl::StrCat("rendezvous key '", req->key(), "' of job '", req->job_id(),
                                                 "' attempt ", req->attempt(), " was not published in time"));
    std::shared_ptr<State> state = state_;
    // gRPC keeps an alarm's callback for as long as the alarm exists, and
    // the alarm lives in State: a strong reference here would never go.
    std::weak_ptr<State> weak = state;
    state->alarm.Set(absl::ToChronoTime(deadline), [weak](bool fired) {
      std::shared_ptr<State> alive = weak.lock();
      if (fired && alive) Abandon(alive, alive->timeout);
    });
    absl::StatusOr<int64_t> id =
        jobs->RendezvousGetAsync(req->job_id(), req->attempt(), req->key(),
                                 [state](absl::StatusOr<std::string> value) { FinishOnce(state, std::move(value)); });
    if (!id.ok()) {
      FinishOnce(state, id.status());
      return;
    }
    std::optional<absl::Status> abandoned;
    {
      absl::MutexLock lock(&state->mu);
      state->waiter = *id;
      abandoned = state->abandoned;
    }
    // The deadline or a cancel came before the wait had its id.
    if (abandoned && *id != 0 && jobs->CancelRendezvousWait(*id)) FinishOnce(state, *abandoned);
  }

  void OnCancel() override { Abandon(state_, absl::CancelledError("the caller went away")); }
  void OnDone() override { delete this; }

 private:
  struct State {
    JobManager* jobs = nullptr;
    RendezvousGetReactor* reactor = nullptr;  // valid until it is finished
    v1::RendezvousGetResponse* response = nullptr;
    absl::Status timeout;
    grpc::Alarm alarm;
    absl::Mutex mu;
    bool finished ABSL_GUARDED_BY(mu) = false;
    int64_t waiter ABSL_GUARDED_BY(mu) = 0;  // 0 until the wait is registered
    // A deadline or cancel that came before `waiter` was known.
    std::optional<absl::Status> abandoned ABSL_GUARDED_BY(mu);
  };

  // Stops waiting with `why`, unless the answer is already on its way.
  static void Abandon(const std::shared_ptr<State>& state, const absl::Status& why) {
    int64_t waiter = 0;
    {
      absl::MutexLock lock(&state->mu);
      if (state->finished) return;
      waiter = state->waiter;
      if (waiter == 0) {
        state->abandoned = why;
        return;
      }
    }
    if (state->jobs->CancelRendezvousWait(waiter)) FinishOnce(state, why);
  }

  static void FinishOnce(const std::shared_ptr<State>& state, absl::StatusOr<std::string> value) {
    {
      absl::MutexLock lock(&state->mu);
      if (state->finished) return;
      state->finished = true;
    }
    state->alarm.Cancel();
    // Finish is the last touch of the reactor: gRPC may delete it at once.
    if (!value.ok()) {
      state->reactor->Finish(ToGrpc(value.status()));
      return;
    }
    state->response->set_value(*std::move(value));
    state->reactor->Finish(grpc::Status::OK);
  }

  const std::shared_ptr<State> state_;
};

}  // namespace

grpc::ServerUnaryReactor* WorkerServiceImpl::RendezvousGet(grpc::CallbackServerContext* ctx,
                                                           const v1::RendezvousGetRequest* req,
                                                           v1::RendezvousGetResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (absl::Status s = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), -1); !s.ok()) {
    grpc::ServerUnaryReactor* refused = ctx->DefaultReactor();
    refused->Finish(ToGrpc(s));
    return refused;
  }
  return new RendezvousGetReactor(deps_.jobs, deps_.gate->limits().max_wait_ms, ctx, req, resp);
}

grpc::Status WorkerServiceImpl::RendezvousAdd(grpc::ServerContext* ctx, const v1::RendezvousAddRequest* req,
                                              v1::RendezvousAddResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (absl::Status s = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), -1); !s.ok()) return ToGrpc(s);
  absl::StatusOr<int64_t> v = deps_.jobs->RendezvousAdd(req->job_id(), req->attempt(), req->key(), req->delta());
  if (!v.ok()) return ToGrpc(v.status());
  resp->set_value(*v);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::FetchShard(grpc::ServerContext* ctx, const v1::FetchShardRequest* req,
                                           v1::FetchShardResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (absl::Status s = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), req->rank()); !s.ok()) {
    return ToGrpc(s);
  }
  auto r =
      deps_.jobs->FetchShard(req->job_id(), req->attempt(), req->rank(), req->file(), req->offset(), req->max_bytes());
  if (!r.ok()) return ToGrpc(r.status());
  resp->set_data(std::move(r->first));
  resp->set_total_bytes(r->second);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::FetchCheckpoint(grpc::ServerContext* ctx, const v1::FetchCheckpointRequest* req,
                                                v1::FetchCheckpointResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (absl::Status s = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), req->rank()); !s.ok()) {
    return ToGrpc(s);
  }
  auto r = deps_.jobs->FetchCheckpoint(req->job_id(), req->attempt(), req->rank(), req->offset(), req->max_bytes());
  if (!r.ok()) return ToGrpc(r.status());
  resp->set_data(std::move(r->data));
  resp->set_total_bytes(r->total_bytes);
  resp->set_epoch(r->epoch);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::UploadModel(grpc::ServerContext* ctx, const v1::UploadModelRequest* req,
                                            v1::UploadModelResponse*) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (absl::Status s = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), req->rank()); !s.ok()) {
    return ToGrpc(s);
  }
  return ToGrpc(deps_.jobs->StoreModel(req->job_id(), req->attempt(), req->rank(), req->model()));
}

grpc::Status WorkerServiceImpl::ShipLogs(grpc::ServerContext* ctx, const v1::ShipLogsRequest* req,
                                         v1::ShipLogsResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (absl::Status s = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), req->rank()); !s.ok()) {
    return ToGrpc(s);
  }
  std::vector<LogLine> lines;
  lines.reserve(req->lines_size());
  for (const v1::JobLogLine& l : req->lines()) {
    LogLine line;
    line.level = static_cast<int32_t>(l.level());
    line.time_ms = l.time_unix_ms();
    line.message = l.message();
    lines.push_back(std::move(line));
  }
  absl::StatusOr<LogAppendResult> r =
      deps_.jobs->ShipLogs(req->job_id(), req->attempt(), req->rank(), std::move(lines), req->dropped_on_worker());
  if (!r.ok()) return ToGrpc(r.status());
  resp->set_stored(r->stored);
  resp->set_dropped(r->dropped);
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::GetJobLogs(grpc::ServerContext* ctx, const v1::GetJobLogsRequest* req,
                                                v1::GetJobLogsResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<JobRecord> job = deps_.jobs->Get(req->job_id());
  // The owner and custodians; for anyone else the job does not exist.
  if (job.ok()) {
    if (absl::Status s = CheckMayActOnJob(caller, *job); !s.ok()) job = s;
  }
  if (!job.ok()) return ToGrpc(job.status());
  LogQuery query;
  query.after_seq = req->after_seq();
  if (req->has_rank()) query.rank = req->rank();
  if (req->has_attempt()) query.attempt = req->attempt();
  query.limit = req->limit() > 0 ? std::min<int64_t>(req->limit(), 1000) : 1000;
  absl::StatusOr<JobManager::LogsView> view = deps_.jobs->ReadLogs(req->job_id(), query);
  if (!view.ok()) return ToGrpc(view.status());
  for (const LogLine& l : view->page.lines) {
    v1::JobLogLine* out = resp->add_lines();
    out->set_seq(l.seq);
    out->set_attempt(l.attempt);
    out->set_rank(l.rank);
    out->set_level(static_cast<v1::LogLevel>(l.level));
    out->set_time_unix_ms(l.time_ms);
    out->set_message(l.message);
  }
  resp->set_last_seq(view->page.last_seq);
  resp->set_dropped_lines(view->page.dropped_lines + view->page.worker_dropped);
  resp->set_dropped_bytes(view->page.dropped_bytes);
  resp->set_job_state(ToProto(view->state));
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::AuditJob(grpc::ServerContext* ctx, const v1::AuditJobRequest* req, v1::Job* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<JobRecord> run = [&]() -> absl::StatusOr<JobRecord> {
    AuditOrder order;
    RETURN_IF_ERROR(ParseAuditAttacks(req->attacks(), &order));
    if (req->shadow_models() != 0) order.shadow_models = req->shadow_models();
    if (req->canaries() != 0) order.canaries = req->canaries();
    if (req->max_challenge() != 0) order.max_challenge = req->max_challenge();
    if (req->has_baseline()) order.baseline = req->baseline();
    order.inversion_features.assign(req->inversion_features().begin(), req->inversion_features().end());
    return deps_.jobs->StartAudit(req->job_id(), std::move(order), caller.name);
  }();
  deps_.audit->Record(caller, "AuditJob", run.ok() ? run->job_id : req->job_id(), run.status());
  if (!run.ok()) return ToGrpc(run.status());
  ToProto(JobView(caller, *run), resp);
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::GetAudit(grpc::ServerContext* ctx, const v1::GetAuditRequest* req,
                                              v1::GetAuditResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<JobManager::AuditView> view = deps_.jobs->GetAudit(req->audit_id());
  if (!view.ok()) return ToGrpc(view.status());
  ToProto(JobView(caller, view->run), resp->mutable_run());
  if (view->report) {
    if (absl::Status s = AuditReportFromJson(*view->report, resp->mutable_report()); !s.ok()) return ToGrpc(s);
  }
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::FetchModel(grpc::ServerContext* ctx, const v1::FetchModelRequest* req,
                                           v1::FetchModelResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (absl::Status s = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), req->rank()); !s.ok()) {
    return ToGrpc(s);
  }
  auto r = deps_.jobs->FetchModel(req->job_id(), req->attempt(), req->rank(), req->offset(), req->max_bytes());
  if (!r.ok()) return ToGrpc(r.status());
  resp->set_data(std::move(r->data));
  resp->set_total_bytes(r->total_bytes);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReportAudit(grpc::ServerContext* ctx, const v1::ReportAuditRequest* req,
                                            v1::ReportAuditResponse*) {
  const Identity caller = deps_.gate->Caller(*ctx, true);
  if (absl::Status s = CheckRun(caller, deps_.jobs, req->job_id(), req->attempt(), req->rank()); !s.ok()) {
    return ToGrpc(s);
  }
  if (!req->has_report()) return ToGrpc(absl::InvalidArgumentError("report: missing"));
  return ToGrpc(deps_.jobs->ReportAudit(req->job_id(), req->attempt(), req->rank(), AuditReportJson(req->report())));
}

}  // namespace dpfleet::server
