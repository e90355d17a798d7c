#include "server/core/job_manager.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/pums/schema.h"
#include "common/pums/shards.h"
#include "common/spec/job_spec.h"
#include "common/status.h"
#include "server/core/scheduler.h"

namespace dpfleet::server {
namespace {

// The most a chunk of a shard, checkpoint or model served over gRPC holds.
constexpr int64_t kMaxChunkBytes = 2 << 20;

// `r` moved to `state`: the reason (when one is given: the whole text and
// what analysts see of it) and the clock of the move. Builds a new record;
// the caller stores it before anyone sees it.
JobRecord Transitioned(JobRecord r, JobState state, const std::string& reason, int64_t now,
                       const std::string& public_reason) {
  r.state = state;
  if (!reason.empty()) {
    r.reason = reason;
    r.public_reason = public_reason;
  }
  if (state == JobState::kRunning) r.started_ms = now;
  if (IsTerminal(state)) r.finished_ms = now;
  if (state != JobState::kQueued) r.pending_reason.clear();
  return r;
}

// Ends the record's current attempt (its last history entry) with `outcome`.
void EndCurrentAttempt(JobRecord* r, JobState outcome, const std::string& reason, const std::string& public_reason,
                       int64_t now) {
  if (r->attempts.empty() || r->attempts.back().attempt != r->attempt) return;
  AttemptRecord& a = r->attempts.back();
  if (a.outcome != JobState::kRunning) return;
  a.outcome = outcome;
  a.ended_ms = now;
  a.reason = reason;
  a.public_reason = public_reason;
}

}  // namespace

const char* const JobManager::kUnstatedFailure = "the run failed (the worker named no category)";

JobManager::JobManager(Store* store, DataResolver* data, Clock* clock, CoordinatorOptions options)
    : store_(store),
      data_(data),
      clock_(clock),
      options_(options),
      ledger_(store, clock),
      workers_(clock, options.lease_ttl_ms) {}

void JobManager::CacheSpecFacts(JobEntry* job) {
  absl::StatusOr<JobSpec> spec = ParseJobSpec(job->record.spec_yaml);
  // Validated at submit; a record whose spec no longer parses (written by
  // another release) is kept and shown, but never started again.
  job->schedulable = spec.ok();
  if (!spec.ok()) return;
  job->device = spec->resources.device;
  // An audit run has one attempt whatever the audited spec allows.
  job->max_attempts = job->record.audit ? 1 : spec->resources.max_attempts;
}

absl::Status JobManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_->LoadJobs());
  RETURN_IF_ERROR(ledger_.Recover());
  std::vector<JobEntry> entries;
  for (JobRecord& r : jobs) {
    JobEntry entry;
    if (!IsTerminal(r.state) && r.input_files.size() != r.data_paths.size()) {
      // Queued or running across the upgrade to content keys: its plan and
      // its charges from now on belong to its files' keys. Stored before
      // the job is in the table.
      ASSIGN_OR_RETURN(r.input_files, InputFilesOfOldJob(r));
      RETURN_IF_ERROR(store_->PutJob(r));
    }
    // A charge may have landed after the record was last written (crash
    // between charge and release, or a charge whose ε is never written
    // into the record): the ledger is the truth.
    ASSIGN_OR_RETURN(std::vector<LedgerEntry> rows, store_->LedgerForJob(r.job_id));
    ASSIGN_OR_RETURN(r.epsilon, Ledger::EpsilonOf(r, rows));
    entry.epsilon_rows = static_cast<int64_t>(rows.size());
    entry.record = std::move(r);
    CacheSpecFacts(&entry);
    entries.push_back(std::move(entry));
  }
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowMs();
  for (JobEntry& entry : entries) {
    if (entry.record.state == JobState::kRunning) {
      entry.reattach_deadline_ms = now + options_.lease_ttl_ms;
      // Ranks that re-attach may still publish and read keys.
      rendezvous_.OpenAttempt(entry.record.job_id, entry.record.attempt);
    }
    job_order_.push_back(entry.record.job_id);
    const std::string id = entry.record.job_id;
    jobs_.emplace(id, std::move(entry));
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

absl::StatusOr<JobManager::Subscription> JobManager::Subscribe(const std::string& job_id, EventListener listener) {
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

void JobManager::NoteEpsilon(JobEntry* job, double epsilon, int64_t rows) {
  // Rows are only ever added, so more rows is the newer ε; a charge and a
  // release that composed concurrently may arrive in either order.
  if (!job->record.dp || rows < job->epsilon_rows) return;
  job->record.epsilon = epsilon;
  job->epsilon_rows = rows;
}

absl::Status JobManager::Commit(JobEntry* job, JobCommit commit) {
  if (IsTerminal(commit.job.state)) commit.drop_checkpoints_below = JobCommit::kAllCheckpoints;
  RETURN_IF_ERROR(store_->CommitJob(commit));
  absl::MutexLock lock(&mu_);
  ApplyLocked(job, std::move(commit.job));
  return absl::OkStatus();
}

void JobManager::ApplyLocked(JobEntry* job, JobRecord next) {
  // A charge may have composed a newer ε since `next` was copied.
  next.epsilon = job->record.epsilon;
  const JobRecord prev = std::exchange(job->record, std::move(next));
  const JobRecord& r = job->record;
  const bool new_attempt = r.attempt != prev.attempt;
  if (prev.state == JobState::kRunning && (r.state != JobState::kRunning || new_attempt)) {
    workers_.CancelRun(r.job_id, prev.attempt);
    // Ranks still waiting for a key of the attempt get the error a call
    // made now would get (the job is CANCELLED, not RUNNING; ...).
    rendezvous_.DropJob(r.job_id, CheckRunLocked(job, prev.attempt, 0));
  }
  if (r.state == JobState::kRunning && (prev.state != JobState::kRunning || new_attempt)) {
    rendezvous_.OpenAttempt(r.job_id, r.attempt);
    for (std::size_t rank = 0; rank < r.worker_ids.size(); ++rank) {
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
      a.audit = r.audit;
      workers_.Assign(r.worker_ids[rank], a);
    }
  }
  if (r.state != JobState::kRunning || new_attempt) {
    job->reattach_deadline_ms = 0;
    job->pending_end.reset();
  }
  if (r.state != prev.state || new_attempt) {
    JobEvent ev;
    ev.type = JobEvent::Type::kState;
    ev.state = r.state;
    ev.reason = r.reason;
    ev.public_reason = r.public_reason;
    PublishLocked(job, std::move(ev));
    if (metrics_ != nullptr && IsTerminal(r.state)) metrics_->jobs_finished.Inc({JobStateName(r.state)});
  }
  for (std::size_t i = prev.history.size(); i < r.history.size(); ++i) {
    JobEvent ev;
    ev.type = JobEvent::Type::kEpoch;
    ev.state = r.state;
    ev.epoch = r.history[i];
    PublishLocked(job, std::move(ev));
    if (metrics_ != nullptr) {
      const EpochRecord& e = r.history[i];
      metrics_->epochs.Inc();
      metrics_->epoch_seconds.Observe(e.train_seconds);
      if (e.steps > 0) metrics_->step_seconds.Observe(e.train_seconds / static_cast<double>(e.steps));
    }
  }
}

std::vector<LivePlan> JobManager::LivePlansLocked() const {
  std::vector<LivePlan> live;
  for (const auto& [id, job] : jobs_) {
    const JobRecord& r = job.record;
    // Audit runs spend nothing (their report goes to custodians only).
    if (IsTerminal(r.state) || !r.dp || r.audit) continue;
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
      return absl::FailedPreconditionError(
          absl::StrCat("dataset: '", spec.dataset, "' is ", d->state, d->reason.empty() ? "" : ": " + d->reason));
    }
    if (spec.task != d->task) {
      return absl::InvalidArgumentError(absl::StrCat("task: '", spec.task, "' does not match dataset '", spec.dataset,
                                                     "', prepared for task '", d->task, "'"));
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
    return absl::InvalidArgumentError(
        absl::StrCat("training.batch_size: '", spec.training.batch_size, "' exceeds the ", facts.train_rows,
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
  r.steps_per_epoch =
      std::max<int64_t>(1, std::llround(static_cast<double>(facts.train_rows) / spec.training.batch_size));
  if (spec.privacy.eval.enabled) {
    r.eval_every = spec.privacy.eval.every;
    // A non-private job's metrics are exact (sigma_e 0): it has no finite
    // epsilon to protect.
    r.eval_noise_multiplier = spec.dp() ? spec.privacy.eval.noise_multiplier : 0.0;
  }
  // δ against the N the job trains on, before σ is calibrated to it.
  RETURN_IF_ERROR(Ledger::CheckDelta(spec, r.train_rows));
  ASSIGN_OR_RETURN(r.noise_multiplier, Ledger::NoiseMultiplierFor(spec, r));
  absl::MutexLock write(&write_mu_);
  if (!spec.dataset.empty()) {
    // RemoveDataset holds the writer lock too: the dataset is still the one
    // read above when the job is created, or the submission is refused.
    absl::StatusOr<DatasetRecord> d = datasets_->Get(spec.dataset);
    if (!d.ok() || d->dir != shard_dir || d->state != "READY") {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset: '", spec.dataset, "' was removed while the job was being submitted"));
    }
  }
  // The budget check and the job's creation happen under the writer lock,
  // which every change of a live plan takes: concurrent submissions cannot
  // together overshoot a budget.
  std::vector<LivePlan> live;
  {
    absl::MutexLock lock(&mu_);
    live = LivePlansLocked();
  }
  RETURN_IF_ERROR(ledger_.CheckSubmit(r, live));
  ASSIGN_OR_RETURN(r.job_id, store_->NextJobId());
  r.created_ms = clock_->NowMs();
  RETURN_IF_ERROR(store_->PutJob(r));
  JobEntry* job = nullptr;
  {
    absl::MutexLock lock(&mu_);
    JobEntry entry;
    entry.record = r;
    CacheSpecFacts(&entry);
    job_order_.push_back(r.job_id);
    job = &jobs_.emplace(r.job_id, std::move(entry)).first->second;
    JobEvent ev;
    ev.type = JobEvent::Type::kState;
    ev.state = JobState::kQueued;
    PublishLocked(job, std::move(ev));
    if (metrics_ != nullptr) metrics_->jobs_submitted.Inc({r.dp ? "dp" : "none"});
  }
  Schedule();
  absl::MutexLock lock(&mu_);
  return job->record;
}

absl::StatusOr<DatasetRecord> JobManager::RemoveDataset(const std::string& name) {
  if (datasets_ == nullptr) return absl::FailedPreconditionError("this coordinator has no datasets");
  // Submit takes the writer lock to create a job on a dataset: none can
  // appear between the check below and the removal.
  absl::MutexLock write(&write_mu_);
  ASSIGN_OR_RETURN(DatasetRecord d, datasets_->Get(name));
  std::vector<std::string> users;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& id : job_order_) {
      const JobRecord& r = jobs_.at(id).record;
      if (!IsTerminal(r.state) && r.shard_dir == d.dir) {
        users.push_back(absl::StrCat(id, " (", JobStateName(r.state), ")"));
      }
    }
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
  absl::MutexLock write(&write_mu_);
  JobEntry* job = nullptr;
  JobCommit commit;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(job, FindLocked(job_id));
    if (IsTerminal(job->record.state)) {
      return absl::FailedPreconditionError(
          absl::StrCat("job '", job_id, "' is already ", JobStateName(job->record.state), "; nothing to cancel"));
    }
    const int64_t now = clock_->NowMs();
    commit.job = Transitioned(job->record, JobState::kCancelled, "cancelled by user", now, "cancelled by user");
    EndCurrentAttempt(&commit.job, JobState::kCancelled, "cancelled by user", "cancelled by user", now);
  }
  RETURN_IF_ERROR(Annotate(Commit(job, std::move(commit)), absl::StrCat("job '", job_id, "' was not cancelled")));
  Schedule();
  absl::MutexLock lock(&mu_);
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

RegisterResult JobManager::RegisterWorker(const std::string& hostname, const std::string& device, int32_t pid,
                                          const std::string& previous_id, const std::optional<RunningRun>& running,
                                          const std::string& identity) {
  absl::MutexLock write(&write_mu_);
  std::string worker_id;
  JobEntry* rebind = nullptr;
  JobCommit commit;
  {
    absl::MutexLock lock(&mu_);
    worker_id = workers_.Register(hostname, device, pid, previous_id, identity).worker_id;
    if (running) {
      auto it = jobs_.find(running->job_id);
      // Only the identity that held the rank gets it back (records from
      // before worker identities name none).
      bool current = it != jobs_.end() && it->second.record.state == JobState::kRunning &&
                     it->second.record.attempt == running->attempt && running->rank >= 0 &&
                     running->rank < static_cast<int32_t>(it->second.record.worker_ids.size());
      if (current) {
        const std::vector<std::string>& held = it->second.record.worker_identities;
        if (running->rank < static_cast<int32_t>(held.size()) && held[running->rank] != identity) current = false;
      }
      if (current && it->second.record.worker_ids[running->rank] == worker_id) {
        workers_.Attach(worker_id, running->job_id, running->attempt, running->rank);
      } else if (current) {
        // The holder came back under a new worker id: the rank's new id is
        // stored before the worker is attached under it.
        rebind = &it->second;
        commit.job = it->second.record;
        commit.job.worker_ids[running->rank] = worker_id;
        if (!commit.job.attempts.empty() && commit.job.attempts.back().attempt == running->attempt &&
            running->rank < static_cast<int32_t>(commit.job.attempts.back().worker_ids.size())) {
          commit.job.attempts.back().worker_ids[running->rank] = worker_id;
        }
      } else {
        // The run it still has is over; make it stop.
        workers_.QueueCancel(worker_id, running->job_id);
      }
    }
  }
  if (rebind != nullptr) {
    // The writer lock is held: the attempt cannot end between the check
    // above and the attach below.
    const absl::Status s = Commit(rebind, std::move(commit));
    absl::MutexLock lock(&mu_);
    if (s.ok()) {
      workers_.Attach(worker_id, running->job_id, running->attempt, running->rank);
    } else {
      // Not attached under an id the disk does not know: the worker stops,
      // and the rank counts as missing when the reattach lease ends.
      background_errors_.Record(absl::StrCat("re-attaching worker ", worker_id, " to rank ", running->rank, " of job '",
                                             running->job_id, "'"),
                                s);
      workers_.QueueCancel(worker_id, running->job_id);
    }
  }
  Schedule();
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

absl::StatusOr<HeartbeatResult> JobManager::Heartbeat(const std::string& worker_id, const std::string& job_id,
                                                      int32_t attempt) {
  bool freed = false;
  HeartbeatResult result;
  {
    absl::MutexLock lock(&mu_);
    result = workers_.Heartbeat(worker_id, job_id, &freed);
    if (result.reregister) return result;
    // A worker still running a run that is over is told to stop again.
    if (!job_id.empty()) {
      auto j = jobs_.find(job_id);
      if (j == jobs_.end() || IsTerminal(j->second.record.state) || j->second.record.attempt != attempt) {
        if (std::find(result.cancel_job_ids.begin(), result.cancel_job_ids.end(), job_id) ==
            result.cancel_job_ids.end()) {
          result.cancel_job_ids.push_back(job_id);
        }
      }
    }
  }
  // A freed worker may start a queued job now; a heartbeat never waits for
  // a writer to get there, though: when one is busy the next Tick places it.
  if (freed && write_mu_.TryLock()) {
    Schedule();
    write_mu_.Unlock();
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
    return absl::FailedPreconditionError(
        absl::StrCat("job '", r.job_id, "' attempt ", attempt, " is stale; current attempt is ", r.attempt));
  }
  if (rank < 0 || rank >= r.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " is outside the job's world of ", r.world_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> JobManager::Charge(const std::string& job_id, int32_t attempt, int32_t rank, int32_t epoch,
                                          int64_t steps, double sample_rate, double noise_multiplier,
                                          Mechanism mechanism) {
  JobEntry* job = nullptr;
  JobRecord terms;
  ChargeResult charged;
  {
    // The run check and the durable charge are one step against attempt
    // changes, which take the writer lock too: no epoch of an attempt that
    // has just ended is charged as if it were current.
    absl::MutexLock write(&write_mu_);
    {
      absl::MutexLock lock(&mu_);
      ASSIGN_OR_RETURN(job, FindLocked(job_id));
      RETURN_IF_ERROR(CheckRunLocked(job, attempt, rank));
      if (job->record.audit) {
        // An audit run releases nothing to an analyst: it is never charged
        // (a charge would spend the audited data's budget for no release).
        return absl::FailedPreconditionError(
            absl::StrCat("job '", job_id, "' is an audit run; audit runs are never charged to the ledger"));
      }
      terms = job->record;
    }
    ASSIGN_OR_RETURN(charged,
                     ledger_.Charge(terms, attempt, rank, epoch, steps, sample_rate, noise_multiplier, mechanism));
  }
  if (!terms.dp) return 0.0;
  // The accountant composes the rows the charge just read, holding no lock.
  ASSIGN_OR_RETURN(const double epsilon, Ledger::EpsilonOf(terms, charged.rows));
  absl::MutexLock lock(&mu_);
  NoteEpsilon(job, epsilon, static_cast<int64_t>(charged.rows.size()));
  return epsilon;
}

std::optional<absl::StatusOr<ProgressResult>> JobManager::CheckProgressLocked(JobEntry* job, int32_t attempt,
                                                                              int32_t rank, int32_t epoch) {
  const JobRecord& r = job->record;
  if (r.state == JobState::kCancelled || r.attempt != attempt) {
    return ProgressResult{true, r.state == JobState::kCancelled ? "cancelled by user" : "attempt is stale"};
  }
  if (absl::Status s = CheckRunLocked(job, attempt, rank); !s.ok()) return s;
  if (r.audit) {
    return absl::FailedPreconditionError(absl::StrCat("job '", r.job_id, "' is an audit run; it has no epochs"));
  }
  if (rank != 0) return ProgressResult{};               // ranks hold identical models; rank 0 reports
  if (epoch <= r.epochs_done) return ProgressResult{};  // retried report
  if (epoch != r.epochs_done + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("epoch ", epoch, " reported out of order; ", r.epochs_done, " epochs done"));
  }
  return std::nullopt;
}

absl::StatusOr<ProgressResult> JobManager::ReportProgress(const std::string& job_id, int32_t attempt, int32_t rank,
                                                          const std::string& worker_id, const EpochRecord& metrics,
                                                          const std::string& checkpoint) {
  JobEntry* job = nullptr;
  JobRecord terms;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(job, FindLocked(job_id));
    if (auto answer = CheckProgressLocked(job, attempt, rank, metrics.epoch)) return *std::move(answer);
    terms = job->record;
  }
  const bool has_eval = metrics.has_eval();
  if (has_eval != metrics.eval_loss.has_value() || has_eval != metrics.eval_auc.has_value() ||
      has_eval != metrics.eval_balanced_accuracy.has_value() || has_eval != metrics.majority_rate.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("epoch ", metrics.epoch, " of job '", job_id,
                                                   "': eval metrics must be all present or all absent"));
  }
  // Charge-before-release: refuse results whose privacy cost (the epoch's
  // training and, with metrics, its eval release) is not recorded. The
  // ledger composes the ε to state (tens of ms with PLD) without any lock
  // of the manager's.
  ASSIGN_OR_RETURN(const ReleaseEpsilon released, ledger_.CheckRelease(terms, attempt, metrics.epoch, has_eval));
  absl::MutexLock write(&write_mu_);
  JobCommit commit;
  {
    absl::MutexLock lock(&mu_);
    // The job may have moved on while the accountant ran.
    if (auto answer = CheckProgressLocked(job, attempt, rank, metrics.epoch)) return *std::move(answer);
    commit.job = job->record;
  }
  EpochRecord rec = metrics;
  rec.epsilon = released.epoch;
  commit.job.history.push_back(rec);
  commit.job.epochs_done = metrics.epoch;
  if (commit.job.dp) commit.job.epsilon = released.job;
  // The state to resume from is stored with the epoch, and replaces the
  // one before it, in the same transaction.
  if (!checkpoint.empty()) {
    commit.checkpoint = checkpoint;
    commit.checkpoint_epoch = metrics.epoch;
    commit.drop_checkpoints_below = metrics.epoch;
  }
  RETURN_IF_ERROR(Annotate(Commit(job, std::move(commit)),
                           absl::StrCat("epoch ", metrics.epoch, " of job '", job_id, "' was not recorded")));
  absl::MutexLock lock(&mu_);
  NoteEpsilon(job, released.job, released.rows);
  return ProgressResult{};
}

JobRecord JobManager::EndedRecordLocked(const JobEntry& job, const PendingEnd& end) {
  const JobRecord& r = job.record;
  const int64_t now = clock_->NowMs();
  if (end.succeeded) {
    JobRecord next = Transitioned(r, JobState::kSucceeded, "", now, "");
    EndCurrentAttempt(&next, JobState::kSucceeded, "", "", now);
    return next;
  }
  const std::string& public_failure = end.public_failure.empty() ? end.failure : end.public_failure;
  if (r.attempt < job.max_attempts) {
    auto retried = [&](const std::string& failure) {
      return absl::StrCat("attempt ", r.attempt, " of ", job.max_attempts, " failed: ", failure,
                          "; queued to resume after epoch ", r.epochs_done);
    };
    JobRecord next = Transitioned(r, JobState::kQueued, retried(end.failure), now, retried(public_failure));
    next.worker_ids.clear();
    EndCurrentAttempt(&next, JobState::kFailed, end.failure, public_failure, now);
    return next;
  }
  auto final_reason = [&](const std::string& failure) {
    return job.max_attempts > 1 ? absl::StrCat(failure, " (attempt ", r.attempt, " of ", job.max_attempts, ")")
                                : failure;
  };
  JobRecord next = Transitioned(r, JobState::kFailed, final_reason(end.failure), now, final_reason(public_failure));
  EndCurrentAttempt(&next, JobState::kFailed, end.failure, public_failure, now);
  return next;
}

absl::Status JobManager::EndAttempt(JobEntry* job, const PendingEnd& end) {
  JobCommit commit;
  {
    absl::MutexLock lock(&mu_);
    if (job->record.state != JobState::kRunning || job->record.attempt != end.attempt) return absl::OkStatus();
    commit.job = EndedRecordLocked(*job, end);
  }
  absl::Status s = Commit(job, std::move(commit));
  if (!s.ok()) {
    absl::MutexLock lock(&mu_);
    // The first decided end stands; Tick stores it once the store works.
    if (!job->pending_end) job->pending_end = end;
  }
  return s;
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
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
    RETURN_IF_ERROR(CheckRunLocked(job, attempt, rank));
    const JobRecord& r = job->record;
    if (rank != 0) return absl::InvalidArgumentError("only rank 0 uploads the model");
    if (r.audit) {
      return absl::FailedPreconditionError(absl::StrCat("job '", job_id, "' is an audit run; it trains no model"));
    }
    if (r.epochs_done != r.epochs) {
      return absl::FailedPreconditionError(
          absl::StrCat("job '", job_id, "' has ", r.epochs_done, " of ", r.epochs, " epochs done; no model yet"));
    }
    if (model.empty()) return absl::InvalidArgumentError("the model is empty");
  }
  // Written without the job lock: the model is served only once the job
  // SUCCEEDED, which rank 0 reports after this returns.
  return store_->PutModel(job_id, model);
}

absl::StatusOr<Store::BlobChunk> JobManager::GetModel(const std::string& job_id, int64_t offset, int64_t max_bytes) {
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

absl::StatusOr<JobRecord> JobManager::StartAudit(const std::string& target, AuditOrder order,
                                                 const std::string& owner) {
  if (!order.membership && !order.inversion && !order.one_run) {
    return absl::InvalidArgumentError("attacks: an audit needs at least one of membership, inversion, one-run");
  }
  if (order.shadow_models < 1 || order.shadow_models > kMaxShadowModels) {
    return absl::InvalidArgumentError(absl::StrCat("shadow_models: '", order.shadow_models, "' must be in [1, ",
                                                   kMaxShadowModels, "] (each is a training run)"));
  }
  if (order.max_challenge < 1 || order.max_challenge > kMaxChallenge) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_challenge: '", order.max_challenge, "' must be in [1, ", kMaxChallenge, "]"));
  }
  if (order.one_run && (order.canaries < 2 || order.canaries > kMaxCanaries)) {
    return absl::InvalidArgumentError(
        absl::StrCat("canaries: '", order.canaries, "' must be in [2, ", kMaxCanaries, "]"));
  }
  JobRecord t;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobEntry * job, FindLocked(target));
    t = job->record;
    if (!job->schedulable) {
      return absl::FailedPreconditionError(
          absl::StrCat("job '", target, "': its spec does not parse in this release; it cannot be audited"));
    }
  }
  if (t.audit) {
    return absl::InvalidArgumentError(
        absl::StrCat("job '", target, "' is an audit run of '", t.audit->target, "'; audit that job instead"));
  }
  if (t.state != JobState::kSucceeded) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", target, "' is ", JobStateName(t.state), "; only a SUCCEEDED job has a model to audit"));
  }
  if (absl::StatusOr<Store::BlobChunk> model = store_->ReadModel(target, 0, 1); !model.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", target, "' has no stored model to audit: ", model.status().message()));
  }
  if (!t.dataset.empty()) {
    // The audit reads the data the job trained on: the same prepared shards.
    absl::StatusOr<DatasetRecord> d =
        datasets_ != nullptr ? datasets_->Get(t.dataset) : absl::NotFoundError("no datasets");
    if (!d.ok() || d->dir != t.shard_dir || d->state != "READY") {
      return absl::FailedPreconditionError(absl::StrCat("job '", target, "': dataset '", t.dataset,
                                                        "' it trained on is no longer registered as it was"));
    }
  }
  order.target = target;
  order.reported_epsilon = ReportedEpsilon(t);
  order.delta = t.delta;
  JobRecord r;
  r.owner = owner;
  r.name = absl::StrCat("audit of ", t.job_id);
  r.audit = std::move(order);
  // The audited job's spec and data, as stored: the audit trains shadow
  // and baseline models exactly as the job trained.
  r.spec_yaml = t.spec_yaml;
  r.data_paths = t.data_paths;
  r.dataset = t.dataset;
  r.shard_dir = t.shard_dir;
  r.input_files = t.input_files;
  r.noise_multiplier = t.noise_multiplier;
  r.accountant = t.accountant;
  r.sample_rate = t.sample_rate;
  r.steps_per_epoch = t.steps_per_epoch;
  r.train_rows = t.train_rows;
  // Spends nothing: no ε of its own, no plan, no charge (Charge refuses).
  r.dp = false;
  r.world_size = 1;
  absl::MutexLock write(&write_mu_);
  ASSIGN_OR_RETURN(r.job_id, store_->NextJobId());
  r.created_ms = clock_->NowMs();
  RETURN_IF_ERROR(store_->PutJob(r));
  JobEntry* job = nullptr;
  {
    absl::MutexLock lock(&mu_);
    JobEntry entry;
    entry.record = r;
    CacheSpecFacts(&entry);
    job_order_.push_back(r.job_id);
    job = &jobs_.emplace(r.job_id, std::move(entry)).first->second;
    JobEvent ev;
    ev.type = JobEvent::Type::kState;
    ev.state = JobState::kQueued;
    PublishLocked(job, std::move(ev));
  }
  Schedule();
  absl::MutexLock lock(&mu_);
  return job->record;
}

absl::StatusOr<JobManager::AuditView> JobManager::GetAudit(const std::string& audit_id) {
  AuditView view;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobEntry * job, FindLocked(audit_id));
    view.run = job->record;
  }
  if (!view.run.audit) return absl::InvalidArgumentError(absl::StrCat("job '", audit_id, "' is not an audit run"));
  if (view.run.state == JobState::kSucceeded) {
    ASSIGN_OR_RETURN(view.report, store_->ReadAuditReport(audit_id));
  }
  return view;
}

absl::StatusOr<Store::BlobChunk> JobManager::FetchModel(const std::string& job_id, int32_t attempt, int32_t rank,
                                                        int64_t offset, int64_t max_bytes) {
  std::string target;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
    RETURN_IF_ERROR(CheckRunLocked(job, attempt, rank));
    if (!job->record.audit) {
      return absl::PermissionDeniedError(
          absl::StrCat("job '", job_id, "' is not an audit run; only an audit run reads another job's model"));
    }
    target = job->record.audit->target;
  }
  return store_->ReadModel(target, offset, std::clamp<int64_t>(max_bytes, 1, kMaxChunkBytes));
}

absl::Status JobManager::ReportAudit(const std::string& job_id, int32_t attempt, int32_t rank,
                                     const std::string& report_json) {
  absl::MutexLock write(&write_mu_);
  JobEntry* job = nullptr;
  JobCommit commit;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(job, FindLocked(job_id));
    RETURN_IF_ERROR(CheckRunLocked(job, attempt, rank));
    if (!job->record.audit)
      return absl::FailedPreconditionError(absl::StrCat("job '", job_id, "' is not an audit run"));
    if (rank != 0) return absl::InvalidArgumentError("only rank 0 reports an audit");
    if (report_json.empty()) return absl::InvalidArgumentError("report: empty");
    commit.job = EndedRecordLocked(*job, PendingEnd{attempt, true, ""});
    commit.audit_report = report_json;
  }
  RETURN_IF_ERROR(
      Annotate(Commit(job, std::move(commit)), absl::StrCat("the audit report of job '", job_id, "' was not stored")));
  Schedule();
  return absl::OkStatus();
}

absl::Status JobManager::ReportDone(const std::string& job_id, int32_t attempt, int32_t rank,
                                    const std::string& worker_id, bool success, const std::string& error,
                                    const std::string& public_error) {
  absl::MutexLock write(&write_mu_);
  JobEntry* job = nullptr;
  std::optional<PendingEnd> end;
  {
    absl::MutexLock lock(&mu_);
    workers_.FinishRun(worker_id, job_id, attempt);
    ASSIGN_OR_RETURN(job, FindLocked(job_id));
    const JobRecord& r = job->record;
    if (r.state == JobState::kRunning && r.attempt == attempt) {
      if (!success) {
        const std::string who = absl::StrCat("rank ", rank, " (worker ", worker_id, "): ");
        end = PendingEnd{attempt, false, absl::StrCat(who, error),
                         absl::StrCat(who, public_error.empty() ? kUnstatedFailure : public_error)};
      } else if (rank == 0 && r.audit) {
        // ReportAudit ends a run that reported; this one did not.
        end = PendingEnd{attempt, false, "rank 0 finished without sending its audit report"};
      } else if (rank == 0) {
        end = r.epochs_done == r.epochs
                  ? PendingEnd{attempt, true, ""}
                  : PendingEnd{attempt, false,
                               absl::StrCat("rank 0 finished after ", r.epochs_done, " of ", r.epochs, " epochs")};
      }
    }
  }
  absl::Status s;
  if (end) {
    s = Annotate(EndAttempt(job, *end), absl::StrCat("the end of job '", job_id, "' attempt ", attempt,
                                                     " was not recorded (the coordinator retries)"));
  }
  Schedule();
  return s;
}

absl::Status JobManager::RendezvousSet(const std::string& job_id, int32_t attempt, const std::string& key,
                                       const std::string& value) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  RETURN_IF_ERROR(CheckRunLocked(job, attempt, 0));
  return rendezvous_.Set(job_id, attempt, key, value);
}

absl::StatusOr<int64_t> JobManager::RendezvousAdd(const std::string& job_id, int32_t attempt, const std::string& key,
                                                  int64_t delta) {
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

absl::StatusOr<int64_t> JobManager::RendezvousGetAsync(const std::string& job_id, int32_t attempt,
                                                       const std::string& key, RendezvousBroker::GetCallback done) {
  // The check and the wait's registration happen under mu_, which every end
  // of an attempt holds when it closes the rendezvous: a wait registered
  // here is answered by that close with its reason.
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  RETURN_IF_ERROR(CheckRunLocked(job, attempt, 0));
  return rendezvous_.GetAsync(job_id, attempt, key, std::move(done));
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

absl::StatusOr<LogAppendResult> JobManager::ShipLogs(const std::string& job_id, int32_t attempt, int32_t rank,
                                                     std::vector<LogLine> lines, int64_t dropped_on_worker) {
  if (static_cast<int64_t>(lines.size()) > kMaxLogBatchLines) {
    return absl::InvalidArgumentError(
        absl::StrCat("lines: ", lines.size(), " in one batch; at most ", kMaxLogBatchLines));
  }
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
    const JobRecord& r = job->record;
    // The last lines of an attempt arrive after it ended (the failure is
    // said last): any state, but only the current attempt's ranks.
    if (attempt != r.attempt) {
      return absl::FailedPreconditionError(
          absl::StrCat("job '", job_id, "' attempt ", attempt, " is stale; current attempt is ", r.attempt));
    }
    if (rank < 0 || rank >= r.world_size) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " is outside the job's world of ", r.world_size));
    }
  }
  for (std::size_t i = 0; i < lines.size(); ++i) {
    LogLine& l = lines[i];
    if (l.level < 1 || l.level > 4) {
      return absl::InvalidArgumentError(
          absl::StrCat("lines[", i, "].level: ", l.level, " is not a level (1 debug .. 4 error)"));
    }
    l.attempt = attempt;
    l.rank = rank;
    if (static_cast<int64_t>(l.message.size()) > kMaxLogLineBytes) {
      l.message.resize(kMaxLogLineBytes);
      l.message += " [cut]";
    }
  }
  if (lines.empty() && dropped_on_worker <= 0) return LogAppendResult{};
  return store_->AppendJobLogs(job_id, lines, options_.log_limits, dropped_on_worker);
}

absl::StatusOr<JobManager::LogsView> JobManager::ReadLogs(const std::string& job_id, const LogQuery& query) {
  LogsView view;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
    // Read before the lines: a terminal state seen here means every line
    // shipped before it ended is in the page (or a later one).
    view.state = job->record.state;
  }
  ASSIGN_OR_RETURN(view.page, store_->ReadJobLogs(job_id, query));
  return view;
}

void JobManager::Schedule() {
  std::vector<std::pair<JobEntry*, JobCommit>> starts;
  {
    absl::MutexLock lock(&mu_);
    std::vector<QueuedJob> queued;
    for (const std::string& id : job_order_) {
      JobEntry& job = jobs_.at(id);
      if (job.record.state != JobState::kQueued) continue;
      if (!job.schedulable) {
        job.record.pending_reason = "its spec does not parse in this release; it will not start";
        continue;
      }
      queued.push_back({id, job.record.world_size, job.device, job.record.attempt, job.max_attempts});
    }
    if (queued.empty()) return;
    const int64_t now = clock_->NowMs();
    std::vector<FleetWorker> fleet;
    for (const WorkerRecord& w : workers_.List()) {
      if (w.state == WorkerState::kLost) continue;
      fleet.push_back({w.worker_id, w.device, w.state == WorkerState::kIdle, w.registered_ms});
    }
    SchedulePass pass = PlanJobs(queued, fleet);
    // Pending reasons are in memory only (recomputed by every pass, which
    // runs whenever a job or a worker comes or goes), so no store write.
    for (auto& [id, why] : pass.pending) jobs_.at(id).record.pending_reason = std::move(why);
    for (const Placement& p : pass.placements) {
      JobEntry* job = &jobs_.at(p.job_id);
      JobCommit commit;
      commit.job = Transitioned(job->record, JobState::kRunning, "", now, "");
      commit.job.attempt += 1;
      commit.job.worker_ids = p.worker_ids;
      AttemptRecord started;
      started.attempt = commit.job.attempt;
      started.worker_ids = p.worker_ids;
      started.started_ms = now;
      commit.job.attempts.push_back(std::move(started));
      // By rank, the certificate identity that alone may speak for it.
      commit.job.worker_identities.clear();
      for (const std::string& w : p.worker_ids) {
        const WorkerRecord* rec = workers_.Find(w);
        commit.job.worker_identities.push_back(rec != nullptr ? rec->identity : "");
      }
      starts.emplace_back(job, std::move(commit));
    }
  }
  // Only the writer lock changes which workers are idle, so the placements
  // stay valid while they are stored one by one.
  for (auto& [job, commit] : starts) {
    const std::string what = absl::StrCat("starting job '", commit.job.job_id, "' attempt ", commit.job.attempt);
    if (absl::Status s = Commit(job, std::move(commit)); !s.ok()) background_errors_.Record(what, s);
  }
}

void JobManager::Tick() {
  absl::MutexLock write(&write_mu_);
  std::vector<std::pair<JobEntry*, PendingEnd>> ends;
  {
    absl::MutexLock lock(&mu_);
    const int64_t now = clock_->NowMs();
    // Ends decided earlier that the store refused go first: they stand.
    for (auto& [id, job] : jobs_) {
      if (job.pending_end) ends.emplace_back(&job, *job.pending_end);
    }
    for (const std::string& id : workers_.ExpiredLeases(now)) {
      const WorkerRecord w = workers_.MarkLost(id);
      if (w.state != WorkerState::kBusy) continue;
      auto j = jobs_.find(w.job_id);
      if (j == jobs_.end()) continue;
      JobEntry& job = j->second;
      if (job.record.state == JobState::kRunning && job.record.attempt == w.attempt) {
        ends.emplace_back(&job, PendingEnd{w.attempt, false,
                                           absl::StrFormat("worker %s (rank %d) lost: no heartbeat for %d ms", id,
                                                           w.rank, now - w.last_heartbeat_ms)});
      }
    }
    // After a coordinator restart, RUNNING jobs whose ranks did not come back.
    for (auto& [id, job] : jobs_) {
      if (job.record.state != JobState::kRunning || job.reattach_deadline_ms == 0 || now < job.reattach_deadline_ms) {
        continue;
      }
      job.reattach_deadline_ms = 0;
      std::vector<int> missing;
      for (int rank = 0; rank < static_cast<int>(job.record.worker_ids.size()); ++rank) {
        const WorkerRecord* w = workers_.Find(job.record.worker_ids[rank]);
        if (w == nullptr || w->job_id != id || w->attempt != job.record.attempt) missing.push_back(rank);
      }
      if (!missing.empty()) {
        ends.emplace_back(&job, PendingEnd{job.record.attempt, false,
                                           absl::StrCat("coordinator restarted and rank ", missing.front(),
                                                        " did not re-attach within the lease")});
      }
    }
  }
  for (auto& [job, end] : ends) {
    if (absl::Status s = EndAttempt(job, end); !s.ok()) {
      background_errors_.Record(absl::StrCat("ending attempt ", end.attempt, " of job '", job->record.job_id, "'"), s);
    }
  }
  Schedule();
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
    return absl::NotFoundError(
        absl::StrCat("dataset: '", argument, "' is not a registered dataset, and as a path: ", key.status().message()));
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
  // Naming may hash a file: done before any lock.
  ASSIGN_OR_RETURN(const std::vector<std::string> files, FilesNamed(argument, /*to_set=*/true));
  absl::StatusOr<std::vector<BudgetView>> views = [&] {
    // Live plans change only under the writer lock: the check against them
    // and the new budgets are one step.
    absl::MutexLock write(&write_mu_);
    std::vector<LivePlan> live;
    {
      absl::MutexLock lock(&mu_);
      live = LivePlansLocked();
    }
    return ledger_.SetBudget(files, epsilon, delta, live);
  }();
  return Named(std::move(views));
}

absl::StatusOr<std::vector<BudgetView>> JobManager::GetBudgets(const std::string& argument) {
  std::vector<std::string> files;
  if (!argument.empty()) {
    ASSIGN_OR_RETURN(files, FilesNamed(argument, /*to_set=*/false));
  }
  std::vector<LivePlan> live;
  {
    absl::MutexLock lock(&mu_);
    live = LivePlansLocked();
  }
  return Named(ledger_.GetBudgets(files, live));
}

absl::StatusOr<std::vector<LedgerListing>> JobManager::ListLedger(const std::string& argument) {
  ASSIGN_OR_RETURN(const std::vector<std::string> files, FilesNamed(argument, /*to_set=*/false));
  std::vector<LivePlan> live;
  {
    absl::MutexLock lock(&mu_);
    live = LivePlansLocked();
  }
  std::vector<LedgerListing> out;
  for (const std::string& f : files) {
    ASSIGN_OR_RETURN(LedgerListing l, ledger_.List(f, live));
    out.push_back(std::move(l));
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
