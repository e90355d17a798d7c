// JobManager: the coordinator's job state machine, and the one place that
// orchestrates the parts it is built from: the Ledger (every ε), the
// Scheduler (placement policy), the WorkerRegistry (leases, heartbeats,
// what each worker is owed) and the RendezvousBroker (per-attempt keys).
// Plain C++ with its store, data resolver and clock passed in; the gRPC and
// HTTP layers are thin adapters over it.
//
// Job states: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED (QUEUED may
// go straight to CANCELLED; RUNNING goes back to QUEUED when a failed
// attempt is retried). Every transition and every epoch is written to the
// store before it is published, so a restart loses neither.
//
// Privacy rule enforced here: an epoch's results are accepted only after its
// privacy cost is in the durable ledger (Charge before ReportProgress), and ε
// is always computed by the Ledger from its rows, never taken from a worker.
//
// Locking (docs/DESIGN.md, "Locking"): `mu_` guards the job table and the
// worker registry; the ledger and the rendezvous broker have their own
// locks, always taken after `mu_` or without it. A rendezvous wait holds
// only the broker's lock, never `mu_`.
#ifndef DPFLEET_SERVER_CORE_JOB_MANAGER_H_
#define DPFLEET_SERVER_CORE_JOB_MANAGER_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/clock.h"
#include "server/core/data_resolver.h"
#include "server/core/dataset_registry.h"
#include "server/core/ledger.h"
#include "server/core/metrics.h"
#include "server/core/rendezvous_broker.h"
#include "server/core/store.h"
#include "server/core/types.h"
#include "server/core/worker_registry.h"

namespace dpfleet::server {

struct CoordinatorOptions {
  // A worker whose last heartbeat is older than this is lost; its job fails.
  int64_t lease_ttl_ms = 10'000;
  int64_t heartbeat_interval_ms = 500;
  // The secret key of data.path jobs' train/eval split (Store::SplitKey);
  // handed to their ranks in the assignment, nowhere else.
  uint64_t split_key = 0;
};

struct RegisterResult {
  std::string worker_id;
  int64_t lease_ttl_ms = 0;
  int64_t heartbeat_interval_ms = 0;
};

struct ProgressResult {
  bool stop = false;
  std::string reason;
};

// What a re-registering worker says it is still running (after a
// coordinator restart).
struct RunningRun {
  std::string job_id;
  int32_t attempt = 0;
  int32_t rank = 0;
};

class JobManager {
 public:
  JobManager(Store* store, DataResolver* data, Clock* clock, CoordinatorOptions options);

  // Lets specs name registered datasets (`dataset: NAME`). Not owned.
  void set_datasets(DatasetRegistry* datasets) { datasets_ = datasets; }
  // Counters and histograms to update (submissions, epochs, ends); not
  // owned, may stay unset. Set before serving.
  void set_metrics(ServerMetrics* metrics) { metrics_ = metrics; }
  // Removes a registered dataset (DatasetRegistry::Remove) unless a queued
  // or running job uses it (FailedPrecondition naming the jobs). Its ledger
  // entries and budget stay: they are keyed by the raw files.
  absl::StatusOr<DatasetRecord> RemoveDataset(const std::string& name);

  // Loads jobs from the store. RUNNING jobs wait one lease for their workers
  // to re-register; after that they fail.
  absl::Status Recover();

  // --- Coordinator API ---
  // `owner` is recorded on the job (the submitting token's name).
  absl::StatusOr<JobRecord> Submit(const std::string& spec_yaml, const std::string& owner = "");
  absl::StatusOr<JobRecord> Get(const std::string& job_id);
  std::vector<JobRecord> List();
  absl::StatusOr<JobRecord> Cancel(const std::string& job_id);
  // Watching without a thread: `listener` gets every event of the job
  // published after the returned snapshot, in order, and nullptr once at
  // Shutdown. It runs on the publishing thread under the manager's lock, so
  // it must only queue and return — never call the JobManager. After
  // Unsubscribe returns it is never called again.
  using EventListener = std::function<void(const JobEvent*)>;
  struct Subscription {
    JobRecord job;
    int64_t seq = 0;  // the snapshot's last event
    int64_t id = 0;   // for Unsubscribe
  };
  absl::StatusOr<Subscription> Subscribe(const std::string& job_id, EventListener listener);
  void Unsubscribe(int64_t id);
  std::vector<WorkerRecord> ListWorkers();
  // Readiness: the store answers (Store::Ping, outside the lock) and the
  // coordinator is not shutting down; returns the number of live (not
  // lost) workers.
  absl::StatusOr<int> Ready();
  // Budgets and the ledger are per file (Ledger). `argument` names files:
  // a registered dataset (its files), a data path or several '+'-joined
  // (confined like data.path, identified by content), or a ledger key
  // ("sha256:...", or "path:..." for rows kept from a file gone before the
  // upgrade to content keys). A name that matches none is NotFound naming
  // it. Views (not SetBudget) also take a path the coordinator cannot read
  // now — a file gone, or a state directory restored under other roots — as
  // the content last seen there. Views carry the names that map to each
  // file.
  //
  // Gives each named file the total budget; FailedPrecondition if more is
  // committed on any of them (then none changes).
  absl::StatusOr<std::vector<BudgetView>> SetBudget(const std::string& argument, double epsilon, double delta);
  // The named files, or (empty argument) every file with a budget or a
  // ledger entry.
  absl::StatusOr<std::vector<BudgetView>> GetBudgets(const std::string& argument);
  // Every charge on each named file with its ε increment (Ledger::List).
  absl::StatusOr<std::vector<LedgerListing>> ListLedger(const std::string& argument);

  // --- Worker API ---
  // `identity` is what the worker's certificate proves; a run it claims
  // after a restart is given back only when that identity held the rank.
  RegisterResult RegisterWorker(const std::string& hostname, const std::string& device, int32_t pid,
                                const std::string& previous_id,
                                const std::optional<RunningRun>& running, const std::string& identity = "");
  // Whether the worker with certificate identity `identity` holds rank
  // `rank` (-1: any rank) of the current attempt of `job_id`.
  bool HoldsRun(const std::string& identity, const std::string& job_id, int32_t attempt, int32_t rank);
  // The identity a registered worker id is bound to; nullopt when unknown.
  std::optional<std::string> WorkerIdentity(const std::string& worker_id);
  absl::StatusOr<HeartbeatResult> Heartbeat(const std::string& worker_id, const std::string& job_id,
                                            int32_t attempt);
  // Durably records the privacy cost of `epoch` (idempotent); returns the
  // job's ε after it. Mechanism::kTrain: the epoch's DP-SGD steps, with the
  // job's q, σ and steps. Mechanism::kEval: the epoch's eval release (rank
  // 0, an epoch the job's privacy.eval releases after), with steps 1, q 1
  // and the job's σ_e. Anything else is refused and nothing is recorded.
  absl::StatusOr<double> Charge(const std::string& job_id, int32_t attempt, int32_t rank,
                                int32_t epoch, int64_t steps, double sample_rate,
                                double noise_multiplier, Mechanism mechanism = Mechanism::kTrain);
  // Rank 0's epoch results. Eval metrics (all present or all absent) are
  // refused unless the job releases them and, for a DP job, the epoch's
  // eval release is in the ledger. `checkpoint` (optional; jobs with
  // resources.max_attempts > 1 send it) is the training state after the
  // epoch; it is stored durably before the epoch counts as done, and a
  // retried attempt resumes from it.
  absl::StatusOr<ProgressResult> ReportProgress(const std::string& job_id, int32_t attempt,
                                                int32_t rank, const std::string& worker_id,
                                                const EpochRecord& metrics, const std::string& checkpoint = "");
  absl::Status ReportDone(const std::string& job_id, int32_t attempt, int32_t rank,
                          const std::string& worker_id, bool success, const std::string& error);
  absl::Status RendezvousSet(const std::string& job_id, int32_t attempt, const std::string& key,
                             const std::string& value);
  // Adds `delta` to the integer stored under key (0 if absent); returns the sum.
  absl::StatusOr<int64_t> RendezvousAdd(const std::string& job_id, int32_t attempt,
                                        const std::string& key, int64_t delta);
  absl::StatusOr<std::string> RendezvousGet(const std::string& job_id, int32_t attempt,
                                            const std::string& key, absl::Time deadline);

  // Reads a chunk of a file of the job's prepared dataset for `rank`;
  // PermissionDenied for a shard that is not the rank's own.
  absl::StatusOr<std::pair<std::string, int64_t>> FetchShard(const std::string& job_id, int32_t attempt,
                                                             int32_t rank, const std::string& file, int64_t offset,
                                                             int64_t max_bytes);

  // A chunk of the checkpoint the attempt resumes from (the state after
  // epoch `epochs_done`), for any rank of the current attempt: (bytes,
  // total size, epoch). NotFound when no epoch has finished.
  struct CheckpointChunk {
    std::string data;
    int64_t total_bytes = 0;
    int32_t epoch = 0;
  };
  absl::StatusOr<CheckpointChunk> FetchCheckpoint(const std::string& job_id, int32_t attempt, int32_t rank,
                                                  int64_t offset, int64_t max_bytes);

  // Rank 0's trained model after the job's last epoch (current attempt only).
  absl::Status StoreModel(const std::string& job_id, int32_t attempt, int32_t rank, const std::string& model);
  // A chunk of a SUCCEEDED job's model.
  absl::StatusOr<Store::BlobChunk> GetModel(const std::string& job_id, int64_t offset, int64_t max_bytes);

  // Blocks, without polling, until `n` RendezvousGet calls wait for the
  // key: lets tests and benchmarks act only once the waiters are parked.
  void AwaitRendezvousWaiters(const std::string& job_id, int32_t attempt, const std::string& key, int n) {
    rendezvous_.AwaitWaiters(job_id, attempt, key, n);
  }

  // Expires leases and reattach deadlines; the server calls it periodically.
  void Tick();
  // Wakes every waiter; later waits return at once.
  void Shutdown();

 private:
  struct JobEntry {
    JobRecord record;
    int64_t last_seq = 0;  // events are numbered per job; nothing keeps them
    int64_t reattach_deadline_ms = 0;  // after a restart, for RUNNING jobs
  };

  absl::StatusOr<JobEntry*> FindLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Persists, then publishes a state event. The attempt's rendezvous
  // opens when the job goes RUNNING and is dropped when it leaves RUNNING.
  absl::Status TransitionLocked(JobEntry* job, JobState state, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked(JobEntry* job, JobEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the current attempt: withdraws its undelivered assignments, tells
  // live ranks to stop.
  void ReleaseAttemptLocked(JobEntry* job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the current attempt as failed: back to QUEUED (resuming from the
  // last finished epoch) while the spec's resources.max_attempts allows,
  // else FAILED with `reason`.
  void FailAttemptLocked(JobEntry* job, const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckRunLocked(JobEntry* job, int32_t attempt, int32_t rank)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The plans of queued and running private jobs, for the ledger.
  std::vector<LivePlan> LivePlansLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The ledger keys of a job recorded before content keys: those its
  // migrated charges name, else its dataset's, else its paths' now (a path
  // that no longer resolves keeps LegacyPathKey).
  absl::StatusOr<std::vector<std::string>> InputFilesOfOldJob(const JobRecord& r);
  // The ledger keys a budget or ledger argument names (see SetBudget);
  // with `to_set`, an argument that names only a file gone before the
  // upgrade (a "path:" key, or its old path) is refused: a budget there
  // would protect nothing.
  absl::StatusOr<std::vector<std::string>> FilesNamed(const std::string& argument, bool to_set);
  // Ledger key -> the registered datasets that read it, then the paths
  // last seen holding it.
  absl::StatusOr<std::map<std::string, std::vector<std::string>>> FileNames();
  // `views` with their names filled in.
  absl::StatusOr<std::vector<BudgetView>> Named(absl::StatusOr<std::vector<BudgetView>> views);

  Store* const store_;
  DataResolver* const data_;
  DatasetRegistry* datasets_ = nullptr;
  ServerMetrics* metrics_ = nullptr;
  Clock* const clock_;
  const CoordinatorOptions options_;

  Ledger ledger_;
  RendezvousBroker rendezvous_;

  mutable absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  // Watchers by subscription id: (job id, listener).
  std::map<int64_t, std::pair<std::string, EventListener>> listeners_ ABSL_GUARDED_BY(mu_);
  int64_t next_listener_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, JobEntry> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> job_order_ ABSL_GUARDED_BY(mu_);  // submission order
  WorkerRegistry workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_JOB_MANAGER_H_
