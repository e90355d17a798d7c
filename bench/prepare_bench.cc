// Benchmark driver for the data preparation pipeline (common/pums/prepare.h): the
// same library call as `dpctl data prepare`, timed, plus the two helpers the
// benchmark script needs before dpctl has the verbs wired in.
//
//   dpfleet-prepare-bench prepare --input FILE... --task T --shards S --out DIR
//                                 [--features A,B] [--split-seed N]
//                                 [--eval-fraction F] [--threads T]
//   dpfleet-prepare-bench synth --rows N [--seed S] [--filler-columns K] -o FILE
//   dpfleet-prepare-bench schema            (SchemaJson() on stdout)
//
// `prepare` prints one line of key=value results (rows_read, wall_s,
// rows_per_s, ...) for bench/prepare_bench.sh to collect. Peak memory is
// measured from outside with /usr/bin/time -v.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/pums/prepare.h"
#include "common/pums/synth.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: dpfleet-prepare-bench prepare --input FILE... --task T --shards S --out DIR\n"
               "                             [--features A,B] [--split-seed N] [--eval-fraction F]\n"
               "                             [--threads T]\n"
               "       dpfleet-prepare-bench synth --rows N [--seed S] [--filler-columns K] -o FILE\n"
               "       dpfleet-prepare-bench schema\n");
  return 2;
}

int Prepare(const std::vector<std::string>& args) {
  dpfleet::data::PrepareOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return args[++i];
    };
    bool ok = true;
    if (a == "--input") {
      while (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) o.inputs.push_back(args[++i]);
    } else if (a == "--task") {
      auto task = dpfleet::data::ParseTask(value());
      ok = task.ok();
      if (ok) o.encode.task = *task;
    } else if (a == "--shards") {
      ok = absl::SimpleAtoi(value(), &o.shards);
    } else if (a == "--out") {
      o.out_dir = value();
    } else if (a == "--features") {
      o.encode.features = absl::StrSplit(value(), ',');
    } else if (a == "--split-seed") {
      ok = absl::SimpleAtoi(value(), &o.encode.split_seed);
    } else if (a == "--eval-fraction") {
      ok = absl::SimpleAtod(value(), &o.encode.eval_fraction);
    } else if (a == "--threads") {
      ok = absl::SimpleAtoi(value(), &o.encode.threads);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return Usage();
    }
    if (!ok) {
      std::fprintf(stderr, "bad value for %s\n", a.c_str());
      return 2;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  auto m = dpfleet::data::PrepareShards(o);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!m.ok()) {
    std::fprintf(stderr, "prepare failed: %s\n", std::string(m.status().message()).c_str());
    return 1;
  }
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = o.encode.threads > 0 ? o.encode.threads : std::clamp(cores - 1, 1, 8);
  std::printf(
      "prepare: rows_read=%lld rows_train=%lld rows_eval=%lld dim=%lld shards=%d "
      "parser_threads=%d cores=%d wall_s=%.3f rows_per_s=%.0f rows_per_s_per_core=%.0f "
      "sha256=%s\n",
      static_cast<long long>(m->rows_read), static_cast<long long>(m->rows_train),
      static_cast<long long>(m->rows_eval), static_cast<long long>(m->dim), m->shards, threads,
      cores, wall, m->rows_read / wall, m->rows_read / wall / cores,
      dpfleet::Sha256::Implementation().c_str());
  return 0;
}

int Synth(const std::vector<std::string>& args) {
  dpfleet::data::SynthOptions o;
  std::string out;
  for (size_t i = 0; i + 1 < args.size(); i += 2) {
    const std::string& a = args[i];
    const std::string& v = args[i + 1];
    bool ok = true;
    if (a == "--rows") {
      ok = absl::SimpleAtoi(v, &o.rows);
    } else if (a == "--seed") {
      ok = absl::SimpleAtoi(v, &o.seed);
    } else if (a == "--filler-columns") {
      ok = absl::SimpleAtoi(v, &o.filler_columns);
    } else if (a == "-o") {
      out = v;
    } else {
      return Usage();
    }
    if (!ok) return Usage();
  }
  if (out.empty() || args.size() % 2 != 0) return Usage();
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = dpfleet::data::WriteSyntheticPums(o, out);
  if (!s.ok()) {
    std::fprintf(stderr, "synth failed: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("synth: rows=%lld columns=%zu wall_s=%.3f\n", static_cast<long long>(o.rows),
              dpfleet::data::SyntheticPumsColumns(o).size(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  const std::string verb = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (verb == "prepare") return Prepare(args);
  if (verb == "synth") return Synth(args);
  if (verb == "schema") {
    std::cout << dpfleet::data::SchemaJson();
    return 0;
  }
  return Usage();
}
