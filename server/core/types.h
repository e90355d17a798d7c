// Plain records the coordinator core works with. The gRPC layer converts
// them to and from proto messages; the store keeps them as JSON.
#ifndef DPFLEET_SERVER_CORE_TYPES_H_
#define DPFLEET_SERVER_CORE_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace dpfleet::server {

enum class JobState { kQueued, kRunning, kSucceeded, kFailed, kCancelled };
const char* JobStateName(JobState s);  // QUEUED, RUNNING, ...
absl::StatusOr<JobState> ParseJobState(const std::string& name);
inline bool IsTerminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}

struct EpochRecord {
  int32_t epoch = 0;
  // From the epoch's eval release; all present or all absent (no release
  // after this epoch). Absent is absent in every API, never 0.
  std::optional<double> eval_loss, eval_accuracy, eval_auc, eval_balanced_accuracy;
  std::optional<double> majority_rate;
  bool has_eval() const { return eval_accuracy.has_value(); }
  double epsilon = 0;
  int64_t steps = 0;
  double train_seconds = 0;
};

// One attempt of a job: which workers ran it and how it ended. Kept in the
// job's record (durable with it) for `dpctl status`. `reason` is the whole
// story for custodians; `public_reason` is what analysts see: it never
// quotes a worker's error message, which may carry record values (a CSV
// row, exact counts of the private file), only a fixed category (the stage
// and the status code) and the coordinator's own, data-independent reasons.
struct AttemptRecord {
  int32_t attempt = 0;
  std::vector<std::string> worker_ids;  // by rank
  int64_t started_ms = 0;
  int64_t ended_ms = 0;  // 0 while it runs
  // RUNNING while it runs, then SUCCEEDED, FAILED or CANCELLED.
  JobState outcome = JobState::kRunning;
  std::string reason;
  std::string public_reason;
};

// What an audit run (`dpctl audit`) attacks and the audited job's ε it
// compares with (worker/audit/audit.h, AuditOptions). It holds attack
// options only: the run trains its shadow and baseline models with the
// audited job's stored spec, which is the run's spec too.
struct AuditOrder {
  std::string target;  // the audited job's id
  bool membership = true;
  bool inversion = true;
  int32_t shadow_models = 8;
  int64_t max_challenge = 2000;
  bool baseline = true;
  std::vector<std::string> inversion_features;  // empty: those of DIS, MAR the job has
  bool one_run = true;                          // the one-run audit (Steinke, Nasr, Jagielski 2023)
  int64_t canaries = 1000;
  // The audited job's ledger ε when the audit started (it had SUCCEEDED,
  // so it is final); nullopt for a non-private job.
  std::optional<double> reported_epsilon;
  double delta = 0;
};

// Sets order's membership, inversion and one_run from a request's attack
// list: comma-separated names among membership, inversion, one-run, or
// "all" ("" = all). InvalidArgument naming the attack that is none of them.
absl::Status ParseAuditAttacks(absl::string_view attacks, AuditOrder* order);

struct JobRecord {
  std::string job_id;
  std::string name;
  JobState state = JobState::kQueued;
  std::string spec_yaml;
  std::vector<std::string> data_paths;
  std::string dataset;    // registered dataset the job reads, if any
  std::string shard_dir;  // its prepared shards
  // The ledger keys (content keys, server/core/content_key.h) of the raw
  // files it reads, in data_paths order: every charge of the job applies to
  // each of them.
  std::vector<std::string> input_files;
  int32_t epochs = 0;
  int32_t epochs_done = 0;
  bool dp = true;      // privacy.mode: dp; false for mode none
  double epsilon = 0;  // the ledger's; meaningless when !dp (see ReportedEpsilon)
  double delta = 0;
  double noise_multiplier = 0;
  std::string accountant = "rdp";
  double sample_rate = 0;
  int64_t steps_per_epoch = 0;
  int64_t train_rows = 0;
  // The DP eval release (privacy.eval): sigma_e, and every E-th epoch (and
  // the last) releases. eval_every 0: no eval release.
  double eval_noise_multiplier = 0;
  int32_t eval_every = 0;
  int32_t world_size = 1;
  std::vector<EpochRecord> history;
  // Why the job failed, was cancelled or is queued again: the whole text
  // (custodians), and what analysts see (no worker error message; see
  // AttemptRecord).
  std::string reason;
  std::string public_reason;
  // QUEUED only: why the scheduler has not started it (Scheduler,
  // PendingReason). Recomputed on every scheduling pass; not durable, so
  // not in ToJson (the stored form); the HTTP JSON adds it.
  std::string pending_reason;
  // Every attempt so far, oldest first.
  std::vector<AttemptRecord> attempts;
  int64_t created_ms = 0, started_ms = 0, finished_ms = 0;
  int32_t attempt = 0;
  std::vector<std::string> worker_ids;  // by rank, current attempt
  // Who submitted it (the token's name); analysts see only their own jobs.
  std::string owner;
  // By rank, the certificate identity of the worker that holds it in the
  // current attempt (survives a coordinator restart, unlike worker ids'
  // records); only that worker may speak for the rank.
  std::vector<std::string> worker_identities;
  // Set for an audit run: a job of kind "audit" that attacks another job's
  // model on a worker instead of training. Never charged to the ledger and
  // never counted against a budget (its report goes to custodians only).
  std::optional<AuditOrder> audit;
};

// "train" | "audit".
inline const char* JobKindName(const JobRecord& j) { return j.audit ? "audit" : "train"; }

// privacy.mode of a job: "dp" | "none".
inline const char* JobModeName(const JobRecord& j) { return j.dp ? "dp" : "none"; }
// The ε to state for a job anywhere it leaves the coordinator: none for a
// non-private job, whose guarantee is no finite ε at all (never report it
// as 0, the most private-looking number there is).
inline std::optional<double> ReportedEpsilon(const JobRecord& j) {
  return j.dp ? std::optional<double>(j.epsilon) : std::nullopt;
}

enum class WorkerState { kIdle, kBusy, kLost };
const char* WorkerStateName(WorkerState s);

struct Assignment {
  std::string job_id;
  int32_t attempt = 0;
  int32_t rank = 0;
  int32_t world_size = 1;
  std::string spec_yaml;
  double noise_multiplier = 0;
  std::vector<std::string> data_paths;
  std::string shard_dir;
  int32_t start_epoch = 0;
  // data.path jobs: the coordinator's secret split key (never in a
  // JobRecord, so never in a job's JSON).
  uint64_t split_key = 0;
  std::optional<AuditOrder> audit;  // an audit run (JobRecord::audit)
};

struct WorkerRecord {
  std::string worker_id;
  std::string hostname;
  std::string device;
  int32_t pid = 0;
  WorkerState state = WorkerState::kIdle;
  std::string job_id;
  int32_t attempt = 0;
  int32_t rank = 0;
  int64_t registered_ms = 0;
  int64_t last_heartbeat_ms = 0;
  std::string identity;  // the name its client certificate proves
};

// One entry of a job's event stream.
struct JobEvent {
  enum class Type { kState, kEpoch };
  int64_t seq = 0;
  Type type = Type::kState;
  JobState state = JobState::kQueued;
  std::string reason;
  std::string public_reason;  // what analysts see of `reason` (JobRecord)
  EpochRecord epoch;
  bool dp = true;  // the job's privacy.mode is dp: only then has the epoch an epsilon
};

nlohmann::json ToJson(const EpochRecord& e);
nlohmann::json ToJson(const AttemptRecord& a);
// The stored form of a job (everything durable; no pending_reason).
nlohmann::json ToJson(const JobRecord& j);
absl::StatusOr<JobRecord> JobFromJson(const nlohmann::json& j);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_TYPES_H_
