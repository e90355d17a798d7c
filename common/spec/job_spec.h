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

struct TrainingSpec {
  int32_t epochs = 5;
  int64_t batch_size = 512;
  std::string optimizer = "sgd";  // sgd | adam
  double learning_rate = 0.5;
  double momentum = 0.0;
  uint64_t seed = 1;
  double eval_fraction = 0.2;
};

struct PrivacySpec {
  std::string mode = "dp";  // dp | none
  double max_grad_norm = 1.0;
  std::optional<double> noise_multiplier;  // default 1.0 unless target_epsilon
  std::optional<double> target_epsilon;    // coordinator calibrates sigma
  double delta = 1e-5;
  std::string accountant = "rdp";  // rdp | pld
  bool secure_rng = false;
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

// Parses and validates a YAML job spec. InvalidArgument on any problem.
absl::StatusOr<JobSpec> ParseJobSpec(absl::string_view yaml);

// Validation of an already-built spec (ParseJobSpec calls it).
absl::Status ValidateJobSpec(const JobSpec& spec);

// How the job's raw files are encoded. The coordinator (which derives N and
// so q = B/N from it) and every worker call this one function, so both see
// exactly the same records.
absl::StatusOr<data::EncodeOptions> EncodeOptionsFor(const JobSpec& spec);

// Canonical YAML of a spec, which ParseJobSpec reads back to an equal spec.
std::string JobSpecToYaml(const JobSpec& spec);

}  // namespace dpfleet

#endif  // DPFLEET_COMMON_SPEC_JOB_SPEC_H_
