#include "server/core/scheduler.h"

#include <algorithm>
#include <tuple>

namespace dpfleet::server {

bool DeviceMatches(const std::string& wanted, const std::string& worker_device) {
  if (wanted == "cuda") return worker_device.rfind("cuda", 0) == 0;
  return worker_device == wanted;
}

std::vector<Placement> PlaceJobs(const std::vector<QueuedJob>& queued, std::vector<IdleWorker> idle) {
  std::sort(idle.begin(), idle.end(), [](const IdleWorker& a, const IdleWorker& b) {
    return std::tie(a.registered_ms, a.worker_id) < std::tie(b.registered_ms, b.worker_id);
  });
  std::vector<bool> taken(idle.size(), false);
  std::vector<Placement> placements;
  for (const QueuedJob& job : queued) {
    std::vector<std::size_t> chosen;
    for (std::size_t i = 0; i < idle.size(); ++i) {
      if (!taken[i] && DeviceMatches(job.device, idle[i].device)) {
        chosen.push_back(i);
        if (static_cast<int32_t>(chosen.size()) == job.world_size) break;
      }
    }
    if (static_cast<int32_t>(chosen.size()) < job.world_size) continue;
    Placement p;
    p.job_id = job.job_id;
    for (std::size_t i : chosen) {
      taken[i] = true;
      p.worker_ids.push_back(idle[i].worker_id);
    }
    placements.push_back(std::move(p));
  }
  return placements;
}

}  // namespace dpfleet::server
