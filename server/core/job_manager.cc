#include "server/core/job_manager.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/spec/job_spec.h"
#include "common/pums/schema.h"
#include "common/pums/shards.h"
#include "common/status.h"
#include "server/core/scheduler.h"

namespace dpfleet::server {
namespace {

// The most a chunk of a shard, checkpoint or model served over gRPC holds.
constexpr int64_t kMaxChunkBytes = 2 << 20;

}  // namespace

JobManager::JobManager(Store* store, DataResolver* data, Clock* clock, CoordinatorOptions options)
    : store_(store),
      data_(data),
      clock_(clock),
      options_(options),
      ledger_(store, clock),
      workers_(clock, options.lease_ttl_ms) {}

absl::Status JobManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_->LoadJobs());
  RETURN_IF_ERROR(ledger_.Recover());
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowMs();
  for (JobRecord& r : jobs) {
    JobEntry entry;
    if (!IsTerminal(r.state) && r.input_files.size() != r.data_paths.size()) {
      // Queued or running across the upgrade to content keys: its plan and
      // its charges from now on belong to its files' keys. Stored before
      // the job is in the table.
      ASSIGN_OR_RETURN(r.input_files, InputFilesOfOldJob(r));
      RETURN_IF_ERROR(store_->PutJob(r));
    }
    if (r.state == JobState::kRunning) {
      entry.reattach_deadline_ms = now + options_.lease_ttl_ms;
      // Ranks that re-attach may still publish and read keys.
      rendezvous_.OpenAttempt(r.job_id, r.attempt);
    }
    entry.record = std::move(r);
    // A charge may have landed after the record was last written (crash
    // between charge and release): the ledger is the truth.
    ASSIGN_OR_RETURN(entry.record.epsilon, ledger_.JobEpsilon(entry.record));
    job_order_.push_back(entry.record.job_id);
    jobs_.emplace(entry.record.job_id, std::move(entry));
  }
  return absl::OkStatus();
}

absl::StatusOr<JobManager::JobEntry*> JobManager::FindLocked(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job '", job_id, "' not found"));
  return &it->second;
}

void JobManager::PublishLocked(JobEntry* job, JobEvent event) {
  event.seq = ++job->last_seq;
  event.dp = job->record.dp;
  for (const auto& [id, listener] : listeners_) {
    if (listener.first == job->record.job_id) listener.second(&event);
  }
}

absl::StatusOr<JobManager::Subscription> JobManager::Subscribe(const std::string& job_id,
                                                             EventListener listener) {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return absl::UnavailableError("coordinator is shutting down");
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  Subscription sub;
  sub.job = job->record;
  sub.seq = job->last_seq;
  sub.id = ++next_listener_;
  listeners_.emplace(sub.id, std::make_pair(job_id, std::move(listener)));
  return sub;
}

void JobManager::Unsubscribe(int64_t id) {
  absl::MutexLock lock(&mu_);
  listeners_.erase(id);
}

absl::Status JobManager::TransitionLocked(JobEntry* job, JobState state, const std::string& reason) {
  JobRecord& r = job->record;
  r.state = state;
  if (!reason.empty()) r.reason = reason;
  const int64_t now = clock_->NowMs();
  if (state == JobState::kRunning) r.started_ms = now;
  if (IsTerminal(state)) r.finished_ms = now;
  // Waits of an attempt that is over end here (Aborted; the caller then
  // says why), so no rank waits out its deadline for a dead attempt.
  if (state == JobState::kRunning) {
    rendezvous_.OpenAttempt(r.job_id, r.attempt);
  } else {
    rendezvous_.DropJob(r.job_id);
  }
  absl::Status s = store_->PutJob(r);
  if (IsTerminal(state) && s.ok()) s = store_->DeleteCheckpoints(r.job_id, std::numeric_limits<int32_t>::max());
  JobEvent ev;
  ev.type = JobEvent::Type::kState;
  ev.state = state;
  ev.reason = r.reason;
  PublishLocked(job, std::move(ev));
  if (metrics_ != nullptr && IsTerminal(state)) metrics_->jobs_finished.Inc({JobStateName(state)});
  return s;
}

std::vector<LivePlan> JobManager::LivePlansLocked() const {
  std::vector<LivePlan> live;
  for (const auto& [id, job] : jobs_) {
    const JobRecord& r = job.record;
    if (IsTerminal(r.state) || !r.dp) continue;
    live.push_back(PlanOf(r));
  }
  return live;
}

absl::StatusOr<JobRecord> JobManager::Submit(const std::string& spec_yaml, const std::string& owner) {
  ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(spec_yaml));
  DataFacts facts;
  std::vector<std::string> data_paths = spec.data_paths;
  std::string shard_dir;
  if (!spec.dataset.empty()) {
    if (datasets_ == nullptr) return absl::FailedPreconditionError("dataset: this coordinator has no datasets");
    absl::StatusOr<DatasetRecord> d = datasets_->Get(spec.dataset);
    if (!d.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("dataset: '", spec.dataset, "' is not registered"));
    }
    if (d->state != "READY") {
      return absl::FailedPreconditionError(absl::StrCat("dataset: '", spec.dataset, "' is ", d->state,
                                                        d->reason.empty() ? "" : ": " + d->reason));
    }
    if (spec.task != d->task) {
      return absl::InvalidArgumentError(absl::StrCat("task: '", spec.task, "' does not match dataset '",
                                                     spec.dataset, "', prepared for task '", d->task, "'"));
    }
    const std::vector<std::string> prepared = d->features.empty() ? data::DefaultFeatures() : d->features;
    if (!spec.features.empty() && spec.features != prepared) {
      return absl::InvalidArgumentError(absl::StrCat("features: must be omitted or equal dataset '", spec.dataset,
                                                     "''s features (", absl::StrJoin(prepared, ", "), ")"));
    }
    facts.train_rows = d->rows_train;
    facts.eval_rows = d->rows_eval;
    facts.input_files = d->input_files;
    data_paths = d->paths;
    shard_dir = d->dir;
  } else {
    // Reading the data is slow; do it before taking the lock.
    ASSIGN_OR_RETURN(facts, data_->Resolve(spec));
  }
  if (facts.train_rows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.path: '", data_paths[0], "' has no training records for task ", spec.task));
  }
  if (spec.training.batch_size > facts.train_rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "training.batch_size: '", spec.training.batch_size, "' exceeds the ", facts.train_rows,
        " training records of the data (the sampling rate B/N must be at most 1)"));
  }
  JobRecord r;
  r.owner = owner;
  r.name = spec.name;
  r.spec_yaml = spec_yaml;
  r.data_paths = data_paths;
  r.input_files = facts.input_files;
  r.dataset = spec.dataset;
  r.shard_dir = shard_dir;
  r.epochs = spec.training.epochs;
  r.dp = spec.dp();
  r.delta = spec.dp() ? spec.privacy.delta : 0;
  r.accountant = spec.privacy.accountant;
  r.train_rows = facts.train_rows;
  r.world_size = spec.resources.workers;
  r.sample_rate = static_cast<double>(spec.training.batch_size) / facts.train_rows;
  r.steps_per_epoch = std::max<int64_t>(
      1, std::llround(static_cast<double>(facts.train_rows) / spec.training.batch_size));
  if (spec.privacy.eval.enabled) {
    r.eval_every = spec.privacy.eval.every;
    // A non-private job's metrics are exact (sigma_e 0): it has no finite
    // epsilon to protect.
    r.eval_noise_multiplier = spec.dp() ? spec.privacy.eval.noise_multiplier : 0.0;
  }
  // δ against the N the job trains on, before σ is calibrated to it.
  RETURN_IF_ERROR(Ledger::CheckDelta(spec, r.train_rows));
  ASSIGN_OR_RETURN(r.noise_multiplier, Ledger::NoiseMultiplierFor(spec, r));
  absl::MutexLock lock(&mu_);
  if (!spec.dataset.empty()) {
    // RemoveDataset holds this lock too: the dataset is still the one read
    // above when the job is created, or the submission is refused.
    absl::StatusOr<DatasetRecord> d = datasets_->Get(spec.dataset);
    if (!d.ok() || d->dir != shard_dir || d->state != "READY") {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset: '", spec.dataset, "' was removed while the job was being submitted"));
    }
  }
  // The budget check and the job's creation happen under one lock, so
  // concurrent submissions cannot together overshoot a budget.
  RETURN_IF_ERROR(ledger_.CheckSubmit(r, LivePlansLocked()));
  ASSIGN_OR_RETURN(r.job_id, store_->NextJobId());
  r.created_ms = clock_->NowMs();
  RETURN_IF_ERROR(store_->PutJob(r));
  JobEntry entry;
  entry.record = r;
  job_order_.push_back(r.job_id);
  JobEntry* job = &jobs_.emplace(r.job_id, std::move(entry)).first->second;
  JobEvent ev;
  ev.type = JobEvent::Type::kState;
  ev.state = JobState::kQueued;
  PublishLocked(job, std::move(ev));
  if (metrics_ != nullptr) metrics_->jobs_submitted.Inc({r.dp ? "dp" : "none"});
  ScheduleLocked();
  return job->record;
}

absl::StatusOr<DatasetRecord> JobManager::RemoveDataset(const std::string& name) {
  absl::MutexLock lock(&mu_);
  if (datasets_ == nullptr) return absl::FailedPreconditionError("this coordinator has no datasets");
  ASSIGN_OR_RETURN(DatasetRecord d, datasets_->Get(name));
  std::vector<std::string> users;
  for (const std::string& id : job_order_) {
    const JobRecord& r = jobs_.at(id).record;
    if (!IsTerminal(r.state) && r.shard_dir == d.dir) users.push_back(absl::StrCat(id, " (", JobStateName(r.state), ")"));
  }
  if (!users.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("dataset '", name, "' is in use by ", absl::StrJoin(users, ", "),
                                                      "; cancel those jobs or let them finish first"));
  }
  return datasets_->Remove(name);
}

absl::StatusOr<JobRecord> JobManager::Get(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  return job->record;
}

std::vector<JobRecord> JobManager::List() {
  absl::MutexLock lock(&mu_);
  std::vector<JobRecord> out;
  for (const std::string& id : job_order_) out.push_back(jobs_.at(id).record);
  return out;
}

absl::StatusOr<JobRecord> JobManager::Cancel(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  if (IsTerminal(job->record.state)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", job_id, "' is already ", JobStateName(job->record.state), "; nothing to cancel"));
  }
  ReleaseAttemptLocked(job);
  RETURN_IF_ERROR(TransitionLocked(job, JobState::kCancelled, "cancelled by user"));
  ScheduleLocked();
  return job->record;
}

absl::StatusOr<int> JobManager::Ready() {
  RETURN_IF_ERROR(store_->Ping());
  absl::MutexLock lock(&mu_);
  if (shutdown_) return absl::UnavailableError("coordinator is shutting down");
  int live = 0;
  for (const WorkerRecord& w : workers_.List()) live += w.state != WorkerState::kLost;
  return live;
}

std::vector<WorkerRecord> JobManager::ListWorkers() {
  absl::MutexLock lock(&mu_);
  return workers_.List();
}

RegisterResult JobManager::RegisterWorker(const std::string& hostname, const std::string& device,
                                          int32_t pid, const std::string& previous_id,
                                          const std::optional<RunningRun>& running, const std::string& identity) {
  absl::MutexLock lock(&mu_);
  const std::string worker_id = workers_.Register(hostname, device, pid, previous_id, identity).worker_id;
  if (running) {
    auto it = jobs_.find(running->job_id);
    bool current = it != jobs_.end() && it->second.record.state == JobState::kRunning &&
                         it->second.record.attempt == running->attempt &&
                         running->rank < static_cast<int32_t>(it->second.record.worker_ids.size());
    // Only the worker that held the rank gets it back (records from before
    // worker identities name none).
    const std::vector<std::string>* held = current ? &it->second.record.worker_identities : nullptr;
    if (held != nullptr && running->rank < static_cast<int32_t>(held->size()) && (*held)[running->rank] != identity) {
      current = false;
    }
    if (current) {
      workers_.Attach(worker_id, running->job_id, running->attempt, running->rank);
      it->second.record.worker_ids[running->rank] = worker_id;
    } else {
      // The run it still has is over; make it stop.
      workers_.QueueCancel(worker_id, running->job_id);
    }
  }
  ScheduleLocked();
  return {worker_id, options_.lease_ttl_ms, options_.heartbeat_interval_ms};
}

bool JobManager::HoldsRun(const std::string& identity, const std::string& job_id, int32_t attempt, int32_t rank) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || it->second.record.attempt != attempt) return false;
  const std::vector<std::string>& held = it->second.record.worker_identities;
  if (rank < 0) return std::find(held.begin(), held.end(), identity) != held.end();
  return rank < static_cast<int32_t>(held.size()) && held[rank] == identity;
}

std::optional<std::string> JobManager::WorkerIdentity(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  const WorkerRecord* w = workers_.Find(worker_id);
  if (w == nullptr) return std::nullopt;
  return w->identity;
}

absl::StatusOr<HeartbeatResult> JobManager::Heartbeat(const std::string& worker_id,
                                                      const std::string& job_id, int32_t attempt) {
  absl::MutexLock lock(&mu_);
  bool freed = false;
  HeartbeatResult result = workers_.Heartbeat(worker_id, job_id, &freed);
  if (result.reregister) return result;
  if (freed) ScheduleLocked();
  // A worker still running a run that is over is told to stop again.
  if (!job_id.empty()) {
    auto j = jobs_.find(job_id);
    if (j == jobs_.end() || IsTerminal(j->second.record.state) ||
        j->second.record.attempt != attempt) {
      if (std::find(result.cancel_job_ids.begin(), result.cancel_job_ids.end(), job_id) ==
          result.cancel_job_ids.end()) {
        result.cancel_job_ids.push_back(job_id);
      }
    }
  }
  return result;
}

absl::Status JobManager::CheckRunLocked(JobEntry* job, int32_t attempt, int32_t rank) {
  const JobRecord& r = job->record;
  if (r.state != JobState::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", r.job_id, "' is ", JobStateName(r.state), ", not RUNNING"));
  }
  if (attempt != r.attempt) {
    return absl::FailedPreconditionError(absl::StrCat("job '", r.job_id, "' attempt ", attempt,
                                                      " is stale; current attempt is ", r.attempt));
  }
  if (rank < 0 || rank >= r.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " is outside the job's world of ", r.world_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> JobManager::Charge(const std::string& job_id, int32_t attempt, int32_t rank,
                                          int32_t epoch, int64_t steps, double sample_rate,
                                          double noise_multiplier, Mechanism mechanism) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  RETURN_IF_ERROR(CheckRunLocked(job, attempt, rank));
  JobRecord& r = job->record;
  ASSIGN_OR_RETURN(double epsilon,
                   ledger_.Charge(r, attempt, rank, epoch, steps, sample_rate, noise_multiplier, mechanism));
  if (!r.dp) return 0.0;
  r.epsilon = epsilon;
  RETURN_IF_ERROR(store_->PutJob(r));
  return r.epsilon;
}

absl::StatusOr<ProgressResult> JobManager::ReportProgress(const std::string& job_id,
                                                          int32_t attempt, int32_t rank,
                                                          const std::string& worker_id,
                                                          const EpochRecord& metrics,
                                                          const std::string& checkpoint) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  JobRecord& r = job->record;
  if (r.state == JobState::kCancelled || r.attempt != attempt) {
    return ProgressResult{true, r.state == JobState::kCancelled ? "cancelled by user"
                                                                 : "attempt is stale"};
  }
  RETURN_IF_ERROR(CheckRunLocked(job, attempt, rank));
  if (rank != 0) return ProgressResult{};  // ranks hold identical models; rank 0 reports
  if (metrics.epoch <= r.epochs_done) return ProgressResult{};  // retried report
  if (metrics.epoch != r.epochs_done + 1) {
    return absl::InvalidArgumentError(absl::StrCat("epoch ", metrics.epoch, " reported out of order; ",
                                                   r.epochs_done, " epochs done"));
  }
  const bool has_eval = metrics.has_eval();
  if (has_eval != metrics.eval_loss.has_value() || has_eval != metrics.eval_auc.has_value() ||
      has_eval != metrics.eval_balanced_accuracy.has_value() || has_eval != metrics.majority_rate.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("epoch ", metrics.epoch, " of job '", job_id,
                                                   "': eval metrics must be all present or all absent"));
  }
  // Charge-before-release: refuse results whose privacy cost is not recorded.
  ASSIGN_OR_RETURN(ReleaseEpsilon released, ledger_.CheckRelease(r, attempt, metrics.epoch, has_eval));
  const double epsilon = released.epoch;
  if (r.dp) r.epsilon = released.job;
  // The state to resume from is durable before the epoch counts as done.
  if (!checkpoint.empty()) RETURN_IF_ERROR(store_->PutCheckpoint(job_id, metrics.epoch, checkpoint));
  EpochRecord rec = metrics;
  rec.epsilon = epsilon;
  r.history.push_back(rec);
  r.epochs_done = metrics.epoch;
  RETURN_IF_ERROR(store_->PutJob(r));
  if (!checkpoint.empty()) RETURN_IF_ERROR(store_->DeleteCheckpoints(job_id, metrics.epoch));
  JobEvent ev;
  ev.type = JobEvent::Type::kEpoch;
  ev.state = r.state;
  ev.epoch = rec;
  PublishLocked(job, std::move(ev));
  if (metrics_ != nullptr) {
    metrics_->epochs.Inc();
    metrics_->epoch_seconds.Observe(rec.train_seconds);
    if (rec.steps > 0) metrics_->step_seconds.Observe(rec.train_seconds / static_cast<double>(rec.steps));
  }
  return ProgressResult{};
}

void JobManager::ReleaseAttemptLocked(JobEntry* job) {
  // Its rendezvous keys go with the transition that follows (TransitionLocked).
  workers_.CancelRun(job->record.job_id, job->record.attempt);
}

void JobManager::FailAttemptLocked(JobEntry* job, const std::string& reason) {
  ReleaseAttemptLocked(job);
  JobRecord& r = job->record;
  absl::StatusOr<JobSpec> spec = ParseJobSpec(r.spec_yaml);
  const int32_t max_attempts = spec.ok() ? spec->resources.max_attempts : 1;
  if (r.attempt < max_attempts) {
    r.worker_ids.clear();
    (void)TransitionLocked(job, JobState::kQueued,
                           absl::StrCat("attempt ", r.attempt, " of ", max_attempts, " failed: ", reason,
                                        "; queued to resume after epoch ", r.epochs_done));
    return;
  }
  (void)TransitionLocked(
      job, JobState::kFailed,
      max_attempts > 1 ? absl::StrCat(reason, " (attempt ", r.attempt, " of ", max_attempts, ")") : reason);
}

absl::StatusOr<JobManager::CheckpointChunk> JobManager::FetchCheckpoint(const std::string& job_id, int32_t attempt,
                                                                      int32_t rank, int64_t offset,
                                                                      int64_t max_bytes) {
  int32_t epoch = 0;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
    RETURN_IF_ERROR(CheckRunLocked(job, attempt, rank));
    epoch = job->record.epochs_done;
  }
  if (epoch == 0) return absl::NotFoundError(absl::StrCat("job '", job_id, "' has not finished an epoch"));
  ASSIGN_OR_RETURN(Store::BlobChunk chunk,
                   store_->ReadCheckpoint(job_id, epoch, offset, std::clamp<int64_t>(max_bytes, 1, kMaxChunkBytes)));
  return CheckpointChunk{std::move(chunk.data), chunk.total_bytes, epoch};
}

absl::Status JobManager::StoreModel(const std::string& job_id, int32_t attempt, int32_t rank,
                                    const std::string& model) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  RETURN_IF_ERROR(CheckRunLocked(job, attempt, rank));
  const JobRecord& r = job->record;
  if (rank != 0) return absl::InvalidArgumentError("only rank 0 uploads the model");
  if (r.epochs_done != r.epochs) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", job_id, "' has ", r.epochs_done, " of ", r.epochs, " epochs done; no model yet"));
  }
  if (model.empty()) return absl::InvalidArgumentError("the model is empty");
  return store_->PutModel(job_id, model);
}

absl::StatusOr<Store::BlobChunk> JobManager::GetModel(const std::string& job_id, int64_t offset,
                                                      int64_t max_bytes) {
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
    if (job->record.state != JobState::kSucceeded) {
      return absl::FailedPreconditionError(absl::StrCat("job '", job_id, "' is ", JobStateName(job->record.state),
                                                        "; only a SUCCEEDED job has a model"));
    }
  }
  return store_->ReadModel(job_id, offset, std::clamp<int64_t>(max_bytes, 1, kMaxChunkBytes));
}

absl::Status JobManager::ReportDone(const std::string& job_id, int32_t attempt, int32_t rank,
                                    const std::string& worker_id, bool success,
                                    const std::string& error) {
  absl::MutexLock lock(&mu_);
  workers_.FinishRun(worker_id, job_id, attempt);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  JobRecord& r = job->record;
  if (r.state == JobState::kRunning && r.attempt == attempt) {
    if (!success) {
      FailAttemptLocked(job, absl::StrCat("rank ", rank, " (worker ", worker_id, "): ", error));
    } else if (rank == 0) {
      if (r.epochs_done == r.epochs) {
        RETURN_IF_ERROR(TransitionLocked(job, JobState::kSucceeded, ""));
      } else {
        FailAttemptLocked(job, absl::StrCat("rank 0 finished after ", r.epochs_done, " of ", r.epochs, " epochs"));
      }
    }
  }
  ScheduleLocked();
  return absl::OkStatus();
}

absl::Status JobManager::RendezvousSet(const std::string& job_id, int32_t attempt,
                                       const std::string& key, const std::string& value) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  RETURN_IF_ERROR(CheckRunLocked(job, attempt, 0));
  return rendezvous_.Set(job_id, attempt, key, value);
}

absl::StatusOr<int64_t> JobManager::RendezvousAdd(const std::string& job_id, int32_t attempt,
                                                  const std::string& key, int64_t delta) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  RETURN_IF_ERROR(CheckRunLocked(job, attempt, 0));
  return rendezvous_.Add(job_id, attempt, key, delta);
}

absl::StatusOr<std::string> JobManager::RendezvousGet(const std::string& job_id, int32_t attempt,
                                                      const std::string& key, absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
    RETURN_IF_ERROR(CheckRunLocked(job, attempt, 0));
  }
  // The wait holds only the broker's lock: heartbeats and status reads go on.
  absl::StatusOr<std::string> value = rendezvous_.Get(job_id, attempt, key, deadline);
  if (!absl::IsAborted(value.status())) return value;
  // The attempt ended before the key came: say why, as a call made now would.
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  RETURN_IF_ERROR(CheckRunLocked(job, attempt, 0));
  return value;
}

absl::StatusOr<std::pair<std::string, int64_t>> JobManager::FetchShard(const std::string& job_id, int32_t attempt,
                                                                       int32_t rank, const std::string& file,
                                                                       int64_t offset, int64_t max_bytes) {
  std::string dir;
  int32_t world = 1;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
    RETURN_IF_ERROR(CheckRunLocked(job, attempt, rank));
    if (job->record.shard_dir.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("job '", job_id, "' reads raw files, not a dataset"));
    }
    dir = job->record.shard_dir;
    world = job->record.world_size;
  }
  ASSIGN_OR_RETURN(data::Manifest manifest, data::ReadManifest(dir));
  bool allowed = file == data::kManifestFile || (file == data::kEvalShardFile && rank == 0);
  for (const data::ShardInfo& s : manifest.train_shards) {
    if (s.file == file && s.index % world == rank) allowed = true;
  }
  if (!allowed) {
    return absl::PermissionDeniedError(
        absl::StrCat("'", file, "' is not a file of rank ", rank, " of job '", job_id, "'"));
  }
  std::ifstream in(absl::StrCat(dir, "/", file), std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("dataset file '", file, "' is missing on the coordinator"));
  in.seekg(0, std::ios::end);
  const int64_t total = in.tellg();
  if (offset < 0 || offset > total) {
    return absl::InvalidArgumentError(absl::StrCat("offset ", offset, " is outside '", file, "' (", total, " bytes)"));
  }
  const int64_t n = std::min<int64_t>(std::clamp<int64_t>(max_bytes, 1, kMaxChunkBytes), total - offset);
  std::string chunk(static_cast<size_t>(n), '\0');
  in.seekg(offset);
  in.read(chunk.data(), n);
  if (in.gcount() != n) return absl::DataLossError(absl::StrCat("short read of '", file, "'"));
  return std::make_pair(std::move(chunk), total);
}

void JobManager::ScheduleLocked() {
  std::vector<QueuedJob> queued;
  for (const std::string& id : job_order_) {
    const JobRecord& r = jobs_.at(id).record;
    if (r.state != JobState::kQueued) continue;
    absl::StatusOr<JobSpec> spec = ParseJobSpec(r.spec_yaml);
    if (!spec.ok()) continue;  // validated at submit; unreachable
    queued.push_back({id, r.world_size, spec->resources.device});
  }
  for (const Placement& p : PlaceJobs(queued, workers_.Idle())) {
    JobEntry& job = jobs_.at(p.job_id);
    JobRecord& r = job.record;
    r.attempt += 1;
    r.worker_ids.clear();
    r.worker_identities.clear();
    for (std::size_t rank = 0; rank < p.worker_ids.size(); ++rank) {
      r.worker_ids.push_back(p.worker_ids[rank]);
      const WorkerRecord* w = workers_.Find(p.worker_ids[rank]);
      r.worker_identities.push_back(w != nullptr ? w->identity : "");
      Assignment a;
      a.job_id = r.job_id;
      a.attempt = r.attempt;
      a.rank = static_cast<int32_t>(rank);
      a.world_size = r.world_size;
      a.spec_yaml = r.spec_yaml;
      a.noise_multiplier = r.noise_multiplier;
      a.data_paths = r.data_paths;
      a.shard_dir = r.shard_dir;
      a.start_epoch = r.epochs_done;
      // Raw files are split by the coordinator's key; a prepared dataset
      // carries its own split.
      if (r.shard_dir.empty()) a.split_key = options_.split_key;
      workers_.Assign(p.worker_ids[rank], a);
    }
    absl::Status s = TransitionLocked(&job, JobState::kRunning, "");
    if (!s.ok()) r.reason = std::string(s.message());
  }
}

void JobManager::Tick() {
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowMs();
  bool freed = false;
  for (const std::string& id : workers_.ExpiredLeases(now)) {
    const WorkerRecord w = workers_.MarkLost(id);
    freed = true;
    if (w.state != WorkerState::kBusy) continue;
    auto j = jobs_.find(w.job_id);
    if (j == jobs_.end()) continue;
    JobEntry& job = j->second;
    if (job.record.state == JobState::kRunning && job.record.attempt == w.attempt) {
      FailAttemptLocked(&job, absl::StrFormat("worker %s (rank %d) lost: no heartbeat for %d ms", id, w.rank,
                                              now - w.last_heartbeat_ms));
    }
  }
  // After a coordinator restart, RUNNING jobs whose ranks did not come back.
  for (auto& [id, job] : jobs_) {
    if (job.record.state != JobState::kRunning || job.reattach_deadline_ms == 0 ||
        now < job.reattach_deadline_ms) {
      continue;
    }
    job.reattach_deadline_ms = 0;
    std::vector<int> missing;
    for (int rank = 0; rank < static_cast<int>(job.record.worker_ids.size()); ++rank) {
      const WorkerRecord* w = workers_.Find(job.record.worker_ids[rank]);
      if (w == nullptr || w->job_id != id || w->attempt != job.record.attempt) {
        missing.push_back(rank);
      }
    }
    if (!missing.empty()) {
      FailAttemptLocked(&job, absl::StrCat("coordinator restarted and rank ", missing.front(),
                                           " did not re-attach within the lease"));
      freed = true;
    }
  }
  if (freed) ScheduleLocked();
}

absl::StatusOr<std::vector<std::string>> JobManager::InputFilesOfOldJob(const JobRecord& r) {
  // Charged already: the store's migration mapped those rows onto the
  // files, and later charges must land on the same keys.
  ASSIGN_OR_RETURN(std::vector<LedgerEntry> rows, store_->LedgerForJob(r.job_id));
  for (const LedgerEntry& e : rows) {
    if (e.files.size() == r.data_paths.size()) return e.files;
  }
  if (datasets_ != nullptr && !r.dataset.empty()) {
    absl::StatusOr<DatasetRecord> d = datasets_->Get(r.dataset);
    if (d.ok() && d->paths == r.data_paths) return d->input_files;
  }
  std::vector<std::string> files;
  for (const std::string& path : r.data_paths) {
    absl::StatusOr<std::string> key = data_->FileKey("data.path", path);
    files.push_back(key.ok() ? *key : LegacyPathKey(path));
  }
  return files;
}

absl::StatusOr<std::vector<std::string>> JobManager::FilesNamed(const std::string& argument, bool to_set) {
  if (argument.empty()) {
    return absl::InvalidArgumentError("dataset: must name a registered dataset, a data path or a file key");
  }
  if (datasets_ != nullptr) {
    if (absl::StatusOr<DatasetRecord> d = datasets_->Get(argument); d.ok()) return d->input_files;
  }
  const absl::Status unknown = absl::NotFoundError(absl::StrCat(
      "dataset: '", argument, "' names no registered dataset, no file under the coordinator's data roots and no ",
      to_set ? "existing file's key" : "file the ledger knows"));
  if (IsContentKey(argument) || IsLegacyKey(argument)) {
    ASSIGN_OR_RETURN(const bool known, store_->KnowsFile(argument));
    // A legacy key is a file gone before the upgrade: its rows can be
    // read, but a budget on it would protect nothing.
    if (!known || (to_set && IsLegacyKey(argument))) return unknown;
    return std::vector<std::string>{argument};
  }
  // One path (which may itself hold a '+'), or several '+'-joined as in
  // the ledger's old keys.
  if (absl::StatusOr<std::string> whole = data_->FileKey("dataset", argument); whole.ok()) {
    return std::vector<std::string>{*std::move(whole)};
  }
  std::vector<std::string> paths = absl::StrSplit(argument, '+', absl::SkipEmpty());
  std::vector<std::string> files;
  for (const std::string& path : paths) {
    absl::StatusOr<std::string> key = data_->FileKey("dataset", path);
    if (key.ok()) {
      files.push_back(*std::move(key));
      continue;
    }
    if (!to_set) {
      // Views by a path that cannot be read now (gone, or no longer under
      // the roots, e.g. a state directory restored elsewhere): the content
      // last seen there, then the key of rows kept from before the upgrade.
      // Only a custodian names paths (server/rpc/access.h).
      const std::string legacy = LegacyPathKey(path);
      ASSIGN_OR_RETURN(std::optional<std::string> seen,
                       store_->FileAtPath(legacy.substr(sizeof(kLegacyKeyPrefix) - 1)));
      if (seen) {
        files.push_back(*std::move(seen));
        continue;
      }
      ASSIGN_OR_RETURN(const bool known, store_->KnowsFile(legacy));
      if (known) {
        files.push_back(legacy);
        continue;
      }
    }
    return absl::NotFoundError(absl::StrCat("dataset: '", argument,
                                            "' is not a registered dataset, and as a path: ", key.status().message()));
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  return files;
}

absl::StatusOr<std::map<std::string, std::vector<std::string>>> JobManager::FileNames() {
  std::map<std::string, std::vector<std::string>> names;
  if (datasets_ != nullptr) {
    for (const DatasetRecord& d : datasets_->List()) {  // sorted by name
      for (const std::string& f : d.input_files) names[f].push_back(d.name);
    }
  }
  ASSIGN_OR_RETURN(auto paths, store_->FilePaths());
  for (auto& [file, held] : paths) {
    std::vector<std::string>& n = names[file];
    n.insert(n.end(), held.begin(), held.end());
  }
  return names;
}

absl::StatusOr<std::vector<BudgetView>> JobManager::Named(absl::StatusOr<std::vector<BudgetView>> views) {
  if (!views.ok()) return views;
  ASSIGN_OR_RETURN(auto names, FileNames());
  for (BudgetView& v : *views) {
    v.names = names[v.file];
    if (IsLegacyKey(v.file)) v.names.push_back(v.file.substr(sizeof(kLegacyKeyPrefix) - 1));
  }
  return views;
}

absl::StatusOr<std::vector<BudgetView>> JobManager::SetBudget(const std::string& argument, double epsilon,
                                                              double delta) {
  // Naming may hash a file: done before the lock.
  ASSIGN_OR_RETURN(const std::vector<std::string> files, FilesNamed(argument, /*to_set=*/true));
  absl::StatusOr<std::vector<BudgetView>> views = [&] {
    absl::MutexLock lock(&mu_);
    return ledger_.SetBudget(files, epsilon, delta, LivePlansLocked());
  }();
  return Named(std::move(views));
}

absl::StatusOr<std::vector<BudgetView>> JobManager::GetBudgets(const std::string& argument) {
  std::vector<std::string> files;
  if (!argument.empty()) {
    ASSIGN_OR_RETURN(files, FilesNamed(argument, /*to_set=*/false));
  }
  absl::StatusOr<std::vector<BudgetView>> views = [&] {
    absl::MutexLock lock(&mu_);
    return ledger_.GetBudgets(files, LivePlansLocked());
  }();
  return Named(std::move(views));
}

absl::StatusOr<std::vector<LedgerListing>> JobManager::ListLedger(const std::string& argument) {
  ASSIGN_OR_RETURN(const std::vector<std::string> files, FilesNamed(argument, /*to_set=*/false));
  std::vector<LedgerListing> out;
  {
    absl::MutexLock lock(&mu_);
    const std::vector<LivePlan> live = LivePlansLocked();
    for (const std::string& f : files) {
      ASSIGN_OR_RETURN(LedgerListing l, ledger_.List(f, live));
      out.push_back(std::move(l));
    }
  }
  ASSIGN_OR_RETURN(auto names, FileNames());
  for (LedgerListing& l : out) l.names = names[l.file];
  return out;
}

void JobManager::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (!shutdown_) {
    for (const auto& [id, listener] : listeners_) listener.second(nullptr);
  }
  shutdown_ = true;
  rendezvous_.Shutdown();
}

}  // namespace dpfleet::server
