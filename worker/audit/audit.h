// Privacy audit of a trained job: attacks the service runs against a model
// on the custodian's behalf (`dpctl audit`), and the empirical ε lower bound
// they imply, next to the ε the ledger reported.
//
// Inputs are private (the job's training members and its held-out eval
// split) and so is the report: it uses membership labels, and it leaves the
// coordinator to custodians only (docs/PRIVACY.md). Nothing here is charged
// to the ledger: no analyst ever receives it.
//
// What runs (RunAudit):
//  * challenge points: members drawn from the training split, non-members
//    from the eval split, sampled so that a challenge point is a member with
//    probability 1/2 (at most `max_challenge` per side, and at most half of
//    either split, so that the shadow pool keeps records of both);
//  * shadow models: `shadow_models` models trained with the target's own
//    spec (DP-SGD with its σ, C, B, epochs; or plain SGD for a non-private
//    target), each on a fresh random subset of min(N, pool) records of the
//    pool (every record that is not a challenge point), so every shadow is
//    an OUT model for every challenge point (offline LiRA);
//  * membership attacks on the target: loss threshold (score = -BCE) and
//    offline LiRA (score = how far the target's logit-scaled confidence on a
//    point lies above the shadows' OUT distribution of it); AUC, TPR at FPR
//    0.1 % and 1 %, and the ε lower bound (Clopper–Pearson, `confidence`
//    jointly over every bound of the report; statistics.h, docs/AUDIT.md —
//    a single-run estimate, not a proof over independent runs);
//  * model inversion (Fredrikson et al. 2015): recover a sensitive
//    categorical feature of member records from the model, the record's
//    other features and its label; accuracy against the base rate;
//  * the one-run audit (Steinke, Nasr, Jagielski 2023; statistics.h): the
//    audit inserts `canaries` records of the eval split with their label
//    flipped, each with probability 1/2 by an independent CSPRNG coin, into
//    the training records and trains ONE model of the target's spec on them
//    with the target's mechanism (its σ, C, optimizer, epochs, steps per
//    epoch, and every record sampled at its q = B / N with the noisy sum
//    divided by its B, whatever the coins: the run's accounted ε is the
//    reported ε); it then guesses the inclusion of the k highest- and k
//    lowest-scoring canaries (score = log-likelihood of the flipped label)
//    for k in kOneRunGuessShares of m, and reports the best ε lower bound
//    (ties to the smallest k).
//    It audits the training algorithm, not the job's own model (which saw no
//    canaries), and its bound is a proof from one run;
//  * the same attacks on a non-private baseline: a model of the same spec
//    trained by the audit without clipping or noise on the same members
//    (with its own non-private shadows, and its own one-run training with
//    canaries), so the report shows how much more exposed the model would
//    have been without DP.
//
// Sampling of challenge points and shadow data uses the OS CSPRNG; nothing
// here is keyed by the spec's seed.
#ifndef DPFLEET_WORKER_AUDIT_AUDIT_H_
#define DPFLEET_WORKER_AUDIT_AUDIT_H_

#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/dp_sgd.h"
#include "worker/train/model.h"

namespace dpfleet::audit {

struct AuditOptions {
  bool membership = true;
  bool inversion = true;
  // Shadow models per audited model (target and baseline each get this many).
  int shadow_models = 8;
  // Challenge points per side (members, non-members); fewer when the data
  // holds fewer.
  int64_t max_challenge = 2000;
  // Also train and attack the non-private baseline.
  bool baseline = true;
  // PUMS features to invert (must be categorical features of the job); empty
  // = those of {"DIS", "MAR"} the job has.
  std::vector<std::string> inversion_features;
  // Joint confidence of every ε lower bound in one report.
  double confidence = 0.95;
  // The one-run audit, with this many canaries (fewer when the eval split
  // holds fewer).
  bool one_run = true;
  int64_t canaries = 1000;
};

// Guess counts of the one-run audit, as shares of the canaries: k = share *
// m canaries guessed "in" and k guessed "out". Fixed before any score is
// seen; every share is one test of the report's Bonferroni correction.
inline constexpr double kOneRunGuessShares[] = {0.01, 0.05, 0.1, 0.25, 0.5};

// What the audit needs about the job: its model and how it was trained.
struct AuditTarget {
  train::ModelConfig model;
  train::TrainConfig train;   // as the job trained (dataset_size = N, σ, C, B, dp, ...)
  int epochs = 0;             // training.epochs
  torch::Tensor flat_params;  // the trained model's flat parameter buffer (CPU, float32)
  // Encoded column names (data::EncodedColumns of the job's features), for
  // locating one-hot groups of inversion features ("MAR=1", ...).
  std::vector<std::string> columns;
  std::optional<double> reported_epsilon;  // the ledger's ε; nullopt = not private
  double delta = 0.0;
};

// The job's data, as the worker loaded it: every training record (members)
// and the held-out eval split (non-members). x [n, d] float32, y [n] 0/1.
struct AuditData {
  torch::Tensor x_train, y_train;
  torch::Tensor x_eval, y_eval;
};

struct MembershipResult {
  std::string attack;  // "loss_threshold" | "lira_offline"
  int64_t members = 0;
  int64_t non_members = 0;
  double auc = 0.5;
  double tpr_at_fpr_0_1pct = 0.0;  // TPR at FPR <= 0.1 %
  double tpr_at_fpr_1pct = 0.0;    // TPR at FPR <= 1 %
  // Largest ε the attack's outcome proves at the report's confidence
  // (Clopper–Pearson bounds on TPR and FPR at a threshold chosen on a
  // held-apart half of the challenge points); 0 when it proves nothing.
  double epsilon_lower_bound = 0.0;
};

struct InversionResult {
  std::string feature;     // "DIS"
  int64_t records = 0;     // member records attacked
  double accuracy = 0.0;   // share whose value the attack recovered
  double base_rate = 0.0;  // share of the most common value (guessing it always)
};

// The one-run audit of the training algorithm that made one model.
struct OneRunResult {
  int64_t canaries = 0;      // m, each included with probability 1/2
  int64_t included = 0;      // how many the coins put in the training run
  double sample_rate = 0.0;  // the run's Poisson rate (the target's q)
  int64_t steps = 0;         // the run's steps (the target's)
  // The guess count with the largest bound: r guesses, v of them right.
  int64_t guesses = 0;
  int64_t correct = 0;
  // Largest ε the run refutes at the report's confidence; 0 when none.
  double epsilon_lower_bound = 0.0;
};

struct ModelAudit {
  std::string model;  // "target" | "non_private_baseline"
  std::vector<MembershipResult> membership;
  std::vector<InversionResult> inversion;
  std::optional<OneRunResult> one_run;
  double epsilon_lower_bound = 0.0;  // max over its membership attacks and the one-run audit
};

struct AuditReport {
  std::optional<double> reported_epsilon;
  double delta = 0.0;
  double confidence = 0.95;
  int shadow_models = 0;
  ModelAudit target;
  std::optional<ModelAudit> baseline;
  double seconds = 0.0;  // wall time of the audit
};

// Progress for the worker's released log: a fixed phase name and counters.
// Phases, in order: "training shadow models" (k of K, target's shadows),
// "membership inference", "model inversion" (i of features), "training
// with canaries" (0/1, 1/1), then with a baseline "training baseline model"
// (0/1, 1/1), "training baseline shadow models", "membership inference",
// "model inversion", "training with canaries". Counters only: no metric of
// the data passes through it.
using AuditProgress = std::function<void(const std::string& phase, int done, int total)>;

// Runs the audit on this process (CPU or the target's device in
// target.train.device). Errors: InvalidArgument naming the field (no
// training or eval rows, an unknown or non-categorical inversion feature,
// shadow_models < 1, canaries < 2 for a one-run audit, parameters that do
// not fit the model); Cancelled when
// *cancel becomes true (checked between training steps).
absl::StatusOr<AuditReport> RunAudit(const AuditTarget& target, const AuditData& data, const AuditOptions& options,
                                     const std::atomic<bool>* cancel = nullptr,
                                     const AuditProgress& progress = nullptr);

}  // namespace dpfleet::audit

#endif  // DPFLEET_WORKER_AUDIT_AUDIT_H_
