#include "server/core/scheduler.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace dpfleet::server {

bool DeviceMatches(const std::string& wanted, const std::string& worker_device) {
  if (wanted == "cuda") return worker_device.rfind("cuda", 0) == 0;
  return worker_device == wanted;
}

std::vector<Placement> PlaceJobs(const std::vector<QueuedJob>& queued, std::vector<IdleWorker> idle) {
  std::vector<FleetWorker> fleet;
  for (IdleWorker& w : idle) fleet.push_back({std::move(w.worker_id), std::move(w.device), true, w.registered_ms});
  return PlanJobs(queued, fleet).placements;
}

std::string PendingReason(const QueuedJob& job, int registered, int idle, int left) {
  const std::string& dev = job.device;
  const int32_t n = job.world_size;
  const std::string workers = absl::StrCat(n, " ", dev, n == 1 ? " worker" : " workers");
  std::string why;
  if (registered == 0) {
    why = absl::StrCat("no ", dev, " worker registered");
  } else if (registered < n) {
    why = absl::StrCat("needs ", workers, ", ", registered, " registered");
  } else if (idle < n) {
    why = n == 1 ? absl::StrCat("no idle ", dev, " worker (", registered, " registered, all busy)")
                 : absl::StrCat("needs ", workers, ", ", idle, " idle (", registered, " registered)");
  } else {
    why = absl::StrCat("needs ", workers, ", ", left, " left idle after the jobs ahead of it (", idle, " idle)");
  }
  if (job.attempt > 0) {
    why = absl::StrCat("waiting for a retry (attempt ", job.attempt + 1, " of ", job.max_attempts, "): ", why);
  }
  return why;
}

SchedulePass PlanJobs(const std::vector<QueuedJob>& queued, const std::vector<FleetWorker>& fleet) {
  std::vector<FleetWorker> idle;
  for (const FleetWorker& w : fleet) {
    if (w.idle) idle.push_back(w);
  }
  std::sort(idle.begin(), idle.end(), [](const FleetWorker& a, const FleetWorker& b) {
    return std::tie(a.registered_ms, a.worker_id) < std::tie(b.registered_ms, b.worker_id);
  });
  std::vector<bool> taken(idle.size(), false);
  SchedulePass pass;
  std::vector<Placement>& placements = pass.placements;
  for (const QueuedJob& job : queued) {
    std::vector<std::size_t> chosen;
    for (std::size_t i = 0; i < idle.size(); ++i) {
      if (!taken[i] && DeviceMatches(job.device, idle[i].device)) {
        chosen.push_back(i);
        if (static_cast<int32_t>(chosen.size()) == job.world_size) break;
      }
    }
    if (static_cast<int32_t>(chosen.size()) < job.world_size) {
      int registered = 0, idle_matching = 0;
      for (const FleetWorker& w : fleet) {
        if (!DeviceMatches(job.device, w.device)) continue;
        ++registered;
        idle_matching += w.idle;
      }
      pass.pending[job.job_id] = PendingReason(job, registered, idle_matching, static_cast<int>(chosen.size()));
      continue;
    }
    Placement p;
    p.job_id = job.job_id;
    for (std::size_t i : chosen) {
      taken[i] = true;
      p.worker_ids.push_back(idle[i].worker_id);
    }
    placements.push_back(std::move(p));
  }
  return pass;
}

}  // namespace dpfleet::server
