#include "server/core/ledger.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "server/core/data_resolver.h"

namespace dpfleet::server {
namespace {

// The job's eval release schedule, as its spec's privacy.eval said.
EvalSpec EvalOf(const LivePlan& p) {
  EvalSpec e;
  e.enabled = p.eval_every > 0;
  e.every = p.eval_every;
  e.noise_multiplier = p.eval_noise_multiplier;
  return e;
}

// What a DP job still plans to spend: `train_epochs` epochs of DP-SGD and
// `eval_releases` eval releases (each the Gaussian mechanism: q 1, 1 step).
std::vector<privacy::SubsampledGaussian> PlannedMechanisms(const LivePlan& p, int64_t train_epochs,
                                                           int64_t eval_releases) {
  std::vector<privacy::SubsampledGaussian> plan;
  if (train_epochs > 0) plan.push_back({p.sample_rate, p.noise_multiplier, train_epochs * p.steps_per_epoch});
  if (eval_releases > 0 && p.eval_noise_multiplier > 0) plan.push_back({1.0, p.eval_noise_multiplier, eval_releases});
  return plan;
}

// How a message names input file `i` of `job`: by the path the custodian
// gave, or, for a registered dataset (whose paths and content keys are the
// custodian's, not the analyst's), by its place in the dataset.
std::string FileLabel(const JobRecord& job, std::size_t i) {
  if (!job.dataset.empty()) {
    return absl::StrCat("file ", i + 1, " of ", job.input_files.size(), " of dataset '", job.dataset, "'");
  }
  return i < job.data_paths.size() ? absl::StrCat("input file ", job.data_paths[i]) : job.input_files[i];
}

}  // namespace

LivePlan PlanOf(const JobRecord& r) {
  LivePlan p;
  p.job_id = r.job_id;
  p.files = r.input_files;
  p.attempt = r.attempt;
  p.epochs = r.epochs;
  p.sample_rate = r.sample_rate;
  p.noise_multiplier = r.noise_multiplier;
  p.steps_per_epoch = r.steps_per_epoch;
  p.delta = r.delta;
  p.eval_noise_multiplier = r.eval_noise_multiplier;
  p.eval_every = r.eval_every;
  return p;
}

Ledger::Ledger(Store* store, Clock* clock) : store_(store), clock_(clock) {}

absl::Status Ledger::Recover() {
  ASSIGN_OR_RETURN(std::vector<BudgetRecord> budgets, store_->LoadBudgets());
  absl::MutexLock lock(&mu_);
  for (const BudgetRecord& b : budgets) budgets_[b.file] = b;
  return absl::OkStatus();
}

absl::Status Ledger::CheckDelta(const JobSpec& spec, int64_t train_rows) {
  if (!spec.dp() || train_rows < 1) return absl::OkStatus();
  const double bound = 1.0 / static_cast<double>(train_rows);
  if (spec.privacy.delta > bound) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "privacy.delta: '%g' must be at most 1/N = %.6g, N being the job's %d training records after "
        "de-duplication: a delta above 1/N admits mechanisms that publish a whole record with probability delta",
        spec.privacy.delta, bound, train_rows));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> Ledger::NoiseMultiplierFor(const JobSpec& spec, const JobRecord& plan) {
  if (!spec.dp()) return 0.0;
  double sigma = spec.privacy.noise_multiplier.value_or(1.0);
  if (spec.privacy.target_epsilon) {
    // σ is calibrated so that training AND the eval releases meet the target
    // together.
    const LivePlan p = PlanOf(plan);
    ASSIGN_OR_RETURN(privacy::AccountantKind kind, privacy::ParseAccountantKind(plan.accountant));
    absl::StatusOr<double> calibrated = privacy::CalibrateNoiseMultiplier(
        kind, *spec.privacy.target_epsilon, plan.delta, plan.sample_rate,
        plan.steps_per_epoch * static_cast<int64_t>(plan.epochs), PlannedMechanisms(p, 0, EvalOf(p).Releases(p.epochs)));
    if (!calibrated.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("privacy.target_epsilon: '", *spec.privacy.target_epsilon,
                                                     "' cannot be met: ", calibrated.status().message()));
    }
    sigma = *calibrated;
  }
  // The total noise's multiplier: what every charge of the job uses, and
  // what a rank divides by sqrt(W) for its share. noise_split full makes
  // each share the spec's (or the calibrated) σ.
  return AccountedNoiseMultiplier(spec, sigma);
}

absl::StatusOr<double> Ledger::EpsilonOf(const JobRecord& job, const std::vector<LedgerEntry>& rows) {
  if (!job.dp) return 0.0;
  std::vector<privacy::SubsampledGaussian> mechanisms;
  for (const LedgerEntry& e : rows) mechanisms.push_back({e.sample_rate, e.noise_multiplier, e.steps});
  ASSIGN_OR_RETURN(privacy::AccountantKind kind, privacy::ParseAccountantKind(job.accountant));
  return privacy::ComputeEpsilon(kind, mechanisms, job.delta);
}

absl::StatusOr<double> Ledger::JobEpsilon(const JobRecord& job) {
  if (!job.dp) return 0.0;
  ASSIGN_OR_RETURN(std::vector<LedgerEntry> rows, store_->LedgerForJob(job.job_id));
  return EpsilonOf(job, rows);
}

std::optional<BudgetRecord> Ledger::Budget(const std::string& file) const {
  absl::MutexLock lock(&mu_);
  auto b = budgets_.find(file);
  if (b == budgets_.end()) return std::nullopt;
  return b->second;
}

absl::Status Ledger::CheckSubmit(const JobRecord& plan, const std::vector<LivePlan>& live) {
  absl::MutexLock write(&write_mu_);
  const LivePlan p = PlanOf(plan);
  for (std::size_t i = 0; i < plan.input_files.size(); ++i) {
    const std::string& file = plan.input_files[i];
    const std::optional<BudgetRecord> budget = Budget(file);
    if (!budget) continue;
    if (!plan.dp) {
      return absl::FailedPreconditionError(
          absl::StrCat("privacy.mode: 'none' cannot run on ", FileLabel(plan, i),
                       ": it has a privacy budget and a non-private job has no finite epsilon"));
    }
    ASSIGN_OR_RETURN(BudgetView before, BudgetViewOf(file, budget, {}, {}, live));
    ASSIGN_OR_RETURN(BudgetView after, BudgetViewOf(file, budget, {},
                                                    PlannedMechanisms(p, p.epochs, EvalOf(p).Releases(p.epochs)), live));
    if (after.committed > budget->epsilon) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s has a budget of epsilon %.6g (delta %.3g): %.6g is spent and %.6g committed by queued and running "
          "jobs; this job would bring the composed total to %.6g",
          FileLabel(plan, i), budget->epsilon, budget->delta, before.spent, before.committed, after.committed));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ChargeResult> Ledger::Charge(const JobRecord& r, int32_t attempt, int32_t rank, int32_t epoch,
                                            int64_t steps, double sample_rate, double noise_multiplier,
                                            Mechanism mechanism) {
  if (r.input_files.empty()) {
    // Every job gets its files' keys at submit; a charge that would count
    // against no budget is never recorded.
    return absl::InternalError(absl::StrCat("job '", r.job_id, "' has no input files to charge"));
  }
  if (epoch < 1 || epoch > r.epochs) {
    return absl::InvalidArgumentError(
        absl::StrCat("epoch ", epoch, " is outside 1..", r.epochs, " of job '", r.job_id, "'"));
  }
  const bool eval = mechanism == Mechanism::kEval;
  if (eval && (!r.dp || rank != 0 || !EvalOf(PlanOf(r)).ReleasedAfter(epoch, r.epochs))) {
    const std::string why =
        !r.dp               ? "the job is not private (its metrics are exact, not a charged release)"
        : r.eval_every == 0 ? "the job releases no eval metrics (privacy.eval: none)"
        : rank != 0         ? "only rank 0 releases eval metrics"
                            : absl::StrCat("the job releases them after every epoch that is a multiple of ",
                                           r.eval_every, " and after the last");
    return absl::FailedPreconditionError(absl::StrCat("job '", r.job_id, "' has no eval release to charge after epoch ",
                                                      epoch, " from rank ", rank, ": ", why));
  }
  // The mechanism the coordinator's own parameters say this charge is; a
  // worker that disagrees is misconfigured and must not train or release.
  const int64_t want_steps = eval ? 1 : r.steps_per_epoch;
  const double want_q = eval ? 1.0 : r.sample_rate;
  const double want_sigma = eval ? r.eval_noise_multiplier : r.noise_multiplier;
  if (steps != want_steps || std::abs(sample_rate - want_q) > 1e-12 * want_q ||
      (r.dp && std::abs(noise_multiplier - want_sigma) > 1e-12 * want_sigma)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s charge for job '%s' epoch %d does not match the job: steps %d vs %d, q %.9g vs %.9g, "
        "sigma %.9g vs %.9g",
        MechanismName(mechanism), r.job_id, epoch, steps, want_steps, sample_rate, want_q, noise_multiplier,
        want_sigma));
  }
  LedgerEntry e;
  e.job_id = r.job_id;
  e.attempt = attempt;
  e.epoch = epoch;
  e.mechanism = mechanism;
  e.dataset = DatasetKey(r.data_paths);
  e.files = r.input_files;
  std::sort(e.files.begin(), e.files.end());
  e.steps = want_steps;
  e.sample_rate = want_q;
  // A non-private epoch is recorded too, with sigma 0: its files have then
  // been used without a finite guarantee, and its budget view says so.
  e.noise_multiplier = r.dp ? want_sigma : 0.0;
  e.delta = r.delta;
  e.recorded_ms = clock_->NowMs();
  absl::MutexLock write(&write_mu_);
  ChargeResult out;
  ASSIGN_OR_RETURN(out.rows, store_->LedgerForJob(r.job_id));
  const bool retry = std::any_of(out.rows.begin(), out.rows.end(), [&](const LedgerEntry& x) {
    return x.attempt == attempt && x.epoch == epoch && x.mechanism == mechanism;
  });
  if (retry) return out;
  // Submit reserved the whole plan; this guards anything outside it, for
  // every file before any row is written. Only the spent totals are
  // compared, so live plans play no part.
  for (std::size_t i = 0; i < r.input_files.size(); ++i) {
    const std::optional<BudgetRecord> budget = Budget(r.input_files[i]);
    if (!budget) continue;
    ASSIGN_OR_RETURN(BudgetView after,
                     BudgetViewOf(r.input_files[i], budget, {{e.sample_rate, e.noise_multiplier, e.steps}}, {}, {}));
    if (after.spent > budget->epsilon) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "charging the %s of epoch %d of job '%s' would bring %s to epsilon %.6g, over its budget %.6g",
          eval ? "eval release" : "training", epoch, r.job_id, FileLabel(r, i), after.spent, budget->epsilon));
    }
  }
  ASSIGN_OR_RETURN(out.recorded, store_->Charge(e));
  // The ledger as it now stands: what was read above plus this charge; a
  // row that was there already was written by someone else meanwhile (not
  // this process, which charges under the lock): read it back.
  if (out.recorded) {
    out.rows.push_back(e);
  } else {
    ASSIGN_OR_RETURN(out.rows, store_->LedgerForJob(r.job_id));
  }
  return out;
}

absl::StatusOr<ReleaseEpsilon> Ledger::CheckRelease(const JobRecord& job, int32_t attempt, int32_t epoch,
                                                    bool with_eval) {
  if (with_eval && job.eval_every == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", job.job_id, "' releases no eval metrics (privacy.eval: none)"));
  }
  if (!job.dp) return ReleaseEpsilon{};
  ASSIGN_OR_RETURN(std::vector<LedgerEntry> entries, store_->LedgerForJob(job.job_id));
  auto charged = [&](Mechanism m) {
    return std::any_of(entries.begin(), entries.end(), [&](const LedgerEntry& e) {
      return e.attempt == attempt && e.epoch == epoch && e.mechanism == m;
    });
  };
  if (!charged(Mechanism::kTrain)) {
    return absl::FailedPreconditionError(
        absl::StrCat("epoch ", epoch, " of job '", job.job_id, "' was not charged to the privacy ledger"));
  }
  if (with_eval && !charged(Mechanism::kEval)) {
    return absl::FailedPreconditionError(absl::StrCat("the eval metrics of epoch ", epoch, " of job '", job.job_id,
                                                      "' were not charged to the privacy ledger"));
  }
  // The epoch's row carries the spend through this epoch; the job's total
  // also counts epochs other ranks have already charged ahead of it.
  std::vector<privacy::SubsampledGaussian> through_epoch;
  for (const LedgerEntry& e : entries) {
    if (e.attempt < attempt || e.epoch <= epoch) through_epoch.push_back({e.sample_rate, e.noise_multiplier, e.steps});
  }
  ReleaseEpsilon out;
  ASSIGN_OR_RETURN(privacy::AccountantKind kind, privacy::ParseAccountantKind(job.accountant));
  ASSIGN_OR_RETURN(out.epoch, privacy::ComputeEpsilon(kind, through_epoch, job.delta));
  ASSIGN_OR_RETURN(out.job, EpsilonOf(job, entries));
  out.rows = static_cast<int64_t>(entries.size());
  return out;
}

absl::StatusOr<BudgetView> Ledger::BudgetViewOf(const std::string& file, const std::optional<BudgetRecord>& budget,
                                                const std::vector<privacy::SubsampledGaussian>& extra_spent,
                                                const std::vector<privacy::SubsampledGaussian>& extra_planned,
                                                const std::vector<LivePlan>& live) {
  BudgetView v;
  v.file = file;
  v.has_budget = budget.has_value();
  ASSIGN_OR_RETURN(std::vector<LedgerEntry> entries, store_->LedgerForFile(file));
  std::vector<privacy::SubsampledGaussian> spent = extra_spent;
  std::set<std::string> jobs;
  // Without a budget, state epsilon at the smallest delta any job asked for
  // (the largest epsilon among the natural choices).
  double delta = v.has_budget ? budget->delta : 1.0;
  bool non_private = false;
  for (const LedgerEntry& e : entries) {
    if (e.noise_multiplier == 0) {
      non_private = true;  // a non-private epoch: no finite epsilon
      jobs.insert(e.job_id);
      continue;
    }
    spent.push_back({e.sample_rate, e.noise_multiplier, e.steps});
    jobs.insert(e.job_id);
    if (!v.has_budget) delta = std::min(delta, e.delta);
  }
  std::vector<privacy::SubsampledGaussian> committed = spent;
  committed.insert(committed.end(), extra_planned.begin(), extra_planned.end());
  for (const LivePlan& p : live) {
    if (std::find(p.files.begin(), p.files.end(), file) == p.files.end()) continue;
    int64_t charged = 0, evals_charged = 0;
    for (const LedgerEntry& e : entries) {
      if (e.job_id != p.job_id || e.attempt != p.attempt) continue;
      (e.mechanism == Mechanism::kEval ? evals_charged : charged) += 1;
    }
    const int64_t epochs_left = std::max<int64_t>(0, p.epochs - charged);
    const int64_t evals_left = std::max<int64_t>(0, EvalOf(p).Releases(p.epochs) - evals_charged);
    const std::vector<privacy::SubsampledGaussian> left = PlannedMechanisms(p, epochs_left, evals_left);
    if (!left.empty()) {
      committed.insert(committed.end(), left.begin(), left.end());
      jobs.insert(p.job_id);
      if (!v.has_budget) delta = std::min(delta, p.delta);
    }
  }
  if (delta >= 1.0) delta = 1e-5;  // nothing recorded: any delta gives epsilon 0
  v.delta = delta;
  v.jobs = static_cast<int32_t>(jobs.size());
  ASSIGN_OR_RETURN(v.spent, privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, spent, delta));
  ASSIGN_OR_RETURN(v.committed, privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, committed, delta));
  if (non_private) {
    v.spent = v.committed = std::numeric_limits<double>::infinity();
  }
  if (v.has_budget) {
    v.epsilon_budget = budget->epsilon;
    v.remaining = std::max(0.0, v.epsilon_budget - v.committed);
  }
  return v;
}

absl::StatusOr<std::vector<BudgetView>> Ledger::SetBudget(const std::vector<std::string>& files, double epsilon,
                                                          double delta, const std::vector<LivePlan>& live) {
  if (files.empty()) return absl::InvalidArgumentError("dataset: must name the data (a dataset or its paths)");
  if (!(epsilon > 0) || !std::isfinite(epsilon)) {
    return absl::InvalidArgumentError(absl::StrCat("epsilon: '", epsilon, "' must be positive"));
  }
  if (!(delta > 0 && delta < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("delta: '", delta, "' must be in (0, 1)"));
  }
  absl::MutexLock write(&write_mu_);
  // The candidates are judged, then stored together, and only then replace
  // the old budgets: a refused or unstored budget changes nothing.
  std::vector<BudgetRecord> records;
  std::vector<BudgetView> views;
  for (const std::string& f : files) {
    const BudgetRecord rec{f, epsilon, delta, clock_->NowMs()};
    ASSIGN_OR_RETURN(BudgetView view, BudgetViewOf(f, rec, {}, {}, live));
    if (view.committed > epsilon) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "file %s already has epsilon %.6g spent or committed at delta %.3g; a budget of %.6g is below it", f,
          view.committed, delta, epsilon));
    }
    records.push_back(rec);
    views.push_back(std::move(view));
  }
  RETURN_IF_ERROR(store_->PutBudgets(records));
  absl::MutexLock lock(&mu_);
  for (const BudgetRecord& rec : records) budgets_[rec.file] = rec;
  return views;
}

absl::StatusOr<std::vector<BudgetView>> Ledger::GetBudgets(const std::vector<std::string>& files,
                                                           const std::vector<LivePlan>& live) {
  // Only the budgets are read under the lock; the ledger rows come from the
  // store and are composed outside it.
  std::map<std::string, std::optional<BudgetRecord>> keys;
  if (!files.empty()) {
    for (const std::string& f : files) keys[f] = Budget(f);
  } else {
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [k, b] : budgets_) keys[k] = b;
    }
    ASSIGN_OR_RETURN(std::vector<std::string> charged, store_->LedgerFiles());
    for (const std::string& k : charged) keys.try_emplace(k);
  }
  std::vector<BudgetView> out;
  for (const auto& [k, budget] : keys) {
    ASSIGN_OR_RETURN(BudgetView v, BudgetViewOf(k, budget, {}, {}, live));
    out.push_back(std::move(v));
  }
  return out;
}

absl::StatusOr<LedgerListing> Ledger::List(const std::string& file, const std::vector<LivePlan>& live) {
  // A status read: composed outside the locks, like a budget view.
  LedgerListing out;
  out.file = file;
  ASSIGN_OR_RETURN(BudgetView view, BudgetViewOf(file, Budget(file), {}, {}, live));
  out.delta = view.delta;
  ASSIGN_OR_RETURN(std::vector<LedgerEntry> rows, store_->LedgerForFile(file));
  std::vector<privacy::SubsampledGaussian> composed;
  double before = 0;
  for (LedgerEntry& e : rows) {
    ListedCharge c;
    if (e.noise_multiplier == 0 || std::isinf(before)) {
      // A non-private epoch: no finite guarantee from here on.
      c.epsilon_total = std::numeric_limits<double>::infinity();
    } else {
      composed.push_back({e.sample_rate, e.noise_multiplier, e.steps});
      ASSIGN_OR_RETURN(c.epsilon_total, privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, composed, out.delta));
    }
    c.epsilon_increment = std::isinf(before) ? 0.0 : c.epsilon_total - before;
    before = c.epsilon_total;
    c.entry = std::move(e);
    out.charges.push_back(std::move(c));
  }
  return out;
}

}  // namespace dpfleet::server
