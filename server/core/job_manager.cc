#include "server/core/job_manager.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_format.h"
#include "common/privacy/accountant.h"
#include "common/spec/job_spec.h"
#include "common/pums/schema.h"
#include "common/pums/shards.h"
#include "common/status.h"

namespace dpfleet::server {
namespace {

// The most a chunk of a shard, checkpoint or model served over gRPC holds.
constexpr int64_t kMaxChunkBytes = 2 << 20;

std::string RendezvousKey(const std::string& job_id, int32_t attempt, const std::string& key) {
  return absl::StrCat(job_id, "/", attempt, "/", key);
}

bool DeviceMatches(const std::string& wanted, const std::string& worker_device) {
  if (wanted == "cuda") return worker_device.rfind("cuda", 0) == 0;
  return worker_device == wanted;
}

// The job's eval release schedule, as its spec's privacy.eval said.
EvalSpec EvalOf(const JobRecord& r) {
  EvalSpec e;
  e.enabled = r.eval_every > 0;
  e.every = r.eval_every;
  e.noise_multiplier = r.eval_noise_multiplier;
  return e;
}

// What a DP job still plans to spend: `train_epochs` epochs of DP-SGD and
// `eval_releases` eval releases (each the Gaussian mechanism: q 1, 1 step).
std::vector<privacy::SubsampledGaussian> PlannedMechanisms(const JobRecord& r, int64_t train_epochs,
                                                           int64_t eval_releases) {
  std::vector<privacy::SubsampledGaussian> plan;
  if (train_epochs > 0) plan.push_back({r.sample_rate, r.noise_multiplier, train_epochs * r.steps_per_epoch});
  if (eval_releases > 0 && r.eval_noise_multiplier > 0) plan.push_back({1.0, r.eval_noise_multiplier, eval_releases});
  return plan;
}

// A job's ε over the given ledger entries (all of its charges).
absl::StatusOr<double> EpsilonOf(const JobRecord& r, const std::vector<LedgerEntry>& entries) {
  if (!r.dp) return 0.0;
  std::vector<privacy::SubsampledGaussian> mechanisms;
  for (const LedgerEntry& e : entries) mechanisms.push_back({e.sample_rate, e.noise_multiplier, e.steps});
  ASSIGN_OR_RETURN(privacy::AccountantKind kind, privacy::ParseAccountantKind(r.accountant));
  return privacy::ComputeEpsilon(kind, mechanisms, r.delta);
}

}  // namespace

JobManager::JobManager(Store* store, DataResolver* data, Clock* clock, CoordinatorOptions options)
    : store_(store), data_(data), clock_(clock), options_(options) {}

absl::Status JobManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_->LoadJobs());
  ASSIGN_OR_RETURN(std::vector<BudgetRecord> budgets, store_->LoadBudgets());
  absl::MutexLock lock(&mu_);
  for (const BudgetRecord& b : budgets) budgets_[b.dataset] = b;
  const int64_t now = clock_->NowMs();
  for (JobRecord& r : jobs) {
    JobEntry entry;
    entry.dataset_key = DatasetKey(r.data_paths);
    if (r.state == JobState::kRunning) entry.reattach_deadline_ms = now + options_.lease_ttl_ms;
    entry.record = std::move(r);
    // A charge may have landed after the record was last written (crash
    // between charge and release): the ledger is the truth.
    ASSIGN_OR_RETURN(entry.record.epsilon, LedgerEpsilonLocked(entry));
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
  for (const auto& [id, listener] : listeners_) {
    if (listener.first == job->record.job_id) listener.second(&event);
  }
  // A state change ends the rendezvous waits of an attempt that is over.
  changed_.SignalAll();
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
  absl::Status s = store_->PutJob(r);
  if (IsTerminal(state) && s.ok()) s = store_->DeleteCheckpoints(r.job_id, std::numeric_limits<int32_t>::max());
  JobEvent ev;
  ev.type = JobEvent::Type::kState;
  ev.state = state;
  ev.reason = r.reason;
  PublishLocked(job, std::move(ev));
  return s;
}

absl::StatusOr<double> JobManager::LedgerEpsilonLocked(const JobEntry& job) {
  if (!job.record.dp) return 0.0;
  ASSIGN_OR_RETURN(std::vector<LedgerEntry> entries, store_->LedgerForJob(job.record.job_id));
  return EpsilonOf(job.record, entries);
}

absl::StatusOr<JobRecord> JobManager::Submit(const std::string& spec_yaml) {
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
    data_paths = d->paths;
    shard_dir = d->dir;
  } else {
    // Reading the data is slow; do it before taking the lock.
    ASSIGN_OR_RETURN(facts, data_->Resolve(spec));
  }
  const std::string dataset_key = DatasetKey(data_paths);
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
  r.name = spec.name;
  r.spec_yaml = spec_yaml;
  r.data_paths = data_paths;
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
  const int32_t eval_releases = EvalOf(r).Releases(r.epochs);
  if (spec.dp()) {
    if (spec.privacy.target_epsilon) {
      // sigma is calibrated so that training AND the eval releases meet the
      // target together.
      ASSIGN_OR_RETURN(privacy::AccountantKind kind, privacy::ParseAccountantKind(r.accountant));
      absl::StatusOr<double> sigma = privacy::CalibrateNoiseMultiplier(
          kind, *spec.privacy.target_epsilon, r.delta, r.sample_rate,
          r.steps_per_epoch * static_cast<int64_t>(r.epochs), PlannedMechanisms(r, 0, eval_releases));
      if (!sigma.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "privacy.target_epsilon: '", *spec.privacy.target_epsilon,
            "' cannot be met: ", sigma.status().message()));
      }
      r.noise_multiplier = *sigma;
    } else {
      r.noise_multiplier = spec.privacy.noise_multiplier.value_or(1.0);
    }
    // The total noise's multiplier: what every charge of the job uses, and
    // what a rank divides by sqrt(W) for its share. noise_split full makes
    // each share the spec's (or the calibrated) sigma.
    r.noise_multiplier = AccountedNoiseMultiplier(spec, r.noise_multiplier);
  }
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
  if (auto b = budgets_.find(dataset_key); b != budgets_.end()) {
    if (!r.dp) {
      return absl::FailedPreconditionError(absl::StrCat(
          "privacy.mode: 'none' cannot run on dataset ", dataset_key,
          ": it has a privacy budget and a non-private job has no finite epsilon"));
    }
    ASSIGN_OR_RETURN(BudgetView before, BudgetViewLocked(dataset_key, {}, {}));
    ASSIGN_OR_RETURN(BudgetView after,
                     BudgetViewLocked(dataset_key, {}, PlannedMechanisms(r, r.epochs, eval_releases)));
    if (after.committed > b->second.epsilon) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "dataset %s has a budget of epsilon %.6g (delta %.3g): %.6g is spent and %.6g committed by "
          "queued and running jobs; this job would bring the composed total to %.6g",
          dataset_key, b->second.epsilon, b->second.delta, before.spent, before.committed,
          after.committed));
    }
  }
  ASSIGN_OR_RETURN(r.job_id, store_->NextJobId());
  r.created_ms = clock_->NowMs();
  RETURN_IF_ERROR(store_->PutJob(r));
  JobEntry entry;
  entry.record = r;
  entry.dataset_key = dataset_key;
  job_order_.push_back(r.job_id);
  JobEntry* job = &jobs_.emplace(r.job_id, std::move(entry)).first->second;
  JobEvent ev;
  ev.type = JobEvent::Type::kState;
  ev.state = JobState::kQueued;
  PublishLocked(job, std::move(ev));
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

std::vector<WorkerRecord> JobManager::ListWorkers() {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerRecord> out;
  for (const auto& [id, w] : workers_) out.push_back(w);
  std::sort(out.begin(), out.end(), [](const WorkerRecord& a, const WorkerRecord& b) {
    return std::tie(a.registered_ms, a.worker_id) < std::tie(b.registered_ms, b.worker_id);
  });
  return out;
}

RegisterResult JobManager::RegisterWorker(const std::string& hostname, const std::string& device,
                                          int32_t pid, const std::string& previous_id,
                                          const std::optional<RunningRun>& running) {
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowMs();
  WorkerRecord w;
  if (!previous_id.empty() && !workers_.count(previous_id)) {
    w.worker_id = previous_id;  // re-attach after a coordinator restart
  } else {
    w.worker_id = absl::StrFormat("w-%x-%d", now & 0xffffff, next_worker_++);
  }
  w.hostname = hostname;
  w.device = device;
  w.pid = pid;
  w.registered_ms = now;
  w.last_heartbeat_ms = now;
  w.state = WorkerState::kIdle;
  if (running) {
    auto it = jobs_.find(running->job_id);
    const bool current = it != jobs_.end() && it->second.record.state == JobState::kRunning &&
                         it->second.record.attempt == running->attempt &&
                         running->rank < static_cast<int32_t>(it->second.record.worker_ids.size());
    if (current) {
      w.state = WorkerState::kBusy;
      w.job_id = running->job_id;
      w.attempt = running->attempt;
      w.rank = running->rank;
      it->second.record.worker_ids[running->rank] = w.worker_id;
    } else {
      // The run it still has is over; make it stop.
      pending_cancels_[w.worker_id].push_back(running->job_id);
    }
  }
  workers_[w.worker_id] = w;
  ScheduleLocked();
  return {w.worker_id, options_.lease_ttl_ms, options_.heartbeat_interval_ms};
}

absl::StatusOr<HeartbeatResult> JobManager::Heartbeat(const std::string& worker_id,
                                                      const std::string& job_id, int32_t attempt) {
  absl::MutexLock lock(&mu_);
  HeartbeatResult result;
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.state == WorkerState::kLost) {
    if (it != workers_.end()) workers_.erase(it);
    result.reregister = true;
    return result;
  }
  WorkerRecord& w = it->second;
  w.last_heartbeat_ms = clock_->NowMs();
  auto pa = pending_assignments_.find(worker_id);
  if (pa != pending_assignments_.end()) {
    result.assignments = std::move(pa->second);
    pending_assignments_.erase(pa);
  }
  auto pc = pending_cancels_.find(worker_id);
  if (pc != pending_cancels_.end()) {
    result.cancel_job_ids = std::move(pc->second);
    pending_cancels_.erase(pc);
  }
  if (job_id.empty() && w.state == WorkerState::kBusy && result.assignments.empty() &&
      !pending_assignments_.count(worker_id)) {
    // It has delivered its assignment and runs nothing: the run ended
    // without a ReportDone reaching us (e.g. lost on the network).
    w.state = WorkerState::kIdle;
    w.job_id.clear();
    ScheduleLocked();
  }
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
  if (epoch < 1 || epoch > r.epochs) {
    return absl::InvalidArgumentError(
        absl::StrCat("epoch ", epoch, " is outside 1..", r.epochs, " of job '", job_id, "'"));
  }
  const bool eval = mechanism == Mechanism::kEval;
  // The mechanism the coordinator's own parameters say this charge is; a
  // worker that disagrees is misconfigured and must not train or release.
  const int64_t want_steps = eval ? 1 : r.steps_per_epoch;
  const double want_q = eval ? 1.0 : r.sample_rate;
  const double want_sigma = eval ? r.eval_noise_multiplier : r.noise_multiplier;
  if (eval && (!r.dp || rank != 0 || !EvalOf(r).ReleasedAfter(epoch, r.epochs))) {
    const std::string why =
        !r.dp               ? "the job is not private (its metrics are exact, not a charged release)"
        : r.eval_every == 0 ? "the job releases no eval metrics (privacy.eval: none)"
        : rank != 0         ? "only rank 0 releases eval metrics"
                            : absl::StrCat("the job releases them after every epoch that is a multiple of ",
                                           r.eval_every, " and after the last");
    return absl::FailedPreconditionError(absl::StrCat("job '", job_id, "' has no eval release to charge after epoch ",
                                                      epoch, " from rank ", rank, ": ", why));
  }
  if (steps != want_steps || std::abs(sample_rate - want_q) > 1e-12 * want_q ||
      (r.dp && std::abs(noise_multiplier - want_sigma) > 1e-12 * want_sigma)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s charge for job '%s' epoch %d does not match the job: steps %d vs %d, q %.9g vs %.9g, "
        "sigma %.9g vs %.9g",
        MechanismName(mechanism), job_id, epoch, steps, want_steps, sample_rate, want_q, noise_multiplier,
        want_sigma));
  }
  LedgerEntry e;
  e.job_id = job_id;
  e.attempt = attempt;
  e.epoch = epoch;
  e.mechanism = mechanism;
  e.dataset = job->dataset_key;
  e.steps = want_steps;
  e.sample_rate = want_q;
  // A non-private epoch is recorded too, with sigma 0: the dataset has then
  // been used without a finite guarantee, and its budget view says so.
  e.noise_multiplier = r.dp ? want_sigma : 0.0;
  e.delta = r.delta;
  e.recorded_ms = clock_->NowMs();
  ASSIGN_OR_RETURN(std::vector<LedgerEntry> existing, store_->LedgerForJob(job_id));
  const bool retry = std::any_of(existing.begin(), existing.end(), [&](const LedgerEntry& x) {
    return x.attempt == attempt && x.epoch == epoch && x.mechanism == mechanism;
  });
  if (!retry) {
    if (auto b = budgets_.find(job->dataset_key); b != budgets_.end()) {
      // Submit reserved the whole plan; this guards anything outside it.
      ASSIGN_OR_RETURN(BudgetView after,
                       BudgetViewLocked(job->dataset_key, {{e.sample_rate, e.noise_multiplier, e.steps}}, {}));
      if (after.spent > b->second.epsilon) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "charging the %s of epoch %d of job '%s' would bring dataset %s to epsilon %.6g, over its budget %.6g",
            eval ? "eval release" : "training", epoch, job_id, job->dataset_key, after.spent, b->second.epsilon));
      }
    }
    ASSIGN_OR_RETURN(bool inserted, store_->Charge(e));
    (void)inserted;
    existing.push_back(e);
  }
  if (!r.dp) return 0.0;
  // The ledger as it now stands: what was read above plus this charge.
  ASSIGN_OR_RETURN(r.epsilon, EpsilonOf(r, existing));
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
  if (has_eval && r.eval_every == 0) {
    return absl::FailedPreconditionError(absl::StrCat("job '", job_id, "' releases no eval metrics (privacy.eval: none)"));
  }
  // Charge-before-release: refuse results whose privacy cost is not recorded.
  double epsilon = 0;
  if (r.dp) {
    ASSIGN_OR_RETURN(std::vector<LedgerEntry> entries, store_->LedgerForJob(job_id));
    auto charged = [&](Mechanism m) {
      return std::any_of(entries.begin(), entries.end(), [&](const LedgerEntry& e) {
        return e.attempt == attempt && e.epoch == metrics.epoch && e.mechanism == m;
      });
    };
    if (!charged(Mechanism::kTrain)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "epoch ", metrics.epoch, " of job '", job_id, "' was not charged to the privacy ledger"));
    }
    if (has_eval && !charged(Mechanism::kEval)) {
      return absl::FailedPreconditionError(absl::StrCat("the eval metrics of epoch ", metrics.epoch, " of job '",
                                                        job_id, "' were not charged to the privacy ledger"));
    }
    // The epoch's row carries the spend through this epoch; the job's total
    // also counts epochs other ranks have already charged ahead of it.
    std::vector<privacy::SubsampledGaussian> through_epoch;
    for (const LedgerEntry& e : entries) {
      if (e.attempt < attempt || e.epoch <= metrics.epoch) {
        through_epoch.push_back({e.sample_rate, e.noise_multiplier, e.steps});
      }
    }
    ASSIGN_OR_RETURN(privacy::AccountantKind kind, privacy::ParseAccountantKind(r.accountant));
    ASSIGN_OR_RETURN(epsilon, privacy::ComputeEpsilon(kind, through_epoch, r.delta));
    ASSIGN_OR_RETURN(r.epsilon, EpsilonOf(r, entries));
  }
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
  return ProgressResult{};
}

void JobManager::ReleaseAttemptLocked(JobEntry* job) {
  for (auto& [id, w] : workers_) {
    if (w.job_id == job->record.job_id && w.attempt == job->record.attempt &&
        w.state == WorkerState::kBusy) {
      // The worker stays BUSY until it confirms it stopped (ReportDone or a
      // heartbeat without the run), so no new job lands on a busy process.
      pending_cancels_[id].push_back(job->record.job_id);
    }
  }
  for (auto& [id, list] : pending_assignments_) {
    list.erase(std::remove_if(list.begin(), list.end(),
                              [&](const Assignment& a) { return a.job_id == job->record.job_id; }),
               list.end());
  }
  for (auto it = rendezvous_.begin(); it != rendezvous_.end();) {
    it = it->first.rfind(job->record.job_id + "/", 0) == 0 ? rendezvous_.erase(it) : std::next(it);
  }
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
  auto w = workers_.find(worker_id);
  if (w != workers_.end() && w->second.job_id == job_id && w->second.attempt == attempt) {
    w->second.state = WorkerState::kIdle;
    w->second.job_id.clear();
  }
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
  rendezvous_[RendezvousKey(job_id, attempt, key)] = value;
  changed_.SignalAll();
  return absl::OkStatus();
}

absl::StatusOr<int64_t> JobManager::RendezvousAdd(const std::string& job_id, int32_t attempt,
                                                  const std::string& key, int64_t delta) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  RETURN_IF_ERROR(CheckRunLocked(job, attempt, 0));
  std::string& v = rendezvous_[RendezvousKey(job_id, attempt, key)];
  int64_t current = 0;
  if (!v.empty() && !absl::SimpleAtoi(v, &current)) {
    return absl::FailedPreconditionError(absl::StrCat("rendezvous key '", key, "' is not a counter"));
  }
  current += delta;
  v = absl::StrCat(current);
  changed_.SignalAll();
  return current;
}

absl::StatusOr<std::string> JobManager::RendezvousGet(const std::string& job_id, int32_t attempt,
                                                      const std::string& key, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const std::string k = RendezvousKey(job_id, attempt, key);
  while (true) {
    ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
    RETURN_IF_ERROR(CheckRunLocked(job, attempt, 0));
    auto it = rendezvous_.find(k);
    if (it != rendezvous_.end()) return it->second;
    if (shutdown_) return absl::UnavailableError("coordinator is shutting down");
    if (changed_.WaitWithDeadline(&mu_, deadline)) {
      auto again = rendezvous_.find(k);
      if (again != rendezvous_.end()) return again->second;
      return absl::DeadlineExceededError(
          absl::StrCat("rendezvous key '", key, "' of job '", job_id, "' attempt ", attempt,
                       " was not published in time"));
    }
  }
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
  // First fit in submission order over idle workers in registration order:
  // deterministic rank assignment, no job waits behind one that cannot fit.
  std::vector<WorkerRecord*> idle;
  for (auto& [id, w] : workers_) {
    if (w.state == WorkerState::kIdle) idle.push_back(&w);
  }
  std::sort(idle.begin(), idle.end(), [](const WorkerRecord* a, const WorkerRecord* b) {
    return std::tie(a->registered_ms, a->worker_id) < std::tie(b->registered_ms, b->worker_id);
  });
  for (const std::string& id : job_order_) {
    JobEntry& job = jobs_.at(id);
    if (job.record.state != JobState::kQueued) continue;
    absl::StatusOr<JobSpec> spec = ParseJobSpec(job.record.spec_yaml);
    if (!spec.ok()) continue;  // validated at submit; unreachable
    std::vector<WorkerRecord*> chosen;
    for (WorkerRecord* w : idle) {
      if (w->state == WorkerState::kIdle && DeviceMatches(spec->resources.device, w->device)) {
        chosen.push_back(w);
        if (static_cast<int32_t>(chosen.size()) == job.record.world_size) break;
      }
    }
    if (static_cast<int32_t>(chosen.size()) < job.record.world_size) continue;
    JobRecord& r = job.record;
    r.attempt += 1;
    r.worker_ids.clear();
    for (std::size_t rank = 0; rank < chosen.size(); ++rank) {
      WorkerRecord* w = chosen[rank];
      w->state = WorkerState::kBusy;
      w->job_id = r.job_id;
      w->attempt = r.attempt;
      w->rank = static_cast<int32_t>(rank);
      r.worker_ids.push_back(w->worker_id);
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
      pending_assignments_[w->worker_id].push_back(a);
    }
    absl::Status s = TransitionLocked(&job, JobState::kRunning, "");
    if (!s.ok()) r.reason = std::string(s.message());
  }
}

void JobManager::Tick() {
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowMs();
  bool freed = false;
  for (auto& [id, w] : workers_) {
    if (w.state == WorkerState::kLost || now - w.last_heartbeat_ms <= options_.lease_ttl_ms) continue;
    const WorkerState before = w.state;
    w.state = WorkerState::kLost;
    freed = true;
    if (before != WorkerState::kBusy) continue;
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
      auto w = workers_.find(job.record.worker_ids[rank]);
      if (w == workers_.end() || w->second.job_id != id || w->second.attempt != job.record.attempt) {
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

absl::StatusOr<BudgetView> JobManager::BudgetViewLocked(
    const std::string& dataset, const std::vector<privacy::SubsampledGaussian>& extra_spent,
    const std::vector<privacy::SubsampledGaussian>& extra_planned) {
  BudgetView v;
  v.dataset = dataset;
  auto b = budgets_.find(dataset);
  v.has_budget = b != budgets_.end();
  ASSIGN_OR_RETURN(std::vector<LedgerEntry> entries, store_->LedgerForDataset(dataset));
  std::vector<privacy::SubsampledGaussian> spent = extra_spent;
  std::set<std::string> jobs;
  // Without a budget, state epsilon at the smallest delta any job asked for
  // (the largest epsilon among the natural choices).
  double delta = v.has_budget ? b->second.delta : 1.0;
  bool non_private = false;
  for (const LedgerEntry& e : entries) {
    if (e.noise_multiplier == 0) {
      non_private = true;  // a non-private epoch: no finite epsilon
      jobs.insert(e.job_id);
      continue;
    }
    spent.push_back({e.sample_rate, e.noise_multiplier, e.steps});
    jobs.insert(e.job_id);
    if (!v.has_budget) delta = std::min(delta, e.delta);
  }
  std::vector<privacy::SubsampledGaussian> committed = spent;
  committed.insert(committed.end(), extra_planned.begin(), extra_planned.end());
  for (const auto& [id, job] : jobs_) {
    const JobRecord& r = job.record;
    if (job.dataset_key != dataset || IsTerminal(r.state) || !r.dp) continue;
    int64_t charged = 0, evals_charged = 0;
    for (const LedgerEntry& e : entries) {
      if (e.job_id != id || e.attempt != r.attempt) continue;
      (e.mechanism == Mechanism::kEval ? evals_charged : charged) += 1;
    }
    const int64_t epochs_left = std::max<int64_t>(0, r.epochs - charged);
    const int64_t evals_left = std::max<int64_t>(0, EvalOf(r).Releases(r.epochs) - evals_charged);
    const std::vector<privacy::SubsampledGaussian> left = PlannedMechanisms(r, epochs_left, evals_left);
    if (!left.empty()) {
      committed.insert(committed.end(), left.begin(), left.end());
      jobs.insert(id);
      if (!v.has_budget) delta = std::min(delta, r.delta);
    }
  }
  if (delta >= 1.0) delta = 1e-5;  // nothing recorded: any delta gives epsilon 0
  v.delta = delta;
  v.jobs = static_cast<int32_t>(jobs.size());
  ASSIGN_OR_RETURN(v.spent, privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, spent, delta));
  ASSIGN_OR_RETURN(v.committed, privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, committed, delta));
  if (non_private) {
    v.spent = v.committed = std::numeric_limits<double>::infinity();
  }
  if (v.has_budget) {
    v.epsilon_budget = b->second.epsilon;
    v.remaining = std::max(0.0, v.epsilon_budget - v.committed);
  }
  return v;
}

absl::StatusOr<BudgetView> JobManager::SetBudget(const std::string& dataset, double epsilon, double delta) {
  if (dataset.empty()) return absl::InvalidArgumentError("dataset: must name the data (its path)");
  if (!(epsilon > 0) || !std::isfinite(epsilon)) {
    return absl::InvalidArgumentError(absl::StrCat("epsilon: '", epsilon, "' must be positive"));
  }
  if (!(delta > 0 && delta < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("delta: '", delta, "' must be in (0, 1)"));
  }
  const std::string key = DatasetKey(absl::StrSplit(dataset, '+'));
  absl::MutexLock lock(&mu_);
  BudgetRecord rec{key, epsilon, delta, clock_->NowMs()};
  std::optional<BudgetRecord> previous;
  if (auto it = budgets_.find(key); it != budgets_.end()) previous = it->second;
  budgets_[key] = rec;
  absl::StatusOr<BudgetView> view = BudgetViewLocked(key, {}, {});
  if (!view.ok() || view->committed > epsilon) {
    if (previous) {
      budgets_[key] = *previous;
    } else {
      budgets_.erase(key);
    }
    if (!view.ok()) return view.status();
    return absl::FailedPreconditionError(absl::StrFormat(
        "dataset %s already has epsilon %.6g spent or committed at delta %.3g; a budget of %.6g is below it",
        key, view->committed, delta, epsilon));
  }
  RETURN_IF_ERROR(store_->PutBudget(rec));
  return view;
}

absl::StatusOr<std::vector<BudgetView>> JobManager::GetBudgets(const std::string& dataset) {
  absl::MutexLock lock(&mu_);
  std::set<std::string> names;
  if (!dataset.empty()) {
    names.insert(DatasetKey(absl::StrSplit(dataset, '+')));
  } else {
    for (const auto& [k, b] : budgets_) names.insert(k);
    ASSIGN_OR_RETURN(std::vector<std::string> charged, store_->LedgerDatasets());
    names.insert(charged.begin(), charged.end());
  }
  std::vector<BudgetView> out;
  for (const std::string& n : names) {
    ASSIGN_OR_RETURN(BudgetView v, BudgetViewLocked(n, {}, {}));
    out.push_back(v);
  }
  return out;
}

void JobManager::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (!shutdown_) {
    for (const auto& [id, listener] : listeners_) listener.second(nullptr);
  }
  shutdown_ = true;
  changed_.SignalAll();
}

}  // namespace dpfleet::server
