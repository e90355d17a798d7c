// Benchmark of the privacy audit (worker/audit/): trains a DP target with
// the demo's spec (deploy/examples/employment-dp.yaml: its features, MLP
// [64, 32], 5 epochs, B 512, SGD lr 0.5, C 1, σ 1) on synthetic PUMS, then
// times RunAudit with --shadows shadow models and prints what it found:
// AUCs, TPR at low FPR, ε lower bounds next to the reported ε, inversion
// accuracy against the base rate, for the target and the non-private
// baseline.
//
//   dpfleet-audit-bench [--rows 25000] [--shadows 4] [--threads 1] [--json]
//                       [--hidden 64,32] [--epochs 5] [--batch 512] [--lr 0.5]
//                       [--momentum 0] [--sigma 1.0]
//
// The spec flags change the target's (and so the shadows' and the
// baseline's) spec, e.g. to the memorising spec of the demo's second audit
// (deploy/examples/small-dp.yaml).
//
// Synthetic data only (common/pums/synth.h); nothing here reads real records.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/privacy/accountant.h"
#include "common/pums/dataset.h"
#include "common/pums/synth.h"
#include "nlohmann/json.hpp"
#include "worker/audit/audit.h"
#include "worker/comm/communicator.h"
#include "worker/train/dp_sgd.h"
#include "worker/train/split_tensors.h"

namespace {

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "dpfleet-audit-bench: %s\n", why.c_str());
  std::exit(1);
}

nlohmann::json ToJson(const dpfleet::audit::ModelAudit& a) {
  nlohmann::json j = {{"model", a.model}, {"epsilon_lower_bound", a.epsilon_lower_bound}};
  for (const auto& m : a.membership) {
    j["membership"].push_back({{"attack", m.attack},
                               {"members", m.members},
                               {"non_members", m.non_members},
                               {"auc", m.auc},
                               {"tpr_at_fpr_0_1pct", m.tpr_at_fpr_0_1pct},
                               {"tpr_at_fpr_1pct", m.tpr_at_fpr_1pct},
                               {"epsilon_lower_bound", m.epsilon_lower_bound}});
  }
  for (const auto& r : a.inversion) {
    j["inversion"].push_back(
        {{"feature", r.feature}, {"records", r.records}, {"accuracy", r.accuracy}, {"base_rate", r.base_rate}});
  }
  if (a.one_run) {
    j["one_run"] = {{"canaries", a.one_run->canaries},
                    {"included", a.one_run->included},
                    {"guesses", a.one_run->guesses},
                    {"correct", a.one_run->correct},
                    {"epsilon_lower_bound", a.one_run->epsilon_lower_bound}};
  }
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 25000;
  int shadows = 4, threads = 1, epochs = 5;
  int64_t canaries = 1000;
  bool json = false;
  dpfleet::train::ModelConfig model;  // MLP [64, 32], ReLU
  dpfleet::train::TrainConfig config;
  config.batch_size = 512;
  config.learning_rate = 0.5;
  config.max_grad_norm = 1.0;
  config.noise_multiplier = 1.0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die("missing value for " + arg);
      return argv[++i];
    };
    int64_t v = 0;
    double f = 0;
    if (arg == "--hidden") {
      model.hidden.clear();
      for (absl::string_view w : absl::StrSplit(value(), ',')) {
        if (!absl::SimpleAtoi(w, &v) || v <= 0) Die("--hidden: '" + std::string(w) + "' is not a positive width");
        model.hidden.push_back(v);
      }
    } else if (arg == "--epochs" && absl::SimpleAtoi(value(), &v) && v > 0) {
      epochs = static_cast<int>(v);
    } else if (arg == "--batch" && absl::SimpleAtoi(value(), &v) && v > 0) {
      config.batch_size = v;
    } else if (arg == "--lr" && absl::SimpleAtod(value(), &f) && f > 0) {
      config.learning_rate = f;
    } else if (arg == "--momentum" && absl::SimpleAtod(value(), &f) && f >= 0 && f < 1) {
      config.momentum = f;
    } else if (arg == "--sigma" && absl::SimpleAtod(value(), &f) && f > 0) {
      config.noise_multiplier = f;
    } else if (arg == "--rows" && absl::SimpleAtoi(value(), &v) && v > 0) {
      rows = v;
    } else if (arg == "--shadows" && absl::SimpleAtoi(value(), &v) && v > 0) {
      shadows = static_cast<int>(v);
    } else if (arg == "--threads" && absl::SimpleAtoi(value(), &v) && v > 0) {
      threads = static_cast<int>(v);
    } else if (arg == "--canaries" && absl::SimpleAtoi(value(), &v) && v >= 2) {
      canaries = v;
    } else if (arg == "--json") {
      json = true;
    } else {
      Die("usage: dpfleet-audit-bench [--rows N] [--shadows K] [--threads T] [--json] [--hidden W,W] "
          "[--epochs E] [--batch B] [--lr L] [--momentum M] [--sigma S] [--canaries M]");
    }
  }
  at::set_num_threads(threads);

  const std::string csv = "/tmp/dpfleet-audit-bench-" + std::to_string(rows) + ".csv";
  if (!dpfleet::data::WriteSyntheticPums({rows, /*seed=*/1}, csv).ok()) Die("cannot write " + csv);
  dpfleet::data::EncodeOptions encode;
  encode.features = {"AGEP", "SCHL", "MAR", "SEX", "RAC1P", "DIS", "CIT", "NATIVITY", "MIL", "DREM"};
  auto ds = dpfleet::data::LoadAndEncode({csv}, encode);
  if (!ds.ok()) Die(std::string(ds.status().message()));
  std::remove(csv.c_str());

  using dpfleet::train::FeatureTensor;
  using dpfleet::train::LabelTensor;
  dpfleet::audit::AuditData data{FeatureTensor(ds->train), LabelTensor(ds->train), FeatureTensor(ds->eval),
                                 LabelTensor(ds->eval)};
  config.dataset_size = ds->train.rows;
  const double delta = 1e-5;

  dpfleet::comm::LocalCommunicator comm;
  auto trainer = dpfleet::train::DpSgdTrainer::Create(model, config, ds->train.dim, &comm);
  if (!trainer.ok()) Die(std::string(trainer.status().message()));
  const auto t0 = std::chrono::steady_clock::now();
  for (int e = 0; e < epochs; ++e) {
    if (auto s = (*trainer)->TrainEpoch(data.x_train, data.y_train); !s.ok()) Die(std::string(s.message()));
  }
  const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto metrics = (*trainer)->Evaluate(data.x_eval, data.y_eval);
  auto epsilon = dpfleet::privacy::ComputeEpsilon(
      dpfleet::privacy::AccountantKind::kRdp,
      {{(*trainer)->sample_rate(), config.noise_multiplier, (*trainer)->steps_done()}}, delta);
  if (!epsilon.ok()) Die(std::string(epsilon.status().message()));

  dpfleet::audit::AuditTarget target;
  target.model = model;
  target.train = config;
  target.epochs = epochs;
  target.flat_params = (*trainer)->model().flat().clone();
  target.columns = ds->columns;
  target.reported_epsilon = *epsilon;
  target.delta = delta;
  dpfleet::audit::AuditOptions options;
  options.shadow_models = shadows;
  options.canaries = canaries;
  auto report = dpfleet::audit::RunAudit(target, data, options);
  if (!report.ok()) Die(std::string(report.status().message()));

  nlohmann::json out = {{"train_rows", ds->train.rows},
                        {"eval_rows", ds->eval.rows},
                        {"columns", ds->columns.size()},
                        {"threads", threads},
                        {"target_train_seconds", train_s},
                        {"target_eval_accuracy", metrics.accuracy},
                        {"target_eval_auc", metrics.auc},
                        {"reported_epsilon", *epsilon},
                        {"delta", delta},
                        {"shadow_models", report->shadow_models},
                        {"audit_seconds", report->seconds},
                        {"target", ToJson(report->target)}};
  if (report->baseline) out["baseline"] = ToJson(*report->baseline);
  std::printf("%s\n", out.dump(json ? -1 : 2).c_str());
  return 0;
}
