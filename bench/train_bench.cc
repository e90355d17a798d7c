// Benchmark for the DP-SGD engine: training throughput (examples/s, ms/step)
// of DP-SGD (Poisson sampling + book-keeping clipped sums + noise + one
// all-reduce + optimizer) against the non-private mini-batch SGD baseline on
// the same data path, on synthetic data with a world-of-one communicator.
//
//   dpfleet-train-bench [--dim 120] [--threads 2] [--steps 30] [--warmup 5]
//                       [--batches 256,1024,4096] [--models 64x32,256x256]
//                       [--optimizer sgd|adam] [--device cpu|cuda[:N]] [--json]
//
// With --device cuda the engine computes on the GPU (libtorch_cuda is loaded
// at start; the data is resident on the device); every step ends with the
// device idle (the trainer's finiteness check waits for it), so step times
// are wall times of completed steps.
//
// Per model x batch, the DP and the non-private trainer step alternately
// (paired: machine load hits both alike), each step timed on its own.
//
// examples/s counts the EXPECTED batch size B per step (the actual Poisson
// batch size fluctuates around it) and the median step time. It never
// touches real data.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "worker/comm/communicator.h"
#include "worker/train/device.h"
#include "worker/train/dp_sgd.h"

namespace {

using dpfleet::train::DpSgdTrainer;
using dpfleet::train::ModelConfig;
using dpfleet::train::ModelType;
using dpfleet::train::OptimizerType;
using dpfleet::train::TrainConfig;

struct Options {
  int64_t dim = 120;
  int threads = 2;
  int steps = 30;
  int warmup = 5;
  std::vector<int64_t> batches = {256, 1024, 4096};
  std::vector<std::vector<int64_t>> models = {{64, 32}, {256, 256}};
  OptimizerType optimizer = OptimizerType::kSgd;
  std::string device = "cpu";
  bool json = false;
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr,
               "%s\nusage: dpfleet-train-bench [--dim D] [--threads T] [--steps S] [--warmup W]\n"
               "       [--batches 256,1024,4096] [--models 64x32,256x256|logistic] [--optimizer sgd|adam]\n"
               "       [--device cpu|cuda[:N]] [--json]\n",
               why.c_str());
  std::exit(2);
}

int64_t ParseInt(const std::string& flag, const std::string& s) {
  int64_t v;
  if (!absl::SimpleAtoi(s, &v) || v < 0) Usage("bad value for " + flag + ": " + s);
  return v;
}

Options ParseFlags(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    const auto eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    auto next = [&]() -> std::string {
      if (!value.empty()) return value;
      if (i + 1 >= argc) Usage("missing value for " + arg);
      return argv[++i];
    };
    if (arg == "--json") {
      o.json = true;
    } else if (arg == "--dim") {
      o.dim = ParseInt(arg, next());
    } else if (arg == "--threads") {
      o.threads = static_cast<int>(ParseInt(arg, next()));
    } else if (arg == "--steps") {
      o.steps = static_cast<int>(ParseInt(arg, next()));
    } else if (arg == "--warmup") {
      o.warmup = static_cast<int>(ParseInt(arg, next()));
    } else if (arg == "--batches") {
      o.batches.clear();
      for (const auto& part : absl::StrSplit(next(), ',')) o.batches.push_back(ParseInt(arg, std::string(part)));
    } else if (arg == "--models") {
      o.models.clear();
      for (const auto& part : absl::StrSplit(next(), ',')) {
        std::vector<int64_t> hidden;
        if (part != "logistic") {
          for (const auto& w : absl::StrSplit(part, 'x')) hidden.push_back(ParseInt(arg, std::string(w)));
        }
        o.models.push_back(hidden);
      }
    } else if (arg == "--optimizer") {
      const std::string v = next();
      if (v == "sgd") {
        o.optimizer = OptimizerType::kSgd;
      } else if (v == "adam") {
        o.optimizer = OptimizerType::kAdam;
      } else {
        Usage("bad optimizer " + v);
      }
    } else if (arg == "--device") {
      o.device = next();
    } else if (arg == "--help" || arg == "-h") {
      Usage("");
    } else {
      Usage("unknown flag " + arg);
    }
  }
  if (o.dim <= 0 || o.threads <= 0 || o.steps <= 0 || o.batches.empty() || o.models.empty()) Usage("bad flags");
  return o;
}

std::string ModelName(const std::vector<int64_t>& hidden) {
  if (hidden.empty()) return "logistic";
  std::string s = "mlp[";
  for (size_t i = 0; i < hidden.size(); ++i) s += (i ? "," : "") + std::to_string(hidden[i]);
  return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = ParseFlags(argc, argv);
  at::set_num_threads(o.threads);
  const absl::StatusOr<c10::Device> device = dpfleet::train::ResolveDevice(o.device);
  if (!device.ok()) Usage("--device: " + std::string(device.status().message()));
  dpfleet::comm::LocalCommunicator comm;
  nlohmann::json rows = nlohmann::json::array();
  if (!o.json) {
    std::printf("dim=%lld threads=%d steps=%d warmup=%d optimizer=%s device=%s\n", static_cast<long long>(o.dim),
                o.threads, o.steps, o.warmup, o.optimizer == OptimizerType::kSgd ? "sgd" : "adam",
                device->str().c_str());
    std::printf("%-16s %7s %7s %14s %10s\n", "model", "batch", "mode", "examples/s", "ms/step");
  }
  for (const auto& hidden : o.models) {
    for (int64_t batch : o.batches) {
      // Enough rows that q = B/N is well below 1, as in real training.
      const int64_t n = std::max<int64_t>(16384, 8 * batch);
      at::manual_seed(1);
      const at::Tensor x = at::randn({n, o.dim}).to(*device);
      const at::Tensor y = (at::rand({n}) < 0.3).to(at::kFloat).to(*device);
      // DP and non-private trainers step alternately (DP, non-DP, DP, ...),
      // so that whatever else the machine does in those seconds hits both
      // alike: the DP/non-DP ratio of one run is a paired measurement.
      std::vector<std::unique_ptr<DpSgdTrainer>> trainers;
      for (bool dp : {true, false}) {
        ModelConfig mc;
        mc.type = hidden.empty() ? ModelType::kLogistic : ModelType::kMlp;
        mc.hidden = hidden;
        TrainConfig tc;
        tc.dataset_size = n;
        tc.batch_size = batch;
        tc.dp = dp;
        tc.optimizer = o.optimizer;
        tc.learning_rate = 0.05;
        tc.momentum = o.optimizer == OptimizerType::kSgd ? 0.9 : 0.0;
        tc.max_grad_norm = 1.0;
        tc.noise_multiplier = 1.0;
        tc.device = *device;
        auto trainer = DpSgdTrainer::Create(mc, tc, o.dim, &comm);
        if (!trainer.ok()) {
          std::fprintf(stderr, "create failed: %s\n", std::string(trainer.status().message()).c_str());
          return 1;
        }
        trainers.push_back(std::move(*trainer));
      }
      auto step = [&](DpSgdTrainer& t) {
        if (auto st = t.Step(x, y); !st.ok()) {
          std::fprintf(stderr, "step failed: %s\n", std::string(st.message()).c_str());
          std::exit(1);
        }
      };
      for (int s = 0; s < o.warmup; ++s) {
        for (auto& t : trainers) step(*t);
      }
      // Per-step times; the MEDIAN is reported so that a noisy shared
      // machine (other processes stealing the cores now and then) does not
      // swamp the number. The mean is in the JSON too.
      std::vector<double> step_ms[2];
      for (auto& v : step_ms) v.reserve(static_cast<size_t>(o.steps));
      for (int s = 0; s < o.steps; ++s) {
        for (size_t k = 0; k < trainers.size(); ++k) {
          const auto start = std::chrono::steady_clock::now();
          step(*trainers[k]);
          step_ms[k].push_back(1000.0 *
                               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
      }
      for (size_t k = 0; k < trainers.size(); ++k) {
        std::vector<double>& times = step_ms[k];
        double mean_ms = 0;
        for (double t : times) mean_ms += t;
        mean_ms /= static_cast<double>(times.size());
        std::sort(times.begin(), times.end());
        const double ms_per_step = times[times.size() / 2];
        const double examples_per_s = 1000.0 * static_cast<double>(batch) / ms_per_step;
        const char* mode = k == 0 ? "dp" : "nondp";
        if (o.json) {
          rows.push_back({{"model", ModelName(hidden)},
                          {"batch", batch},
                          {"mode", mode},
                          {"examples_per_s", examples_per_s},
                          {"ms_per_step", ms_per_step},
                          {"mean_ms_per_step", mean_ms},
                          {"dim", o.dim},
                          {"threads", o.threads},
                          {"device", device->str()},
                          {"steps", o.steps},
                          {"paired", true}});
        } else {
          std::printf("%-16s %7lld %7s %14.0f %10.3f\n", ModelName(hidden).c_str(), static_cast<long long>(batch), mode,
                      examples_per_s, ms_per_step);
          std::fflush(stdout);
        }
      }
    }
  }
  if (o.json) std::printf("%s\n", rows.dump(2).c_str());
  return 0;
}
