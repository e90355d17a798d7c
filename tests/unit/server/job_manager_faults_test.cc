// JobManager under store faults: one scenario that touches every kind of
// durable change (submit, schedule, charge, the eval release's charge,
// progress with checkpoints, a lost lease and the retry it causes, success
// with a model, cancel, a dataset's preparation and removal, a budget; and
// beside the JobManager, on the same store, API tokens created and revoked
// and audit entries) is run once cleanly to count
// its writes, then once per write with that write refused, and once per
// write with that write's fsync failing inside SQLite. After every step,
// what memory says (Get/List), what the disk says (a fresh SqliteStore on
// the same database) and what watchers were told (Subscribe) must agree,
// the ledger must hold exactly the charges that were acknowledged, and no
// worker may have been handed an attempt the disk does not know; the
// tokens on disk are exactly those whose creation (and revocation) was
// acknowledged, and the audit trail on disk is, in order, the entries
// recorded so far less those the trail still holds to write. At the end
// the faults stop, a Tick (and the trail's Flush) retries what was left,
// and a restart on the same database must find the same jobs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/pums/shards.h"
#include "nlohmann/json.hpp"
#include "server/core/job_manager.h"
#include "server/core/sqlite_store.h"
#include "server/core/tokens.h"
#include "server/rpc/audit.h"
#include "tests/testing/server/fake_data_resolver.h"
#include "tests/testing/server/fault_vfs.h"
#include "tests/testing/server/faulty_store.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::dpfleet::testing::FaultVfs;
using ::dpfleet::testing::FaultyStore;
using Fault = FaultyStore::Fault;

// A preparation that takes no time and writes nothing: the registry's own
// writes are what this test is about.
absl::StatusOr<data::Manifest> InstantPrepare(const data::PrepareOptions& o) {
  data::Manifest m;
  m.task = "employment";
  m.rows_train = 10000;
  m.rows_eval = 1000;
  m.dim = 40;
  m.shards = o.shards;
  return m;
}

std::string Spec(int epochs, int max_attempts, const std::string& data = "data: {path: /data/p.csv}") {
  return absl::StrCat("name: t\n", data, "\ntraining: {epochs: ", epochs,
                      ", batch_size: 100}\nprivacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.1, "
                      "delta: 1.0e-5}\nresources: {workers: 1, max_attempts: ",
                      max_attempts, "}\n");
}

// Everything of a record that is stored, except ε (a cache in the record;
// the ledger is compared instead).
std::string Durable(const JobRecord& r) {
  nlohmann::json j = ToJson(r);
  j.erase("epsilon");
  return j.dump();
}

// What one watcher of a job has been told: the snapshot, then every event.
struct Watched {
  JobState state = JobState::kQueued;
  std::vector<int32_t> epochs;
};

class Coordinator {
 public:
  Coordinator(const std::string& dir, ManualClock* clock, DatasetRegistry::PrepareFn prepare = InstantPrepare)
      : dir_(dir), clock_(clock), prepare_(std::move(prepare)) {
    SqliteStoreOptions options;
    options.vfs = FaultVfs::Get().Name();
    sqlite_ = *SqliteStore::Open(dir, options);
    faulty_ = std::make_unique<FaultyStore>(sqlite_.get());
    Start();
  }
  ~Coordinator() { Stop(); }

  // A coordinator process on the database: the registry, then the jobs.
  void Start() {
    registry_ = std::make_unique<DatasetRegistry>(faulty_.get(), clock_, dir_, prepare_);
    absl::StatusOr<DataRoots> roots = DataRoots::Create({dir_});
    EXPECT_TRUE(roots.ok()) << roots.status();
    registry_->set_data_roots(*std::move(roots));
    EXPECT_TRUE(registry_->Recover().ok());
    CoordinatorOptions options;
    options.lease_ttl_ms = 1000;
    options.heartbeat_interval_ms = 100;
    jobs_ = std::make_unique<JobManager>(faulty_.get(), &resolver_, clock_, options);
    jobs_->set_datasets(registry_.get());
    EXPECT_TRUE(jobs_->Recover().ok());
    tokens_ = std::make_unique<Tokens>(faulty_.get(), clock_);
    audit_ = std::make_unique<AuditTrail>(faulty_.get(), clock_);
  }
  void Stop() {
    if (jobs_) jobs_->Shutdown();
    jobs_.reset();
    registry_.reset();
    tokens_.reset();
    audit_.reset();
  }

  JobManager& jobs() { return *jobs_; }
  DatasetRegistry& registry() { return *registry_; }
  FaultyStore& store() { return *faulty_; }
  Tokens& tokens() { return *tokens_; }
  AuditTrail& audit() { return *audit_; }

 private:
  const std::string dir_;
  ManualClock* const clock_;
  const DatasetRegistry::PrepareFn prepare_;
  testing::FakeDataResolver resolver_;
  std::unique_ptr<SqliteStore> sqlite_;
  std::unique_ptr<FaultyStore> faulty_;
  std::unique_ptr<DatasetRegistry> registry_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<Tokens> tokens_;
  std::unique_ptr<AuditTrail> audit_;
};

// A charge the ledger acknowledged: job, attempt, epoch, mechanism.
using ChargeKey = std::tuple<std::string, int32_t, int32_t, Mechanism>;

// One run of the scenario, with at most one fault armed from the start.
class Scenario {
 public:
  Scenario(Fault fault, int64_t nth) : coordinator_(dir_.path(), &clock_) {
    std::ofstream(dir_.Join("raw.csv")) << "RT,SERIALNO\n";
    coordinator_.store().Arm(fault, nth);
  }

  // Runs every step, checking agreement after each; then stops the faults,
  // lets a Tick retry what was left, checks again, restarts and compares.
  void Run() {
    for (const auto& [name, step] : Steps()) {
      SCOPED_TRACE(absl::StrCat("after step '", name, "'"));
      step();
      ExpectAgreement();
      if (::testing::Test::HasFatalFailure()) return;
    }
    coordinator_.store().Disarm();
    {
      SCOPED_TRACE("after the faults stopped and a Tick");
      coordinator_.jobs().Tick();
      coordinator_.audit().Flush();
      EXPECT_EQ(coordinator_.audit().pending(), 0u) << "the trail wrote what it held";
      ExpectAgreement();
    }
    SCOPED_TRACE("after a restart on the same database");
    const std::vector<JobRecord> before = coordinator_.jobs().List();
    coordinator_.Stop();
    coordinator_.Start();
    const std::vector<JobRecord> after = coordinator_.jobs().List();
    ASSERT_EQ(after.size(), before.size());
    for (std::size_t i = 0; i < before.size(); ++i) {
      EXPECT_EQ(Durable(after[i]), Durable(before[i]));
      EXPECT_NEAR(after[i].epsilon, before[i].epsilon, 1e-9 * std::max(1.0, before[i].epsilon)) << before[i].job_id;
    }
  }

  int64_t faults() { return coordinator_.store().faults(); }
  std::vector<std::string> log() { return coordinator_.store().log(); }
  std::vector<JobRecord> List() { return jobs().List(); }

 private:
  JobManager& jobs() { return coordinator_.jobs(); }

  // The job's current attempt as the coordinator shows it (0 if unknown).
  int32_t AttemptOf(const std::string& id) {
    auto job = jobs().Get(id);
    return job.ok() ? job->attempt : 0;
  }

  void Submitted(const absl::StatusOr<JobRecord>& job, std::string* id) {
    if (!job.ok()) return;
    *id = job->job_id;
    // Watch it from now on: the snapshot is the first thing a watcher sees.
    auto sub = jobs().Subscribe(*id, [this, jid = *id](const JobEvent* e) {
      if (e == nullptr) return;
      absl::MutexLock lock(&mu_);
      Watched& w = watched_[jid];
      if (e->type == JobEvent::Type::kState) w.state = e->state;
      if (e->type == JobEvent::Type::kEpoch) w.epochs.push_back(e->epoch.epoch);
    });
    ASSERT_TRUE(sub.ok()) << sub.status();
    absl::MutexLock lock(&mu_);
    Watched& w = watched_[*id];
    w.state = sub->job.state;
    for (const EpochRecord& e : sub->job.history) w.epochs.push_back(e.epoch);
  }

  void Charge(const std::string& id, int32_t epoch) {
    auto job = jobs().Get(id);
    if (!job.ok()) return;
    auto eps = jobs().Charge(id, job->attempt, 0, epoch, job->steps_per_epoch, job->sample_rate, job->noise_multiplier);
    if (eps.ok()) acked_charges_.insert({id, job->attempt, epoch, Mechanism::kTrain});
  }

  // Rank 0's eval release of `epoch`, before its metrics leave the worker.
  void ChargeEval(const std::string& id, int32_t epoch) {
    auto job = jobs().Get(id);
    if (!job.ok()) return;
    auto eps = jobs().Charge(id, job->attempt, 0, epoch, 1, 1.0, job->eval_noise_multiplier, Mechanism::kEval);
    if (eps.ok()) acked_charges_.insert({id, job->attempt, epoch, Mechanism::kEval});
  }

  void Progress(const std::string& id, const std::string& worker, int32_t epoch) {
    EpochRecord m;
    m.epoch = epoch;
    m.eval_loss = 0.6;
    m.eval_accuracy = 0.7;
    m.eval_auc = 0.75;
    m.eval_balanced_accuracy = 0.65;
    m.majority_rate = 0.6;
    jobs().ReportProgress(id, AttemptOf(id), 0, worker, m, absl::StrCat("state-after-", epoch)).status().IgnoreError();
  }

  void CreateToken(const std::string& name) {
    if (coordinator_.tokens().Create(name, Role::kAnalyst).ok()) created_tokens_.insert(name);
  }
  void RevokeToken(const std::string& name) {
    if (coordinator_.tokens().Revoke(name).ok()) revoked_tokens_.insert(name);
  }
  void Audit(const std::string& action, const std::string& target) {
    coordinator_.audit().Record(Identity::User("alice", Role::kAnalyst), action, target, absl::OkStatus());
    audited_.push_back(absl::StrCat(action, " ", target));
  }

  // A worker's heartbeat; every assignment it hands over must already be
  // on disk as the job's current attempt.
  void Heartbeat(const std::string& worker) {
    auto hb = jobs().Heartbeat(worker, "", 0);
    if (!hb.ok()) return;
    auto disk = SqliteStore::Open(dir_.path());
    ASSERT_TRUE(disk.ok());
    absl::StatusOr<std::vector<JobRecord>> loaded = (*disk)->LoadJobs();
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    std::map<std::string, JobRecord> stored;
    for (const JobRecord& r : *loaded) stored[r.job_id] = r;
    for (const Assignment& a : hb->assignments) {
      ASSERT_TRUE(stored.count(a.job_id)) << a.job_id;
      EXPECT_EQ(stored[a.job_id].state, JobState::kRunning) << "assignment of " << a.job_id;
      EXPECT_EQ(stored[a.job_id].attempt, a.attempt) << "assignment of " << a.job_id;
    }
  }

  std::vector<std::pair<std::string, std::function<void()>>> Steps() {
    return {
        {"set a budget", [&] { jobs().SetBudget("/data/p.csv", 50, 1e-5).status().IgnoreError(); }},
        {"submit A (2 epochs, 2 attempts)", [&] { Submitted(jobs().Submit(Spec(2, 2)), &a_); }},
        {"submit B", [&] { Submitted(jobs().Submit(Spec(2, 1)), &b_); }},
        {"w1 registers (A starts)", [&] { w1_ = jobs().RegisterWorker("h1", "cpu", 1, "", std::nullopt).worker_id; }},
        {"w1 heartbeats", [&] { Heartbeat(w1_); }},
        {"create a token for alice", [&] { CreateToken("alice"); }},
        {"audit A's submission", [&] { Audit("SubmitJob", a_); }},
        {"charge A epoch 1", [&] { Charge(a_, 1); }},
        {"charge A epoch 1's eval release", [&] { ChargeEval(a_, 1); }},
        {"A reports epoch 1 with a checkpoint", [&] { Progress(a_, w1_, 1); }},
        {"charge A epoch 2", [&] { Charge(a_, 2); }},
        {"w1's lease runs out (A goes back to the queue)",
         [&] {
           clock_.AdvanceMs(1500);
           jobs().Tick();
         }},
        {"w2 registers (A resumes)", [&] { w2_ = jobs().RegisterWorker("h2", "cpu", 2, "", std::nullopt).worker_id; }},
        {"w2 heartbeats", [&] { Heartbeat(w2_); }},
        {"charge A epoch 2 again", [&] { Charge(a_, 2); }},
        {"charge A epoch 2's eval release", [&] { ChargeEval(a_, 2); }},
        {"A reports epoch 2", [&] { Progress(a_, w2_, 2); }},
        {"A uploads its model", [&] { jobs().StoreModel(a_, AttemptOf(a_), 0, "weights").IgnoreError(); }},
        {"A succeeds (B starts)", [&] { jobs().ReportDone(a_, AttemptOf(a_), 0, w2_, true, "").IgnoreError(); }},
        {"cancel B", [&] { jobs().Cancel(b_).status().IgnoreError(); }},
        {"audit B's cancel", [&] { Audit("CancelJob", b_); }},
        {"revoke alice's token", [&] { RevokeToken("alice"); }},
        {"add dataset ds",
         [&] {
           DatasetRecord d;
           d.name = "ds";
           d.paths = {dir_.Join("raw.csv")};
           if (coordinator_.registry().Add(d).ok()) {
             coordinator_.registry().WaitPrepared("ds", absl::Seconds(30)).status().IgnoreError();
           }
         }},
        {"submit C on ds", [&] { Submitted(jobs().Submit(Spec(1, 1, "dataset: ds")), &c_); }},
        {"cancel C", [&] { jobs().Cancel(c_).status().IgnoreError(); }},
        {"remove ds", [&] { jobs().RemoveDataset("ds").status().IgnoreError(); }},
        {"tick", [&] { jobs().Tick(); }},
    };
  }

  void ExpectAgreement() {
    auto disk = SqliteStore::Open(dir_.path());
    ASSERT_TRUE(disk.ok()) << disk.status();
    auto stored = (*disk)->LoadJobs();
    ASSERT_TRUE(stored.ok()) << stored.status();
    const std::vector<JobRecord> memory = jobs().List();
    ASSERT_EQ(memory.size(), stored->size()) << "memory and disk hold different jobs";
    std::set<ChargeKey> charged;
    for (std::size_t i = 0; i < memory.size(); ++i) {
      const JobRecord& m = memory[i];
      const JobRecord& d = (*stored)[i];
      EXPECT_EQ(Durable(m), Durable(d)) << "memory and disk disagree on " << m.job_id;
      auto rows = (*disk)->LedgerForJob(m.job_id);
      ASSERT_TRUE(rows.ok());
      for (const LedgerEntry& e : *rows) charged.insert({e.job_id, e.attempt, e.epoch, e.mechanism});
      const double eps = *Ledger::EpsilonOf(d, *rows);
      EXPECT_NEAR(m.epsilon, eps, 1e-9 * std::max(1.0, eps)) << "the ε shown is not the ledger's for " << m.job_id;
      absl::MutexLock lock(&mu_);
      ASSERT_TRUE(watched_.count(m.job_id)) << m.job_id << " exists but its submission was not acknowledged";
      const Watched& w = watched_[m.job_id];
      EXPECT_EQ(JobStateName(w.state), JobStateName(d.state)) << "watchers were told another state of " << m.job_id;
      std::vector<int32_t> epochs;
      for (const EpochRecord& e : d.history) epochs.push_back(e.epoch);
      EXPECT_EQ(w.epochs, epochs) << "watchers were told other epochs of " << m.job_id;
    }
    EXPECT_EQ(charged, acked_charges_) << "the ledger must hold exactly the acknowledged charges";

    std::map<std::string, std::string> stored_datasets, shown_datasets;
    absl::StatusOr<std::vector<std::string>> datasets = (*disk)->LoadDatasets();
    ASSERT_TRUE(datasets.ok()) << datasets.status();
    for (const std::string& j : *datasets) {
      const nlohmann::json d = nlohmann::json::parse(j);
      stored_datasets[d.at("name")] = d.at("state");
    }
    for (const DatasetRecord& d : coordinator_.registry().List()) shown_datasets[d.name] = d.state;
    EXPECT_EQ(shown_datasets, stored_datasets) << "datasets in memory and on disk";

    std::map<std::string, double> stored_budgets, shown_budgets;
    absl::StatusOr<std::vector<BudgetRecord>> budgets = (*disk)->LoadBudgets();
    ASSERT_TRUE(budgets.ok()) << budgets.status();
    for (const BudgetRecord& b : *budgets) stored_budgets[b.file] = b.epsilon;
    absl::StatusOr<std::vector<BudgetView>> views = jobs().GetBudgets("");
    ASSERT_TRUE(views.ok()) << views.status();
    for (const BudgetView& v : *views) {
      if (v.has_budget) shown_budgets[v.file] = v.epsilon_budget;
    }
    EXPECT_EQ(shown_budgets, stored_budgets) << "budgets in memory and on disk";

    std::set<std::string> valid, revoked;
    absl::StatusOr<std::vector<TokenRecord>> tokens = (*disk)->ListTokens();
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    for (const TokenRecord& t : *tokens) (t.revoked_ms == 0 ? valid : revoked).insert(t.name);
    std::set<std::string> want_valid;
    for (const std::string& n : created_tokens_) {
      if (!revoked_tokens_.count(n)) want_valid.insert(n);
    }
    EXPECT_EQ(valid, want_valid) << "valid tokens on disk are the acknowledged ones";
    EXPECT_EQ(revoked, revoked_tokens_) << "revoked tokens on disk are the acknowledged revocations";

    absl::StatusOr<std::vector<AuditRecord>> trail = (*disk)->ListAudit(0, 1000);
    ASSERT_TRUE(trail.ok()) << trail.status();
    std::vector<std::string> written;
    for (const AuditRecord& a : *trail) written.push_back(absl::StrCat(a.action, " ", a.target));
    ASSERT_LE(written.size(), audited_.size());
    EXPECT_EQ(written, std::vector<std::string>(audited_.begin(), audited_.begin() + written.size()))
        << "the trail on disk is the entries in the order they were recorded";
    EXPECT_EQ(written.size() + coordinator_.audit().pending(), audited_.size())
        << "every entry is on disk or held to be written";
  }

  testing::TempDir dir_;
  ManualClock clock_;
  Coordinator coordinator_;
  std::string a_, b_, c_, w1_, w2_;
  std::set<ChargeKey> acked_charges_;
  std::set<std::string> created_tokens_, revoked_tokens_;
  std::vector<std::string> audited_;
  absl::Mutex mu_;
  std::map<std::string, Watched> watched_ ABSL_GUARDED_BY(mu_);
};

class JobManagerFaultsTest : public ::testing::Test {
 protected:
  void TearDown() override { FaultVfs::Get().Clear(); }

  // The scenario's writes when nothing fails.
  std::vector<std::string> CleanWrites() {
    Scenario clean(Fault::kNone, 0);
    clean.Run();
    EXPECT_EQ(clean.faults(), 0);
    return clean.log();
  }

  void EachWriteInTurn(Fault fault) {
    const std::vector<std::string> writes = CleanWrites();
    ASSERT_GT(writes.size(), 20u) << "the scenario writes: " << absl::StrJoin(writes, "; ");
    for (std::size_t n = 1; n <= writes.size(); ++n) {
      SCOPED_TRACE(absl::StrCat("fault at write ", n, " of ", writes.size(), " (", writes[n - 1], ")"));
      Scenario faulty(fault, static_cast<int64_t>(n));
      faulty.Run();
      EXPECT_EQ(faulty.faults(), 1) << "the armed write happened";
      if (HasFailure()) return;
    }
  }
};

TEST_F(JobManagerFaultsTest, TheCleanScenarioWritesEveryKindOfChange) {
  const std::vector<std::string> writes = CleanWrites();
  const std::string all = absl::StrJoin(writes, "\n");
  for (const char* kind :
       {"reserve a job id", "store job", "charge epoch", "charge the eval release of epoch", "store dataset ds",
        "delete dataset ds", "store the model of", "store the budgets of", "store the content key", "store the file at",
        "store token alice", "revoke the tokens of alice", "append the audit entry of SubmitJob"}) {
    EXPECT_THAT(all, ::testing::HasSubstr(kind));
  }
}

TEST_F(JobManagerFaultsTest, EachWriteRefusedInTurn) { EachWriteInTurn(Fault::kNthWrite); }

TEST_F(JobManagerFaultsTest, EachWritesFsyncFailingInTurn) { EachWriteInTurn(Fault::kNthFsync); }

TEST_F(JobManagerFaultsTest, EveryWriteRefusedLeavesNothingAnywhere) {
  Scenario dead(Fault::kEveryWrite, 0);
  dead.Run();
  EXPECT_GT(dead.faults(), 0);
  EXPECT_TRUE(dead.List().empty()) << "no submission was acknowledged, so no job exists";
}

// The same faults, one operation at a time, for what the matrix cannot
// see: the status a caller gets, and the retry of work nobody waits on.
class JobManagerStoreErrorTest : public ::testing::Test {
 protected:
  JobManagerStoreErrorTest()
      : c_(dir_.path(), &clock_, [this](const data::PrepareOptions& o) {
          prepare_started_.Notify();
          prepare_release_.WaitForNotification();
          return InstantPrepare(o);
        }) {}
  void TearDown() override { FaultVfs::Get().Clear(); }

  JobManager& jobs() { return c_.jobs(); }
  FaultyStore& store() { return c_.store(); }
  std::string AddWorker() {
    clock_.AdvanceMs(1);
    return jobs().RegisterWorker("h", "cpu", 1, "", std::nullopt).worker_id;
  }
  JobRecord Running(int epochs = 2, int max_attempts = 1) {
    AddWorker();
    auto job = jobs().Submit(Spec(epochs, max_attempts));
    EXPECT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->state, JobState::kRunning);
    return *job;
  }
  absl::Status ChargeEpoch(const JobRecord& job, int epoch) {
    return jobs()
        .Charge(job.job_id, job.attempt, 0, epoch, job.steps_per_epoch, job.sample_rate, job.noise_multiplier)
        .status();
  }

  testing::TempDir dir_;
  ManualClock clock_;
  absl::Notification prepare_started_, prepare_release_;
  Coordinator c_;
};

TEST_F(JobManagerStoreErrorTest, AFailedWriteFailsTheOperationWithTheStoresStatusAndChangesNothing) {
  store().Arm(Fault::kEveryWrite);
  auto submitted = jobs().Submit(Spec(2, 1));
  EXPECT_EQ(submitted.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(submitted.status().message(), ::testing::HasSubstr("state store: reserve a job id: disk I/O error"));
  EXPECT_TRUE(jobs().List().empty());
  store().Disarm();

  const JobRecord job = Running();
  const std::string w = jobs().ListWorkers()[0].worker_id;
  store().Arm(Fault::kEveryWrite);
  const absl::Status charge = ChargeEpoch(job, 1);
  EXPECT_EQ(charge.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(charge.message(), ::testing::HasSubstr("charge epoch 1 of job " + job.job_id));
  EXPECT_EQ(jobs().Get(job.job_id)->epsilon, 0.0) << "no ε for a charge that is not on disk";
  store().Disarm();
  ASSERT_TRUE(ChargeEpoch(job, 1).ok()) << "the worker's retry lands";

  EpochRecord m;
  m.epoch = 1;
  store().Arm(Fault::kNthFsync, 1);
  auto progress = jobs().ReportProgress(job.job_id, job.attempt, 0, w, m, "ckpt");
  EXPECT_EQ(progress.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(progress.status().message(),
              ::testing::HasSubstr("epoch 1 of job '" + job.job_id + "' was not recorded: state store: store job"));
  EXPECT_THAT(progress.status().message(), ::testing::HasSubstr("fsync failed"));
  EXPECT_EQ(jobs().Get(job.job_id)->epochs_done, 0);
  EXPECT_EQ(jobs().FetchCheckpoint(job.job_id, job.attempt, 0, 0, 10).status().code(), absl::StatusCode::kNotFound);
  store().Disarm();
  ASSERT_TRUE(jobs().ReportProgress(job.job_id, job.attempt, 0, w, m, "ckpt").ok());
  EXPECT_EQ(jobs().Get(job.job_id)->epochs_done, 1);

  store().Arm(Fault::kEveryWrite);
  auto cancel = jobs().Cancel(job.job_id);
  EXPECT_EQ(cancel.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(cancel.status().message(), ::testing::HasSubstr("job '" + job.job_id + "' was not cancelled"));
  EXPECT_EQ(jobs().Get(job.job_id)->state, JobState::kRunning);
  EXPECT_TRUE(jobs().Heartbeat(w, job.job_id, job.attempt)->cancel_job_ids.empty())
      << "the worker is not told to stop a run the disk still has running";
  auto budget = jobs().SetBudget("/data/p.csv", 100, 1e-5);
  EXPECT_EQ(budget.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE((*jobs().GetBudgets("/data/p.csv"))[0].has_budget) << "a budget that is not stored is not in force";
}

// The eval release's charge the store refused: the worker hears
// Unavailable naming it, the metrics it would release are refused as
// uncharged, and the worker's retry of the charge lets them through.
TEST_F(JobManagerStoreErrorTest, AnEvalReleaseWhoseChargeWasRefusedIsNotReleased) {
  const JobRecord job = Running();
  const std::string w = jobs().ListWorkers()[0].worker_id;
  ASSERT_TRUE(ChargeEpoch(job, 1).ok());
  auto charge_eval = [&] {
    return jobs().Charge(job.job_id, job.attempt, 0, 1, 1, 1.0, job.eval_noise_multiplier, Mechanism::kEval).status();
  };
  store().Arm(Fault::kNthFsync, 1);
  const absl::Status refused = charge_eval();
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_THAT(refused.message(), ::testing::HasSubstr("charge epoch 1 of job " + job.job_id + " (eval release)"));
  store().Disarm();
  EpochRecord m;
  m.epoch = 1;
  m.eval_loss = 0.6;
  m.eval_accuracy = 0.7;
  m.eval_auc = 0.75;
  m.eval_balanced_accuracy = 0.65;
  m.majority_rate = 0.6;
  auto released = jobs().ReportProgress(job.job_id, job.attempt, 0, w, m);
  EXPECT_EQ(released.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(released.status().message(), ::testing::HasSubstr("eval metrics of epoch 1"));
  EXPECT_TRUE(jobs().Get(job.job_id)->history.empty());
  ASSERT_TRUE(charge_eval().ok());
  ASSERT_TRUE(jobs().ReportProgress(job.job_id, job.attempt, 0, w, m).ok());
  EXPECT_EQ(jobs().Get(job.job_id)->history.size(), 1u);
}

// After a restart the rank's holder comes back under a new worker id; the
// store refuses to record the new id: the worker is not attached under an
// id the disk does not know (it is told to stop), and once the store works
// the same re-attachment is stored and takes.
TEST_F(JobManagerStoreErrorTest, AReattachUnderANewIdTheStoreRefusedStopsTheWorker) {
  clock_.AdvanceMs(1);
  const std::string w1 = jobs().RegisterWorker("h1", "cpu", 1, "", std::nullopt, "worker-1").worker_id;
  auto job = jobs().Submit(Spec(2, 1));
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state, JobState::kRunning);
  c_.Stop();
  c_.Start();
  clock_.AdvanceMs(7);  // worker ids carry the registration time: a new one
  const RunningRun run{job->job_id, job->attempt, 0};
  store().Arm(Fault::kEveryWrite);
  const std::string back = jobs().RegisterWorker("h1", "cpu", 1, "", run, "worker-1").worker_id;
  ASSERT_NE(back, w1);
  EXPECT_EQ(jobs().Get(job->job_id)->worker_ids[0], w1) << "the stored holder of the rank stays";
  auto told = jobs().Heartbeat(back, job->job_id, job->attempt);
  ASSERT_TRUE(told.ok());
  EXPECT_THAT(told->cancel_job_ids, ::testing::Contains(job->job_id));
  EXPECT_THAT(jobs().background_errors().last, ::testing::HasSubstr("re-attaching worker " + back));
  store().Disarm();
  clock_.AdvanceMs(7);
  const std::string again = jobs().RegisterWorker("h1", "cpu", 1, "", run, "worker-1").worker_id;
  ASSERT_NE(again, back);
  EXPECT_EQ(jobs().Get(job->job_id)->worker_ids[0], again);
  auto fine = jobs().Heartbeat(again, job->job_id, job->attempt);
  ASSERT_TRUE(fine.ok());
  EXPECT_TRUE(fine->cancel_job_ids.empty());
  auto disk = SqliteStore::Open(dir_.path());
  ASSERT_TRUE(disk.ok());
  EXPECT_EQ((*disk)->LoadJobs()->at(0).worker_ids[0], again) << "stored before it was used";
}

// A lease that runs out while the disk fails: the job keeps its stored
// state (RUNNING), watchers hear nothing, the failure is counted, and a
// later Tick stores the end of the attempt once the disk works.
TEST_F(JobManagerStoreErrorTest, ALostLeaseTheStoreRefusedIsStoredByALaterTick) {
  const JobRecord job = Running();
  std::vector<JobState> told;
  ASSERT_TRUE(jobs()
                  .Subscribe(job.job_id,
                             [&](const JobEvent* e) {
                               if (e != nullptr) told.push_back(e->state);
                             })
                  .ok());
  store().Arm(Fault::kEveryWrite);
  clock_.AdvanceMs(1500);
  jobs().Tick();
  jobs().Tick();
  EXPECT_EQ(jobs().Get(job.job_id)->state, JobState::kRunning);
  EXPECT_TRUE(told.empty());
  const BackgroundErrors::Snapshot errors = jobs().background_errors();
  EXPECT_GE(errors.count, 2);
  EXPECT_THAT(errors.last, ::testing::HasSubstr("ending attempt 1 of job '" + job.job_id + "'"));
  EXPECT_THAT(errors.last, ::testing::HasSubstr("UNAVAILABLE"));
  store().Disarm();
  jobs().Tick();
  const JobRecord failed = *jobs().Get(job.job_id);
  EXPECT_EQ(failed.state, JobState::kFailed);
  EXPECT_THAT(failed.reason, ::testing::HasSubstr("lost"));
  EXPECT_EQ(told, std::vector<JobState>{JobState::kFailed});
}

// A job start the store refuses: the job stays QUEUED, its worker idle and
// without an assignment; the next Tick starts it.
TEST_F(JobManagerStoreErrorTest, AJobStartTheStoreRefusedHappensAtALaterTick) {
  auto job = jobs().Submit(Spec(2, 1));
  ASSERT_TRUE(job.ok());
  store().Arm(Fault::kEveryWrite);
  const std::string w = AddWorker();
  EXPECT_EQ(jobs().Get(job->job_id)->state, JobState::kQueued);
  EXPECT_EQ(jobs().ListWorkers()[0].state, WorkerState::kIdle);
  EXPECT_TRUE(jobs().Heartbeat(w, "", 0)->assignments.empty());
  EXPECT_THAT(jobs().background_errors().last, ::testing::HasSubstr("starting job '" + job->job_id + "' attempt 1"));
  store().Disarm();
  jobs().Tick();
  EXPECT_EQ(jobs().Get(job->job_id)->state, JobState::kRunning);
  auto assigned = jobs().Heartbeat(w, "", 0)->assignments;
  ASSERT_EQ(assigned.size(), 1u);
  EXPECT_EQ(assigned[0].attempt, 1);
}

// The last rank's report the store refused: the worker hears Unavailable
// (and retries), and even if it never does, Tick stores the success.
TEST_F(JobManagerStoreErrorTest, AnEndTheStoreRefusedIsStoredByTickEvenIfTheWorkerGivesUp) {
  const JobRecord job = Running(1);
  const std::string w = jobs().ListWorkers()[0].worker_id;
  ASSERT_TRUE(ChargeEpoch(job, 1).ok());
  EpochRecord m;
  m.epoch = 1;
  ASSERT_TRUE(jobs().ReportProgress(job.job_id, job.attempt, 0, w, m).ok());
  ASSERT_TRUE(jobs().StoreModel(job.job_id, job.attempt, 0, "model").ok());
  store().Arm(Fault::kEveryWrite);
  const absl::Status done = jobs().ReportDone(job.job_id, job.attempt, 0, w, true, "");
  EXPECT_EQ(done.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(done.message(), ::testing::HasSubstr("was not recorded (the coordinator retries)"));
  EXPECT_EQ(jobs().Get(job.job_id)->state, JobState::kRunning);
  EXPECT_EQ(jobs().GetModel(job.job_id, 0, 10).status().code(), absl::StatusCode::kFailedPrecondition);
  store().Disarm();
  jobs().Tick();
  EXPECT_EQ(jobs().Get(job.job_id)->state, JobState::kSucceeded);
  EXPECT_EQ(jobs().GetModel(job.job_id, 0, 10)->data, "model");
}

// A finished preparation whose record the store refuses stays PREPARING
// (what the disk says) and is written again.
TEST_F(JobManagerStoreErrorTest, AFinishedPreparationTheStoreRefusedStaysPreparingUntilWritten) {
  std::ofstream(dir_.Join("raw.csv")) << "RT,SERIALNO\n";
  DatasetRecord d;
  d.name = "ds";
  d.paths = {dir_.Join("raw.csv")};
  ASSERT_TRUE(c_.registry().Add(d).ok());
  prepare_started_.WaitForNotification();
  store().Pause();
  store().Arm(Fault::kNthWrite, 1);
  prepare_release_.Notify();
  store().AwaitPaused(1);  // the READY record is on its way to the store
  EXPECT_EQ(c_.registry().Get("ds")->state, "PREPARING");
  store().Resume();
  auto ready = c_.registry().WaitPrepared("ds", absl::Seconds(30));
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->state, "READY");
  EXPECT_EQ(store().faults(), 1);
  EXPECT_THAT(c_.registry().background_errors().last, ::testing::HasSubstr("storing dataset 'ds' as READY"));
  EXPECT_EQ(store().log().back(), "store dataset ds") << "written again after the refusal";
}

// While a write waits for the disk, nobody who only reads or heartbeats
// waits with it (they would hang here if the write held the job lock), and
// what they see is still the stored state.
TEST_F(JobManagerStoreErrorTest, HeartbeatsAndStatusReadsDoNotWaitForAWriteAndSeeTheStoredState) {
  const JobRecord job = Running();
  const std::string w = jobs().ListWorkers()[0].worker_id;
  std::vector<JobState> told;
  ASSERT_TRUE(jobs()
                  .Subscribe(job.job_id,
                             [&](const JobEvent* e) {
                               if (e != nullptr) told.push_back(e->state);
                             })
                  .ok());
  store().Pause();
  std::thread cancel([&] { EXPECT_TRUE(jobs().Cancel(job.job_id).ok()); });
  store().AwaitPaused(1);
  EXPECT_EQ(jobs().Get(job.job_id)->state, JobState::kRunning) << "not stored yet, so not shown";
  EXPECT_EQ(jobs().List().size(), 1u);
  EXPECT_EQ(jobs().ListWorkers().size(), 1u);
  auto hb = jobs().Heartbeat(w, job.job_id, job.attempt);
  ASSERT_TRUE(hb.ok());
  EXPECT_TRUE(hb->cancel_job_ids.empty()) << "no stop order before the cancel is stored";
  EXPECT_TRUE(jobs().GetBudgets("").ok());
  EXPECT_TRUE(told.empty());
  store().Resume();
  cancel.join();
  EXPECT_EQ(jobs().Get(job.job_id)->state, JobState::kCancelled);
  EXPECT_EQ(told, std::vector<JobState>{JobState::kCancelled});
  EXPECT_THAT(jobs().Heartbeat(w, job.job_id, job.attempt)->cancel_job_ids, ::testing::Contains(job.job_id));
}

// A charge on its way to the ledger holds the writer lock and the ledger's,
// neither of which a heartbeat or a budget view takes.
TEST_F(JobManagerStoreErrorTest, AChargeOnItsWayToTheDiskHoldsUpNoHeartbeatOrBudgetView) {
  const JobRecord job = Running();
  const std::string w = jobs().ListWorkers()[0].worker_id;
  ASSERT_TRUE(jobs().SetBudget("/data/p.csv", 100, 1e-5).ok());
  store().Pause();
  std::thread charge([&] { EXPECT_TRUE(ChargeEpoch(job, 1).ok()); });
  store().AwaitPaused(1);
  EXPECT_TRUE(jobs().Heartbeat(w, job.job_id, job.attempt).ok());
  auto during = jobs().GetBudgets("/data/p.csv");
  ASSERT_TRUE(during.ok()) << during.status();
  EXPECT_EQ((*during)[0].spent, 0.0) << "the charge is not on disk yet";
  EXPECT_EQ(jobs().Get(job.job_id)->epsilon, 0.0);
  store().Resume();
  charge.join();
  EXPECT_GT((*jobs().GetBudgets("/data/p.csv"))[0].spent, 0.0);
  EXPECT_GT(jobs().Get(job.job_id)->epsilon, 0.0);
}

}  // namespace
}  // namespace dpfleet::server
