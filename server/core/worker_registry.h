// WorkerRegistry: the workers a coordinator knows, their leases, and what
// each is owed on its next heartbeat (assignments to start, runs to stop).
//
// A worker is IDLE, BUSY with one run (job, attempt, rank) or LOST (its
// lease ran out). A BUSY worker stays BUSY until it confirms that its run
// ended (ReportDone, or a heartbeat that names no run once its assignment
// was delivered), so no new run lands on a process still training.
//
// Not thread-safe: it is part of the state JobManager changes atomically
// with its jobs (placing a job marks workers busy and the job RUNNING in one
// step), so JobManager's lock guards it. It never decides a job's state:
// when a lease runs out it reports the worker, and JobManager fails the run.
#ifndef DPFLEET_SERVER_CORE_WORKER_REGISTRY_H_
#define DPFLEET_SERVER_CORE_WORKER_REGISTRY_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "server/core/clock.h"
#include "server/core/scheduler.h"
#include "server/core/types.h"

namespace dpfleet::server {

struct HeartbeatResult {
  bool reregister = false;
  std::vector<Assignment> assignments;
  std::vector<std::string> cancel_job_ids;
};

class WorkerRegistry {
 public:
  WorkerRegistry(Clock* clock, int64_t lease_ttl_ms);

  // Adds an IDLE worker: under `previous_id` when no worker holds that id
  // (a worker re-attaching after a coordinator restart), else under a new
  // id. Its lease starts now. `identity` is what its certificate proves.
  const WorkerRecord& Register(const std::string& hostname, const std::string& device, int32_t pid,
                               const std::string& previous_id, const std::string& identity = "");
  // Marks a worker BUSY with a run it already has (a re-attach).
  void Attach(const std::string& worker_id, const std::string& job_id, int32_t attempt, int32_t rank);
  // Marks a worker BUSY with `a` and queues `a` for its next heartbeat.
  void Assign(const std::string& worker_id, const Assignment& a);
  // Queues "stop running job_id" for a worker's next heartbeat.
  void QueueCancel(const std::string& worker_id, const std::string& job_id);
  // Ends a run on the registry's side: its BUSY workers are told to stop
  // (they stay BUSY until they confirm) and undelivered assignments of the
  // job are withdrawn.
  void CancelRun(const std::string& job_id, int32_t attempt);
  // The worker says its run ended: IDLE again if it still held that run.
  void FinishRun(const std::string& worker_id, const std::string& job_id, int32_t attempt);

  // Renews the lease and hands over what is queued for the worker.
  // `reregister` for a worker that is unknown or LOST (it is forgotten).
  // `running_job_id` is the run the worker reports; a BUSY worker that
  // reports none and has nothing left to receive lost its run's end on the
  // way, and becomes IDLE: then `*freed` is set.
  HeartbeatResult Heartbeat(const std::string& worker_id, const std::string& running_job_id, bool* freed);

  // Workers whose lease ran out by `now_ms` and that are not LOST yet, in
  // id order.
  std::vector<std::string> ExpiredLeases(int64_t now_ms) const;
  // Marks a worker LOST; returns its record as it was before.
  WorkerRecord MarkLost(const std::string& worker_id);

  // nullptr for an unknown worker.
  const WorkerRecord* Find(const std::string& worker_id) const;
  // IDLE workers, for the scheduler.
  std::vector<IdleWorker> Idle() const;
  // Every worker in registration order.
  std::vector<WorkerRecord> List() const;

 private:
  Clock* const clock_;
  const int64_t lease_ttl_ms_;
  std::map<std::string, WorkerRecord> workers_;
  std::map<std::string, std::vector<Assignment>> pending_assignments_;
  std::map<std::string, std::vector<std::string>> pending_cancels_;
  int64_t next_worker_ = 1;
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_WORKER_REGISTRY_H_
