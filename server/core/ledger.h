// Ledger: the privacy ledger and the budgets kept against it — the only
// code in the coordinator that decides an ε. It calibrates σ at submit,
// refuses a job whose plan would overshoot its dataset's budget, records
// each epoch's charge durably (checking it against the job's own terms and
// the budget), tells whether an epoch may be released and at what ε, and
// states a dataset's spent / committed / remaining budget.
//
// Every ε is composed from rows of the durable ledger (Store), never taken
// from a worker and never from a cached number. What it needs to know of
// live jobs — the plans of queued and running jobs that are not charged
// yet — comes in as plain data (LivePlan); it never reads the job table.
//
// Where later mechanisms go: a charge that covers several input files
// becomes one row per file key inside Charge; an eval release becomes a
// second mechanism charged with the epoch and composed by the same
// EpsilonOf. Callers do not change for either.
//
// Thread-safe. `write_mu_` makes each decide-then-write sequence (budget
// check + charge, budget check + new budget) one step and is held across
// the store write; `mu_` guards the budgets map and is held only to copy or
// replace an entry, so a budget view (a status read) never waits for a
// write's fsync: it copies the budget and composes outside both locks. A submit check stays true only while the set of
// live plans stays fixed: JobManager holds its writer lock across
// CheckSubmit and the job's creation. Composing a job's ε (EpsilonOf) takes
// no lock at all, so a PLD ε of tens of milliseconds holds nobody up.
#ifndef DPFLEET_SERVER_CORE_LEDGER_H_
#define DPFLEET_SERVER_CORE_LEDGER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/privacy/accountant.h"
#include "common/spec/job_spec.h"
#include "server/core/clock.h"
#include "server/core/store.h"
#include "server/core/types.h"

namespace dpfleet::server {

// A dataset's privacy budget and what is spent and promised against it.
struct BudgetView {
  std::string dataset;
  bool has_budget = false;
  double epsilon_budget = 0;
  double delta = 0;      // the delta at which the epsilons below are stated
  double spent = 0;      // composed over the dataset's ledger entries
  double committed = 0;  // spent + the remaining plans of queued/running jobs
  double remaining = 0;  // budget - committed (when has_budget)
  int32_t jobs = 0;
};

// A queued or running private job's plan: the ledger reserves the epochs
// its current attempt has not charged yet.
struct LivePlan {
  std::string job_id;
  std::string dataset;  // the dataset key it charges
  int32_t attempt = 0;
  int32_t epochs = 0;
  double sample_rate = 0;
  double noise_multiplier = 0;
  int64_t steps_per_epoch = 0;
  double delta = 0;
};

// The ε stated with an epoch's results: through that epoch, and the job's
// total over every row it has (other ranks may have charged ahead), which
// was composed from `rows` ledger rows.
struct ReleaseEpsilon {
  double epoch = 0;
  double job = 0;
  int64_t rows = 0;
};

// What a charge left in the ledger: whether it recorded a new row, and
// every row of the job as it now stands (for composing the job's ε).
struct ChargeResult {
  bool recorded = false;
  std::vector<LedgerEntry> rows;
};

class Ledger {
 public:
  Ledger(Store* store, Clock* clock);

  // Loads the budgets from the store.
  absl::Status Recover();

  // σ for a job planned as `plan` (its q, steps, δ and accountant): the
  // spec's noise_multiplier, or calibrated to privacy.target_epsilon. 0 for
  // a non-private job. InvalidArgument naming target_epsilon when no σ
  // meets it.
  static absl::StatusOr<double> NoiseMultiplierFor(const JobSpec& spec, const JobRecord& plan);
  // A job's ε over the given rows (all of its charges); 0 when not private.
  static absl::StatusOr<double> EpsilonOf(const JobRecord& job, const std::vector<LedgerEntry>& rows);
  // A job's ε from its rows in the store.
  absl::StatusOr<double> JobEpsilon(const JobRecord& job);

  // Refuses (FailedPrecondition, with the numbers) a job planned as `plan`
  // on `dataset` whose whole plan would bring the committed total over the
  // dataset's budget, and a non-private job on a budgeted dataset.
  absl::Status CheckSubmit(const std::string& dataset, const JobRecord& plan, const std::vector<LivePlan>& live);

  // Durably records the cost of `epoch` of `attempt` of `job` on `dataset`
  // (idempotent: a repeated charge records nothing). The worker's steps, q
  // and σ must be the job's own; a charge that would overshoot the budget
  // is refused. Returns the job's rows after it; EpsilonOf composes them.
  absl::StatusOr<ChargeResult> Charge(const JobRecord& job, const std::string& dataset, int32_t attempt,
                                      int32_t epoch, int64_t steps, double sample_rate, double noise_multiplier);

  // Charge-before-release: FailedPrecondition unless `epoch` of `attempt`
  // is in the ledger; otherwise the ε to state with its results.
  absl::StatusOr<ReleaseEpsilon> CheckRelease(const JobRecord& job, int32_t attempt, int32_t epoch);

  // Sets a dataset's total budget ('+'-joined paths); FailedPrecondition if
  // more is already committed. The new budget takes effect once it is
  // stored; on a store error the old one stays.
  absl::StatusOr<BudgetView> SetBudget(const std::string& dataset, double epsilon, double delta,
                                       const std::vector<LivePlan>& live);
  // One dataset, or (empty name) every dataset with a budget or ledger entry.
  absl::StatusOr<std::vector<BudgetView>> GetBudgets(const std::string& dataset, const std::vector<LivePlan>& live);

 private:
  // Composes the dataset's ledger (+ the remaining plans of live jobs, +
  // `extra`) at the delta of `budget` (the dataset's, if it has one).
  absl::StatusOr<BudgetView> BudgetViewOf(const std::string& dataset, const std::optional<BudgetRecord>& budget,
                                          const std::vector<privacy::SubsampledGaussian>& extra_spent,
                                          const std::vector<privacy::SubsampledGaussian>& extra_planned,
                                          const std::vector<LivePlan>& live);
  std::optional<BudgetRecord> Budget(const std::string& dataset) const ABSL_LOCKS_EXCLUDED(mu_);

  Store* const store_;
  Clock* const clock_;
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, BudgetRecord> budgets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_LEDGER_H_
