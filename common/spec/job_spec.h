// The job spec: the one YAML document a user submits, parsed into plain
// types and validated.
//
// Every error names the field (dotted path), the offending value and why it
// is refused. Unknown fields are errors, so a typo never silently falls back
// to a default. Parsing never touches the filesystem or the data: checks
// that need the data file happen in the coordinator.
#ifndef DPFLEET_COMMON_SPEC_JOB_SPEC_H_
#define DPFLEET_COMMON_SPEC_JOB_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/pums/dataset.h"

namespace dpfleet {

struct ModelSpec {
  std::string type = "mlp";  // mlp | logistic
  std::vector<int64_t> hidden = {64, 32};
  std::string activation = "relu";  // relu | tanh
};

// Share of a data.path job's persons held out for evaluation: the default
// and the bounds a submitter may choose within. Which persons they are is
// never the submitter's choice (the coordinator's split key decides).
inline constexpr double kDefaultEvalFraction = 0.2;
inline constexpr double kMinEvalFraction = 0.05;
inline constexpr double kMaxEvalFraction = 0.5;

struct TrainingSpec {
  int32_t epochs = 5;
  int64_t batch_size = 512;
  std::string optimizer = "sgd";  // sgd | adam
  double learning_rate = 0.5;
  double momentum = 0.0;
  // The model's initialisation, nothing else: sampling and noise come from
  // the OS CSPRNG and the held-out split from the coordinator's key.
  uint64_t seed = 1;
  // data.path jobs only, in [kMinEvalFraction, kMaxEvalFraction]; unset =
  // kDefaultEvalFraction. A registered dataset's split was fixed when it was
  // prepared, so a `dataset:` spec may not set it.
  std::optional<double> eval_fraction;
};

// The per-epoch evaluation as a DP release (privacy.eval). Rank 0 releases
// one histogram of the model's eval scores per label with N(0, sigma_e^2)
// added to every count; each eval record moves one count by one (L2
// sensitivity 1), so a release is the Gaussian mechanism — a subsampled
// Gaussian with q = 1, sigma = sigma_e, one step — and is charged to the
// ledger as such before it leaves the worker. Every metric (accuracy,
// balanced accuracy, AUC, loss, majority rate) is computed from the noisy
// histogram: post-processing, free. Defaults: docs/PRIVACY.md states their
// cost and accuracy at deploy/examples/employment-dp.yaml.
inline constexpr double kDefaultEvalNoiseMultiplier = 25.0;
inline constexpr int32_t kDefaultEvalBins = 16;
struct EvalSpec {
  bool enabled = true;  // false: `privacy.eval: none`, no metrics at all
  double noise_multiplier = kDefaultEvalNoiseMultiplier;  // sigma_e
  int32_t bins = kDefaultEvalBins;  // score bins per label; even, so 0.5 is a bin edge
  int32_t every = 1;                // release after every E-th epoch and after the last

  // Whether metrics are released after `epoch` (1-based) of `epochs`.
  bool ReleasedAfter(int32_t epoch, int32_t epochs) const;
  // How many releases a job of `epochs` epochs makes.
  int32_t Releases(int32_t epochs) const;
};

struct PrivacySpec {
  std::string mode = "dp";  // dp | none
  double max_grad_norm = 1.0;
  std::optional<double> noise_multiplier;  // default 1.0 unless target_epsilon
  std::optional<double> target_epsilon;    // coordinator calibrates sigma
  double delta = 1e-5;
  std::string accountant = "rdp";  // rdp | pld
  // mode dp: the DP release of the eval metrics. mode none: exact metrics
  // (the job is not private anyway) unless `eval: none`.
  EvalSpec eval;
  // How the noise is split among the W ranks. per_rank: each rank adds
  // N(0, sigma^2 C^2 / W), the all-reduced total is N(0, sigma^2 C^2) and the
  // accountant uses sigma; what one rank sends is then noised only
  // sigma/sqrt(W) — fine when peers and the network are trusted. full: each
  // rank adds N(0, sigma^2 C^2) itself, so every buffer that leaves a rank is
  // already a sigma-noised release (against curious peers or a network
  // observer); the total is N(0, W sigma^2 C^2) and the accountant uses
  // sigma sqrt(W). With target_epsilon, sigma is calibrated as for per_rank
  // (the target then bounds what one rank's buffer reveals) and the job's
  // epsilon is that of sigma sqrt(W), below the target.
  std::string noise_split = "per_rank";  // per_rank | full
};


struct ResourcesSpec {
  int32_t workers = 1;
  std::string device = "cpu";  // cpu | cuda
  // Attempts a job may take: with more than 1, rank 0 checkpoints the
  // training state to the coordinator after every epoch, and a failed
  // attempt (lost worker, failed collective) is rescheduled from the last
  // checkpoint. Every attempt's charges stay in the ledger, so a retry
  // spends budget again for the epoch it repeats.
  int32_t max_attempts = 1;
};

struct JobSpec {
  std::string name;
  std::vector<std::string> data_paths;  // raw PUMS files (data.path) ...
  std::string dataset;                  // ... or a dataset registered with the coordinator
  std::string task = "employment";
  std::vector<std::string> features;  // empty = the default PUMS list
  ModelSpec model;
  TrainingSpec training;
  PrivacySpec privacy;
  ResourcesSpec resources;

  bool dp() const { return privacy.mode == "dp"; }
};

// The noise multiplier the accountant charges for a per-rank sigma of
// `spec` (privacy.noise_split: sigma for per_rank, sigma * sqrt(workers) for
// full).
double AccountedNoiseMultiplier(const JobSpec& spec, double sigma);

// Parses and validates a YAML job spec. InvalidArgument on any problem.
absl::StatusOr<JobSpec> ParseJobSpec(absl::string_view yaml);

// Validation of an already-built spec (ParseJobSpec calls it).
absl::Status ValidateJobSpec(const JobSpec& spec);

// How a data.path job's raw files are encoded. The coordinator (which
// derives N and so q = B/N from it) and every worker call this one function
// with the coordinator's split key (it travels in the assignment), so both
// see exactly the same records and the same held-out split — one that
// nothing in the spec can move.
absl::StatusOr<data::EncodeOptions> EncodeOptionsFor(const JobSpec& spec, uint64_t split_key);

// Canonical YAML of a spec, which ParseJobSpec reads back to an equal spec.
std::string JobSpecToYaml(const JobSpec& spec);

}  // namespace dpfleet

#endif  // DPFLEET_COMMON_SPEC_JOB_SPEC_H_
