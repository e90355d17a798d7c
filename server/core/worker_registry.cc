#include "server/core/worker_registry.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_format.h"

namespace dpfleet::server {

WorkerRegistry::WorkerRegistry(Clock* clock, int64_t lease_ttl_ms) : clock_(clock), lease_ttl_ms_(lease_ttl_ms) {}

const WorkerRecord& WorkerRegistry::Register(const std::string& hostname, const std::string& device, int32_t pid,
                                             const std::string& previous_id, const std::string& identity) {
  const int64_t now = clock_->NowMs();
  WorkerRecord w;
  if (!previous_id.empty() && !workers_.count(previous_id)) {
    w.worker_id = previous_id;  // re-attach after a coordinator restart
  } else {
    w.worker_id = absl::StrFormat("w-%x-%d", now & 0xffffff, next_worker_++);
  }
  w.hostname = hostname;
  w.identity = identity;
  w.device = device;
  w.pid = pid;
  w.registered_ms = now;
  w.last_heartbeat_ms = now;
  w.state = WorkerState::kIdle;
  WorkerRecord& stored = workers_[w.worker_id];
  stored = std::move(w);
  return stored;
}

void WorkerRegistry::Attach(const std::string& worker_id, const std::string& job_id, int32_t attempt, int32_t rank) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  WorkerRecord& w = it->second;
  w.state = WorkerState::kBusy;
  w.job_id = job_id;
  w.attempt = attempt;
  w.rank = rank;
}

void WorkerRegistry::Assign(const std::string& worker_id, const Assignment& a) {
  Attach(worker_id, a.job_id, a.attempt, a.rank);
  pending_assignments_[worker_id].push_back(a);
}

void WorkerRegistry::QueueCancel(const std::string& worker_id, const std::string& job_id) {
  pending_cancels_[worker_id].push_back(job_id);
}

void WorkerRegistry::CancelRun(const std::string& job_id, int32_t attempt) {
  for (auto& [id, w] : workers_) {
    if (w.job_id == job_id && w.attempt == attempt && w.state == WorkerState::kBusy) {
      // The worker stays BUSY until it confirms it stopped (ReportDone or a
      // heartbeat without the run), so no new job lands on a busy process.
      pending_cancels_[id].push_back(job_id);
    }
  }
  for (auto& [id, list] : pending_assignments_) {
    list.erase(std::remove_if(list.begin(), list.end(), [&](const Assignment& a) { return a.job_id == job_id; }),
               list.end());
  }
}

void WorkerRegistry::FinishRun(const std::string& worker_id, const std::string& job_id, int32_t attempt) {
  auto w = workers_.find(worker_id);
  if (w != workers_.end() && w->second.job_id == job_id && w->second.attempt == attempt) {
    w->second.state = WorkerState::kIdle;
    w->second.job_id.clear();
  }
}

HeartbeatResult WorkerRegistry::Heartbeat(const std::string& worker_id, const std::string& running_job_id,
                                          bool* freed) {
  *freed = false;
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
  if (running_job_id.empty() && w.state == WorkerState::kBusy && result.assignments.empty()) {
    // It has delivered its assignment and runs nothing: the run ended
    // without a ReportDone reaching us (e.g. lost on the network).
    w.state = WorkerState::kIdle;
    w.job_id.clear();
    *freed = true;
  }
  return result;
}

std::vector<std::string> WorkerRegistry::ExpiredLeases(int64_t now_ms) const {
  std::vector<std::string> expired;
  for (const auto& [id, w] : workers_) {
    if (w.state != WorkerState::kLost && now_ms - w.last_heartbeat_ms > lease_ttl_ms_) expired.push_back(id);
  }
  return expired;
}

WorkerRecord WorkerRegistry::MarkLost(const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return WorkerRecord{};
  WorkerRecord before = it->second;
  it->second.state = WorkerState::kLost;
  return before;
}

const WorkerRecord* WorkerRegistry::Find(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? nullptr : &it->second;
}

std::vector<IdleWorker> WorkerRegistry::Idle() const {
  std::vector<IdleWorker> idle;
  for (const auto& [id, w] : workers_) {
    if (w.state == WorkerState::kIdle) idle.push_back({id, w.device, w.registered_ms});
  }
  return idle;
}

std::vector<WorkerRecord> WorkerRegistry::List() const {
  std::vector<WorkerRecord> out;
  for (const auto& [id, w] : workers_) out.push_back(w);
  std::sort(out.begin(), out.end(), [](const WorkerRecord& a, const WorkerRecord& b) {
    return std::tie(a.registered_ms, a.worker_id) < std::tie(b.registered_ms, b.worker_id);
  });
  return out;
}

}  // namespace dpfleet::server
