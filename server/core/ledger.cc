#include "server/core/ledger.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
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

}  // namespace

LivePlan PlanOf(const JobRecord& r, const std::string& dataset) {
  LivePlan p;
  p.job_id = r.job_id;
  p.dataset = dataset;
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
  for (const BudgetRecord& b : budgets) budgets_[b.dataset] = b;
  return absl::OkStatus();
}

absl::StatusOr<double> Ledger::NoiseMultiplierFor(const JobSpec& spec, const JobRecord& plan) {
  if (!spec.dp()) return 0.0;
  double sigma = spec.privacy.noise_multiplier.value_or(1.0);
  if (spec.privacy.target_epsilon) {
    // σ is calibrated so that training AND the eval releases meet the target
    // together.
    const LivePlan p = PlanOf(plan, "");
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

std::optional<BudgetRecord> Ledger::Budget(const std::string& dataset) const {
  absl::MutexLock lock(&mu_);
  auto b = budgets_.find(dataset);
  if (b == budgets_.end()) return std::nullopt;
  return b->second;
}

absl::Status Ledger::CheckSubmit(const std::string& dataset, const JobRecord& plan, const std::vector<LivePlan>& live) {
  absl::MutexLock write(&write_mu_);
  const std::optional<BudgetRecord> budget = Budget(dataset);
  if (!budget) return absl::OkStatus();
  if (!plan.dp) {
    return absl::FailedPreconditionError(
        absl::StrCat("privacy.mode: 'none' cannot run on dataset ", dataset,
                     ": it has a privacy budget and a non-private job has no finite epsilon"));
  }
  const LivePlan p = PlanOf(plan, dataset);
  ASSIGN_OR_RETURN(BudgetView before, BudgetViewOf(dataset, budget, {}, {}, live));
  ASSIGN_OR_RETURN(BudgetView after, BudgetViewOf(dataset, budget, {},
                                                  PlannedMechanisms(p, p.epochs, EvalOf(p).Releases(p.epochs)), live));
  if (after.committed > budget->epsilon) {
    return absl::FailedPreconditionError(
        absl::StrFormat("dataset %s has a budget of epsilon %.6g (delta %.3g): %.6g is spent and %.6g committed by "
                        "queued and running jobs; this job would bring the composed total to %.6g",
                        dataset, budget->epsilon, budget->delta, before.spent, before.committed, after.committed));
  }
  return absl::OkStatus();
}

absl::StatusOr<ChargeResult> Ledger::Charge(const JobRecord& r, const std::string& dataset, int32_t attempt,
                                            int32_t rank, int32_t epoch, int64_t steps, double sample_rate,
                                            double noise_multiplier, Mechanism mechanism) {
  if (epoch < 1 || epoch > r.epochs) {
    return absl::InvalidArgumentError(
        absl::StrCat("epoch ", epoch, " is outside 1..", r.epochs, " of job '", r.job_id, "'"));
  }
  const bool eval = mechanism == Mechanism::kEval;
  if (eval && (!r.dp || rank != 0 || !EvalOf(PlanOf(r, dataset)).ReleasedAfter(epoch, r.epochs))) {
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
  e.dataset = dataset;
  e.steps = want_steps;
  e.sample_rate = want_q;
  // A non-private epoch is recorded too, with sigma 0: the dataset has then
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
  if (const std::optional<BudgetRecord> budget = Budget(dataset)) {
    // Submit reserved the whole plan; this guards anything outside it.
    // Only the spent total is compared, so live plans play no part.
    ASSIGN_OR_RETURN(BudgetView after,
                     BudgetViewOf(dataset, budget, {{e.sample_rate, e.noise_multiplier, e.steps}}, {}, {}));
    if (after.spent > budget->epsilon) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "charging the %s of epoch %d of job '%s' would bring dataset %s to epsilon %.6g, over its budget %.6g",
          eval ? "eval release" : "training", epoch, r.job_id, dataset, after.spent, budget->epsilon));
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

absl::StatusOr<BudgetView> Ledger::BudgetViewOf(const std::string& dataset, const std::optional<BudgetRecord>& budget,
                                                const std::vector<privacy::SubsampledGaussian>& extra_spent,
                                                const std::vector<privacy::SubsampledGaussian>& extra_planned,
                                                const std::vector<LivePlan>& live) {
  BudgetView v;
  v.dataset = dataset;
  v.has_budget = budget.has_value();
  ASSIGN_OR_RETURN(std::vector<LedgerEntry> entries, store_->LedgerForDataset(dataset));
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
    if (p.dataset != dataset) continue;
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

absl::StatusOr<BudgetView> Ledger::SetBudget(const std::string& dataset, double epsilon, double delta,
                                             const std::vector<LivePlan>& live) {
  if (dataset.empty()) return absl::InvalidArgumentError("dataset: must name the data (its path)");
  if (!(epsilon > 0) || !std::isfinite(epsilon)) {
    return absl::InvalidArgumentError(absl::StrCat("epsilon: '", epsilon, "' must be positive"));
  }
  if (!(delta > 0 && delta < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("delta: '", delta, "' must be in (0, 1)"));
  }
  const std::string key = DatasetKey(absl::StrSplit(dataset, '+'));
  absl::MutexLock write(&write_mu_);
  // The candidate is judged, then stored, and only then replaces the old
  // budget: a refused or unstored budget changes nothing.
  const BudgetRecord rec{key, epsilon, delta, clock_->NowMs()};
  ASSIGN_OR_RETURN(BudgetView view, BudgetViewOf(key, rec, {}, {}, live));
  if (view.committed > epsilon) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "dataset %s already has epsilon %.6g spent or committed at delta %.3g; a budget of %.6g is below it", key,
        view.committed, delta, epsilon));
  }
  RETURN_IF_ERROR(store_->PutBudget(rec));
  absl::MutexLock lock(&mu_);
  budgets_[key] = rec;
  return view;
}

absl::StatusOr<std::vector<BudgetView>> Ledger::GetBudgets(const std::string& dataset,
                                                           const std::vector<LivePlan>& live) {
  // Only the budgets are read under the lock; the ledger rows come from the
  // store and are composed outside it.
  std::map<std::string, std::optional<BudgetRecord>> names;
  {
    if (!dataset.empty()) {
      const std::string key = DatasetKey(absl::StrSplit(dataset, '+'));
      names[key] = Budget(key);
    } else {
      absl::MutexLock lock(&mu_);
      for (const auto& [k, b] : budgets_) names[k] = b;
    }
  }
  if (dataset.empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> charged, store_->LedgerDatasets());
    for (const std::string& n : charged) names.try_emplace(n);
  }
  std::vector<BudgetView> out;
  for (const auto& [n, budget] : names) {
    ASSIGN_OR_RETURN(BudgetView v, BudgetViewOf(n, budget, {}, {}, live));
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<LedgerListing> Ledger::List(const std::string& dataset, const std::vector<LivePlan>& live) {
  // A status read: composed outside the locks, like a budget view.
  LedgerListing out;
  out.dataset = DatasetKey(absl::StrSplit(dataset, '+'));
  ASSIGN_OR_RETURN(BudgetView view, BudgetViewOf(out.dataset, Budget(out.dataset), {}, {}, live));
  out.delta = view.delta;
  ASSIGN_OR_RETURN(std::vector<LedgerEntry> rows, store_->LedgerForDataset(out.dataset));
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
