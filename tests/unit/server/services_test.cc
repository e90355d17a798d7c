// The gRPC adapters (server/rpc/services) over an in-process channel: no
// port, no network, a real JobManager on a SQLite store behind them. What
// is checked is what the adapters own: proto <-> record conversion, the
// status a client sees (code and message), and the two callback methods —
// WatchJob and RendezvousGet — answering without holding a thread.
#include "server/rpc/services.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "server/core/sqlite_store.h"
#include "server/rpc/auth.h"
#include "tests/testing/server/fake_data_resolver.h"
#include "tests/testing/server/faulty_store.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::dpfleet::testing::FaultyStore;
using ::testing::HasSubstr;

std::string Spec(int workers = 1, int epochs = 2) {
  return absl::StrCat("name: svc\ndata: {path: /data/p.csv}\ntraining: {epochs: ", epochs,
                      ", batch_size: 100}\nprivacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.1, "
                      "delta: 1.0e-5}\nresources: {workers: ",
                      workers, "}\n");
}

// Threads of this process, from the kernel.
int ThreadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    int n = 0;
    if (line.rfind("Threads:", 0) == 0 && absl::SimpleAtoi(line.substr(8), &n)) return n;
  }
  return -1;
}

class ServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sqlite_ = *SqliteStore::Open(dir_.path());
    store_ = std::make_unique<FaultyStore>(sqlite_.get());
    registry_ = std::make_unique<DatasetRegistry>(store_.get(), &clock_, dir_.path());
    CoordinatorOptions options;
    options.lease_ttl_ms = 60'000;
    jobs_ = std::make_unique<JobManager>(store_.get(), &resolver_, &clock_, options);
    jobs_->set_datasets(registry_.get());
    ASSERT_TRUE(jobs_->Recover().ok());
    // The Gate admits calls on a real listener (its auth processor); over
    // the in-process channel the adapters still ask it who is calling: the
    // custodian (by token) on the coordinator's methods, the plaintext
    // worker on the workers'.
    tokens_ = std::make_unique<Tokens>(store_.get(), &clock_);
    audit_ = std::make_unique<AuditTrail>(store_.get(), &clock_);
    gate_ = std::make_unique<Gate>(tokens_.get(), audit_.get(), &clock_, SecurityLimits(),
                                   /*certificate_workers=*/false);
    token_ = *tokens_->Create("admin", Role::kCustodian);
    ServiceDeps deps{jobs_.get(), registry_.get(), store_.get(), tokens_.get(), gate_.get(), audit_.get()};
    coordinator_ = std::make_unique<CoordinatorServiceImpl>(deps);
    worker_ = std::make_unique<WorkerServiceImpl>(deps);
    grpc::ServerBuilder builder;
    builder.RegisterService(coordinator_.get());
    builder.RegisterService(worker_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto channel = server_->InProcessChannel(grpc::ChannelArguments());
    client_ = v1::Coordinator::NewStub(channel);
    workers_ = v1::WorkerService::NewStub(channel);
  }
  void TearDown() override {
    jobs_->Shutdown();
    server_->Shutdown();
  }

  // A coordinator call as the custodian.
  void Authorize(grpc::ClientContext* ctx) { ctx->AddMetadata("authorization", "Bearer " + token_); }
  v1::Job Submit(const std::string& spec) {
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.set_spec_yaml(spec);
    v1::SubmitJobResponse resp;
    Authorize(&ctx);
    const grpc::Status s = client_->SubmitJob(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.job();
  }
  v1::Job GetJob(const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetJobRequest req;
    req.set_job_id(id);
    v1::Job job;
    Authorize(&ctx);
    EXPECT_TRUE(client_->GetJob(&ctx, req, &job).ok());
    return job;
  }
  std::string Register() {
    grpc::ClientContext ctx;
    v1::RegisterRequest req;
    req.set_hostname("h");
    req.set_device("cpu");
    req.set_protocol_version(kProtocolVersion);
    v1::RegisterResponse resp;
    EXPECT_TRUE(workers_->Register(&ctx, req, &resp).ok());
    return resp.worker_id();
  }
  // A running single-rank job and the assignment its worker received.
  v1::Assignment StartJob(std::string* worker) {
    *worker = Register();
    Submit(Spec());
    grpc::ClientContext ctx;
    v1::HeartbeatRequest req;
    req.set_worker_id(*worker);
    v1::HeartbeatResponse resp;
    EXPECT_TRUE(workers_->Heartbeat(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.assignments_size(), 1);
    return resp.assignments_size() > 0 ? resp.assignments(0) : v1::Assignment();
  }
  grpc::Status RendezvousGet(const v1::Assignment& a, const std::string& key, int64_t timeout_ms, std::string* value,
                             grpc::ClientContext* ctx = nullptr) {
    grpc::ClientContext own;
    v1::RendezvousGetRequest req;
    req.set_job_id(a.job_id());
    req.set_attempt(a.attempt());
    req.set_key(key);
    req.set_timeout_ms(timeout_ms);
    v1::RendezvousGetResponse resp;
    const grpc::Status s = workers_->RendezvousGet(ctx ? ctx : &own, req, &resp);
    if (value) *value = resp.value();
    return s;
  }

  testing::TempDir dir_;
  ManualClock clock_;
  testing::FakeDataResolver resolver_;
  std::unique_ptr<SqliteStore> sqlite_;
  std::unique_ptr<FaultyStore> store_;
  std::unique_ptr<DatasetRegistry> registry_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<Tokens> tokens_;
  std::unique_ptr<AuditTrail> audit_;
  std::unique_ptr<Gate> gate_;
  std::string token_;
  std::unique_ptr<CoordinatorServiceImpl> coordinator_;
  std::unique_ptr<WorkerServiceImpl> worker_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Coordinator::Stub> client_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

TEST_F(ServicesTest, JobsAreSubmittedShownListedAndCancelledWithPreciseErrors) {
  {
    grpc::ClientContext ctx;
    v1::SubmitJobRequest req;
    req.set_spec_yaml("name: x\ndata: {path: /d.csv}\ntraining: {epochs: -3}\n");
    v1::SubmitJobResponse resp;
    Authorize(&ctx);
    const grpc::Status s = client_->SubmitJob(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("training.epochs"));
  }
  const v1::Job job = Submit(Spec(1, 3));
  EXPECT_EQ(job.state(), v1::QUEUED);
  EXPECT_EQ(job.epochs(), 3);
  EXPECT_EQ(job.world_size(), 1);
  EXPECT_DOUBLE_EQ(job.sample_rate(), 0.01);
  EXPECT_EQ(job.steps_per_epoch(), 100);
  EXPECT_EQ(job.train_rows(), 10000);
  EXPECT_DOUBLE_EQ(job.noise_multiplier(), 1.1);
  EXPECT_DOUBLE_EQ(job.delta(), 1e-5);
  EXPECT_EQ(job.accountant(), "rdp");
  EXPECT_EQ(job.created_unix_ms(), clock_.NowMs());
  EXPECT_EQ(GetJob(job.job_id()).name(), "svc");
  {
    grpc::ClientContext ctx;
    v1::ListJobsResponse list;
    Authorize(&ctx);
    ASSERT_TRUE(client_->ListJobs(&ctx, v1::ListJobsRequest(), &list).ok());
    ASSERT_EQ(list.jobs_size(), 1);
    EXPECT_EQ(list.jobs(0).job_id(), job.job_id());
  }
  {
    grpc::ClientContext ctx;
    v1::GetJobRequest req;
    req.set_job_id("job-nope");
    v1::Job out;
    Authorize(&ctx);
    const grpc::Status s = client_->GetJob(&ctx, req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(s.error_message(), HasSubstr("job 'job-nope' not found"));
  }
  for (grpc::StatusCode expected : {grpc::StatusCode::OK, grpc::StatusCode::FAILED_PRECONDITION}) {
    grpc::ClientContext ctx;
    v1::CancelJobRequest req;
    req.set_job_id(job.job_id());
    v1::CancelJobResponse resp;
    Authorize(&ctx);
    const grpc::Status s = client_->CancelJob(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), expected) << s.error_message();
    if (s.ok()) {
      EXPECT_EQ(resp.job().state(), v1::CANCELLED);
    }
  }
}

TEST_F(ServicesTest, ListJobsAppliesItsFiltersOnTheCoordinator) {
  const v1::Job first = Submit(Spec(1, 3));
  const v1::Job second = Submit(Spec(1, 3));
  {
    grpc::ClientContext ctx;
    v1::CancelJobRequest req;
    req.set_job_id(first.job_id());
    v1::CancelJobResponse resp;
    Authorize(&ctx);
    ASSERT_TRUE(client_->CancelJob(&ctx, req, &resp).ok());
  }
  auto list = [&](const v1::ListJobsRequest& req, grpc::Status* status = nullptr) {
    grpc::ClientContext ctx;
    v1::ListJobsResponse resp;
    Authorize(&ctx);
    const grpc::Status s = client_->ListJobs(&ctx, req, &resp);
    if (status != nullptr) *status = s;
    std::vector<std::string> ids;
    for (const v1::Job& j : resp.jobs()) ids.push_back(j.job_id());
    return ids;
  };
  v1::ListJobsRequest req;
  EXPECT_EQ(list(req), (std::vector<std::string>{first.job_id(), second.job_id()}));
  req.set_state(v1::CANCELLED);
  EXPECT_EQ(list(req), std::vector<std::string>{first.job_id()});
  req.set_state(v1::QUEUED);
  EXPECT_EQ(list(req), std::vector<std::string>{second.job_id()});
  req = v1::ListJobsRequest();
  req.set_limit(1);
  EXPECT_EQ(list(req), std::vector<std::string>{second.job_id()}) << "the most recent";
  req.set_owner("someone-else");
  EXPECT_TRUE(list(req).empty());
  req = v1::ListJobsRequest();
  req.set_limit(-2);
  grpc::Status refused;
  EXPECT_TRUE(list(req, &refused).empty());
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("limit: '-2' must be >= 0"));
  // A state number the API does not define is refused by its number, with
  // the same sentence GET /v1/jobs?state= gives.
  req = v1::ListJobsRequest();
  req.set_state(static_cast<v1::JobState>(42));
  EXPECT_TRUE(list(req, &refused).empty());
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("state: '42' is not a job state (expected QUEUED, RUNNING"));
}

TEST_F(ServicesTest, AStoreFailureReachesTheClientAsUnavailableNamingTheCause) {
  store_->Arm(FaultyStore::Fault::kEveryWrite);
  grpc::ClientContext ctx;
  v1::SubmitJobRequest req;
  req.set_spec_yaml(Spec());
  v1::SubmitJobResponse resp;
  Authorize(&ctx);
  const grpc::Status s = client_->SubmitJob(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("state store: reserve a job id: disk I/O error"));
}

TEST_F(ServicesTest, RegistrationChecksTheProtocolAndTheDevice) {
  grpc::ClientContext ctx;
  v1::RegisterRequest req;
  req.set_device("cpu");
  req.set_protocol_version(kProtocolVersion + 1);
  v1::RegisterResponse resp;
  grpc::Status s = workers_->Register(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat("worker speaks protocol version ", kProtocolVersion + 1)));
  grpc::ClientContext ctx2;
  req.set_protocol_version(kProtocolVersion);
  req.set_device("");
  s = workers_->Register(&ctx2, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("device"));
  grpc::ClientContext ctx3;
  req.set_device("cpu");
  ASSERT_TRUE(workers_->Register(&ctx3, req, &resp).ok());
  EXPECT_FALSE(resp.worker_id().empty());
  EXPECT_EQ(resp.lease_ttl_ms(), 60'000);
}

// A run as a worker speaks it: the assignment's fields, the charge's ε, the
// epoch's metrics in the job's history, the model, success.
TEST_F(ServicesTest, TheWorkerProtocolCarriesEveryFieldBothWays) {
  std::string worker;
  const v1::Assignment a = StartJob(&worker);
  EXPECT_EQ(a.attempt(), 1);
  EXPECT_EQ(a.rank(), 0);
  EXPECT_EQ(a.world_size(), 1);
  EXPECT_EQ(a.spec_yaml(), Spec());
  EXPECT_DOUBLE_EQ(a.noise_multiplier(), 1.1);
  ASSERT_EQ(a.data_paths_size(), 1);
  EXPECT_EQ(a.data_paths(0), "/data/p.csv");
  EXPECT_EQ(a.start_epoch(), 0);
  const v1::Job running = GetJob(a.job_id());
  for (int epoch = 1; epoch <= 2; ++epoch) {
    grpc::ClientContext cctx;
    v1::ChargeBudgetRequest charge;
    charge.set_job_id(a.job_id());
    charge.set_attempt(a.attempt());
    charge.set_epoch(epoch);
    charge.set_steps(running.steps_per_epoch());
    charge.set_sample_rate(running.sample_rate());
    charge.set_noise_multiplier(running.noise_multiplier());
    v1::ChargeBudgetResponse charged;
    ASSERT_TRUE(workers_->ChargeBudget(&cctx, charge, &charged).ok());
    EXPECT_GT(charged.epsilon_after(), 0);
    // The eval release of the epoch, before its metrics.
    grpc::ClientContext ectx;
    charge.set_mechanism(v1::MECHANISM_EVAL);
    charge.set_steps(1);
    charge.set_sample_rate(1.0);
    charge.set_noise_multiplier(running.eval_noise_multiplier());
    v1::ChargeBudgetResponse released;
    ASSERT_TRUE(workers_->ChargeBudget(&ectx, charge, &released).ok());
    EXPECT_GT(released.epsilon_after(), charged.epsilon_after()) << "the release costs ε too";
    grpc::ClientContext pctx;
    v1::ProgressReport report;
    report.set_job_id(a.job_id());
    report.set_attempt(a.attempt());
    report.set_worker_id(worker);
    report.mutable_metrics()->set_epoch(epoch);
    report.mutable_metrics()->set_eval_loss(0.5);
    report.mutable_metrics()->set_eval_accuracy(0.75);
    report.mutable_metrics()->set_eval_auc(0.8);
    report.mutable_metrics()->set_eval_balanced_accuracy(0.7);
    report.mutable_metrics()->set_majority_rate(0.6);
    report.mutable_metrics()->set_steps(100 * epoch);
    report.mutable_metrics()->set_train_seconds(1.5);
    report.mutable_metrics()->set_epsilon(1e9);  // a worker's ε is never taken
    v1::ProgressAck ack;
    ASSERT_TRUE(workers_->ReportProgress(&pctx, report, &ack).ok());
    EXPECT_FALSE(ack.stop());
    const v1::Job after = GetJob(a.job_id());
    ASSERT_EQ(after.history_size(), epoch);
    const v1::EpochMetrics& m = after.history(epoch - 1);
    EXPECT_EQ(m.epoch(), epoch);
    EXPECT_EQ(m.eval_loss(), 0.5);
    EXPECT_EQ(m.eval_accuracy(), 0.75);
    EXPECT_EQ(m.eval_auc(), 0.8);
    EXPECT_EQ(m.eval_balanced_accuracy(), 0.7);
    EXPECT_EQ(m.majority_rate(), 0.6);
    EXPECT_EQ(m.steps(), 100 * epoch);
    EXPECT_EQ(m.train_seconds(), 1.5);
    EXPECT_EQ(m.epsilon(), released.epsilon_after()) << "the ledger's ε, not the worker's";
  }
  {
    grpc::ClientContext ctx;
    v1::UploadModelRequest upload;
    upload.set_job_id(a.job_id());
    upload.set_attempt(a.attempt());
    upload.set_model("trained");
    v1::UploadModelResponse uploaded;
    ASSERT_TRUE(workers_->UploadModel(&ctx, upload, &uploaded).ok());
  }
  {
    grpc::ClientContext ctx;
    v1::DoneReport done;
    done.set_job_id(a.job_id());
    done.set_attempt(a.attempt());
    done.set_worker_id(worker);
    done.set_success(true);
    v1::DoneAck ack;
    ASSERT_TRUE(workers_->ReportDone(&ctx, done, &ack).ok());
  }
  EXPECT_EQ(GetJob(a.job_id()).state(), v1::SUCCEEDED);
  grpc::ClientContext ctx;
  v1::GetModelRequest req;
  req.set_job_id(a.job_id());
  req.set_offset(2);
  req.set_max_bytes(3);
  v1::ModelChunk chunk;
  Authorize(&ctx);
  ASSERT_TRUE(client_->GetModel(&ctx, req, &chunk).ok());
  EXPECT_EQ(chunk.data(), "ain");
  EXPECT_EQ(chunk.total_bytes(), 7);
  grpc::ClientContext wctx;
  v1::ListWorkersResponse list;
  Authorize(&wctx);
  ASSERT_TRUE(client_->ListWorkers(&wctx, v1::ListWorkersRequest(), &list).ok());
  ASSERT_EQ(list.workers_size(), 1);
  EXPECT_EQ(list.workers(0).state(), v1::IDLE);
}

TEST_F(ServicesTest, RendezvousGetIsAnsweredOnceTheKeyIsPublished) {
  std::string worker;
  const v1::Assignment a = StartJob(&worker);
  std::string value;
  grpc::Status got;
  std::thread waiter([&] { got = RendezvousGet(a, "nccl_id", 60'000, &value); });
  jobs_->AwaitRendezvousWaiters(a.job_id(), a.attempt(), "nccl_id", 1);
  grpc::ClientContext ctx;
  v1::RendezvousSetRequest set;
  set.set_job_id(a.job_id());
  set.set_attempt(a.attempt());
  set.set_key("nccl_id");
  set.set_value(std::string("\0\1\2", 3));
  v1::RendezvousSetResponse set_resp;
  ASSERT_TRUE(workers_->RendezvousSet(&ctx, set, &set_resp).ok());
  waiter.join();
  ASSERT_TRUE(got.ok()) << got.error_message();
  EXPECT_EQ(value, std::string("\0\1\2", 3));
  // Published already: answered at once.
  ASSERT_TRUE(RendezvousGet(a, "nccl_id", 0, &value).ok());
  grpc::ClientContext actx;
  v1::RendezvousAddRequest add;
  add.set_job_id(a.job_id());
  add.set_attempt(a.attempt());
  add.set_key("count");
  add.set_delta(3);
  v1::RendezvousAddResponse added;
  ASSERT_TRUE(workers_->RendezvousAdd(&actx, add, &added).ok());
  EXPECT_EQ(added.value(), 3);
}

TEST_F(ServicesTest, RendezvousGetEndsAtItsDeadlineOrWithTheReasonTheAttemptEnded) {
  std::string worker;
  const v1::Assignment a = StartJob(&worker);
  grpc::Status late = RendezvousGet(a, "never", 20, nullptr);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(late.error_message(), HasSubstr("rendezvous key 'never' of job '" + a.job_id() + "' attempt 1"));
  v1::Assignment stale = a;
  stale.set_attempt(a.attempt() + 1);
  const grpc::Status refused = RendezvousGet(stale, "k", 1000, nullptr);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << "no worker holds that attempt";
  EXPECT_THAT(refused.error_message(), HasSubstr("does not hold a rank of job '" + a.job_id() + "' attempt 2"));

  grpc::Status got;
  std::thread waiter([&] { got = RendezvousGet(a, "nccl_id", 60'000, nullptr); });
  jobs_->AwaitRendezvousWaiters(a.job_id(), a.attempt(), "nccl_id", 1);
  ASSERT_TRUE(jobs_->Cancel(a.job_id()).ok());
  waiter.join();
  EXPECT_EQ(got.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(got.error_message(), HasSubstr("is CANCELLED, not RUNNING"));
}

TEST_F(ServicesTest, ACallerThatGoesAwayEndsItsRendezvousWait) {
  std::string worker;
  const v1::Assignment a = StartJob(&worker);
  grpc::ClientContext ctx;
  grpc::Status got;
  std::thread waiter([&] { got = RendezvousGet(a, "nccl_id", 60'000, nullptr, &ctx); });
  jobs_->AwaitRendezvousWaiters(a.job_id(), a.attempt(), "nccl_id", 1);
  ctx.TryCancel();
  waiter.join();
  EXPECT_EQ(got.error_code(), grpc::StatusCode::CANCELLED);
  // Publishing afterwards reaches nobody (the finished call is not touched
  // again) and later waiters are answered as usual.
  ASSERT_TRUE(jobs_->RendezvousSet(a.job_id(), a.attempt(), "nccl_id", "v").ok());
  std::string value;
  ASSERT_TRUE(RendezvousGet(a, "nccl_id", 1000, &value).ok());
  EXPECT_EQ(value, "v");
}

// A hundred ranks waiting hold no server thread each: the process grows by
// the clients' threads here, never by one per waiting call on the server.
TEST_F(ServicesTest, AHundredWaitingRanksHoldNoServerThreads) {
  std::string worker;
  const v1::Assignment a = StartJob(&worker);
  constexpr int kRanks = 100;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<v1::RendezvousGetResponse> responses(kRanks);
  std::vector<grpc::Status> statuses(kRanks);
  v1::RendezvousGetRequest req;
  req.set_job_id(a.job_id());
  req.set_attempt(a.attempt());
  req.set_key("nccl_id");
  req.set_timeout_ms(60'000);
  const int before = ThreadCount();
  absl::Mutex mu;
  int answered = 0;
  for (int i = 0; i < kRanks; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    // The client's callback API: no client thread per call either.
    workers_->async()->RendezvousGet(contexts.back().get(), &req, &responses[i], [&, i](grpc::Status s) {
      absl::MutexLock lock(&mu);
      statuses[i] = s;
      ++answered;
    });
  }
  jobs_->AwaitRendezvousWaiters(a.job_id(), a.attempt(), "nccl_id", kRanks);
  const int waiting = ThreadCount();
  EXPECT_LT(waiting - before, kRanks / 4)
      << before << " threads before, " << waiting << " with " << kRanks << " ranks waiting";
  ASSERT_TRUE(jobs_->RendezvousSet(a.job_id(), a.attempt(), "nccl_id", "id").ok());
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](int* n) { return *n == kRanks; }, &answered));
  for (int i = 0; i < kRanks; ++i) {
    EXPECT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    EXPECT_EQ(responses[i].value(), "id");
  }
}

TEST_F(ServicesTest, WatchJobSendsTheSnapshotThenEveryEventAndEndsAfterTheLastState) {
  const v1::Job job = Submit(Spec());
  grpc::ClientContext ctx;
  v1::WatchJobRequest req;
  req.set_job_id(job.job_id());
  Authorize(&ctx);
  auto reader = client_->WatchJob(&ctx, req);
  v1::JobEvent e;
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.type(), v1::JobEvent::SNAPSHOT);
  EXPECT_EQ(e.job().job_id(), job.job_id());
  EXPECT_EQ(e.state(), v1::QUEUED);
  ASSERT_TRUE(jobs_->Cancel(job.job_id()).ok());
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.type(), v1::JobEvent::STATE);
  EXPECT_EQ(e.state(), v1::CANCELLED);
  EXPECT_EQ(e.reason(), "cancelled by user");
  EXPECT_FALSE(reader->Read(&e));
  EXPECT_TRUE(reader->Finish().ok());

  grpc::ClientContext missing_ctx;
  req.set_job_id("job-nope");
  Authorize(&missing_ctx);
  auto missing = client_->WatchJob(&missing_ctx, req);
  EXPECT_FALSE(missing->Read(&e));
  EXPECT_EQ(missing->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServicesTest, BudgetsDatasetsAndVersionAreConvertedAndValidated) {
  {
    grpc::ClientContext ctx;
    v1::SetBudgetRequest req;
    req.set_dataset("/data/p.csv");
    req.set_epsilon(-1);
    req.set_delta(1e-5);
    v1::SetBudgetResponse b;
    Authorize(&ctx);
    const grpc::Status s = client_->SetBudget(&ctx, req, &b);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("epsilon: '-1'"));
  }
  {
    grpc::ClientContext ctx;
    v1::SetBudgetRequest req;
    req.set_dataset("/data/p.csv");
    req.set_epsilon(5);
    req.set_delta(1e-6);
    v1::SetBudgetResponse set;
    Authorize(&ctx);
    ASSERT_TRUE(client_->SetBudget(&ctx, req, &set).ok());
    ASSERT_EQ(set.budgets_size(), 1) << "one file";
    const v1::DatasetBudget& b = set.budgets(0);
    EXPECT_EQ(b.file(), *resolver_.FileKey("dataset", "/data/p.csv"));
    EXPECT_TRUE(b.has_budget());
    EXPECT_EQ(b.epsilon_budget(), 5);
    EXPECT_EQ(b.delta(), 1e-6);
    EXPECT_EQ(b.epsilon_remaining(), 5);
  }
  {
    grpc::ClientContext ctx;
    v1::GetBudgetsResponse all;
    Authorize(&ctx);
    ASSERT_TRUE(client_->GetBudgets(&ctx, v1::GetBudgetsRequest(), &all).ok());
    ASSERT_EQ(all.budgets_size(), 1);
    EXPECT_EQ(all.budgets(0).epsilon_budget(), 5);
  }
  {
    grpc::ClientContext ctx;
    v1::AddDatasetRequest req;
    req.set_name("../bad");
    req.add_paths("/data/p.csv");
    v1::Dataset d;
    Authorize(&ctx);
    const grpc::Status s = client_->AddDataset(&ctx, req, &d);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("name: '../bad'"));
  }
  {
    grpc::ClientContext ctx;
    v1::RemoveDatasetRequest req;
    req.set_name("nope");
    v1::Dataset d;
    Authorize(&ctx);
    EXPECT_EQ(client_->RemoveDataset(&ctx, req, &d).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    v1::ListDatasetsResponse list;
    Authorize(&ctx);
    ASSERT_TRUE(client_->ListDatasets(&ctx, v1::ListDatasetsRequest(), &list).ok());
    EXPECT_EQ(list.datasets_size(), 0);
  }
  grpc::ClientContext ctx;
  v1::VersionInfo v;
  Authorize(&ctx);
  ASSERT_TRUE(client_->GetVersion(&ctx, v1::GetVersionRequest(), &v).ok());
  EXPECT_EQ(v.protocol_version(), kProtocolVersion);
  EXPECT_EQ(v.version(), GetBuildInfo().version);
}

// Log lines travel from the worker holding the rank to the job's owner;
// anyone else is told the job does not exist. A failed rank's public
// reason is composed from its stage and code, never from its message.
TEST_F(ServicesTest, LogsReachTheOwnerAndAFailureReasonIsComposedFromFixedWords) {
  std::string worker;
  const v1::Assignment a = StartJob(&worker);
  {
    grpc::ClientContext ctx;
    v1::ShipLogsRequest req;
    req.set_job_id(a.job_id());
    req.set_attempt(a.attempt());
    req.set_rank(0);
    v1::JobLogLine* l = req.add_lines();
    l->set_level(v1::LOG_INFO);
    l->set_time_unix_ms(42);
    l->set_message("loading data");
    v1::ShipLogsResponse resp;
    const grpc::Status s = workers_->ShipLogs(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.stored(), 1);
  }
  {
    grpc::ClientContext ctx;
    v1::ShipLogsRequest req;
    req.set_job_id(a.job_id());
    req.set_attempt(a.attempt() + 1);
    v1::ShipLogsResponse resp;
    EXPECT_EQ(workers_->ShipLogs(&ctx, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << "only the attempt the worker holds";
  }
  {
    grpc::ClientContext ctx;
    Authorize(&ctx);
    v1::GetJobLogsRequest req;
    req.set_job_id(a.job_id());
    v1::GetJobLogsResponse resp;
    const grpc::Status s = client_->GetJobLogs(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.lines_size(), 1);
    EXPECT_EQ(resp.lines(0).message(), "loading data");
    EXPECT_EQ(resp.lines(0).seq(), 1);
    EXPECT_EQ(resp.lines(0).level(), v1::LOG_INFO);
    EXPECT_EQ(resp.lines(0).time_unix_ms(), 42);
    EXPECT_EQ(resp.job_state(), v1::RUNNING);
    EXPECT_EQ(resp.last_seq(), 1);
  }
  {
    const std::string other = *tokens_->Create("ann", Role::kAnalyst);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + other);
    v1::GetJobLogsRequest req;
    req.set_job_id(a.job_id());
    v1::GetJobLogsResponse resp;
    const grpc::Status s = client_->GetJobLogs(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(s.error_message(), "job '" + a.job_id() + "' not found") << "as for a missing job";
    EXPECT_EQ(resp.lines_size(), 0);
  }
  grpc::ClientContext dctx;
  v1::DoneReport done;
  done.set_job_id(a.job_id());
  done.set_attempt(a.attempt());
  done.set_worker_id(worker);
  done.set_error("input 2 holds exactly the same 1234 person records as input 1");
  done.set_error_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
  done.set_error_stage("loading data");
  v1::DoneAck ack;
  ASSERT_TRUE(workers_->ReportDone(&dctx, done, &ack).ok());
  const JobRecord failed = *jobs_->Get(a.job_id());
  EXPECT_THAT(failed.reason, HasSubstr("1234 person records"));
  EXPECT_EQ(failed.public_reason, "rank 0 (worker " + worker + "): failed while loading data (INVALID_ARGUMENT)");
  const v1::Job shown = GetJob(a.job_id());
  ASSERT_EQ(shown.attempts_size(), 1);
  EXPECT_EQ(shown.attempts(0).outcome(), v1::FAILED);
  EXPECT_THAT(shown.attempts(0).reason(), HasSubstr("1234")) << "the custodian sees the whole message";
}

}  // namespace
}  // namespace dpfleet::server
