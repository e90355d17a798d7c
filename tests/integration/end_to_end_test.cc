// End-to-end tests: real dpfleet-server, dpfleet-worker and dpctl processes
// on loopback ports chosen by the OS, over TLS with tokens (the custodian's
// unless a test says otherwise; tests/integration/security_test.cc covers
// the other roles).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/coordinator_client.h"
#include "absl/strings/str_replace.h"
#include "common/privacy/accountant.h"
#include "common/sha256.h"
#include "nlohmann/json.hpp"
#include "tests/testing/files.h"
#include "tests/testing/fleet/cluster.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet {
namespace {

using ::dpfleet::testing::BinPath;
using ::dpfleet::testing::Cluster;
using ::dpfleet::testing::Process;
using ::dpfleet::testing::RunCommand;
using ::dpfleet::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;

std::string UrlEncode(const std::string& v) {
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += absl::StrFormat("%%%02X", c);
    }
  }
  return out;
}

class EndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.Join("pums.csv");
    std::string out;
    ASSERT_EQ(RunCommand({BinPath("dpctl"), "data", "synth", "--rows", "30000", "--seed", "7", "-o", data_}, &out,
                         nullptr),
              0);
    cluster_ = std::make_unique<Cluster>(dir_.path());
  }

  // The eval release's noise is small here (sigma_e 2 on ~5k eval rows:
  // about 0.15 accuracy points) so that assertions on how well a model
  // learned are not at the mercy of the release's noise.
  static constexpr char kEval[] = "eval: {noise_multiplier: 2}";
  std::string WriteSpec(const std::string& name, int epochs, int workers = 1,
                        const std::string& privacy = absl::StrCat("noise_multiplier: 1.0, ", kEval)) {
    const std::string path = dir_.Join(name + ".yaml");
    std::ofstream f(path);
    f << "name: " << name << "\n"
      << "data: {path: " << data_ << "}\n"
      << "task: employment\n"
      << "model: {type: mlp, hidden: [32, 16]}\n"
      << "training: {epochs: " << epochs << ", batch_size: 256, learning_rate: 0.5, seed: 3}\n"
      << "privacy: {mode: dp, max_grad_norm: 1.0, " << privacy << ", delta: 1.0e-5}\n"
      << "resources: {workers: " << workers << ", device: cpu}\n";
    return path;
  }

  // Replaces `from` by `to` in the spec at `path` (and returns the path).
  static std::string Rewrite(const std::string& path, const std::string& from, const std::string& to) {
    const std::string text = absl::StrReplaceAll(testing::ReadAll(path), {{from, to}});
    testing::WriteAll(path, text);
    return path;
  }
  // A spec like WriteSpec's reading `paths` (YAML: one path or a list).
  std::string WriteSpecOn(const std::string& name, const std::string& paths) {
    return Rewrite(WriteSpec(name, 1), "data: {path: " + data_ + "}", "data: {path: " + paths + "}");
  }

  nlohmann::json Status(const std::string& job_id) {
    std::string out;
    EXPECT_EQ(cluster_->Dpctl({"status", job_id, "-o", "json"}, &out), 0);
    return nlohmann::json::parse(out);
  }

  std::string Submit(const std::string& spec) {
    std::string out, err;
    EXPECT_EQ(cluster_->Dpctl({"submit", spec, "-o", "json"}, &out, &err), 0) << err;
    return nlohmann::json::parse(out).at("job_id").get<std::string>();
  }

  bool WaitState(const std::string& job_id, const std::string& state, absl::Duration timeout) {
    return WaitFor(
        [&] {
          auto j = cluster_->client().Get(job_id);
          return j.ok() && client::StateName(j->state()) == state;
        },
        timeout);
  }

  testing::TempDir dir_;
  std::string data_;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(EndToEndTest, TrainsAPrivateModelAndReportsEveryEpoch) {
  cluster_->StartServer();
  cluster_->StartWorkers(1);
  std::string out, err;
  const int rc = cluster_->Dpctl({"submit", WriteSpec("e2e", 3), "--follow", "-o", "json"}, &out, &err);
  ASSERT_EQ(rc, 0) << out << err << cluster_->Logs();
  // -o json prints JSON only: one object per line, the final status last.
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  for (const std::string& l : lines) EXPECT_NO_THROW(nlohmann::json::parse(l)) << l;
  nlohmann::json final_status = nlohmann::json::parse(lines.back());
  EXPECT_EQ(final_status["state"], "SUCCEEDED");
  EXPECT_EQ(final_status["epochs_done"], 3);
  const auto& history = final_status["history"];
  ASSERT_EQ(history.size(), 3u);
  double prev_eps = 0;
  for (const auto& h : history) {
    EXPECT_GT(h["epsilon"].get<double>(), prev_eps) << "epsilon must rise every epoch";
    prev_eps = h["epsilon"].get<double>();
  }
  EXPECT_DOUBLE_EQ(final_status["epsilon"].get<double>(), prev_eps);
  EXPECT_DOUBLE_EQ(final_status["delta"].get<double>(), 1e-5);
  // The job's epsilon covers training AND the three eval releases: above
  // the training-only value dpctl's calculator gives for its q, sigma and
  // steps, and equal to the composition of both mechanisms.
  const double q = final_status["sample_rate"].get<double>();
  const int64_t steps = 3 * final_status["steps_per_epoch"].get<int64_t>();
  std::string calc;
  ASSERT_EQ(cluster_->Dpctl({"privacy", "epsilon", "--sample-rate", final_status["sample_rate"].dump(),
                             "--noise-multiplier", "1.0", "--steps", std::to_string(steps), "--delta", "1e-5", "-o",
                             "json"},
                            &calc),
            0);
  const double train_only = nlohmann::json::parse(calc)["epsilon"].get<double>();
  EXPECT_GT(prev_eps, train_only);
  EXPECT_DOUBLE_EQ(final_status["eval_noise_multiplier"].get<double>(), 2.0);
  EXPECT_NEAR(prev_eps,
              *privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, {{q, 1.0, steps}, {1.0, 2.0, 3}}, 1e-5), 1e-12);
  const double acc = history.back()["eval_accuracy"].get<double>();
  const double majority = history.back()["majority_rate"].get<double>();
  EXPECT_GT(acc, majority + 0.02) << "the model must beat the majority class";
  // Every epoch event reached the watcher.
  int epoch_events = 0;
  for (const std::string& l : lines) epoch_events += nlohmann::json::parse(l).value("event", "") == "epoch";
  EXPECT_EQ(epoch_events, 3);
  // The HTTP endpoint serves the same job.
  auto [code, http] = cluster_->HttpGet("/v1/jobs/" + final_status["job_id"].get<std::string>());
  ASSERT_EQ(code, 200) << http;
  auto hj = nlohmann::json::parse(http);
  EXPECT_EQ(hj["state"], "SUCCEEDED");
  EXPECT_DOUBLE_EQ(hj["epsilon"].get<double>(), prev_eps);
  // The trained model comes from the coordinator: the very bytes rank 0
  // saved.
  const std::string job_id = final_status["job_id"].get<std::string>();
  const std::string model = dir_.Join("model.pt");
  ASSERT_EQ(cluster_->Dpctl({"model", job_id, "--out", model}, &out, &err), 0) << err;
  const auto slurp = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  const std::string fetched = slurp(model);
  EXPECT_GT(fetched.size(), 1000u);
  EXPECT_EQ(fetched, slurp(dir_.Join("worker0/" + job_id + "-model.pt")));
  EXPECT_EQ(cluster_->Dpctl({"model", job_id}, &out, &err), 2) << "--out is required";
  EXPECT_EQ(cluster_->Dpctl({"model", "job-999999", "--out", model}, &out, &err), 2);
}

TEST_F(EndToEndTest, BadInputGetsPreciseErrorsAndExitCodes) {
  cluster_->StartServer();
  std::string out, err;
  const std::string bad = dir_.Join("bad.yaml");
  std::ofstream(bad) << "name: x\ndata: {path: " << data_ << "}\nmodel: {type: transformer}\n";
  EXPECT_EQ(cluster_->Dpctl({"submit", bad}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(err, HasSubstr("model.type"));
  EXPECT_THAT(err, HasSubstr("transformer"));
  const std::string missing = dir_.Join("missing.yaml");
  std::ofstream(missing) << "name: x\ndata: {path: /nonexistent/pums.csv}\n";
  EXPECT_EQ(cluster_->Dpctl({"submit", missing}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("/nonexistent/pums.csv"));
  // Refused at submit (exit 2), the message naming why.
  auto refused = [&](const std::string& name, const std::string& yaml, const std::string& why) {
    const std::string path = dir_.Join(name + ".yaml");
    std::ofstream(path) << "name: x\n" << yaml;
    std::string o, e;
    EXPECT_EQ(cluster_->Dpctl({"submit", path}, &o, &e), 2) << name;
    EXPECT_THAT(e, HasSubstr(why)) << name;
  };
  const std::string on_data = absl::StrCat("data: {path: ", data_, "}\n");
  // The held-out set is not the submitter's to shrink, nor (for a dataset)
  // to choose at all.
  refused("tiny-eval", on_data + "training: {eval_fraction: 0.0001}\n", "training.eval_fraction");
  refused("on-dataset", "dataset: any\ntraining: {eval_fraction: 0.3}\n", "fixed by the data custodian");
  // Seed-derived noise is gone for good.
  refused("seeded", on_data + "privacy: {secure_rng: false}\n", "privacy.secure_rng");
  // The same file twice.
  refused("twice", absl::StrCat("data: {path: [", data_, ", ", data_, "]}\n"), "has the same content as data.path[0]");
  EXPECT_EQ(cluster_->Dpctl({"status", "job-999999"}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(cluster_->Dpctl({"frobnicate"}, &out, &err), 2);
  // An output format dpctl does not have is a usage error (yaml became one of its formats).
  EXPECT_EQ(cluster_->Dpctl({"list", "-o", "xml"}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("-o: \"xml\" is not an output format"));
  std::string listed;
  ASSERT_EQ(cluster_->Dpctl({"list", "-o", "json"}, &listed), 0);
  EXPECT_TRUE(nlohmann::json::parse(listed)["jobs"].empty()) << "refused specs are not stored";
  EXPECT_TRUE(cluster_->server().running()) << "bad input never crashes the coordinator";
  // Unreachable coordinator: exit 3 (retryable), naming the status.
  EXPECT_EQ(RunCommand({BinPath("dpctl"), "--server", "127.0.0.1:1", "list"}, &out, &err), 3);
  EXPECT_THAT(err, HasSubstr("UNAVAILABLE"));
}

TEST_F(EndToEndTest, CancelStopsTheRunAndFreesTheWorker) {
  cluster_->StartServer();
  cluster_->StartWorkers(1);
  const std::string job = Submit(WriteSpec("long", 500));
  ASSERT_TRUE(WaitFor([&] { return Status(job)["epochs_done"].get<int>() >= 1; }, absl::Seconds(60)))
      << cluster_->Logs();
  std::string out, err;
  ASSERT_EQ(cluster_->Dpctl({"cancel", job}, &out, &err), 0) << err;
  EXPECT_EQ(cluster_->Dpctl({"watch", job}, &out, &err), 1) << "watch of a cancelled job exits 1";
  EXPECT_EQ(Status(job)["state"], "CANCELLED");
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string w;
        cluster_->Dpctl({"workers", "-o", "json"}, &w);
        return nlohmann::json::parse(w)["workers"][0]["state"] == "IDLE";
      },
      absl::Seconds(30)))
      << cluster_->Logs();
  // The freed worker takes the next job.
  const std::string next = Submit(WriteSpec("next", 1));
  EXPECT_EQ(cluster_->Dpctl({"watch", next}, &out, &err), 0) << out << err << cluster_->Logs();
}

TEST_F(EndToEndTest, CoordinatorRestartLosesNoJobAndNoEpoch) {
  cluster_->StartServer();
  cluster_->StartWorkers(1);
  constexpr int kEpochs = 40;
  const std::string running = Submit(WriteSpec("survivor", kEpochs));
  const std::string queued = Submit(WriteSpec("needs-two", 1, 2));
  ASSERT_TRUE(WaitFor([&] { return Status(running)["epochs_done"].get<int>() >= 2; }, absl::Seconds(90)))
      << cluster_->Logs();
  // Freeze the worker so the job is certainly mid-run when the coordinator dies.
  cluster_->worker(0).Signal(SIGSTOP);
  cluster_->server().Signal(SIGKILL);
  cluster_->server().Wait(absl::Seconds(10));
  cluster_->StartServer();
  // Nothing recorded before the crash is gone.
  EXPECT_EQ(Status(queued)["state"], "QUEUED");
  auto r = Status(running);
  EXPECT_EQ(r["state"], "RUNNING");
  const int done_before = r["epochs_done"].get<int>();
  EXPECT_GE(done_before, 2);
  EXPECT_LT(done_before, kEpochs);
  EXPECT_EQ(r["history"].size(), static_cast<std::size_t>(done_before));
  // The worker re-attaches with its run and the job finishes with every
  // epoch recorded exactly once.
  cluster_->worker(0).Signal(SIGCONT);
  std::string out, err;
  EXPECT_EQ(cluster_->Dpctl({"watch", running}, &out, &err), 0) << out << err << cluster_->Logs();
  auto done = Status(running);
  EXPECT_EQ(done["state"], "SUCCEEDED");
  EXPECT_EQ(done["attempt"], 1) << "the same attempt continued";
  ASSERT_EQ(done["history"].size(), static_cast<std::size_t>(kEpochs));
  for (int i = 0; i < kEpochs; ++i) EXPECT_EQ(done["history"][i]["epoch"], i + 1);
}

int ThreadCount(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

// Watchers are served by reactors: dozens of open watches hold no
// coordinator thread each, every watcher sees every event in order, and all
// end with the job.
TEST_F(EndToEndTest, ManyWatchersHoldNoThreadEachAndSeeEveryEvent) {
  cluster_->StartServer();
  cluster_->StartWorkers(1);
  const std::string job = Submit(WriteSpec("watched", 500));
  constexpr int kWatchers = 48;
  std::atomic<int> watching{0};
  std::vector<std::vector<int64_t>> seqs(kWatchers);
  std::vector<std::string> final_state(kWatchers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWatchers; ++i) {
    threads.emplace_back([&, i] {
      client::CoordinatorClient c(cluster_->OptionsWith(cluster_->custodian_token()));
      bool counted = false;
      absl::StatusOr<v1::Job> end = c.Watch(job, [&](const v1::JobEvent& e) {
        seqs[i].push_back(e.seq());
        if (e.type() == v1::JobEvent::EPOCH && !counted) {
          counted = true;
          ++watching;
        }
        return true;
      });
      final_state[i] = end.ok() ? client::StateName(end->state()) : end.status().ToString();
    });
  }
  const bool all_watching = WaitFor([&] { return watching.load() == kWatchers; }, absl::Seconds(60));
  const int server_threads = ThreadCount(cluster_->server().pid());
  std::string out, err;
  EXPECT_EQ(cluster_->Dpctl({"cancel", job}, &out, &err), 0) << err;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(all_watching) << watching.load() << " of " << kWatchers << " watchers saw an epoch";
  EXPECT_GT(server_threads, 0);
  EXPECT_LT(server_threads, kWatchers) << "a thread per watcher";
  for (int i = 0; i < kWatchers; ++i) {
    EXPECT_EQ(final_state[i], "CANCELLED") << "watcher " << i;
    ASSERT_GE(seqs[i].size(), 3u) << "snapshot, an epoch, the cancel";
    for (std::size_t k = 1; k < seqs[i].size(); ++k) {
      ASSERT_EQ(seqs[i][k], seqs[i][k - 1] + 1) << "watcher " << i << " missed an event";
    }
  }
}

// A queued job says why it waits, and the reason follows the fleet as
// workers register; once it runs, `dpctl logs -f` follows both ranks' lines
// until it ends; another analyst is told the job does not exist.
TEST_F(EndToEndTest, AQueuedJobSaysWhyItWaitsAndItsLogsFollowTheRun) {
  cluster_->StartServer();
  const std::string job = Submit(WriteSpec("waiting", 2, 2));
  EXPECT_EQ(Status(job)["pending_reason"], "no cpu worker registered");
  std::string out, err;
  ASSERT_EQ(cluster_->Dpctl({"list"}, &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr("PENDING"));
  EXPECT_THAT(out, HasSubstr("no cpu worker registered"));
  cluster_->StartWorkers(1);
  ASSERT_TRUE(WaitFor([&] { return Status(job)["pending_reason"] == "needs 2 cpu workers, 1 registered"; },
                      absl::Seconds(30)))
      << Status(job).dump();
  cluster_->StartWorkers(1);
  ASSERT_EQ(cluster_->Dpctl({"logs", job, "-f"}, &out, &err), 0) << err << cluster_->Logs();
  EXPECT_THAT(out, HasSubstr("attempt 1  rank 0  INFO   attempt 1 rank 0 of 2 started on a cpu worker"));
  EXPECT_THAT(out, HasSubstr("rank 1  INFO   epoch 2 of 2 trained"));
  EXPECT_THAT(out, HasSubstr("rank 0  INFO   run finished"));
  EXPECT_THAT(out, HasSubstr("rank 1  INFO   run finished"));
  ASSERT_EQ(cluster_->Dpctl({"logs", job, "--rank", "1", "-o", "json"}, &out, &err), 0) << err;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    EXPECT_EQ(nlohmann::json::parse(line).at("rank"), 1) << line;
  }
  const nlohmann::json st = Status(job);
  EXPECT_EQ(st["state"], "SUCCEEDED");
  EXPECT_EQ(st["pending_reason"], "");
  ASSERT_EQ(st["attempts"].size(), 1u);
  EXPECT_EQ(st["attempts"][0]["outcome"], "SUCCEEDED");
  EXPECT_EQ(st["attempts"][0]["worker_ids"].size(), 2u);
  const std::string other = cluster_->CreateToken("mallory", "analyst");
  EXPECT_EQ(cluster_->DpctlAs(other, {"logs", job}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("NOT_FOUND: job '" + job + "' not found"));
}

TEST_F(EndToEndTest, KilledWorkerFailsItsJobWithAReason) {
  cluster_->StartServer(/*lease_ttl_ms=*/1500);
  cluster_->StartWorkers(1);
  const std::string job = Submit(WriteSpec("victim", 500));
  ASSERT_TRUE(WaitFor([&] { return Status(job)["epochs_done"].get<int>() >= 1; }, absl::Seconds(60)))
      << cluster_->Logs();
  cluster_->worker(0).Signal(SIGKILL);
  std::string out, err;
  EXPECT_EQ(cluster_->Dpctl({"watch", job}, &out, &err), 1);
  auto st = Status(job);
  EXPECT_EQ(st["state"], "FAILED");
  EXPECT_THAT(st["reason"].get<std::string>(), HasSubstr("lost"));
}

TEST_F(EndToEndTest, SigtermStopsTheWorkerCleanly) {
  cluster_->StartServer();
  cluster_->StartWorkers(1);
  const std::string job = Submit(WriteSpec("interrupted", 500));
  ASSERT_TRUE(WaitFor([&] { return Status(job)["epochs_done"].get<int>() >= 1; }, absl::Seconds(60)))
      << cluster_->Logs();
  cluster_->worker(0).Signal(SIGTERM);
  EXPECT_EQ(cluster_->worker(0).Wait(absl::Seconds(30)), 0) << cluster_->Logs();
  ASSERT_TRUE(WaitState(job, "FAILED", absl::Seconds(30))) << cluster_->Logs();
  EXPECT_THAT(Status(job)["reason"].get<std::string>(), HasSubstr("SIGTERM"));
}

}  // namespace
}  // namespace dpfleet

namespace dpfleet {
namespace {

// Data-parallel jobs: W workers, Gloo all-reduce, rendezvous through the
// coordinator.
TEST_F(EndToEndTest, TwoWorkerJobMatchesTheSingleWorkerJob) {
  cluster_->StartServer();
  cluster_->StartWorkers(2);
  std::string out, err;
  ASSERT_EQ(cluster_->Dpctl({"submit", WriteSpec("one", 3, 1), "--follow", "-o", "json"}, &out, &err), 0)
      << err << cluster_->Logs();
  const std::string one_id = nlohmann::json::parse(out.substr(out.rfind('\n', out.size() - 2) + 1))["job_id"];
  ASSERT_EQ(cluster_->Dpctl({"submit", WriteSpec("two", 3, 2), "--follow", "-o", "json"}, &out, &err), 0)
      << err << cluster_->Logs();
  const std::string two_id = nlohmann::json::parse(out.substr(out.rfind('\n', out.size() - 2) + 1))["job_id"];
  auto one = Status(one_id);
  auto two = Status(two_id);
  EXPECT_EQ(two["world_size"], 2);
  EXPECT_EQ(two["worker_ids"].size(), 2u);
  // Same q, sigma and steps: the privacy guarantee is the single-machine one.
  EXPECT_DOUBLE_EQ(two["epsilon"].get<double>(), one["epsilon"].get<double>());
  EXPECT_DOUBLE_EQ(two["sample_rate"].get<double>(), one["sample_rate"].get<double>());
  const double acc1 = one["history"][2]["eval_accuracy"].get<double>();
  const double acc2 = two["history"][2]["eval_accuracy"].get<double>();
  EXPECT_NEAR(acc1, acc2, 0.04) << "W=2 trains to the same accuracy as W=1";
  EXPECT_GT(acc2, two["history"][2]["majority_rate"].get<double>() + 0.02);
}

// With resources.max_attempts: 2 the same kill costs an attempt, not the
// job: it resumes from rank 0's checkpoint on the survivor and the spare,
// keeps every epoch exactly once in its history, and its ε counts the epoch
// the dead attempt had charged. Run twice with the identical spec, the two
// retried jobs end with different models: no attempt's noise is a function
// of anything the two share.
TEST_F(EndToEndTest, KilledRankIsReplacedAndTheJobResumesFromItsCheckpoint) {
  cluster_->StartServer(/*lease_ttl_ms=*/3000);
  constexpr int kWorkers = 4;  // each run loses one and needs two
  cluster_->StartWorkers(kWorkers);
  const std::string spec = dir_.Join("resumed.yaml");
  const int epochs = 40;  // seconds of training left when the kill lands
  std::ofstream(spec) << "name: resumed\ndata: {path: " << data_ << "}\nmodel: {type: mlp, hidden: [32, 16]}\n"
                      << "training: {epochs: " << epochs << ", batch_size: 256, learning_rate: 0.5, seed: 3}\n"
                      << "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5, " << kEval
                      << "}\nresources: {workers: 2, max_attempts: 2}\n";
  std::vector<std::string> models;
  for (int run = 0; run < 2; ++run) {
    SCOPED_TRACE(run);
    const std::string job = Submit(spec);
    ASSERT_TRUE(WaitFor([&] { return Status(job)["epochs_done"].get<int>() >= 1; }, absl::Seconds(90)))
        << cluster_->Logs();
    // Kill the process that holds rank 1 (workers register in any order).
    std::string listed;
    ASSERT_EQ(cluster_->Dpctl({"workers", "-o", "json"}, &listed), 0);
    int victim = -1;
    const nlohmann::json workers = nlohmann::json::parse(listed);
    for (const auto& w : workers["workers"]) {
      if (w["job_id"] != job || w["rank"] != 1) continue;
      for (int i = 0; i < kWorkers; ++i) {
        if (cluster_->worker(i).pid() == w["pid"].get<int>()) victim = i;
      }
    }
    ASSERT_GE(victim, 0) << listed;
    cluster_->worker(victim).Signal(SIGKILL);
    std::string out, err;
    EXPECT_EQ(cluster_->Dpctl({"watch", job}, &out, &err), 0) << out << err << cluster_->Logs();
    auto st = Status(job);
    EXPECT_EQ(st["state"], "SUCCEEDED") << st.dump(2);
    EXPECT_EQ(st["attempt"], 2);
    ASSERT_EQ(st["history"].size(), static_cast<size_t>(epochs));
    for (int e = 0; e < epochs; ++e) EXPECT_EQ(st["history"][e]["epoch"], e + 1);
    EXPECT_GT(st["history"][epochs - 1]["eval_accuracy"].get<double>(),
              st["history"][epochs - 1]["majority_rate"].get<double>() + 0.02);
    // ε: at least the plan's (training and one eval release per epoch), at
    // most the plan's plus the one repeated epoch and its release.
    const auto planned = [&](int n) {
      return *privacy::ComputeEpsilon(
          privacy::AccountantKind::kRdp,
          {{st["sample_rate"].get<double>(), 1.0, n * st["steps_per_epoch"].get<int64_t>()}, {1.0, 2.0, n}}, 1e-5);
    };
    const double eps = st["epsilon"].get<double>();
    EXPECT_GE(eps, planned(epochs) * (1 - 1e-9));
    EXPECT_LE(eps, planned(epochs + 1) * (1 + 1e-9));
    const std::string model = dir_.Join(absl::StrCat("resumed-", run, ".pt"));
    ASSERT_EQ(cluster_->Dpctl({"model", job, "--out", model}, &out, &err), 0) << err;
    std::ifstream f(model, std::ios::binary);
    models.push_back(std::string(std::istreambuf_iterator<char>(f), {}));
  }
  ASSERT_GT(models[0].size(), 1000u);
  EXPECT_EQ(models[0].size(), models[1].size()) << "the same architecture";
  EXPECT_NE(models[0], models[1]) << "identical retried submissions must not share noise";
}

// Identical DP submissions give different models: the noise is keyed by the
// OS CSPRNG, never by the spec (which anyone reading the job sees). With
// privacy.eval: none nothing about the eval split is released, and ε is
// exactly training's.
TEST_F(EndToEndTest, IdenticalSubmissionsGiveDifferentModelsAndEvalNoneReleasesNothing) {
  cluster_->StartServer();
  cluster_->StartWorkers(1);
  const std::string spec = WriteSpec("same", 2, 1, "noise_multiplier: 1.0, eval: none");
  std::vector<std::string> models;
  std::vector<nlohmann::json> done;
  for (int run = 0; run < 2; ++run) {
    std::string out, err;
    ASSERT_EQ(cluster_->Dpctl({"submit", spec, "--follow"}, &out, &err), 0) << err << cluster_->Logs();
    EXPECT_THAT(out, HasSubstr("(no eval release)")) << out;
    EXPECT_THAT(out, ::testing::Not(HasSubstr("acc "))) << out;
    std::string listed;
    ASSERT_EQ(cluster_->Dpctl({"list", "-o", "json"}, &listed), 0);
    const std::string job = nlohmann::json::parse(listed)["jobs"][run]["job_id"].get<std::string>();
    done.push_back(Status(job));
    const std::string model = dir_.Join(absl::StrCat("same-", run, ".pt"));
    ASSERT_EQ(cluster_->Dpctl({"model", job, "--out", model}, &out, &err), 0) << err;
    std::ifstream f(model, std::ios::binary);
    models.push_back(std::string(std::istreambuf_iterator<char>(f), {}));
  }
  ASSERT_GT(models[0].size(), 1000u);
  EXPECT_NE(models[0], models[1]) << "two identical submissions produced the same model bytes";
  for (const nlohmann::json& st : done) {
    EXPECT_EQ(st["state"], "SUCCEEDED");
    EXPECT_EQ(st["eval_every"], 0);
    ASSERT_EQ(st["history"].size(), 2u);
    for (const auto& h : st["history"]) {
      for (const char* metric : {"eval_loss", "eval_accuracy", "eval_auc", "eval_balanced_accuracy", "majority_rate"}) {
        EXPECT_TRUE(h[metric].is_null()) << metric << " " << h.dump();
      }
    }
    std::string calc;
    ASSERT_EQ(cluster_->Dpctl({"privacy", "epsilon", "--sample-rate", st["sample_rate"].dump(), "--noise-multiplier",
                               "1.0", "--steps", std::to_string(2 * st["steps_per_epoch"].get<int64_t>()), "--delta",
                               "1e-5", "-o", "json"},
                              &calc),
              0);
    EXPECT_DOUBLE_EQ(st["epsilon"].get<double>(), nlohmann::json::parse(calc)["epsilon"].get<double>())
        << "without eval releases ε is training's alone";
  }
}

TEST_F(EndToEndTest, KillingOneOfThreeWorkersFailsTheJobInBoundedTime) {
  cluster_->StartServer(/*lease_ttl_ms=*/3000);
  cluster_->StartWorkers(3);
  const std::string job = Submit(WriteSpec("doomed", 2000, 3));
  ASSERT_TRUE(WaitFor([&] { return Status(job)["epochs_done"].get<int>() >= 1; }, absl::Seconds(90)))
      << cluster_->Logs();
  const absl::Time killed = absl::Now();
  cluster_->worker(1).Signal(SIGKILL);
  ASSERT_TRUE(WaitState(job, "FAILED", absl::Seconds(30))) << cluster_->Logs();
  EXPECT_LT(absl::Now() - killed, absl::Seconds(30));
  EXPECT_FALSE(Status(job)["reason"].get<std::string>().empty());
  // The two survivors are free again.
  std::string last;
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string w;
        cluster_->Dpctl({"workers", "-o", "json"}, &w);
        const nlohmann::json parsed = nlohmann::json::parse(w);
        int idle = 0;
        for (const auto& x : parsed["workers"]) idle += x["state"] == "IDLE";
        last = w;
        return idle == 2;
      },
      absl::Seconds(30)))
      << last << cluster_->Logs();
  EXPECT_TRUE(cluster_->worker(0).running());
  EXPECT_TRUE(cluster_->worker(2).running());
}

}  // namespace
}  // namespace dpfleet

namespace dpfleet {
namespace {

TEST_F(EndToEndTest, DatasetBudgetThroughDpctl) {
  cluster_->StartServer();
  std::string out, err;
  // Tiny budget: the first job already needs more.
  ASSERT_EQ(cluster_->Dpctl({"budget", "set", data_, "--epsilon", "0.05", "--delta", "1e-5"}, &out, &err), 0) << err;
  EXPECT_EQ(cluster_->Dpctl({"submit", WriteSpec("too-much", 3)}, &out, &err), 1);
  EXPECT_THAT(err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(err, HasSubstr("budget"));
  ASSERT_EQ(cluster_->Dpctl({"budget", "-o", "json"}, &out, &err), 0) << err;
  auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j["files"].size(), 1u);
  const std::string key = j["files"][0]["file"].get<std::string>();
  EXPECT_EQ(key, "sha256:" + Sha256Hex(testing::ReadAll(data_))) << "the budget is on the file's content";
  EXPECT_EQ(j["files"][0]["names"], nlohmann::json({std::filesystem::canonical(data_).string()}));
  EXPECT_DOUBLE_EQ(j["files"][0]["epsilon_budget"].get<double>(), 0.05);
  EXPECT_DOUBLE_EQ(j["files"][0]["epsilon_spent"].get<double>(), 0.0);
  EXPECT_EQ(cluster_->Dpctl({"budget", "set", data_, "--epsilon", "x", "--delta", "1e-5"}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("--epsilon"));
  // A name that is no file and no dataset is an error, not a new key.
  EXPECT_EQ(cluster_->Dpctl({"budget", "set", dir_.Join("typo.csv"), "--epsilon", "1", "--delta", "1e-5"}, &out, &err),
            2);
  EXPECT_THAT(err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(err, HasSubstr(dir_.Join("typo.csv")));
  EXPECT_EQ(cluster_->Dpctl({"budget", "set", "no-such-dataset", "--epsilon", "1", "--delta", "1e-5"}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("'no-such-dataset'"));
  ASSERT_EQ(cluster_->Dpctl({"budget", "-o", "json"}, &out, &err), 0) << err;
  EXPECT_EQ(nlohmann::json::parse(out)["files"].size(), 1u);
  // Tools poll the same view over HTTP.
  auto [code, http] = cluster_->HttpGet("/v1/budgets?dataset=" + UrlEncode(data_));
  ASSERT_EQ(code, 200) << http;
  auto h = nlohmann::json::parse(http);
  ASSERT_EQ(h["files"].size(), 1u) << http;
  EXPECT_EQ(h["files"][0], j["files"][0]) << "the HTTP view is dpctl's";
  auto [metrics_code, metrics] = cluster_->HttpGet("/metrics");
  ASSERT_EQ(metrics_code, 200) << metrics;
  EXPECT_THAT(metrics, HasSubstr(absl::StrCat("dpfleet_file_epsilon_budget{file=\"", key, "\",names=\"",
                                              std::filesystem::canonical(data_).string(), "\"} 0.05\n")));
}

// Item 4 of issue 9 end to end: a budget on A holds for every job that
// reads A's records, under any name — in a list with B, through a symlink,
// as a copy elsewhere in the data root — and the one that would exceed it
// is refused.
TEST_F(EndToEndTest, ABudgetFollowsTheFileAcrossNamesAndCopies) {
  cluster_->StartServer();
  cluster_->StartWorkers(1);
  std::string out, err;
  const std::string b = dir_.Join("b.csv");
  ASSERT_EQ(RunCommand({BinPath("dpctl"), "data", "synth", "--rows", "8000", "--seed", "8", "--state", "56", "-o", b},
                       &out, nullptr),
            0);
  std::filesystem::create_directories(dir_.Join("copies"));
  std::filesystem::copy_file(data_, dir_.Join("copies/pums-copy.csv"));
  std::filesystem::create_symlink(data_, dir_.Join("pums-link.csv"));
  ASSERT_EQ(cluster_->Dpctl({"budget", "set", data_, "--epsilon", "100", "--delta", "1e-5"}, &out, &err), 0) << err;
  // The same content twice is refused before anything is charged.
  EXPECT_EQ(cluster_->Dpctl({"submit", WriteSpecOn("twice", "[" + data_ + ", " + dir_.Join("pums-link.csv") + "]")},
                            &out, &err),
            2);
  EXPECT_THAT(err, HasSubstr("has the same content as data.path[0]"));

  double spent = 0;
  for (const std::string& paths : {data_ + ", " + b, dir_.Join("pums-link.csv"), dir_.Join("copies/pums-copy.csv")}) {
    const std::string spec = WriteSpecOn("named", "[" + paths + "]");
    std::string job_out;
    ASSERT_EQ(cluster_->Dpctl({"submit", spec, "--follow", "-o", "json"}, &job_out, &err), 0) << paths << err;
    ASSERT_EQ(cluster_->Dpctl({"budget", data_, "-o", "json"}, &out, &err), 0) << err;
    const double now = nlohmann::json::parse(out)["files"][0]["epsilon_spent"].get<double>();
    EXPECT_GT(now, spent) << paths << " was charged to A";
    spent = now;
  }
  ASSERT_EQ(cluster_->Dpctl({"budget", dir_.Join("copies/pums-copy.csv"), "-o", "json"}, &out, &err), 0) << err;
  const auto a = nlohmann::json::parse(out)["files"][0];
  EXPECT_EQ(a["jobs"], 3) << "every name is one file";
  EXPECT_DOUBLE_EQ(a["epsilon_spent"].get<double>(), spent);
  ASSERT_EQ(cluster_->Dpctl({"budget", b, "-o", "json"}, &out, &err), 0) << err;
  EXPECT_EQ(nlohmann::json::parse(out)["files"][0]["jobs"], 1) << "B was read once";
  ASSERT_EQ(cluster_->Dpctl({"ledger", dir_.Join("pums-link.csv"), "-o", "json"}, &out, &err), 0) << err;
  EXPECT_EQ(nlohmann::json::parse(out)["files"][0]["charges"].size(), 6u) << "3 jobs: training and eval each";
  // No room left on A: the next job by yet another name is refused.
  ASSERT_EQ(cluster_->Dpctl({"budget", "set", data_, "--epsilon", absl::StrCat(spent * 1.0001), "--delta", "1e-5"},
                            &out, &err),
            0)
      << err;
  EXPECT_EQ(cluster_->Dpctl({"submit", WriteSpecOn("last", dir_.Join("copies/pums-copy.csv"))}, &out, &err), 1);
  EXPECT_THAT(err, HasSubstr("copies/pums-copy.csv has a budget"));
}

// Item 5 of issue 9: a non-private job has no epsilon anywhere — not 0 —
// and delta above 1/N is refused with N.
TEST_F(EndToEndTest, ANonPrivateJobShowsNoEpsilonAnywhere) {
  cluster_->StartServer();
  cluster_->StartWorkers(1);
  std::string out, err;
  const std::string spec = dir_.Join("baseline.yaml");
  std::ofstream(spec) << "name: baseline\ndata: {path: " << data_ << "}\nmodel: {type: logistic}\n"
                      << "training: {epochs: 2, batch_size: 256}\nprivacy: {mode: none}\n";
  ASSERT_EQ(cluster_->Dpctl({"submit", spec, "--follow", "-o", "json"}, &out, &err), 0) << err << cluster_->Logs();
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  int epochs = 0;
  for (const std::string& line : lines) {
    const auto e = nlohmann::json::parse(line);
    if (e.value("event", "") == "epoch") {
      EXPECT_TRUE(e["epoch"]["epsilon"].is_null()) << line;
      ++epochs;
    }
  }
  EXPECT_EQ(epochs, 2);
  const auto final_status = nlohmann::json::parse(lines.back());
  const std::string id = final_status["job_id"].get<std::string>();
  for (const nlohmann::json& j : {final_status, Status(id)}) {
    EXPECT_TRUE(j["epsilon"].is_null());
    EXPECT_EQ(j["private"], false);
    EXPECT_EQ(j["mode"], "none");
    for (const auto& h : j["history"]) EXPECT_TRUE(h["epsilon"].is_null());
  }
  ASSERT_EQ(cluster_->Dpctl({"list", "-o", "json"}, &out, &err), 0);
  EXPECT_TRUE(nlohmann::json::parse(out)["jobs"][0]["epsilon"].is_null());
  ASSERT_EQ(cluster_->Dpctl({"status", id}, &out, &err), 0);
  EXPECT_THAT(out, HasSubstr("epsilon  ∞ (not private)"));
  EXPECT_THAT(out, Not(HasSubstr("0.0000")));
  ASSERT_EQ(cluster_->Dpctl({"list"}, &out, &err), 0);
  EXPECT_THAT(out, HasSubstr("∞ (not private)"));
  ASSERT_EQ(cluster_->Dpctl({"watch", id}, &out, &err), 0);
  EXPECT_THAT(out, HasSubstr("eps ∞ (not private)"));
  auto [code, http] = cluster_->HttpGet("/v1/jobs/" + id);
  ASSERT_EQ(code, 200) << http;
  const auto hj = nlohmann::json::parse(http);
  EXPECT_TRUE(hj["epsilon"].is_null());
  EXPECT_EQ(hj["private"], false);
  EXPECT_EQ(hj["mode"], "none");
  for (const auto& h : hj["history"]) EXPECT_TRUE(h["epsilon"].is_null());
  auto [jobs_code, jobs] = cluster_->HttpGet("/v1/jobs");
  ASSERT_EQ(jobs_code, 200);
  EXPECT_TRUE(nlohmann::json::parse(jobs)["jobs"][0]["epsilon"].is_null());
  // The same listing, filtered on the coordinator; bad filters are 400s naming the parameter.
  auto [filtered_code, filtered] = cluster_->HttpGet("/v1/jobs?state=succeeded&limit=1");
  ASSERT_EQ(filtered_code, 200) << filtered;
  ASSERT_EQ(nlohmann::json::parse(filtered)["jobs"].size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(filtered)["jobs"][0]["job_id"], id);
  EXPECT_EQ(nlohmann::json::parse(cluster_->HttpGet("/v1/jobs?state=FAILED").second)["jobs"].size(), 0u);
  auto [bad_state, bad_state_body] = cluster_->HttpGet("/v1/jobs?state=DONE");
  EXPECT_EQ(bad_state, 400);
  EXPECT_THAT(bad_state_body, HasSubstr("state: 'DONE' is not a job state"));
  auto [bad_limit, bad_limit_body] = cluster_->HttpGet("/v1/jobs?limit=0");
  EXPECT_EQ(bad_limit, 400);
  EXPECT_THAT(bad_limit_body, HasSubstr("limit: '0' is not a positive integer"));
  EXPECT_EQ(cluster_->HttpGet("/v1/jobs?colour=red").first, 400);
  ASSERT_EQ(cluster_->Dpctl({"list", "--state", "SUCCEEDED", "-o", "name"}, &out, &err), 0) << err;
  EXPECT_EQ(out, id + "\n");
  auto [metrics_code, metrics] = cluster_->HttpGet("/metrics");
  ASSERT_EQ(metrics_code, 200);
  EXPECT_THAT(metrics, Not(HasSubstr("dpfleet_job_epsilon{job_id=\"" + id)));
  EXPECT_THAT(metrics, HasSubstr("dpfleet_jobs_submitted_total{mode=\"none\"} 1")) << "the job itself is counted";
  // The file it read has no finite epsilon left either.
  ASSERT_EQ(cluster_->Dpctl({"budget", data_, "-o", "json"}, &out, &err), 0);
  EXPECT_TRUE(nlohmann::json::parse(out)["files"][0]["epsilon_spent"].is_null());
  EXPECT_EQ(nlohmann::json::parse(out)["files"][0]["private"], false);

  // delta above 1/N: refused at submit, naming delta and N.
  const std::string loose = Rewrite(WriteSpec("loose", 1), "delta: 1.0e-5", "delta: 0.01");
  EXPECT_EQ(cluster_->Dpctl({"submit", loose}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("privacy.delta: '0.01' must be at most 1/N"));
  EXPECT_THAT(err, HasSubstr(absl::StrCat(final_status["train_rows"].get<int64_t>(), " training records")));
}

}  // namespace
}  // namespace dpfleet

namespace dpfleet {
namespace {

class DatasetEndToEndTest : public EndToEndTest, public ::testing::WithParamInterface<bool> {};

// Workers read the coordinator's dataset directory, or (param true) stream
// their own shards from the coordinator.
TEST_P(DatasetEndToEndTest, JobTrainsFromARegisteredDataset) {
  cluster_->StartServer();
  cluster_->StartWorkers(2, GetParam() ? std::vector<std::string>{"--fetch-shards"} : std::vector<std::string>{});
  std::string out, err;
  ASSERT_EQ(cluster_->Dpctl({"datasets", "add", "synth-pums", "--path", data_, "--shards", "3"}, &out, &err), 0)
      << err;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto d = cluster_->client().GetDataset("synth-pums");
        return d.ok() && d->state() != "PREPARING";
      },
      absl::Seconds(60)));
  ASSERT_EQ(cluster_->Dpctl({"datasets", "show", "synth-pums", "-o", "json"}, &out, &err), 0) << err;
  auto ds = nlohmann::json::parse(out);
  ASSERT_EQ(ds["state"], "READY") << out;
  EXPECT_EQ(ds["manifest"]["rows_train"], ds["rows_train"]);
  EXPECT_EQ(ds["manifest"]["train_shards"].size(), 3u);
  auto [code, http] = cluster_->HttpGet("/v1/datasets");
  ASSERT_EQ(code, 200) << http;
  auto listed = nlohmann::json::parse(http)["datasets"];
  ASSERT_EQ(listed.size(), 1u) << http;
  EXPECT_EQ(listed[0]["name"], "synth-pums");
  EXPECT_EQ(listed[0]["state"], "READY");
  EXPECT_EQ(listed[0]["rows_train"], ds["rows_train"]);
  EXPECT_EQ(listed[0]["manifest"], ds["manifest"]);
  // A name already registered conflicts with the state: exit 1.
  EXPECT_EQ(cluster_->Dpctl({"datasets", "add", "synth-pums", "--path", data_}, &out, &err), 1);
  EXPECT_THAT(err, HasSubstr("ALREADY_EXISTS"));
  EXPECT_THAT(err, HasSubstr("already"));

  const std::string spec = dir_.Join("from-dataset.yaml");
  std::ofstream(spec) << "name: from-dataset\ndataset: synth-pums\nmodel: {type: mlp, hidden: [32, 16]}\n"
                      << "training: {epochs: 3, batch_size: 256, learning_rate: 0.5, seed: 3}\n"
                      << "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5, " << kEval
                      << "}\nresources: {workers: 2}\n";
  ASSERT_EQ(cluster_->Dpctl({"submit", spec, "--follow", "-o", "json"}, &out, &err), 0) << err << cluster_->Logs();
  auto final_status = nlohmann::json::parse(out.substr(out.rfind('\n', out.size() - 2) + 1));
  EXPECT_EQ(final_status["state"], "SUCCEEDED");
  EXPECT_EQ(final_status["train_rows"], ds["rows_train"]) << "N is the prepared dataset's";
  const auto& h = final_status["history"];
  ASSERT_EQ(h.size(), 3u);
  EXPECT_GT(h[2]["eval_accuracy"].get<double>(), h[2]["majority_rate"].get<double>() + 0.02);
  // The ledger charges the raw files the dataset came from.
  ASSERT_EQ(cluster_->Dpctl({"budget", data_, "-o", "json"}, &out, &err), 0) << err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(out)["files"][0]["epsilon_spent"].get<double>(),
                   final_status["epsilon"].get<double>());

  const std::string unknown = dir_.Join("unknown.yaml");
  std::ofstream(unknown) << "name: x\ndataset: nope\n";
  EXPECT_EQ(cluster_->Dpctl({"submit", unknown}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("dataset: 'nope'"));
  if (GetParam()) {
    // Each rank holds only its own shards (3 shards over 2 ranks: 0,2 and 1).
    std::vector<std::string> fetched;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir_.path())) {
      if (e.path().string().find("/shards/") != std::string::npos && e.path().extension() == ".bin") {
        fetched.push_back(e.path().parent_path().filename().string() + "/" + e.path().filename().string());
      }
    }
    std::sort(fetched.begin(), fetched.end());
    ASSERT_EQ(fetched.size(), 4u) << ::testing::PrintToString(fetched);
    EXPECT_THAT(fetched[0], HasSubstr("rank0/eval.bin"));
    EXPECT_THAT(fetched[1], HasSubstr("rank0/train-00000-of-00003.bin"));
    EXPECT_THAT(fetched[2], HasSubstr("rank0/train-00002-of-00003.bin"));
    EXPECT_THAT(fetched[3], HasSubstr("rank1/train-00001-of-00003.bin"));
  }
  // dpctl datasets rm: the shards go, the ledger stays, the name is free.
  ASSERT_EQ(cluster_->Dpctl({"datasets", "rm", "synth-pums", "-o", "json"}, &out, &err), 0) << err;
  EXPECT_EQ(nlohmann::json::parse(out)["name"], "synth-pums");
  EXPECT_FALSE(std::filesystem::exists(ds["dir"].get<std::string>()));
  EXPECT_EQ(cluster_->Dpctl({"datasets", "show", "synth-pums"}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(cluster_->Dpctl({"datasets", "rm", "synth-pums"}, &out, &err), 2);
  EXPECT_EQ(cluster_->Dpctl({"datasets", "rm"}, &out, &err), 2);
  ASSERT_EQ(cluster_->Dpctl({"budget", data_, "-o", "json"}, &out, &err), 0) << err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(out)["files"][0]["epsilon_spent"].get<double>(),
                   final_status["epsilon"].get<double>());
  EXPECT_EQ(cluster_->Dpctl({"datasets", "add", "synth-pums", "--path", data_}, &out, &err), 0) << err;
}

INSTANTIATE_TEST_SUITE_P(SharedOrStreamed, DatasetEndToEndTest, ::testing::Values(false, true));

}  // namespace
}  // namespace dpfleet
