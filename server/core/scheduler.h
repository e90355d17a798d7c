// Scheduler: the placement policy, as one pure function on plain data.
//
// First fit in submission order over idle workers in registration order
// with a matching device. Ranks follow registration order, so a placement is
// deterministic: the same queue and the same fleet give the same ranks.
// First fit means a job that cannot fit does not block smaller ones behind
// it (it can be starved by a stream of small jobs; there is no reservation).
//
// A job it does not start gets a pending reason naming the numbers that
// keep it waiting (PendingReason).
//
// It never reads a store, a clock or a lock and never changes a job or a
// worker: JobManager turns its placements into attempts and assignments.
#ifndef DPFLEET_SERVER_CORE_SCHEDULER_H_
#define DPFLEET_SERVER_CORE_SCHEDULER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dpfleet::server {

// A job waiting for workers.
struct QueuedJob {
  std::string job_id;
  int32_t world_size = 1;
  std::string device;  // the spec's resources.device: "cpu", "cuda" or "cuda:N"
  // A retried job (attempt > 0 failed before): its pending reason says so.
  int32_t attempt = 0;
  int32_t max_attempts = 1;
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

// A worker that is not lost: idle ones can take a rank, busy ones count as
// registered.
struct FleetWorker {
  std::string worker_id;
  std::string device;
  bool idle = true;
  int64_t registered_ms = 0;
};

// One scheduling pass: what starts, and why each job that does not start
// waits (job id -> reason).
struct SchedulePass {
  std::vector<Placement> placements;
  std::map<std::string, std::string> pending;
};

// Whether a worker with `worker_device` can serve a job that asks for
// `wanted`: "cuda" takes any CUDA device, anything else must match exactly.
bool DeviceMatches(const std::string& wanted, const std::string& worker_device);

// Places as many of `queued` (in submission order) as the idle workers
// allow, each worker at most once; jobs that do not fit are left out.
std::vector<Placement> PlaceJobs(const std::vector<QueuedJob>& queued, std::vector<IdleWorker> idle);

// PlaceJobs over the idle members of `fleet`, plus a pending reason for
// every queued job left out.
SchedulePass PlanJobs(const std::vector<QueuedJob>& queued, const std::vector<FleetWorker>& fleet);

// Why `job` waits, given the workers with a matching device: `registered`
// (not lost), `idle` at the start of the pass, and `left` of those after
// the jobs ahead of it in the queue were placed. Exact strings:
//   "no cuda worker registered"
//   "needs 4 cpu workers, 2 registered"
//   "no idle cuda worker (1 registered, all busy)"
//   "needs 4 cpu workers, 3 idle (5 registered)"
//   "needs 2 cpu workers, 1 left idle after the jobs ahead of it (3 idle)"
// prefixed with "waiting for a retry (attempt 2 of 3): " for a job whose
// earlier attempt failed.
std::string PendingReason(const QueuedJob& job, int registered, int idle, int left);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_SCHEDULER_H_
