// Benchmark for the DP eval release (worker/train/dp_eval.h): what it costs
// in epsilon and what its noise and binning do to the reported metrics, at a
// job spec (by default deploy/examples/employment-dp.yaml).
//
//   dpfleet-eval-bench [--spec FILE] [--synth-rows N | FILE...] [--sigma S1,S2,..]
//                      [--bins K1,K2,..] [--releases R] [--threads T]
//
// It encodes the data as a data.path job would (random split key), trains
// the spec's model with DP-SGD for the spec's epochs on one rank, then, for
// every (sigma_e, bins): the job's epsilon with and without the spec's eval
// releases (RDP and PLD), and over R independent releases on the final
// model the error of each released metric against its exact value (mean
// absolute and 95th percentile, in points for rates). "bin" columns are the
// binning error alone (the exact histogram's metric minus the exact metric).
// Timing is not its subject; it prints no rates.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/privacy/accountant.h"
#include "common/pums/dataset.h"
#include "common/pums/synth.h"
#include "common/secure_random.h"
#include "common/spec/job_spec.h"
#include "worker/comm/communicator.h"
#include "worker/train/dp_eval.h"
#include "worker/train/dp_sgd.h"
#include "worker/train/metrics.h"
#include "worker/train/split_tensors.h"

namespace {

using dpfleet::train::EvalMetrics;

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "dpfleet-eval-bench: %s\n", why.c_str());
  std::exit(2);
}

template <typename T>
std::vector<T> ParseList(const std::string& flag, const std::string& text) {
  std::vector<T> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    double v = 0;
    if (!absl::SimpleAtod(part, &v)) Die(flag + ": '" + std::string(part) + "' is not a number");
    out.push_back(static_cast<T>(v));
  }
  return out;
}

struct ErrorStats {
  double mean_abs = 0, p95 = 0;
};

ErrorStats Summarise(std::vector<double> errors) {
  ErrorStats s;
  for (double& e : errors) {
    e = std::fabs(e);
    s.mean_abs += e;
  }
  s.mean_abs /= static_cast<double>(errors.size());
  std::sort(errors.begin(), errors.end());
  s.p95 = errors[static_cast<size_t>(0.95 * static_cast<double>(errors.size() - 1))];
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string spec_path = "deploy/examples/employment-dp.yaml";
  int64_t synth_rows = 200000;
  std::vector<std::string> files;
  std::vector<double> sigmas = {dpfleet::kDefaultEvalNoiseMultiplier};
  std::vector<int> bins = {dpfleet::kDefaultEvalBins};
  int releases = 2000;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--spec") {
      spec_path = value();
    } else if (arg == "--synth-rows") {
      synth_rows = ParseList<int64_t>(arg, value())[0];
    } else if (arg == "--sigma") {
      sigmas = ParseList<double>(arg, value());
    } else if (arg == "--bins") {
      bins = ParseList<int>(arg, value());
    } else if (arg == "--releases") {
      releases = ParseList<int>(arg, value())[0];
    } else if (arg == "--threads") {
      threads = ParseList<int>(arg, value())[0];
    } else if (!arg.empty() && arg[0] == '-') {
      Die("unknown flag " + arg);
    } else {
      files.push_back(arg);
    }
  }
  if (threads > 0) at::set_num_threads(threads);
  std::ifstream spec_file(spec_path);
  if (!spec_file) Die("--spec: cannot read " + spec_path);
  std::stringstream spec_text;
  spec_text << spec_file.rdbuf();
  auto spec = dpfleet::ParseJobSpec(spec_text.str());
  if (!spec.ok()) Die(std::string(spec.status().message()));
  if (files.empty()) {
    const std::string path = "/tmp/dpfleet-eval-bench-" + std::to_string(getpid()) + ".csv";
    dpfleet::data::SynthOptions synth;
    synth.rows = synth_rows;
    synth.seed = 1;  // the demo's data
    if (!dpfleet::data::WriteSyntheticPums(synth, path).ok()) Die("cannot write " + path);
    files.push_back(path);
  }
  auto key = dpfleet::SecureRandomU64();
  auto options = dpfleet::EncodeOptionsFor(*spec, *key);
  auto ds = dpfleet::data::LoadAndEncode(files, *options);
  if (!ds.ok()) Die(std::string(ds.status().message()));
  if (files.size() == 1 && files[0].rfind("/tmp/dpfleet-eval-bench-", 0) == 0) std::remove(files[0].c_str());

  dpfleet::train::ModelConfig mc;
  mc.type = spec->model.type == "logistic" ? dpfleet::train::ModelType::kLogistic : dpfleet::train::ModelType::kMlp;
  mc.hidden = spec->model.hidden;
  mc.activation =
      spec->model.activation == "tanh" ? dpfleet::train::Activation::kTanh : dpfleet::train::Activation::kRelu;
  dpfleet::train::TrainConfig tc;
  tc.dataset_size = ds->train.rows;
  tc.batch_size = spec->training.batch_size;
  tc.learning_rate = spec->training.learning_rate;
  tc.momentum = spec->training.momentum;
  tc.max_grad_norm = spec->privacy.max_grad_norm;
  tc.noise_multiplier = spec->privacy.noise_multiplier.value_or(1.0);
  tc.seed = spec->training.seed;
  dpfleet::comm::LocalCommunicator comm;
  auto trainer = dpfleet::train::DpSgdTrainer::Create(mc, tc, ds->train.dim, &comm);
  if (!trainer.ok()) Die(std::string(trainer.status().message()));
  const torch::Tensor x = dpfleet::train::FeatureTensor(ds->train);
  const torch::Tensor y = dpfleet::train::LabelTensor(ds->train);
  const torch::Tensor xe = dpfleet::train::FeatureTensor(ds->eval);
  const torch::Tensor ye = dpfleet::train::LabelTensor(ds->eval);
  for (int e = 0; e < spec->training.epochs; ++e) {
    if (absl::Status s = (*trainer)->TrainEpoch(x, y); !s.ok()) Die(std::string(s.message()));
  }
  const EvalMetrics exact = (*trainer)->Evaluate(xe, ye);
  const torch::Tensor logits = (*trainer)->model().Logits(xe);
  const double q = (*trainer)->sample_rate();
  const int64_t steps = (*trainer)->steps_per_epoch() * spec->training.epochs;
  std::printf("data: %lld train rows, %lld eval rows; model after %d epochs: accuracy %.4f (majority %.4f), "
              "auc %.4f, loss %.4f\n",
              static_cast<long long>(ds->train.rows), static_cast<long long>(ds->eval.rows), spec->training.epochs,
              exact.accuracy, exact.majority_rate, exact.auc, exact.loss);
  std::printf("training: q=%.6g sigma=%.4g steps=%lld delta=%.3g; %d eval releases (every %d)\n", q, tc.noise_multiplier,
              static_cast<long long>(steps), spec->privacy.delta, spec->privacy.eval.Releases(spec->training.epochs),
              spec->privacy.eval.every);
  std::printf("\n| sigma_e | bins | eps train (rdp) | eps total (rdp) | eval share rdp | eps train (pld) | eps total (pld) "
              "| eval share pld | acc err mean | acc err p95 | bal acc err p95 | majority err p95 | auc err p95 | auc bin "
              "| loss err p95 | loss bin |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (double sigma : sigmas) {
    for (int k : bins) {
      const int evals = spec->privacy.eval.Releases(spec->training.epochs);
      std::vector<dpfleet::privacy::SubsampledGaussian> train{{q, tc.noise_multiplier, steps}};
      std::vector<dpfleet::privacy::SubsampledGaussian> total = train;
      total.push_back({1.0, sigma, evals});
      double eps[2][2];
      for (int a = 0; a < 2; ++a) {
        const auto kind = a == 0 ? dpfleet::privacy::AccountantKind::kRdp : dpfleet::privacy::AccountantKind::kPld;
        eps[a][0] = *dpfleet::privacy::ComputeEpsilon(kind, train, spec->privacy.delta);
        eps[a][1] = *dpfleet::privacy::ComputeEpsilon(kind, total, spec->privacy.delta);
      }
      auto releaser = dpfleet::train::EvalReleaser::Create(sigma, k);
      if (!releaser.ok()) Die(std::string(releaser.status().message()));
      const EvalMetrics binned = dpfleet::train::MetricsFromHistogram(dpfleet::train::HistogramOfScores(logits, ye, k));
      std::vector<double> acc, bal, maj, auc, loss;
      for (int r = 0; r < releases; ++r) {
        auto m = releaser->Release((*trainer)->model(), xe, ye);
        if (!m.ok()) Die(std::string(m.status().message()));
        acc.push_back(m->accuracy - exact.accuracy);
        bal.push_back(m->balanced_accuracy - exact.balanced_accuracy);
        maj.push_back(m->majority_rate - exact.majority_rate);
        auc.push_back(m->auc - exact.auc);
        loss.push_back(m->loss - exact.loss);
      }
      const ErrorStats a = Summarise(acc), b = Summarise(bal), mj = Summarise(maj), u = Summarise(auc),
                       l = Summarise(loss);
      std::printf("| %g | %d | %.4f | %.4f | %.1f%% | %.4f | %.4f | %.1f%% | %.3f pt | %.3f pt | %.3f pt | %.3f pt | "
                  "%.4f | %+.4f | %.4f | %+.4f |\n",
                  sigma, k, eps[0][0], eps[0][1], 100 * (eps[0][1] - eps[0][0]) / eps[0][1], eps[1][0], eps[1][1],
                  100 * (eps[1][1] - eps[1][0]) / eps[1][1], 100 * a.mean_abs, 100 * a.p95, 100 * b.p95, 100 * mj.p95,
                  u.p95, binned.auc - exact.auc, l.p95, binned.loss - exact.loss);
    }
  }
  return 0;
}
