// Crash consistency with real processes: a real dpfleet-server on loopback
// under a storm of submits, cancels, charges, epoch reports and heartbeats
// from several workers (test clients that speak the worker protocol, so
// hundreds of epochs fit in seconds), killed with SIGKILL at random moments.
// After every kill, with the coordinator dead, the database on disk must
// hold everything that was acknowledged:
//   * every acknowledged submit is a job; every acknowledged cancel left the
//     job CANCELLED;
//   * every acknowledged charge (an epoch's training, and rank 0's eval
//     release before its metrics) is a ledger row; every acknowledged
//     epoch report is in the job's history;
//   * no epoch is recorded twice, and every recorded epoch was charged,
//     its metrics with their eval release;
// and after every restart, once the reattach lease has passed, no job is
// RUNNING without its rank 0 attached.
//
// Bounded (DPFLEET_CRASH_ROUNDS kills, 20 by default, and a time budget),
// loopback only, and seeded: the seed is printed, and DPFLEET_CRASH_SEED=N
// replays the same kill times and storm shape.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/pums/synth.h"
#include "common/version.h"
#include "dpfleet/v1/coordinator.grpc.pb.h"
#include "dpfleet/v1/worker.grpc.pb.h"
#include "server/core/sqlite_store.h"
#include "server/core/tokens.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet {
namespace {

using ::dpfleet::testing::BinPath;
using ::dpfleet::testing::Process;
using ::dpfleet::testing::WaitFor;

constexpr int64_t kLeaseMs = 600;
constexpr int kWorkers = 4;

int64_t EnvInt(const char* name, int64_t fallback) {
  int64_t v = 0;
  const char* s = std::getenv(name);
  return s != nullptr && absl::SimpleAtoi(s, &v) ? v : fallback;
}

// Deadline for one storm RPC: a dead coordinator must not hold anyone up.
// Waiting for the channel (rather than failing fast while it reconnects)
// is what makes the call drive the reconnect: a synchronous call that fails
// at once polls nothing, and the new connection's handshake would then wait
// for gRPC's backup poller (seconds).
void Deadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1500));
  ctx->set_wait_for_ready(true);
}

// What the coordinator acknowledged; the disk must hold all of it.
struct Acks {
  absl::Mutex mu;
  std::set<std::string> submits ABSL_GUARDED_BY(mu);
  std::set<std::string> cancels ABSL_GUARDED_BY(mu);
  // (job, attempt, epoch, mechanism)
  std::set<std::tuple<std::string, int32_t, int32_t, server::Mechanism>> charges ABSL_GUARDED_BY(mu);
  std::map<std::string, int32_t> epochs ABSL_GUARDED_BY(mu);  // highest acknowledged report per job
  std::map<std::string, int> errors ABSL_GUARDED_BY(mu);      // "Method: message" -> count, for the log
};

void Count(Acks* acks, const char* method, const grpc::Status& s) {
  if (s.ok()) return;
  absl::MutexLock lock(&acks->mu);
  ++acks->errors[absl::StrCat(method, ": ", s.error_message().substr(0, 60))];
}

// The coordinator's address, and a channel to it that reconnects fast.
// Workers speak as the plaintext worker (loopback); the coordinator's own
// methods carry the custodian's token.
class Endpoint {
 public:
  void SetToken(const std::string& token) { token_ = token; }
  void Authorize(grpc::ClientContext* ctx) const { ctx->AddMetadata("authorization", "Bearer " + token_); }

  void Set(const std::string& address) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
    auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    absl::MutexLock lock(&mu_);
    workers_ = v1::WorkerService::NewStub(channel);
    coordinator_ = v1::Coordinator::NewStub(channel);
  }
  std::shared_ptr<v1::WorkerService::Stub> workers() {
    absl::MutexLock lock(&mu_);
    return workers_;
  }
  std::shared_ptr<v1::Coordinator::Stub> coordinator() {
    absl::MutexLock lock(&mu_);
    return coordinator_;
  }

 private:
  std::string token_;  // set before any thread starts
  absl::Mutex mu_;
  std::shared_ptr<v1::WorkerService::Stub> workers_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<v1::Coordinator::Stub> coordinator_ ABSL_GUARDED_BY(mu_);
};

// A worker that speaks the protocol the way dpfleet-worker does (register,
// heartbeat, per epoch charge then report, model, done; re-register with
// its run after a restart) but trains nothing, so epochs take milliseconds.
class StormWorker {
 public:
  StormWorker(int index, Endpoint* endpoint, Acks* acks) : index_(index), endpoint_(endpoint), acks_(acks) {}

  // One round of what a worker does; returns at once when the coordinator
  // is away.
  void Step(bool paused) {
    auto stub = endpoint_->workers();
    if (!registered_ && !Register(*stub)) return;
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::HeartbeatRequest hb;
    hb.set_worker_id(id_);
    if (run_) {
      hb.set_job_id(run_->a.job_id());
      hb.set_attempt(run_->a.attempt());
    }
    v1::HeartbeatResponse resp;
    const grpc::Status beat = stub->Heartbeat(&ctx, hb, &resp);
    Count(acks_, "Heartbeat", beat);
    if (!beat.ok()) return;
    if (resp.reregister()) {
      registered_ = false;
      return;
    }
    for (const std::string& job : resp.cancel_job_ids()) {
      if (run_ && run_->a.job_id() == job) Drop(*stub, "stop order");
    }
    for (const v1::Assignment& a : resp.assignments()) {
      if (run_) {
        Done(*stub, a, false, "worker is busy with another run");
        continue;
      }
      run_ = Run{a};
    }
    if (!paused && run_) Advance(*stub);
  }

 private:
  struct Run {
    v1::Assignment a;
    int32_t epochs = 0;  // from the job, fetched once
    int64_t steps = 0;
    double sample_rate = 0;
    double eval_sigma = 0;  // the job's σ_e (0: no eval release)
    int32_t next_epoch = 0;
    bool charged = false;
    bool eval_charged = false;
    bool uploaded = false;
  };

  bool Register(v1::WorkerService::Stub& stub) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::RegisterRequest req;
    req.set_hostname(absl::StrCat("storm-", index_));
    req.set_device("cpu");
    req.set_pid(1000 + index_);
    req.set_protocol_version(kProtocolVersion);
    req.set_previous_worker_id(id_);
    if (run_) {
      req.set_running_job_id(run_->a.job_id());
      req.set_running_attempt(run_->a.attempt());
      req.set_running_rank(run_->a.rank());
    }
    v1::RegisterResponse resp;
    if (!stub.Register(&ctx, req, &resp).ok()) return false;
    id_ = resp.worker_id();
    registered_ = true;
    return true;
  }

  void Done(v1::WorkerService::Stub& stub, const v1::Assignment& a, bool success, const std::string& error) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::DoneReport req;
    req.set_job_id(a.job_id());
    req.set_attempt(a.attempt());
    req.set_rank(a.rank());
    req.set_worker_id(id_);
    req.set_success(success);
    req.set_error(error);
    v1::DoneAck ack;
    // Best effort, as the real worker's is after its retries: a lost report
    // is repaired by the next heartbeat (a busy worker that names no run).
    stub.ReportDone(&ctx, req, &ack).ok();
  }

  void Drop(v1::WorkerService::Stub& stub, const std::string& why) {
    Done(stub, run_->a, false, why);
    run_.reset();
  }

  // Whether an error means the run is over for this worker (as opposed to
  // a coordinator that is away, which is retried).
  static bool Final(const grpc::Status& s) {
    return s.error_code() != grpc::StatusCode::UNAVAILABLE && s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED;
  }

  void Advance(v1::WorkerService::Stub& stub) {
    Run& r = *run_;
    if (r.epochs == 0) {
      grpc::ClientContext ctx;
      Deadline(&ctx);
      endpoint_->Authorize(&ctx);
      v1::GetJobRequest req;
      req.set_job_id(r.a.job_id());
      v1::Job job;
      const grpc::Status s = endpoint_->coordinator()->GetJob(&ctx, req, &job);
      if (!s.ok()) return;
      r.epochs = job.epochs();
      r.steps = job.steps_per_epoch();
      r.sample_rate = job.sample_rate();
      r.eval_sigma = job.eval_noise_multiplier();
      r.next_epoch = r.a.start_epoch() + 1;
    }
    if (r.next_epoch <= r.epochs && !r.charged) {
      grpc::ClientContext ctx;
      Deadline(&ctx);
      v1::ChargeBudgetRequest req;
      req.set_job_id(r.a.job_id());
      req.set_attempt(r.a.attempt());
      req.set_rank(r.a.rank());
      req.set_epoch(r.next_epoch);
      req.set_steps(r.steps);
      req.set_sample_rate(r.sample_rate);
      req.set_noise_multiplier(r.a.noise_multiplier());
      v1::ChargeBudgetResponse resp;
      const grpc::Status s = stub.ChargeBudget(&ctx, req, &resp);
      Count(acks_, "ChargeBudget", s);
      if (s.ok()) {
        absl::MutexLock lock(&acks_->mu);
        acks_->charges.insert({r.a.job_id(), r.a.attempt(), r.next_epoch, server::Mechanism::kTrain});
        r.charged = true;
      } else if (Final(s)) {
        Drop(stub, s.error_message());
      }
      return;
    }
    if (r.next_epoch <= r.epochs) {
      if (r.a.rank() != 0) {
        ++r.next_epoch;
        r.charged = false;
        return;
      }
      if (!r.eval_charged) {
        // Rank 0's eval release (every epoch by default), before its metrics.
        grpc::ClientContext ctx;
        Deadline(&ctx);
        v1::ChargeBudgetRequest req;
        req.set_job_id(r.a.job_id());
        req.set_attempt(r.a.attempt());
        req.set_rank(0);
        req.set_epoch(r.next_epoch);
        req.set_mechanism(v1::MECHANISM_EVAL);
        req.set_steps(1);
        req.set_sample_rate(1.0);
        req.set_noise_multiplier(r.eval_sigma);
        v1::ChargeBudgetResponse resp;
        const grpc::Status s = stub.ChargeBudget(&ctx, req, &resp);
        Count(acks_, "ChargeBudget(eval)", s);
        if (s.ok()) {
          absl::MutexLock lock(&acks_->mu);
          acks_->charges.insert({r.a.job_id(), r.a.attempt(), r.next_epoch, server::Mechanism::kEval});
          r.eval_charged = true;
        } else if (Final(s)) {
          Drop(stub, s.error_message());
        }
        return;
      }
      grpc::ClientContext ctx;
      Deadline(&ctx);
      v1::ProgressReport req;
      req.set_job_id(r.a.job_id());
      req.set_attempt(r.a.attempt());
      req.set_rank(0);
      req.set_worker_id(id_);
      req.mutable_metrics()->set_epoch(r.next_epoch);
      req.mutable_metrics()->set_eval_loss(0.6);
      req.mutable_metrics()->set_eval_accuracy(0.7);
      req.mutable_metrics()->set_eval_auc(0.75);
      req.mutable_metrics()->set_eval_balanced_accuracy(0.65);
      req.mutable_metrics()->set_majority_rate(0.6);
      req.mutable_metrics()->set_steps(r.steps * r.next_epoch);
      req.set_checkpoint(absl::StrCat("state-after-", r.next_epoch));
      v1::ProgressAck ack;
      const grpc::Status s = stub.ReportProgress(&ctx, req, &ack);
      Count(acks_, "ReportProgress", s);
      if (s.ok() && ack.stop()) {
        Drop(stub, ack.reason());
      } else if (s.ok()) {
        absl::MutexLock lock(&acks_->mu);
        int32_t& high = acks_->epochs[r.a.job_id()];
        high = std::max(high, r.next_epoch);
        ++r.next_epoch;
        r.charged = false;
        r.eval_charged = false;
      } else if (Final(s)) {
        Drop(stub, s.error_message());
      }
      return;
    }
    if (r.a.rank() == 0 && !r.uploaded) {
      grpc::ClientContext ctx;
      Deadline(&ctx);
      v1::UploadModelRequest req;
      req.set_job_id(r.a.job_id());
      req.set_attempt(r.a.attempt());
      req.set_model("model");
      v1::UploadModelResponse resp;
      const grpc::Status s = stub.UploadModel(&ctx, req, &resp);
      if (s.ok()) {
        r.uploaded = true;
      } else if (Final(s)) {
        Drop(stub, s.error_message());
      }
      return;
    }
    grpc::ClientContext ctx;
    Deadline(&ctx);
    v1::DoneReport req;
    req.set_job_id(r.a.job_id());
    req.set_attempt(r.a.attempt());
    req.set_rank(r.a.rank());
    req.set_worker_id(id_);
    req.set_success(true);
    v1::DoneAck ack;
    const grpc::Status s = stub.ReportDone(&ctx, req, &ack);
    if (s.ok() || Final(s)) run_.reset();
  }

  const int index_;
  Endpoint* const endpoint_;
  Acks* const acks_;
  bool registered_ = false;
  std::string id_;
  std::optional<Run> run_;
};

class CrashConsistencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.Join("pums.csv");
    ASSERT_TRUE(data::WriteSyntheticPums({/*rows=*/3000, /*seed=*/3}, data_).ok());
    seed_ = static_cast<uint64_t>(EnvInt("DPFLEET_CRASH_SEED", std::random_device{}()));
    std::printf("crash-consistency seed: %llu (replay with DPFLEET_CRASH_SEED=%llu)\n",
                static_cast<unsigned long long>(seed_), static_cast<unsigned long long>(seed_));
    RecordProperty("seed", std::to_string(seed_));
    rng_.seed(seed_);
    // The custodian's token, made as `dpfleet-server token create` makes it.
    auto store = server::SqliteStore::Open(dir_.Join("state"));
    ASSERT_TRUE(store.ok()) << store.status();
    server::SystemClock clock;
    server::Tokens tokens(store->get(), &clock);
    absl::StatusOr<std::string> token = tokens.Create("storm", server::Role::kCustodian);
    ASSERT_TRUE(token.ok()) << token.status();
    endpoint_.SetToken(*token);
  }
  void TearDown() override {
    stop_ = true;
    for (std::thread& t : threads_) t.join();
  }

  void StartServer() {
    const std::string port_file = dir_.Join("ports");
    std::remove(port_file.c_str());
    server_ = std::make_unique<Process>(
        std::vector<std::string>{BinPath("dpfleet-server"), absl::StrCat("--listen=127.0.0.1:", port_),
                                 "--http=", "--state-dir=" + dir_.Join("state"), "--data-root=" + dir_.path(),
                                 absl::StrCat("--lease_ttl_ms=", kLeaseMs), "--heartbeat_interval_ms=100",
                                 "--port_file=" + port_file},
        dir_.Join(absl::StrCat("server-", ++starts_, ".log")));
    ASSERT_TRUE(WaitFor([&] { return std::ifstream(port_file).good() || !server_->running(); }, absl::Seconds(30)))
        << server_->Log();
    std::ifstream f(port_file);
    int http = 0;
    ASSERT_TRUE(f >> port_ >> http) << server_->Log();
    if (!endpoint_set_) {
      endpoint_.Set(absl::StrCat("127.0.0.1:", port_));
      endpoint_set_ = true;
    }
    started_at_ = absl::Now();
  }

  void StartStorm() {
    for (int i = 0; i < kWorkers; ++i) {
      threads_.emplace_back([this, i] {
        StormWorker w(i, &endpoint_, &acks_);
        while (!stop_) {
          w.Step(paused_);
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      });
    }
    threads_.emplace_back([this] { Submitter(); });
  }

  // Submits jobs (one or two ranks, RDP or PLD, some retriable) while fewer
  // than six are live, and now and then cancels one.
  void Submitter() {
    std::mt19937_64 rng(seed_ ^ 0x5bd1e995);
    int n = 0;
    while (!stop_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (paused_) continue;
      auto stub = endpoint_.coordinator();
      grpc::ClientContext list_ctx;
      Deadline(&list_ctx);
      endpoint_.Authorize(&list_ctx);
      v1::ListJobsResponse jobs;
      if (!stub->ListJobs(&list_ctx, v1::ListJobsRequest(), &jobs).ok()) continue;
      int live = 0;
      std::vector<std::string> cancellable;
      for (const v1::Job& j : jobs.jobs()) {
        if (j.state() == v1::QUEUED || j.state() == v1::RUNNING) {
          ++live;
          cancellable.push_back(j.job_id());
        }
      }
      if (!cancellable.empty() && rng() % 8 == 0) {
        grpc::ClientContext ctx;
        Deadline(&ctx);
        endpoint_.Authorize(&ctx);
        v1::CancelJobRequest req;
        req.set_job_id(cancellable[rng() % cancellable.size()]);
        v1::CancelJobResponse resp;
        if (stub->CancelJob(&ctx, req, &resp).ok()) {
          absl::MutexLock lock(&acks_.mu);
          acks_.cancels.insert(req.job_id());
        }
      }
      if (live >= 6) continue;
      ++n;
      grpc::ClientContext ctx;
      Deadline(&ctx);
      endpoint_.Authorize(&ctx);
      v1::SubmitJobRequest req;
      req.set_spec_yaml(absl::StrCat("name: storm-", n, "\ndata: {path: ", data_, "}\n",
                                     "training: {epochs: ", 2 + rng() % 4, ", batch_size: 256}\n",
                                     "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.2, delta: 1.0e-5, ",
                                     "accountant: ", rng() % 3 == 0 ? "pld" : "rdp", "}\n",
                                     "resources: {workers: ", 1 + rng() % 2, ", max_attempts: ", 1 + rng() % 2, "}\n"));
      v1::SubmitJobResponse resp;
      if (stub->SubmitJob(&ctx, req, &resp).ok()) {
        absl::MutexLock lock(&acks_.mu);
        acks_.submits.insert(resp.job().job_id());
      }
    }
  }

  // With the coordinator dead: the database holds everything acknowledged.
  void ExpectDiskHoldsEveryAcknowledgement() {
    auto store = server::SqliteStore::Open(dir_.Join("state"));
    ASSERT_TRUE(store.ok()) << store.status();
    auto jobs = (*store)->LoadJobs();
    ASSERT_TRUE(jobs.ok()) << jobs.status();
    std::map<std::string, server::JobRecord> stored;
    std::set<std::tuple<std::string, int32_t, int32_t, server::Mechanism>> ledger;
    for (const server::JobRecord& r : *jobs) {
      stored[r.job_id] = r;
      auto rows = (*store)->LedgerForJob(r.job_id);
      ASSERT_TRUE(rows.ok()) << rows.status();
      std::set<int32_t> charged_epochs, released_epochs;
      for (const server::LedgerEntry& e : *rows) {
        EXPECT_TRUE(ledger.insert({e.job_id, e.attempt, e.epoch, e.mechanism}).second) << "a charge recorded twice";
        (e.mechanism == server::Mechanism::kEval ? released_epochs : charged_epochs).insert(e.epoch);
      }
      ASSERT_EQ(r.history.size(), static_cast<std::size_t>(r.epochs_done)) << r.job_id;
      for (std::size_t i = 0; i < r.history.size(); ++i) {
        EXPECT_EQ(r.history[i].epoch, static_cast<int32_t>(i + 1))
            << r.job_id << ": an epoch recorded twice or skipped";
        EXPECT_TRUE(charged_epochs.count(r.history[i].epoch))
            << r.job_id << " epoch " << r.history[i].epoch << " was released without a charge";
        if (r.history[i].has_eval()) {
          EXPECT_TRUE(released_epochs.count(r.history[i].epoch))
              << r.job_id << " epoch " << r.history[i].epoch << "'s metrics were released without their charge";
        }
      }
    }
    absl::MutexLock lock(&acks_.mu);
    for (const std::string& id : acks_.submits)
      EXPECT_TRUE(stored.count(id)) << "acknowledged submit " << id << " lost";
    for (const std::string& id : acks_.cancels) {
      ASSERT_TRUE(stored.count(id)) << id;
      EXPECT_EQ(stored[id].state, server::JobState::kCancelled) << "acknowledged cancel of " << id << " lost";
    }
    for (const auto& charge : acks_.charges) {
      EXPECT_TRUE(ledger.count(charge)) << "acknowledged " << server::MechanismName(std::get<3>(charge))
                                        << " charge of " << std::get<0>(charge) << " attempt " << std::get<1>(charge)
                                        << " epoch " << std::get<2>(charge) << " lost";
    }
    for (const auto& [id, epoch] : acks_.epochs) {
      ASSERT_TRUE(stored.count(id)) << id;
      EXPECT_GE(stored[id].epochs_done, epoch) << "acknowledged epoch " << epoch << " of " << id << " lost";
    }
  }

  // A RUNNING job whose rank 0 is not attached to it, or "" when none.
  std::string StuckJob() {
    auto stub = endpoint_.coordinator();
    grpc::ClientContext jctx, wctx;
    Deadline(&jctx);
    Deadline(&wctx);
    endpoint_.Authorize(&jctx);
    endpoint_.Authorize(&wctx);
    v1::ListJobsResponse jobs;
    v1::ListWorkersResponse workers;
    if (grpc::Status s = stub->ListJobs(&jctx, v1::ListJobsRequest(), &jobs); !s.ok()) {
      return "(coordinator unreachable: " + s.error_message() + ")";
    }
    if (grpc::Status s = stub->ListWorkers(&wctx, v1::ListWorkersRequest(), &workers); !s.ok()) {
      return "(coordinator unreachable: " + s.error_message() + ")";
    }
    for (const v1::Job& j : jobs.jobs()) {
      if (j.state() != v1::RUNNING) continue;
      bool attached = false;
      for (const v1::WorkerInfo& w : workers.workers()) {
        attached |= j.worker_ids_size() > 0 && w.worker_id() == j.worker_ids(0) && w.state() == v1::BUSY &&
                    w.job_id() == j.job_id() && w.attempt() == j.attempt();
      }
      if (!attached) return j.job_id();
    }
    return "";
  }

  testing::TempDir dir_;
  std::string data_;
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  int port_ = 0;
  int starts_ = 0;
  bool endpoint_set_ = false;
  absl::Time started_at_;
  Endpoint endpoint_;
  Acks acks_;
  std::unique_ptr<Process> server_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
  std::vector<std::thread> threads_;
};

TEST_F(CrashConsistencyTest, RandomKillsLoseNothingAcknowledged) {
  const int rounds = static_cast<int>(EnvInt("DPFLEET_CRASH_ROUNDS", 20));
  const absl::Time give_up = absl::Now() + absl::Seconds(EnvInt("DPFLEET_CRASH_SECONDS", 90));
  StartServer();
  StartStorm();
  int kills = 0;
  for (int round = 1; round <= rounds && absl::Now() < give_up; ++round) {
    const int64_t storm_ms = 50 + static_cast<int64_t>(rng_() % 700);
    std::this_thread::sleep_for(std::chrono::milliseconds(storm_ms));
    server_->Signal(SIGKILL);
    ASSERT_EQ(server_->Wait(absl::Seconds(10)), 128 + SIGKILL);
    ++kills;
    {
      SCOPED_TRACE(absl::StrCat("after kill ", kills, " (", storm_ms, " ms of storm; seed ", seed_, ")"));
      ExpectDiskHoldsEveryAcknowledgement();
    }
    if (HasFailure()) break;
    StartServer();
    {
      // Quiet the storm (heartbeats only) and let the reattach lease pass:
      // every RUNNING job then has its rank 0 back, or is no longer RUNNING.
      paused_ = true;
      std::string stuck;
      const bool settled = WaitFor(
          [&] {
            stuck = StuckJob();
            return stuck.empty() && absl::Now() > started_at_ + absl::Milliseconds(kLeaseMs);
          },
          absl::Milliseconds(4 * kLeaseMs));
      EXPECT_TRUE(settled) << "job " << stuck << " is RUNNING without its rank 0 after the reattach lease (seed "
                           << seed_ << ")\n"
                           << server_->Log();
      paused_ = false;
    }
  }
  stop_ = true;
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  {
    absl::MutexLock lock(&acks_.mu);
    for (const auto& [what, n] : acks_.errors) std::printf("  %5d x %s\n", n, what.c_str());
  }
  server_->Signal(SIGTERM);
  server_->Wait(absl::Seconds(10));
  ExpectDiskHoldsEveryAcknowledgement();
  absl::MutexLock lock(&acks_.mu);
  std::printf(
      "crash-consistency: survived %d SIGKILLs; %zu submits, %zu cancels, %zu charges, %zu jobs with "
      "acknowledged epochs, all on disk (seed %llu)\n",
      kills, acks_.submits.size(), acks_.cancels.size(), acks_.charges.size(), acks_.epochs.size(),
      static_cast<unsigned long long>(seed_));
  EXPECT_GE(kills, 5) << "too few kills to mean anything";
  EXPECT_GT(acks_.charges.size(), 20u) << "the storm did too little to mean anything";
}

}  // namespace
}  // namespace dpfleet
