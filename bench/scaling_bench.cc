// Strong-scaling benchmark of data-parallel DP-SGD: a fixed global expected
// batch B over W ranks (separate processes, Gloo over loopback, rendezvous
// through a file store), each rank with its own share of N synthetic
// records. Reports time per step and per epoch, speedup and efficiency
// against W = 1 measured in the same run, and the share of each step spent
// in the all-reduce.
//
//   dpfleet-scaling-bench [--ranks 1,2,4,8] [--threads-per-rank 1] [--rows 200000]
//       [--batch 4096] [--dim 59] [--hidden 64,32] [--steps 30] [--warmup 5] [--json]
#include <ATen/Parallel.h>
#include <sys/wait.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/train/dp_sgd.h"

namespace {

struct Options {
  std::vector<int> ranks = {1, 2, 4, 8};
  int threads_per_rank = 1;
  int64_t rows = 200000;
  int64_t batch = 4096;
  int64_t dim = 59;
  std::vector<int64_t> hidden = {64, 32};
  int steps = 30;
  int warmup = 5;
  bool json = false;
};

// Wraps a communicator and accumulates the time spent in all-reduce.
class TimedCommunicator final : public dpfleet::comm::Communicator {
 public:
  explicit TimedCommunicator(dpfleet::comm::Communicator* inner) : inner_(inner) {}
  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  absl::Status AllReduceSum(torch::Tensor& t, absl::Duration timeout) override {
    const auto t0 = std::chrono::steady_clock::now();
    absl::Status s = inner_->AllReduceSum(t, timeout);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s;
  }
  absl::Status Broadcast(torch::Tensor& t, int root, absl::Duration timeout) override {
    return inner_->Broadcast(t, root, timeout);
  }
  absl::Status Barrier(absl::Duration timeout) override { return inner_->Barrier(timeout); }
  void Abort() override { inner_->Abort(); }
  double seconds = 0;

 private:
  dpfleet::comm::Communicator* inner_;
};

// One rank; writes "step_seconds allreduce_seconds" to fd on success.
int RunRank(const Options& o, int world, int rank, const std::string& store_path, int fd) {
  at::set_num_threads(o.threads_per_rank);
  auto store = c10::make_intrusive<c10d::FileStore>(store_path, world);
  std::unique_ptr<dpfleet::comm::Communicator> base;
  dpfleet::comm::LocalCommunicator local;
  if (world > 1) {
    auto c = dpfleet::comm::GlooCommunicator::Create(store, rank, world, {});
    if (!c.ok()) {
      std::fprintf(stderr, "rank %d: %s\n", rank, c.status().ToString().c_str());
      return 1;
    }
    base = std::move(*c);
  }
  TimedCommunicator comm(world > 1 ? base.get() : &local);
  torch::manual_seed(1000 + rank);
  const int64_t n = o.rows / world;
  torch::Tensor x = torch::rand({n, o.dim});
  torch::Tensor y = (x.select(1, 0) > 0.5).to(torch::kFloat32);
  dpfleet::train::ModelConfig mc;
  mc.hidden = o.hidden;
  dpfleet::train::TrainConfig tc;
  tc.dataset_size = n * world;
  tc.batch_size = o.batch;
  tc.noise_multiplier = 1.0;
  auto trainer = dpfleet::train::DpSgdTrainer::Create(mc, tc, o.dim, &comm);
  if (!trainer.ok()) {
    std::fprintf(stderr, "rank %d: %s\n", rank, trainer.status().ToString().c_str());
    return 1;
  }
  for (int s = 0; s < o.warmup; ++s) {
    absl::Status st = (*trainer)->Step(x, y);
    if (!st.ok()) {
      std::fprintf(stderr, "rank %d: %s\n", rank, st.ToString().c_str());
      return 1;
    }
  }
  comm.seconds = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < o.steps; ++s) {
    absl::Status st = (*trainer)->Step(x, y);
    if (!st.ok()) {
      std::fprintf(stderr, "rank %d: %s\n", rank, st.ToString().c_str());
      return 1;
    }
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char buf[128];
  const int len = std::snprintf(buf, sizeof(buf), "%.9f %.9f\n", total / o.steps, comm.seconds / o.steps);
  if (fd < 0) return 0;  // only rank 0 reports
  return write(fd, buf, len) == len ? 0 : 1;
}

bool ParseList(const std::string& s, std::vector<int64_t>* out) {
  out->clear();
  for (absl::string_view part : absl::StrSplit(s, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1) return false;
    out->push_back(v);
  }
  return !out->empty();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has = i + 1 < argc;
    int64_t v = 0;
    std::vector<int64_t> list;
    if (a == "--json") {
      o.json = true;
    } else if (a == "--ranks" && has && ParseList(argv[++i], &list)) {
      o.ranks.assign(list.begin(), list.end());
    } else if (a == "--hidden" && has && ParseList(argv[++i], &list)) {
      o.hidden = list;
    } else if (a == "--threads-per-rank" && has && absl::SimpleAtoi(argv[++i], &v) && v >= 1) {
      o.threads_per_rank = static_cast<int>(v);
    } else if (a == "--rows" && has && absl::SimpleAtoi(argv[++i], &v) && v >= 1) {
      o.rows = v;
    } else if (a == "--batch" && has && absl::SimpleAtoi(argv[++i], &v) && v >= 1) {
      o.batch = v;
    } else if (a == "--dim" && has && absl::SimpleAtoi(argv[++i], &v) && v >= 1) {
      o.dim = v;
    } else if (a == "--steps" && has && absl::SimpleAtoi(argv[++i], &v) && v >= 1) {
      o.steps = static_cast<int>(v);
    } else if (a == "--warmup" && has && absl::SimpleAtoi(argv[++i], &v) && v >= 0) {
      o.warmup = static_cast<int>(v);
    } else {
      std::fprintf(stderr,
                   "dpfleet-scaling-bench: bad or unknown argument '%s'\nusage: dpfleet-scaling-bench [--ranks "
                   "1,2,4,8] [--threads-per-rank T] [--rows N] [--batch B] [--dim D] [--hidden 64,32] [--steps S] "
                   "[--warmup S] [--json]\n",
                   a.c_str());
      return 2;
    }
  }
  const int64_t steps_per_epoch = std::max<int64_t>(1, (o.rows + o.batch / 2) / o.batch);
  double base_step = 0;
  if (o.json) {
    std::printf("{\"rows\": %lld, \"batch\": %lld, \"dim\": %lld, \"threads_per_rank\": %d, \"cores\": %ld, "
                "\"results\": [",
                static_cast<long long>(o.rows), static_cast<long long>(o.batch), static_cast<long long>(o.dim),
                o.threads_per_rank, sysconf(_SC_NPROCESSORS_ONLN));
  } else {
    std::printf("# DP-SGD strong scaling: N=%lld, B=%lld, d=%lld, %d thread(s)/rank, %ld cores\n",
                static_cast<long long>(o.rows), static_cast<long long>(o.batch), static_cast<long long>(o.dim),
                o.threads_per_rank, sysconf(_SC_NPROCESSORS_ONLN));
    std::printf("%6s %12s %12s %9s %11s %15s\n", "ranks", "ms/step", "s/epoch", "speedup", "efficiency",
                "allreduce share");
  }
  bool first = true;
  for (int world : o.ranks) {
    char tmpl[] = "/tmp/dpfleet-scaling-XXXXXX";
    const int tmpfd = mkstemp(tmpl);
    close(tmpfd);
    unlink(tmpl);  // FileStore creates it
    int pipefd[2];
    if (pipe(pipefd) != 0) return 1;
    std::vector<pid_t> pids;
    for (int r = 0; r < world; ++r) {
      pid_t pid = fork();
      if (pid == 0) {
        close(pipefd[0]);
        _exit(RunRank(o, world, r, tmpl, r == 0 ? pipefd[1] : -1));
      }
      pids.push_back(pid);
    }
    close(pipefd[1]);
    bool ok = true;
    for (pid_t p : pids) {
      int status = 0;
      waitpid(p, &status, 0);
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        std::fprintf(stderr, "W=%d: a rank %s %d\n", world, WIFEXITED(status) ? "exited with" : "died of signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        ok = false;
      }
    }
    char buf[128] = {0};
    const ssize_t got = read(pipefd[0], buf, sizeof(buf) - 1);
    close(pipefd[0]);
    unlink(tmpl);
    double step = 0, ar = 0;
    if (!ok || got <= 0 || std::sscanf(buf, "%lf %lf", &step, &ar) != 2) {
      std::fprintf(stderr, "W=%d failed\n", world);
      return 1;
    }
    if (world == o.ranks.front()) base_step = step * world / o.ranks.front();
    const double speedup = base_step / step;
    if (o.json) {
      std::printf("%s{\"ranks\": %d, \"step_seconds\": %.9f, \"epoch_seconds\": %.6f, \"speedup\": %.4f, "
                  "\"efficiency\": %.4f, \"allreduce_share\": %.4f}",
                  first ? "" : ", ", world, step, step * steps_per_epoch, speedup, speedup / world, ar / step);
    } else {
      std::printf("%6d %12.3f %12.3f %9.2f %11.2f %14.1f%%\n", world, step * 1e3, step * steps_per_epoch, speedup,
                  speedup / world, 100 * ar / step);
    }
    first = false;
    std::fflush(stdout);
  }
  if (o.json) std::printf("]}\n");
  return 0;
}
