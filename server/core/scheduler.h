// Scheduler: the placement policy, as one pure function on plain data.
//
// First fit in submission order over idle workers in registration order
// with a matching device. Ranks follow registration order, so a placement is
// deterministic: the same queue and the same fleet give the same ranks.
// First fit means a job that cannot fit does not block smaller ones behind
// it (it can be starved by a stream of small jobs; there is no reservation).
//
// It never reads a store, a clock or a lock and never changes a job or a
// worker: JobManager turns its placements into attempts and assignments.
#ifndef DPFLEET_SERVER_CORE_SCHEDULER_H_
#define DPFLEET_SERVER_CORE_SCHEDULER_H_

#include <cstdint>
#include <string>
#include <vector>

namespace dpfleet::server {

// A job waiting for workers.
struct QueuedJob {
  std::string job_id;
  int32_t world_size = 1;
  std::string device;  // the spec's resources.device: "cpu", "cuda" or "cuda:N"
};

// A worker free to take a rank.
struct IdleWorker {
  std::string worker_id;
  std::string device;
  int64_t registered_ms = 0;  // registration order, ties broken by id
};

// A job and the workers that run it, by rank.
struct Placement {
  std::string job_id;
  std::vector<std::string> worker_ids;
};

// Whether a worker with `worker_device` can serve a job that asks for
// `wanted`: "cuda" takes any CUDA device, anything else must match exactly.
bool DeviceMatches(const std::string& wanted, const std::string& worker_device);

// Places as many of `queued` (in submission order) as the idle workers
// allow, each worker at most once; jobs that do not fit are left out.
std::vector<Placement> PlaceJobs(const std::vector<QueuedJob>& queued, std::vector<IdleWorker> idle);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_SCHEDULER_H_
