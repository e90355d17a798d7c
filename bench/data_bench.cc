// Benchmark for the data path: synthetic PUMS generation and CSV -> encoded
// dataset loading. Prints rows/s so regressions in the hot loops show up.
//
//   dpfleet-data-bench [--synth-rows N] [--threads T] [--task employment] [FILE...]
//
// With --synth-rows, writes N synthetic rows to a temporary file, times it and
// then loads it; with FILE arguments, loads those files together. It never
// writes anywhere but the temporary directory.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/pums/dataset.h"
#include "common/pums/synth.h"

namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int Load(const std::vector<std::string>& files, const dpfleet::data::EncodeOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  auto ds = dpfleet::data::LoadAndEncode(files, options);
  const double wall = Seconds(start);
  if (!ds.ok()) {
    std::fprintf(stderr, "load failed: %s\n", std::string(ds.status().message()).c_str());
    return 1;
  }
  double positives = 0;
  for (float y : ds->train.y) positives += y;
  for (float y : ds->eval.y) positives += y;
  const int64_t kept = ds->train.rows + ds->eval.rows;
  std::printf("load: files=%zu rows_read=%lld kept=%lld (train %lld, eval %lld) dim=%lld "
              "wall=%.3fs rate=%.0f rows/s positive_rate=%.4f threads=%d\n",
              files.size(), static_cast<long long>(ds->rows_read), static_cast<long long>(kept),
              static_cast<long long>(ds->train.rows), static_cast<long long>(ds->eval.rows),
              static_cast<long long>(ds->train.dim), wall, ds->rows_read / wall,
              kept > 0 ? positives / kept : 0.0, options.threads);
  for (const auto& [reason, count] : ds->rows_dropped) {
    std::printf("  dropped %-50s %lld\n", reason.c_str(), static_cast<long long>(count));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t synth_rows = 0;
  uint64_t seed = 1;
  dpfleet::data::EncodeOptions options;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--synth-rows") {
      synth_rows = std::atoll(value().c_str());
    } else if (arg == "--seed") {
      seed = std::strtoull(value().c_str(), nullptr, 10);
    } else if (arg == "--threads") {
      options.threads = std::atoi(value().c_str());
    } else if (arg == "--task") {
      auto task = dpfleet::data::ParseTask(value());
      if (!task.ok()) {
        std::fprintf(stderr, "%s\n", std::string(task.status().message()).c_str());
        return 2;
      }
      options.task = *task;
    } else if (arg == "--help" || arg == "-h") {
      std::printf("usage: %s [--synth-rows N] [--seed S] [--threads T] [--task NAME] [FILE...]\n",
                  argv[0]);
      return 0;
    } else {
      files.push_back(arg);
    }
  }
  if (synth_rows > 0) {
    const char* tmp = std::getenv("TMPDIR");
    const std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/dpfleet_data_bench_" +
                             std::to_string(::getpid()) + ".csv";
    dpfleet::data::SynthOptions synth;
    synth.rows = synth_rows;
    synth.seed = seed;
    const auto start = std::chrono::steady_clock::now();
    const absl::Status s = dpfleet::data::WriteSyntheticPums(synth, path);
    const double wall = Seconds(start);
    if (!s.ok()) {
      std::fprintf(stderr, "synth failed: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    std::printf("synth: rows=%lld wall=%.3fs rate=%.0f rows/s file=%s\n",
                static_cast<long long>(synth_rows), wall, synth_rows / wall, path.c_str());
    const int rc = Load({path}, options);
    std::remove(path.c_str());
    if (rc != 0) return rc;
  }
  if (!files.empty()) return Load(files, options);
  return 0;
}
