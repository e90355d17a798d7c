#include "server/core/job_manager.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/accountant.h"
#include "common/job_spec.h"
#include "common/status.h"

namespace dpfleet::server {
namespace {

std::string RendezvousKey(const std::string& job_id, int32_t attempt, const std::string& key) {
  return absl::StrCat(job_id, "/", attempt, "/", key);
}

bool DeviceMatches(const std::string& wanted, const std::string& worker_device) {
  if (wanted == "cuda") return worker_device.rfind("cuda", 0) == 0;
  return worker_device == wanted;
}

}  // namespace

JobManager::JobManager(Store* store, DataResolver* data, Clock* clock, CoordinatorOptions options)
    : store_(store), data_(data), clock_(clock), options_(options) {}

absl::Status JobManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_->LoadJobs());
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowMs();
  for (JobRecord& r : jobs) {
    JobEntry entry;
    for (std::size_t i = 0; i < r.data_paths.size(); ++i) {
      absl::StrAppend(&entry.dataset_key, i ? "+" : "", r.data_paths[i]);
    }
    if (r.state == JobState::kRunning) entry.reattach_deadline_ms = now + options_.lease_ttl_ms;
    entry.record = std::move(r);
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
  job->events.push_back(std::move(event));
  changed_.SignalAll();
}

absl::Status JobManager::TransitionLocked(JobEntry* job, JobState state, const std::string& reason) {
  JobRecord& r = job->record;
  r.state = state;
  if (!reason.empty()) r.reason = reason;
  const int64_t now = clock_->NowMs();
  if (state == JobState::kRunning) r.started_ms = now;
  if (IsTerminal(state)) r.finished_ms = now;
  absl::Status s = store_->PutJob(r);
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
  std::vector<privacy::SubsampledGaussian> mechanisms;
  for (const LedgerEntry& e : entries) {
    mechanisms.push_back({e.sample_rate, e.noise_multiplier, e.steps});
  }
  ASSIGN_OR_RETURN(privacy::AccountantKind kind, privacy::ParseAccountantKind(job.record.accountant));
  return privacy::ComputeEpsilon(kind, mechanisms, job.record.delta);
}

absl::StatusOr<JobRecord> JobManager::Submit(const std::string& spec_yaml) {
  ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(spec_yaml));
  // Reading the data is slow; do it before taking the lock.
  ASSIGN_OR_RETURN(DataFacts facts, data_->Resolve(spec));
  if (facts.train_rows < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.path: '", spec.data_paths[0], "' has no training records for task ",
                     spec.task));
  }
  if (spec.training.batch_size > facts.train_rows) {
    return absl::InvalidArgumentError(absl::StrCat(
        "training.batch_size: '", spec.training.batch_size, "' exceeds the ", facts.train_rows,
        " training records of the data (the sampling rate B/N must be at most 1)"));
  }
  JobRecord r;
  r.name = spec.name;
  r.spec_yaml = spec_yaml;
  r.data_paths = spec.data_paths;
  r.epochs = spec.training.epochs;
  r.dp = spec.dp();
  r.delta = spec.dp() ? spec.privacy.delta : 0;
  r.accountant = spec.privacy.accountant;
  r.train_rows = facts.train_rows;
  r.world_size = spec.resources.workers;
  r.sample_rate = static_cast<double>(spec.training.batch_size) / facts.train_rows;
  r.steps_per_epoch = std::max<int64_t>(
      1, std::llround(static_cast<double>(facts.train_rows) / spec.training.batch_size));
  if (spec.dp()) {
    if (spec.privacy.target_epsilon) {
      ASSIGN_OR_RETURN(privacy::AccountantKind kind, privacy::ParseAccountantKind(r.accountant));
      absl::StatusOr<double> sigma = privacy::CalibrateNoiseMultiplier(
          kind, *spec.privacy.target_epsilon, r.delta, r.sample_rate,
          r.steps_per_epoch * static_cast<int64_t>(r.epochs));
      if (!sigma.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "privacy.target_epsilon: '", *spec.privacy.target_epsilon,
            "' cannot be met: ", sigma.status().message()));
      }
      r.noise_multiplier = *sigma;
    } else {
      r.noise_multiplier = spec.privacy.noise_multiplier.value_or(1.0);
    }
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(r.job_id, store_->NextJobId());
  r.created_ms = clock_->NowMs();
  RETURN_IF_ERROR(store_->PutJob(r));
  JobEntry entry;
  entry.record = r;
  entry.dataset_key = facts.dataset_key;
  job_order_.push_back(r.job_id);
  JobEntry* job = &jobs_.emplace(r.job_id, std::move(entry)).first->second;
  JobEvent ev;
  ev.type = JobEvent::Type::kState;
  ev.state = JobState::kQueued;
  PublishLocked(job, std::move(ev));
  ScheduleLocked();
  return job->record;
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

absl::StatusOr<std::pair<JobRecord, int64_t>> JobManager::Snapshot(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  return std::make_pair(job->record, job->last_seq);
}

absl::StatusOr<std::vector<JobEvent>> JobManager::WaitEvents(const std::string& job_id,
                                                             int64_t after_seq,
                                                             absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  while (job->last_seq <= after_seq && !shutdown_) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) break;
  }
  std::vector<JobEvent> out;
  for (const JobEvent& e : job->events) {
    if (e.seq > after_seq) out.push_back(e);
  }
  return out;
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
                                          double noise_multiplier) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * job, FindLocked(job_id));
  RETURN_IF_ERROR(CheckRunLocked(job, attempt, rank));
  JobRecord& r = job->record;
  if (epoch < 1 || epoch > r.epochs) {
    return absl::InvalidArgumentError(
        absl::StrCat("epoch ", epoch, " is outside 1..", r.epochs, " of job '", job_id, "'"));
  }
  // The coordinator's own parameters are what is charged; a worker that
  // disagrees is misconfigured and must not train.
  if (steps != r.steps_per_epoch || std::abs(sample_rate - r.sample_rate) > 1e-12 * r.sample_rate ||
      (r.dp && std::abs(noise_multiplier - r.noise_multiplier) > 1e-12 * r.noise_multiplier)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "charge for job '%s' epoch %d does not match the job: steps %d vs %d, q %.9g vs %.9g, "
        "sigma %.9g vs %.9g",
        job_id, epoch, steps, r.steps_per_epoch, sample_rate, r.sample_rate, noise_multiplier,
        r.noise_multiplier));
  }
  if (!r.dp) return 0.0;
  LedgerEntry e;
  e.job_id = job_id;
  e.attempt = attempt;
  e.epoch = epoch;
  e.dataset = job->dataset_key;
  e.steps = steps;
  e.sample_rate = r.sample_rate;
  e.noise_multiplier = r.noise_multiplier;
  e.delta = r.delta;
  e.recorded_ms = clock_->NowMs();
  ASSIGN_OR_RETURN(bool inserted, store_->Charge(e));
  (void)inserted;  // a retried charge is already recorded
  return LedgerEpsilonLocked(*job);
}

absl::StatusOr<ProgressResult> JobManager::ReportProgress(const std::string& job_id,
                                                          int32_t attempt, int32_t rank,
                                                          const std::string& worker_id,
                                                          const EpochRecord& metrics) {
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
  // Charge-before-release: refuse results whose privacy cost is not recorded.
  double epsilon = 0;
  if (r.dp) {
    ASSIGN_OR_RETURN(std::vector<LedgerEntry> entries, store_->LedgerForJob(job_id));
    const bool charged = std::any_of(entries.begin(), entries.end(), [&](const LedgerEntry& e) {
      return e.attempt == attempt && e.epoch == metrics.epoch;
    });
    if (!charged) {
      return absl::FailedPreconditionError(absl::StrCat(
          "epoch ", metrics.epoch, " of job '", job_id, "' was not charged to the privacy ledger"));
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
    ASSIGN_OR_RETURN(r.epsilon, LedgerEpsilonLocked(*job));
  }
  EpochRecord rec = metrics;
  rec.epsilon = epsilon;
  r.history.push_back(rec);
  r.epochs_done = metrics.epoch;
  RETURN_IF_ERROR(store_->PutJob(r));
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
      ReleaseAttemptLocked(job);
      RETURN_IF_ERROR(TransitionLocked(
          job, JobState::kFailed, absl::StrCat("rank ", rank, " (worker ", worker_id, "): ", error)));
    } else if (rank == 0) {
      if (r.epochs_done == r.epochs) {
        RETURN_IF_ERROR(TransitionLocked(job, JobState::kSucceeded, ""));
      } else {
        ReleaseAttemptLocked(job);
        RETURN_IF_ERROR(TransitionLocked(
            job, JobState::kFailed,
            absl::StrCat("rank 0 finished after ", r.epochs_done, " of ", r.epochs, " epochs")));
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
      a.start_epoch = r.epochs_done;
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
      ReleaseAttemptLocked(&job);
      (void)TransitionLocked(&job, JobState::kFailed,
                             absl::StrFormat("worker %s (rank %d) lost: no heartbeat for %d ms",
                                             id, w.rank, now - w.last_heartbeat_ms));
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
      ReleaseAttemptLocked(&job);
      (void)TransitionLocked(&job, JobState::kFailed,
                             absl::StrCat("coordinator restarted and rank ", missing.front(),
                                          " did not re-attach within the lease"));
      freed = true;
    }
  }
  if (freed) ScheduleLocked();
}

void JobManager::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
  changed_.SignalAll();
}

}  // namespace dpfleet::server
