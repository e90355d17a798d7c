// JobManager: the coordinator's job state machine, and the one place that
// orchestrates the parts it is built from: the Ledger (every ε), the
// Scheduler (placement policy), the WorkerRegistry (leases, heartbeats,
// what each worker is owed) and the RendezvousBroker (per-attempt keys).
// Plain C++ with its store, data resolver and clock passed in; the gRPC and
// HTTP layers are thin adapters over it.
//
// Job states: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED (QUEUED may
// go straight to CANCELLED; RUNNING goes back to QUEUED when a failed
// attempt is retried).
//
// Store, then publish: a change of a job is built as a new record, written
// to the store, and only then swapped in and acted on (watchers, HTTP
// pollers and status reads see it, workers get their assignments or stop
// orders, the rendezvous opens or closes). A store failure fails the
// operation with the store's status (Unavailable or Internal, naming the
// write) and changes nothing, so memory and disk agree. Work no caller
// waits on (a lease that ran out, a job start, ranks that did not come back
// after a restart) keeps the old state when its write fails, is counted in
// background_errors(), and is tried again on the next Tick; it is never
// half applied.
//
// Privacy rule enforced here: an epoch's results are accepted only after its
// privacy cost is in the durable ledger (Charge before ReportProgress), and ε
// is always computed by the Ledger from its rows, never taken from a worker.
// The ε on a job is the composition of the most ledger rows seen so far; the
// ε in the stored record is a cache that Recover recomputes from the ledger.
//
// Locking (docs/DESIGN.md, "Locking"): `write_mu_` serializes every change
// of durable state (decide, write, swap in) and is never taken by
// heartbeats, status reads, watchers or rendezvous calls; `mu_` guards the
// in-memory job table and the worker registry and is held only for
// in-memory work — never across a store write, an accountant call or a
// rendezvous wait. Order: write_mu_, then the Ledger's lock, then mu_, then
// the broker's and the store's leaf locks.
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
#include "server/core/background_errors.h"
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
  // Per job, the log lines workers ship are kept within these (the oldest
  // go first; Store::LogLimits).
  LogLimits log_limits;
};

// The most bytes one shipped log line keeps (longer ones are cut, saying so).
inline constexpr int64_t kMaxLogLineBytes = 1024;
// The most lines one ShipLogs batch may carry.
inline constexpr int64_t kMaxLogBatchLines = 500;
// Bounds of an audit's options: each shadow model is a training run of the
// audited spec, so a custodian's typo must not queue hours of work.
inline constexpr int32_t kMaxShadowModels = 64;
inline constexpr int64_t kMaxChallenge = 1'000'000;
// Canaries of a one-run audit (each may join its training run).
inline constexpr int64_t kMaxCanaries = 1'000'000;

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
                                const std::string& previous_id, const std::optional<RunningRun>& running,
                                const std::string& identity = "");
  // Whether the worker with certificate identity `identity` holds rank
  // `rank` (-1: any rank) of the current attempt of `job_id`.
  bool HoldsRun(const std::string& identity, const std::string& job_id, int32_t attempt, int32_t rank);
  // The identity a registered worker id is bound to; nullopt when unknown.
  std::optional<std::string> WorkerIdentity(const std::string& worker_id);
  absl::StatusOr<HeartbeatResult> Heartbeat(const std::string& worker_id, const std::string& job_id, int32_t attempt);
  // Durably records the privacy cost of `epoch` (idempotent); returns the
  // job's ε after it. Mechanism::kTrain: the epoch's DP-SGD steps, with the
  // job's q, σ and steps. Mechanism::kEval: the epoch's eval release (rank
  // 0, an epoch the job's privacy.eval releases after), with steps 1, q 1
  // and the job's σ_e. Anything else is refused and nothing is recorded.
  absl::StatusOr<double> Charge(const std::string& job_id, int32_t attempt, int32_t rank, int32_t epoch, int64_t steps,
                                double sample_rate, double noise_multiplier, Mechanism mechanism = Mechanism::kTrain);
  // Rank 0's epoch results. Eval metrics (all present or all absent) are
  // refused unless the job releases them and, for a DP job, the epoch's
  // eval release is in the ledger. `checkpoint` (optional; jobs with
  // resources.max_attempts > 1 send it) is the training state after the
  // epoch; it is stored durably before the epoch counts as done, and a
  // retried attempt resumes from it.
  absl::StatusOr<ProgressResult> ReportProgress(const std::string& job_id, int32_t attempt, int32_t rank,
                                                const std::string& worker_id, const EpochRecord& metrics,
                                                const std::string& checkpoint = "");
  // `error` is the worker's whole message (custodians see it);
  // `public_error` what analysts may see of it: a category the RPC layer
  // composed from fixed words (common/run_failure.h), never the message.
  // Empty: kUnstatedFailure.
  absl::Status ReportDone(const std::string& job_id, int32_t attempt, int32_t rank, const std::string& worker_id,
                          bool success, const std::string& error, const std::string& public_error = "");
  // What analysts see of a failed rank that named no category.
  static const char* const kUnstatedFailure;
  absl::Status RendezvousSet(const std::string& job_id, int32_t attempt, const std::string& key,
                             const std::string& value);
  // Adds `delta` to the integer stored under key (0 if absent); returns the sum.
  absl::StatusOr<int64_t> RendezvousAdd(const std::string& job_id, int32_t attempt, const std::string& key,
                                        int64_t delta);
  absl::StatusOr<std::string> RendezvousGet(const std::string& job_id, int32_t attempt, const std::string& key,
                                            absl::Time deadline);

  // Keeps a batch of log lines of rank `rank` of the current attempt (the
  // caller checked the worker holds it): InvalidArgument naming the field
  // for a bad level or an oversized batch; lines longer than
  // kMaxLogLineBytes are cut. The job's oldest lines go past the caps.
  absl::StatusOr<LogAppendResult> ShipLogs(const std::string& job_id, int32_t attempt, int32_t rank,
                                           std::vector<LogLine> lines, int64_t dropped_on_worker);
  // A page of the job's log (Store::ReadJobLogs) and the job's state, so a
  // follower knows when the log is complete. NotFound for a missing job.
  struct LogsView {
    LogPage page;
    JobState state = JobState::kQueued;
  };
  absl::StatusOr<LogsView> ReadLogs(const std::string& job_id, const LogQuery& query);

  // Reads a chunk of a file of the job's prepared dataset for `rank`;
  // PermissionDenied for a shard that is not the rank's own.
  absl::StatusOr<std::pair<std::string, int64_t>> FetchShard(const std::string& job_id, int32_t attempt, int32_t rank,
                                                             const std::string& file, int64_t offset,
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

  // --- Audits (`dpctl audit`) ---
  // An audit run of `target`: a job of kind audit (JobRecord::audit) made
  // from the target's stored spec and data, world size 1 on the target's
  // device, one attempt, owned by `owner` (the custodian who asked). The
  // target must exist, be SUCCEEDED (FailedPrecondition naming it and its
  // state), not be an audit run itself and have a stored model. The run is
  // never charged to the ledger and never checked against a budget: its
  // report goes to custodians only (the RPC layer lets no one else ask).
  // `order.target`, `reported_epsilon` and `delta` are filled in here.
  absl::StatusOr<JobRecord> StartAudit(const std::string& target, AuditOrder order, const std::string& owner);
  struct AuditView {
    JobRecord run;
    std::optional<std::string> report;  // the stored JSON, once it SUCCEEDED
  };
  // NotFound for an id that names no job; InvalidArgument for a job that is
  // not an audit run.
  absl::StatusOr<AuditView> GetAudit(const std::string& audit_id);
  // A chunk of the audited job's model, for rank 0 of the audit run's
  // current attempt (job_id is the audit run).
  absl::StatusOr<Store::BlobChunk> FetchModel(const std::string& job_id, int32_t attempt, int32_t rank, int64_t offset,
                                              int64_t max_bytes);
  // Rank 0's report: stored with the run's end, SUCCEEDED, in one store
  // transaction, so no audit run counts as succeeded without its report.
  absl::Status ReportAudit(const std::string& job_id, int32_t attempt, int32_t rank, const std::string& report_json);

  // Rank 0's trained model after the job's last epoch (current attempt only).
  absl::Status StoreModel(const std::string& job_id, int32_t attempt, int32_t rank, const std::string& model);
  // A chunk of a SUCCEEDED job's model.
  absl::StatusOr<Store::BlobChunk> GetModel(const std::string& job_id, int64_t offset, int64_t max_bytes);

  // RendezvousGet without a thread: checks the run, then calls `done`
  // exactly once with the value, or with why it will never come (the error
  // a call made then would get: the job ended, the attempt is stale, the
  // coordinator shuts down). `done` runs on whichever thread publishes or
  // ends the attempt, possibly under the manager's lock, and must only
  // hand the result over. Returns the wait's id for CancelRendezvousWait
  // (0 when `done` already ran); the caller owns the deadline.
  absl::StatusOr<int64_t> RendezvousGetAsync(const std::string& job_id, int32_t attempt, const std::string& key,
                                             RendezvousBroker::GetCallback done);
  // True when the wait is forgotten and its `done` will never run.
  bool CancelRendezvousWait(int64_t waiter_id) { return rendezvous_.CancelWait(waiter_id); }

  // Blocks, without polling, until `n` RendezvousGet calls wait for the
  // key: lets tests and benchmarks act only once the waiters are parked.
  void AwaitRendezvousWaiters(const std::string& job_id, int32_t attempt, const std::string& key, int n) {
    rendezvous_.AwaitWaiters(job_id, attempt, key, n);
  }

  // Expires leases and reattach deadlines, retries what the store refused
  // in the background and schedules; the server calls it periodically.
  void Tick();
  // Background failures so far (see the top of this file).
  BackgroundErrors::Snapshot background_errors() const { return background_errors_.Get(); }
  // Wakes every waiter; later waits return at once.
  void Shutdown();

 private:
  // The end of an attempt that was decided but could not be stored yet;
  // Tick stores it. The job shows its old state until then.
  struct PendingEnd {
    int32_t attempt = 0;
    bool succeeded = false;      // rank 0 finished every epoch
    std::string failure;         // why the attempt failed, when it did not succeed
    std::string public_failure;  // what analysts see of it; empty: `failure` is public
  };
  struct JobEntry {
    JobRecord record;
    // From the spec, read once: what the scheduler and retries need.
    bool schedulable = true;
    std::string device = "cpu";
    int32_t max_attempts = 1;
    int64_t last_seq = 0;              // events are numbered per job; nothing keeps them
    int64_t reattach_deadline_ms = 0;  // after a restart, for RUNNING jobs
    int64_t epsilon_rows = 0;          // ledger rows record.epsilon is composed from
    std::optional<PendingEnd> pending_end;
  };

  absl::StatusOr<JobEntry*> FindLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void CacheSpecFacts(JobEntry* job);
  // Writes `commit` (a changed copy of the job's record and what goes with
  // it), then swaps it in (ApplyLocked). On a store error nothing changes.
  absl::Status Commit(JobEntry* job, JobCommit commit) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Makes `next` the job's record and does what follows from the change:
  // an attempt that ended has its ranks told to stop and its rendezvous
  // closed with the reason; a new attempt is handed to its workers and its
  // rendezvous opened; a new state or epoch is published.
  void ApplyLocked(JobEntry* job, JobRecord next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked(JobEntry* job, JobEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The record after `end` of the job's current attempt: SUCCEEDED, back to
  // QUEUED (resuming from the last finished epoch) while the spec's
  // resources.max_attempts allows, else FAILED.
  JobRecord EndedRecordLocked(const JobEntry& job, const PendingEnd& end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores the end of the attempt `end` names, if it is still current; on a
  // store error keeps it pending for Tick.
  absl::Status EndAttempt(JobEntry* job, const PendingEnd& end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Starts queued jobs on idle workers; a start the store refuses leaves the
  // job QUEUED and its workers idle for the next try.
  void Schedule() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CheckRunLocked(JobEntry* job, int32_t attempt, int32_t rank) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why a progress report is not the next epoch of the current run (the
  // answer to give), or nullopt when it is.
  std::optional<absl::StatusOr<ProgressResult>> CheckProgressLocked(JobEntry* job, int32_t attempt, int32_t rank,
                                                                    int32_t epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps the ε composed from the most ledger rows.
  static void NoteEpsilon(JobEntry* job, double epsilon, int64_t rows);
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
  BackgroundErrors background_errors_;

  // Held across decide, write and swap of every durable change.
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
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
