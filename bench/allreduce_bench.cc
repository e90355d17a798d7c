// All-reduce microbenchmark in the nccl-tests style: for each message size,
// the time of one sum all-reduce, the algorithm bandwidth (bytes / time) and
// the bus bandwidth (algbw * 2(W-1)/W, comparable across rank counts), and
// the number of wrong elements. Ranks run as threads of this process that
// meet through an in-memory store.
//
//   dpfleet-allreduce-bench --ranks 4 [--backend gloo|nccl] [--min-bytes 1024]
//       [--max-bytes 67108864] [--iters 20] [--warmup 5] [--json]
#include <ATen/Parallel.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "worker/comm/gloo_communicator.h"
#ifdef DPFLEET_WITH_NCCL
#include "worker/comm/cuda/nccl_communicator.h"
#endif

namespace {

struct Options {
  int ranks = 2;
  std::string backend = "gloo";
  int64_t min_bytes = 1024;
  int64_t max_bytes = 64 << 20;
  int iters = 20;
  int warmup = 5;
  bool json = false;
};

int Usage(const char* why) {
  std::fprintf(stderr, "dpfleet-allreduce-bench: %s\n", why);
  std::fprintf(stderr,
               "usage: dpfleet-allreduce-bench [--ranks W] [--backend gloo|nccl] [--min-bytes N] [--max-bytes N] "
               "[--iters N] [--warmup N] [--json]\n");
  return 2;
}

// Reusable barrier: all ranks start each timed all-reduce together.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t gen = generation_;
    if (++waiting_ == n_) {
      waiting_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != gen; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_;
  int waiting_ = 0;
  int64_t generation_ = 0;
};

struct Row {
  int64_t bytes = 0;
  double seconds = 0;  // mean per all-reduce, slowest rank
  int64_t wrong = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](int64_t* v) {
      return i + 1 < argc && absl::SimpleAtoi(argv[++i], v);
    };
    int64_t v = 0;
    if (a == "--json") {
      o.json = true;
    } else if (a == "--backend" && i + 1 < argc) {
      o.backend = argv[++i];
    } else if (a == "--ranks" && next(&v) && v >= 1 && v <= 64) {
      o.ranks = static_cast<int>(v);
    } else if (a == "--min-bytes" && next(&v) && v >= 4) {
      o.min_bytes = v;
    } else if (a == "--max-bytes" && next(&v) && v >= 4) {
      o.max_bytes = v;
    } else if (a == "--iters" && next(&v) && v >= 1) {
      o.iters = static_cast<int>(v);
    } else if (a == "--warmup" && next(&v) && v >= 0) {
      o.warmup = static_cast<int>(v);
    } else {
      return Usage(("bad or unknown argument '" + a + "'").c_str());
    }
  }
  if (o.backend != "gloo" && o.backend != "nccl") return Usage("--backend must be gloo or nccl");
#ifndef DPFLEET_WITH_NCCL
  if (o.backend == "nccl") return Usage("this build has no NCCL (DPFLEET_WITH_CUDA=OFF)");
#endif
  at::set_num_threads(1);
  std::vector<int64_t> sizes;
  for (int64_t b = o.min_bytes; b <= o.max_bytes; b *= 4) sizes.push_back(b);
  std::vector<std::vector<Row>> rows(o.ranks, std::vector<Row>(sizes.size()));
  auto store = c10::make_intrusive<c10d::HashStore>();
  Barrier sync(o.ranks);
  std::vector<std::string> errors(o.ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < o.ranks; ++r) {
    threads.emplace_back([&, r] {
      std::unique_ptr<dpfleet::comm::Communicator> comm;
      if (o.backend == "gloo") {
        auto c = dpfleet::comm::GlooCommunicator::Create(store, r, o.ranks, {});
        if (!c.ok()) {
          errors[r] = c.status().ToString();
          return;
        }
        comm = std::move(*c);
      } else {
#ifdef DPFLEET_WITH_NCCL
        dpfleet::comm::NcclOptions nopt;
        nopt.device = r;
        auto c = dpfleet::comm::NcclCommunicator::Create(store, r, o.ranks, nopt);
        if (!c.ok()) {
          errors[r] = c.status().ToString();
          return;
        }
        comm = std::move(*c);
#endif
      }
      for (std::size_t s = 0; s < sizes.size(); ++s) {
        const int64_t count = sizes[s] / 4;
        torch::Tensor t = torch::empty({count}, torch::kFloat32);
        const float expected = static_cast<float>(o.ranks * (o.ranks + 1) / 2);
        for (int it = 0; it < o.warmup + o.iters; ++it) {
          t.fill_(static_cast<float>(r + 1));
          sync.arrive_and_wait();
          const auto t0 = std::chrono::steady_clock::now();
          absl::Status st = comm->AllReduceSum(t, absl::Seconds(120));
          const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          if (!st.ok()) {
            errors[r] = st.ToString();
            return;
          }
          if (it >= o.warmup) {
            rows[r][s].seconds += dt / o.iters;
            rows[r][s].wrong += (t != expected).sum().item<int64_t>();
          }
        }
        rows[r][s].bytes = sizes[s];
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < o.ranks; ++r) {
    if (!errors[r].empty()) {
      std::fprintf(stderr, "rank %d: %s\n", r, errors[r].c_str());
      return 1;
    }
  }
  const double bus_factor = o.ranks > 1 ? 2.0 * (o.ranks - 1) / o.ranks : 1.0;
  if (!o.json) {
    std::printf("# dpfleet all-reduce (sum, float32), backend %s, %d ranks (threads of one process)\n",
                o.backend.c_str(), o.ranks);
    std::printf("%12s %12s %12s %10s %10s %8s\n", "size(B)", "count", "time(us)", "algbw(GB/s)", "busbw(GB/s)",
                "#wrong");
  } else {
    std::printf("{\"backend\": \"%s\", \"ranks\": %d, \"rows\": [", o.backend.c_str(), o.ranks);
  }
  int64_t wrong_total = 0;
  for (std::size_t s = 0; s < sizes.size(); ++s) {
    double slowest = 0;
    int64_t wrong = 0;
    for (int r = 0; r < o.ranks; ++r) {
      slowest = std::max(slowest, rows[r][s].seconds);
      wrong += rows[r][s].wrong;
    }
    wrong_total += wrong;
    const double algbw = sizes[s] / slowest / 1e9;
    if (o.json) {
      std::printf("%s{\"bytes\": %lld, \"time_us\": %.3f, \"algbw_gbps\": %.4f, \"busbw_gbps\": %.4f, \"wrong\": %lld}",
                  s ? ", " : "", static_cast<long long>(sizes[s]), slowest * 1e6, algbw, algbw * bus_factor,
                  static_cast<long long>(wrong));
    } else {
      std::printf("%12lld %12lld %12.1f %10.3f %10.3f %8lld\n", static_cast<long long>(sizes[s]),
                  static_cast<long long>(sizes[s] / 4), slowest * 1e6, algbw, algbw * bus_factor,
                  static_cast<long long>(wrong));
    }
  }
  if (o.json) std::printf("]}\n");
  return wrong_total == 0 ? 0 : 1;
}
