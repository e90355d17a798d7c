// Ledger: the privacy ledger and the budgets kept against it — the only
// code in the coordinator that decides an ε. It checks δ and calibrates σ
// at submit, refuses a job whose plan would overshoot the budget of any
// file it reads, records each epoch's charge durably (checking it against
// the job's own terms and every budget), tells whether an epoch may be
// released and at what ε, and states each file's spent / committed /
// remaining budget.
//
// The ledger follows the records, not the path: every charge applies to
// each input file the job reads, named by its content key
// (server/core/content_key.h, one charge row plus a charge -> file row per
// file in the Store), and a budget belongs to one file. A symlink, hard
// link, copy or reordering of a file is the same key, so the same budget.
//
// Every ε is composed from rows of the durable ledger (Store), never taken
// from a worker and never from a cached number. What it needs to know of
// live jobs — the plans of queued and running jobs that are not charged
// yet — comes in as plain data (LivePlan); it never reads the job table.
//
// Two mechanisms are charged: an epoch of DP-SGD (Mechanism::kTrain, every
// rank before the epoch trains) and the epoch's eval release
// (Mechanism::kEval, rank 0 before the metrics leave it: the Gaussian
// mechanism, stored as q 1, one step, σ_e). Both are subsampled Gaussians,
// so every ε here composes the two alike.
//
// Thread-safe. `write_mu_` makes each decide-then-write sequence (the
// budget checks of every file + the charge, budget checks + new budgets)
// one step and is held across
// the store write; `mu_` guards the budgets map and is held only to copy or
// replace an entry, so a budget view (a status read) never waits for a
// write's fsync: it copies the budget and composes outside both locks. A
// submit check stays true only while the set of live plans stays fixed:
// JobManager holds its writer lock across CheckSubmit and the job's
// creation. Composing a job's ε (EpsilonOf) takes
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

// One file's privacy budget and what is spent and promised against it.
struct BudgetView {
  std::string file;                // ledger key
  std::vector<std::string> names;  // registered datasets reading it, then paths holding it (JobManager fills them)
  bool has_budget = false;
  double epsilon_budget = 0;
  double delta = 0;      // the delta at which the epsilons below are stated
  double spent = 0;      // composed over every charge applied to the file; +inf after a non-private one
  double committed = 0;  // spent + the remaining plans of queued/running jobs
  double remaining = 0;  // budget - committed (when has_budget)
  int32_t jobs = 0;
};

// A queued or running private job's plan: the ledger reserves the epochs
// and eval releases its current attempt has not charged yet.
struct LivePlan {
  std::string job_id;
  std::vector<std::string> files;  // the ledger keys it charges
  int32_t attempt = 0;
  int32_t epochs = 0;
  double sample_rate = 0;
  double noise_multiplier = 0;
  int64_t steps_per_epoch = 0;
  double delta = 0;
  double eval_noise_multiplier = 0;  // σ_e; 0 with eval_every 0
  int32_t eval_every = 0;            // 0: no eval release
};
// The plan of `job` on its input files, as the ledger reserves it.
LivePlan PlanOf(const JobRecord& job);

// One charge as the ledger lists it (`dpctl ledger`): its row, and what it
// did to the file's composed ε.
struct ListedCharge {
  LedgerEntry entry;
  double epsilon_total = 0;      // the file's ε after it; +inf once a non-private epoch is in
  double epsilon_increment = 0;  // what it added (0 once the total is infinite)
};
struct LedgerListing {
  std::string file;                // the ledger's key
  std::vector<std::string> names;  // as in BudgetView (JobManager fills them)
  double delta = 0;                // where the epsilons are stated: the budget view's delta
  std::vector<ListedCharge> charges;  // in recorded order
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

  // δ must be at most 1/N, N the job's training records after
  // de-duplication (the N that fixes q, declared public): a larger δ admits
  // mechanisms that publish a whole record with probability δ each.
  // InvalidArgument naming privacy.delta, δ and N. A non-private job has
  // no δ to check.
  static absl::Status CheckDelta(const JobSpec& spec, int64_t train_rows);

  // σ for a job planned as `plan` (its q, steps, δ, accountant and eval
  // releases): the spec's noise_multiplier, or calibrated so that training
  // and the eval releases together meet privacy.target_epsilon; times
  // sqrt(W) with privacy.noise_split full (the total noise the ledger
  // charges). 0 for a non-private job. InvalidArgument naming
  // target_epsilon when no σ meets it.
  static absl::StatusOr<double> NoiseMultiplierFor(const JobSpec& spec, const JobRecord& plan);
  // A job's ε over the given rows (all of its charges); 0 when not private.
  static absl::StatusOr<double> EpsilonOf(const JobRecord& job, const std::vector<LedgerEntry>& rows);
  // A job's ε from its rows in the store.
  absl::StatusOr<double> JobEpsilon(const JobRecord& job);

  // Refuses (FailedPrecondition, with the numbers) a job planned as `plan`
  // whose whole plan would bring the committed total of any of its input
  // files (plan.input_files) over that file's budget, and a non-private job
  // that reads a budgeted file.
  absl::Status CheckSubmit(const JobRecord& plan, const std::vector<LivePlan>& live);

  // Durably records the cost of `mechanism` for `epoch` of `attempt` of
  // `job`, sent by `rank`, against every file it reads (idempotent: a
  // repeated charge records nothing). kTrain: the worker's steps, q and σ
  // must be the job's own. kEval: only rank 0, only after an epoch the
  // job's privacy.eval releases after, with steps 1, q 1 and the job's σ_e.
  // Anything else, and a charge that would overshoot the budget of any of
  // the files, is refused and records nothing. Returns the job's rows after
  // it; EpsilonOf composes them (outside any lock: a PLD ε takes tens of
  // milliseconds).
  absl::StatusOr<ChargeResult> Charge(const JobRecord& job, int32_t attempt, int32_t rank, int32_t epoch,
                                      int64_t steps, double sample_rate, double noise_multiplier, Mechanism mechanism);

  // Charge-before-release: FailedPrecondition unless `epoch` of `attempt`
  // is in the ledger and, when the results carry eval metrics
  // (`with_eval`), so is the epoch's eval release; eval metrics of a job
  // that releases none are refused too. Otherwise the ε to state with the
  // results.
  absl::StatusOr<ReleaseEpsilon> CheckRelease(const JobRecord& job, int32_t attempt, int32_t epoch, bool with_eval);

  // Gives each of `files` (ledger keys) the total budget (ε, δ), all of
  // them or none: FailedPrecondition naming the first file that already
  // has more spent or committed. The new budgets take effect once they are
  // stored; on a store error the old ones stay.
  absl::StatusOr<std::vector<BudgetView>> SetBudget(const std::vector<std::string>& files, double epsilon,
                                                    double delta, const std::vector<LivePlan>& live);
  // The views of `files`, or (empty) of every file with a budget or a
  // ledger entry.
  absl::StatusOr<std::vector<BudgetView>> GetBudgets(const std::vector<std::string>& files,
                                                     const std::vector<LivePlan>& live);
  // Every charge applied to `file`, composed in recorded order with RDP at
  // the delta its budget view states ε at.
  absl::StatusOr<LedgerListing> List(const std::string& file, const std::vector<LivePlan>& live);

 private:
  // Composes the file's ledger (+ the remaining plans of live jobs that
  // read it, + `extra`) at the delta of `budget` (the file's, if it has
  // one).
  absl::StatusOr<BudgetView> BudgetViewOf(const std::string& file, const std::optional<BudgetRecord>& budget,
                                          const std::vector<privacy::SubsampledGaussian>& extra_spent,
                                          const std::vector<privacy::SubsampledGaussian>& extra_planned,
                                          const std::vector<LivePlan>& live);
  std::optional<BudgetRecord> Budget(const std::string& file) const ABSL_LOCKS_EXCLUDED(mu_);

  Store* const store_;
  Clock* const clock_;
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, BudgetRecord> budgets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_LEDGER_H_
