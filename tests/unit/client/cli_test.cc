// dpctl's verbs (client/cli) against a scripted coordinator running in the
// test process on a loopback port: what each verb sends (the token too),
// what it prints (tables, JSON), and the exit-code contract — 0 success, 1
// the job failed or the request conflicts with its state, 2 usage errors,
// invalid input, unknown ids, 3 an unreachable or unavailable coordinator,
// 4 a refused identity.
#include "client/cli.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "client/commands.h"
#include "common/version.h"
#include "dpfleet/v1/coordinator.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::client {
namespace {

using ::testing::HasSubstr;

// The coordinator's API, scripted: jobs it knows, what a watch streams,
// refusals to give, and every request it was sent.
class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  FakeCoordinator() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    address_ = absl::StrCat("127.0.0.1:", port);
  }
  ~FakeCoordinator() override { server_->Shutdown(); }
  const std::string& address() const { return address_; }

  void AddJob(const v1::Job& job) {
    absl::MutexLock lock(&mu_);
    jobs_[job.job_id()] = job;
  }
  // The events WatchJob sends, after which `final` is the job's record.
  void Script(const std::string& job_id, std::vector<v1::JobEvent> events, const v1::Job& final) {
    absl::MutexLock lock(&mu_);
    watches_[job_id] = std::move(events);
    finals_[job_id] = final;
  }
  // The next call of `method` answers `status`.
  void Refuse(const std::string& method, const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    refusals_[method] = status;
  }
  void SetModel(const std::string& bytes) {
    absl::MutexLock lock(&mu_);
    model_ = bytes;
  }
  std::vector<std::string> submitted() {
    absl::MutexLock lock(&mu_);
    return submitted_;
  }
  // The authorization header of each submission ("" when none).
  std::vector<std::string> submit_authorizations() {
    absl::MutexLock lock(&mu_);
    return submit_authorizations_;
  }
  v1::SetBudgetRequest last_budget() {
    absl::MutexLock lock(&mu_);
    return last_budget_;
  }
  v1::AddDatasetRequest last_dataset() {
    absl::MutexLock lock(&mu_);
    return last_dataset_;
  }
  int model_chunks() {
    absl::MutexLock lock(&mu_);
    return model_chunks_;
  }

  grpc::Status SubmitJob(grpc::ServerContext* ctx, const v1::SubmitJobRequest* req,
                         v1::SubmitJobResponse* resp) override {
    absl::MutexLock lock(&mu_);
    submitted_.push_back(req->spec_yaml());
    auto auth = ctx->client_metadata().find("authorization");
    submit_authorizations_.push_back(
        auth == ctx->client_metadata().end() ? "" : std::string(auth->second.data(), auth->second.size()));
    if (auto r = Refusal("SubmitJob")) return *r;
    v1::Job& job = jobs_[absl::StrCat("job-00000", submitted_.size())];
    job.set_job_id(absl::StrCat("job-00000", submitted_.size()));
    job.set_name("submitted");
    job.set_state(v1::QUEUED);
    job.set_epochs(2);
    job.set_noise_multiplier(1.1);
    job.set_sample_rate(0.01);
    job.set_steps_per_epoch(100);
    *resp->mutable_job() = job;
    return grpc::Status::OK;
  }
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest* req, v1::Job* resp) override {
    absl::MutexLock lock(&mu_);
    if (auto f = finals_.find(req->job_id()); f != finals_.end() && watched_.count(req->job_id())) {
      *resp = f->second;
      return grpc::Status::OK;
    }
    auto it = jobs_.find(req->job_id());
    if (it == jobs_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "job '" + req->job_id() + "' not found");
    *resp = it->second;
    return grpc::Status::OK;
  }
  v1::ListJobsRequest last_list() {
    absl::MutexLock lock(&mu_);
    return last_list_;
  }
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest* req, v1::ListJobsResponse* resp) override {
    absl::MutexLock lock(&mu_);
    last_list_ = *req;
    for (const auto& [id, job] : jobs_) *resp->add_jobs() = job;
    return grpc::Status::OK;
  }
  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest* req, v1::CancelJobResponse* resp) override {
    absl::MutexLock lock(&mu_);
    if (auto r = Refusal("CancelJob")) return *r;
    v1::Job& job = jobs_[req->job_id()];
    job.set_job_id(req->job_id());
    job.set_state(v1::CANCELLED);
    *resp->mutable_job() = job;
    return grpc::Status::OK;
  }
  grpc::Status WatchJob(grpc::ServerContext*, const v1::WatchJobRequest* req,
                        grpc::ServerWriter<v1::JobEvent>* writer) override {
    std::vector<v1::JobEvent> events;
    {
      absl::MutexLock lock(&mu_);
      auto it = watches_.find(req->job_id());
      if (it == watches_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "job not found");
      events = it->second;
      watched_.insert(req->job_id());
    }
    for (const v1::JobEvent& e : events) writer->Write(e);
    return grpc::Status::OK;
  }
  grpc::Status GetModel(grpc::ServerContext*, const v1::GetModelRequest* req, v1::ModelChunk* resp) override {
    absl::MutexLock lock(&mu_);
    if (auto r = Refusal("GetModel")) return *r;
    ++model_chunks_;
    resp->set_data(model_.substr(req->offset(), req->max_bytes()));
    resp->set_total_bytes(static_cast<int64_t>(model_.size()));
    return grpc::Status::OK;
  }
  grpc::Status ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest*,
                           v1::ListWorkersResponse* resp) override {
    v1::WorkerInfo* w = resp->add_workers();
    w->set_worker_id("w-1");
    w->set_hostname("host-a");
    w->set_device("cpu");
    w->set_state(v1::BUSY);
    w->set_job_id("job-000001");
    w->set_rank(1);
    return grpc::Status::OK;
  }
  grpc::Status GetVersion(grpc::ServerContext*, const v1::GetVersionRequest*, v1::VersionInfo* resp) override {
    resp->set_version("9.9.9");
    resp->set_git("abc");
    resp->set_build_type("Release");
    resp->set_protocol_version(7);
    return grpc::Status::OK;
  }
  grpc::Status SetBudget(grpc::ServerContext*, const v1::SetBudgetRequest* req, v1::SetBudgetResponse* resp) override {
    absl::MutexLock lock(&mu_);
    last_budget_ = *req;
    v1::DatasetBudget* b = resp->add_budgets();
    b->set_file("sha256:" + std::string(64, 'a'));
    b->add_names(req->dataset());
    b->set_has_budget(true);
    b->set_epsilon_budget(req->epsilon());
    b->set_delta(req->delta());
    b->set_epsilon_remaining(req->epsilon());
    return grpc::Status::OK;
  }
  grpc::Status GetBudgets(grpc::ServerContext*, const v1::GetBudgetsRequest* req,
                          v1::GetBudgetsResponse* resp) override {
    v1::DatasetBudget* b = resp->add_budgets();
    b->set_file("sha256:" + std::string(64, 'a'));
    b->add_names(req->dataset().empty() ? "/data/p.csv" : req->dataset());
    b->set_epsilon_spent(1.5);
    b->set_epsilon_committed(2.5);
    b->set_delta(1e-5);
    b->set_jobs(2);
    return grpc::Status::OK;
  }
  grpc::Status AddDataset(grpc::ServerContext*, const v1::AddDatasetRequest* req, v1::Dataset* resp) override {
    absl::MutexLock lock(&mu_);
    last_dataset_ = *req;
    resp->set_name(req->name());
    resp->set_state("PREPARING");
    resp->set_dir("/state/datasets/" + req->name());
    return grpc::Status::OK;
  }
  grpc::Status ListDatasets(grpc::ServerContext*, const v1::ListDatasetsRequest*,
                            v1::ListDatasetsResponse* resp) override {
    v1::Dataset* d = resp->add_datasets();
    d->set_name("acs");
    d->set_state("READY");
    d->set_task("employment");
    d->set_rows_train(800);
    d->set_rows_eval(200);
    d->set_manifest_json("{\"rows_train\": 800}");
    return grpc::Status::OK;
  }
  grpc::Status RemoveDataset(grpc::ServerContext*, const v1::RemoveDatasetRequest* req, v1::Dataset* resp) override {
    absl::MutexLock lock(&mu_);
    if (auto r = Refusal("RemoveDataset")) return *r;
    resp->set_name(req->name());
    resp->set_state("READY");
    return grpc::Status::OK;
  }

 private:
  std::optional<grpc::Status> Refusal(const std::string& method) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = refusals_.find(method);
    if (it == refusals_.end()) return std::nullopt;
    grpc::Status s = it->second;
    refusals_.erase(it);
    return s;
  }

  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  absl::Mutex mu_;
  std::map<std::string, v1::Job> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<v1::JobEvent>> watches_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Job> finals_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> watched_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, grpc::Status> refusals_ ABSL_GUARDED_BY(mu_);
  std::string model_ ABSL_GUARDED_BY(mu_);
  int model_chunks_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> submit_authorizations_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> submitted_ ABSL_GUARDED_BY(mu_);
  v1::SetBudgetRequest last_budget_ ABSL_GUARDED_BY(mu_);
  v1::AddDatasetRequest last_dataset_ ABSL_GUARDED_BY(mu_);
  v1::ListJobsRequest last_list_ ABSL_GUARDED_BY(mu_);
};

v1::Job Job(const std::string& id, v1::JobState state, int epochs_done = 0) {
  v1::Job j;
  j.set_job_id(id);
  j.set_name("census");
  j.set_state(state);
  j.set_epochs(2);
  j.set_epochs_done(epochs_done);
  j.set_epsilon(0.8);
  j.set_delta(1e-5);
  j.set_noise_multiplier(1.1);
  j.set_accountant("rdp");
  j.set_sample_rate(0.01);
  j.set_steps_per_epoch(100);
  j.set_train_rows(10000);
  j.set_world_size(1);
  j.set_attempt(1);
  for (int e = 1; e <= epochs_done; ++e) {
    v1::EpochMetrics* m = j.add_history();
    m->set_epoch(e);
    m->set_eval_accuracy(0.7);
    m->set_epsilon(0.4 * e);
  }
  return j;
}

v1::JobEvent Event(v1::JobEvent::Type type, v1::JobState state, int64_t seq, int epoch = 0) {
  v1::JobEvent e;
  e.set_job_id("job-000001");
  e.set_type(type);
  e.set_state(state);
  e.set_seq(seq);
  if (epoch > 0) {
    e.mutable_epoch()->set_epoch(epoch);
    e.mutable_epoch()->set_epsilon(0.4 * epoch);
  }
  return e;
}

class CliTest : public ::testing::Test {
 protected:
  int Dpctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", coordinator_.address()});
    out_.str("");
    err_.str("");
    return RunDpctl(args, CliEnv{}, out_, err_);
  }
  std::string WriteSpec(const std::string& text) {
    const std::string path = dir_.Join("spec.yaml");
    testing::WriteAll(path, text);
    return path;
  }
  // A watch of job-000001 that ends in `final_state`.
  void ScriptRun(v1::JobState final_state, const std::string& reason = "") {
    v1::JobEvent snapshot = Event(v1::JobEvent::SNAPSHOT, v1::RUNNING, 1);
    *snapshot.mutable_job() = Job("job-000001", v1::RUNNING);
    v1::JobEvent end = Event(v1::JobEvent::STATE, final_state, 4);
    end.set_reason(reason);
    v1::Job final = Job("job-000001", final_state, 2);
    final.set_reason(reason);
    coordinator_.Script(
        "job-000001",
        {snapshot, Event(v1::JobEvent::EPOCH, v1::RUNNING, 2, 1), Event(v1::JobEvent::EPOCH, v1::RUNNING, 3, 2), end},
        final);
  }

  FakeCoordinator coordinator_;
  testing::TempDir dir_;
  std::ostringstream out_, err_;
};

TEST_F(CliTest, SubmitSendsTheSpecFileAndPrintsTheJob) {
  const std::string spec = "name: census\ndata: {path: /data/p.csv}\n";
  ASSERT_EQ(Dpctl({"submit", WriteSpec(spec), "-o", "json"}), kExitOk) << err_.str();
  EXPECT_EQ(coordinator_.submitted(), std::vector<std::string>{spec});
  const nlohmann::json j = nlohmann::json::parse(out_.str());
  EXPECT_EQ(j.at("job_id"), "job-000001");
  EXPECT_EQ(j.at("state"), "QUEUED");
  ASSERT_EQ(Dpctl({"submit", WriteSpec(spec)}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("submitted job-000002 (submitted): QUEUED; sigma 1.1, q 0.01, 100 steps/epoch"));
}

TEST_F(CliTest, SubmitOfAFileThatIsNotThereIsAUsageErrorAndSendsNothing) {
  EXPECT_EQ(Dpctl({"submit", dir_.Join("missing.yaml")}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("cannot read spec file"));
  EXPECT_TRUE(coordinator_.submitted().empty());
  EXPECT_EQ(Dpctl({"submit"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("expected SPEC.yaml"));
}

TEST_F(CliTest, ARefusedSpecPrintsTheCoordinatorsReasonAndExitsTwo) {
  coordinator_.Refuse("SubmitJob",
                      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "training.epochs: '-3' must be positive"));
  EXPECT_EQ(Dpctl({"submit", WriteSpec("name: x\n")}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("dpctl: INVALID_ARGUMENT: training.epochs: '-3' must be positive"));
}

TEST_F(CliTest, FollowingAJobExitsZeroOnlyWhenItSucceeded) {
  ScriptRun(v1::SUCCEEDED);
  ASSERT_EQ(Dpctl({"submit", WriteSpec("name: census\n"), "--follow"}), kExitOk) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("job job-000001 (census): RUNNING"));
  EXPECT_THAT(out_.str(), HasSubstr("epoch   1/2"));
  EXPECT_THAT(out_.str(), HasSubstr("epoch   2/2"));
  EXPECT_THAT(out_.str(), HasSubstr("job job-000001 SUCCEEDED after 2/2 epochs; eps 0.8000"));
}

TEST_F(CliTest, WatchingAJobThatFailedExitsOneWithTheReason) {
  ScriptRun(v1::FAILED, "rank 1 (worker w-2): out of memory");
  EXPECT_EQ(Dpctl({"watch", "job-000001"}), kExitJobFailed);
  EXPECT_THAT(out_.str(), HasSubstr("state FAILED: rank 1 (worker w-2): out of memory"));
  EXPECT_THAT(out_.str(), HasSubstr("FAILED after 2/2 epochs"));
}

TEST_F(CliTest, WatchJsonPrintsOneObjectPerEventThenTheJob) {
  ScriptRun(v1::SUCCEEDED);
  ASSERT_EQ(Dpctl({"watch", "job-000001", "-o", "json"}), kExitOk);
  std::vector<nlohmann::json> lines;
  for (absl::string_view line : absl::StrSplit(out_.str(), '\n', absl::SkipEmpty())) {
    lines.push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0].at("event"), "snapshot");
  EXPECT_EQ(lines[1].at("event"), "epoch");
  EXPECT_EQ(lines[1].at("epoch").at("epoch"), 1);
  EXPECT_EQ(lines[2].at("epoch").at("epoch"), 2);
  EXPECT_EQ(lines[3].at("event"), "state");
  EXPECT_EQ(lines[3].at("state"), "SUCCEEDED");
  EXPECT_EQ(lines[4].at("state"), "SUCCEEDED");
  EXPECT_EQ(lines[4].at("epochs_done"), 2);
}

TEST_F(CliTest, StatusJsonHasTheDocumentedFields) {
  coordinator_.AddJob(Job("job-000003", v1::RUNNING, 1));
  ASSERT_EQ(Dpctl({"status", "job-000003", "-o", "json"}), kExitOk);
  const nlohmann::json j = nlohmann::json::parse(out_.str());
  for (const char* field :
       {"job_id", "name", "state", "epochs_done", "epochs", "epsilon", "delta", "noise_multiplier", "accountant",
        "sample_rate", "steps_per_epoch", "train_rows", "world_size", "attempt", "reason", "history"}) {
    EXPECT_TRUE(j.contains(field)) << field;
  }
  ASSERT_EQ(j.at("history").size(), 1u);
  for (const char* field : {"epoch", "eval_loss", "eval_accuracy", "eval_auc", "eval_balanced_accuracy",
                            "majority_rate", "epsilon", "steps", "train_seconds"}) {
    EXPECT_TRUE(j.at("history")[0].contains(field)) << field;
  }
  EXPECT_EQ(j.at("state"), "RUNNING");
  ASSERT_EQ(Dpctl({"status", "job-000003"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("epochs   1/2"));
  EXPECT_THAT(out_.str(), HasSubstr("epsilon  0.8000 (delta 1e-05, rdp)"));
}

// A non-private job has no epsilon: "∞ (not private)", null in JSON.
TEST_F(CliTest, ANonPrivateJobIsShownWithoutAnEpsilon) {
  v1::Job plain = Job("job-000004", v1::SUCCEEDED, 1);
  plain.set_mode("none");
  plain.clear_epsilon();
  plain.mutable_history(0)->clear_epsilon();
  coordinator_.AddJob(plain);
  ASSERT_EQ(Dpctl({"status", "job-000004"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("epsilon  ∞ (not private)\n"));
  EXPECT_THAT(out_.str(), HasSubstr("eps ∞ (not private)"));
  ASSERT_EQ(Dpctl({"status", "job-000004", "-o", "json"}), kExitOk);
  const nlohmann::json j = nlohmann::json::parse(out_.str());
  EXPECT_TRUE(j.at("epsilon").is_null());
  EXPECT_EQ(j.at("private"), false);
  EXPECT_TRUE(j.at("history")[0].at("epsilon").is_null());
  ASSERT_EQ(Dpctl({"list"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("∞ (not private)"));
}

TEST_F(CliTest, AnUnknownJobExitsTwoAndACancelThatConflictsExitsOne) {
  EXPECT_EQ(Dpctl({"status", "job-nope"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND: job 'job-nope' not found"));
  ASSERT_EQ(Dpctl({"cancel", "job-000001"}), kExitOk);
  EXPECT_EQ(out_.str(), "job job-000001 CANCELLED\n");
  coordinator_.Refuse("CancelJob", grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                                "job 'job-000001' is already CANCELLED; nothing to cancel"));
  EXPECT_EQ(Dpctl({"cancel", "job-000001"}), kExitJobFailed);
  EXPECT_THAT(err_.str(), HasSubstr("already CANCELLED"));
}

TEST_F(CliTest, ListAndWorkersPrintTablesAndJson) {
  coordinator_.AddJob(Job("job-000001", v1::SUCCEEDED, 2));
  ASSERT_EQ(Dpctl({"list"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("job-000001"));
  EXPECT_THAT(out_.str(), HasSubstr("SUCCEEDED"));
  ASSERT_EQ(Dpctl({"list", "-o", "json"}), kExitOk);
  EXPECT_EQ(nlohmann::json::parse(out_.str()).at("jobs")[0].at("epochs_done"), 2);
  ASSERT_EQ(Dpctl({"workers", "-o", "json"}), kExitOk);
  const nlohmann::json w = nlohmann::json::parse(out_.str()).at("workers")[0];
  EXPECT_EQ(w.at("worker_id"), "w-1");
  EXPECT_EQ(w.at("state"), "BUSY");
  EXPECT_EQ(w.at("rank"), 1);
  EXPECT_EQ(Dpctl({"list", "extra"}), kExitUsage);
}

TEST_F(CliTest, AModelIsDownloadedInChunksIntoTheFile) {
  std::string model(5 << 19, '\0');  // 2.5 MiB: three chunks
  for (std::size_t i = 0; i < model.size(); ++i) model[i] = static_cast<char>(i * 7);
  coordinator_.SetModel(model);
  const std::string out = dir_.Join("model.pt");
  ASSERT_EQ(Dpctl({"model", "job-000001", "--out", out, "-o", "json"}), kExitOk) << err_.str();
  EXPECT_EQ(testing::ReadAll(out), model);
  EXPECT_EQ(coordinator_.model_chunks(), 3);
  EXPECT_EQ(nlohmann::json::parse(out_.str()).at("bytes"), model.size());
  EXPECT_EQ(Dpctl({"model", "job-000001"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--out FILE is required"));
  coordinator_.Refuse("GetModel", grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                               "job 'job-000001' is RUNNING; only a SUCCEEDED job has a model"));
  EXPECT_EQ(Dpctl({"model", "job-000001", "--out", out}), kExitJobFailed);
}

TEST_F(CliTest, BudgetsAreShownAndSetWithTheirNumbersChecked) {
  ASSERT_EQ(Dpctl({"budget", "set", "/data/p.csv", "--epsilon", "3.5", "--delta", "1e-6"}), kExitOk);
  EXPECT_EQ(coordinator_.last_budget().dataset(), "/data/p.csv");
  EXPECT_EQ(coordinator_.last_budget().epsilon(), 3.5);
  EXPECT_EQ(coordinator_.last_budget().delta(), 1e-6);
  EXPECT_EQ(Dpctl({"budget", "set", "/data/p.csv", "--epsilon", "lots", "--delta", "1e-6"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--epsilon 'lots' is not a number"));
  EXPECT_EQ(Dpctl({"budget", "set", "/data/p.csv", "--epsilon", "3"}), kExitUsage);
  ASSERT_EQ(Dpctl({"budget", "-o", "json"}), kExitOk);
  const nlohmann::json b = nlohmann::json::parse(out_.str()).at("files")[0];
  EXPECT_EQ(b.at("names"), nlohmann::json({"/data/p.csv"}));
  EXPECT_EQ(b.at("epsilon_spent"), 1.5);
  EXPECT_EQ(b.at("epsilon_committed"), 2.5);
  EXPECT_TRUE(b.at("epsilon_budget").is_null()) << "no budget is null, not 0";
}

TEST_F(CliTest, DatasetsAddSendsEveryFlagAndBadNumbersAreUsageErrors) {
  ASSERT_EQ(Dpctl({"datasets", "add", "acs", "--path", "/raw/a.csv", "/raw/b.csv", "--task", "unemployment",
                   "--features", "AGEP,SCHL", "--shards", "8", "--split-seed", "3", "--eval-fraction", "0.25"}),
            kExitOk)
      << err_.str();
  const v1::AddDatasetRequest req = coordinator_.last_dataset();
  EXPECT_EQ(req.name(), "acs");
  ASSERT_EQ(req.paths_size(), 2);
  EXPECT_EQ(req.paths(1), "/raw/b.csv");
  EXPECT_EQ(req.task(), "unemployment");
  ASSERT_EQ(req.features_size(), 2);
  EXPECT_EQ(req.features(1), "SCHL");
  EXPECT_EQ(req.shards(), 8);
  EXPECT_EQ(req.split_seed(), 3u);
  EXPECT_EQ(req.eval_fraction(), 0.25);
  EXPECT_THAT(out_.str(), HasSubstr("dataset acs: PREPARING (shards in /state/datasets/acs)"));
  EXPECT_EQ(Dpctl({"datasets", "add", "acs", "--path", "/raw/a.csv", "--shards", "0"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--shards '0' must be a positive integer"));
  ASSERT_EQ(Dpctl({"datasets", "list", "-o", "json"}), kExitOk);
  const nlohmann::json d = nlohmann::json::parse(out_.str()).at("datasets")[0];
  EXPECT_EQ(d.at("state"), "READY");
  EXPECT_EQ(d.at("manifest").at("rows_train"), 800) << "the manifest is JSON, not a string";
  coordinator_.Refuse("RemoveDataset", grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                                    "dataset 'acs' is in use by job-000001 (RUNNING)"));
  EXPECT_EQ(Dpctl({"datasets", "rm", "acs"}), kExitJobFailed);
  ASSERT_EQ(Dpctl({"datasets", "rm", "acs"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("removed dataset acs"));
}

TEST_F(CliTest, VersionShowsTheClientAndTheCoordinator) {
  ASSERT_EQ(Dpctl({"version", "-o", "json"}), kExitOk);
  const nlohmann::json v = nlohmann::json::parse(out_.str());
  EXPECT_EQ(v.at("server").at("version"), "9.9.9");
  EXPECT_EQ(v.at("server").at("protocol_version"), 7);
  EXPECT_TRUE(v.at("client").contains("version"));
}

TEST_F(CliTest, AnUnreachableCoordinatorExitsThree) {
  std::ostringstream out, err;
  // Port 1 on loopback: nothing listens, the connection is refused at once.
  EXPECT_EQ(RunDpctl({"--server", "127.0.0.1:1", "status", "job-000001"}, CliEnv{}, out, err), kExitUnavailable);
  EXPECT_THAT(err.str(), HasSubstr("UNAVAILABLE"));
}

TEST_F(CliTest, TheTokenTravelsAsABearerAndRefusalsHaveTheirExitCodes) {
  const std::string token = "dpf_" + std::string(64, 'a');
  CliEnv env;
  env.token = token;
  std::ostringstream out, err;
  const std::string spec = WriteSpec("name: census\n");
  ASSERT_EQ(RunDpctl({"--server", coordinator_.address(), "submit", spec}, env, out, err), kExitOk) << err.str();
  ASSERT_EQ(coordinator_.submit_authorizations().size(), 1u);
  EXPECT_EQ(coordinator_.submit_authorizations()[0], "Bearer " + token);
  coordinator_.Refuse("SubmitJob", grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "analysts submit datasets"));
  EXPECT_EQ(RunDpctl({"--server", coordinator_.address(), "submit", spec}, env, out, err), kExitDenied);
  EXPECT_THAT(err.str(), HasSubstr("PERMISSION_DENIED"));
  coordinator_.Refuse("SubmitJob", grpc::Status(grpc::StatusCode::UNAVAILABLE, "state store: disk I/O error"));
  EXPECT_EQ(RunDpctl({"--server", coordinator_.address(), "submit", spec}, env, out, err), kExitUnavailable);
}

TEST_F(CliTest, UsageErrorsNameTheProblem) {
  EXPECT_EQ(Dpctl({}), kExitUsage);
  EXPECT_EQ(Dpctl({"frobnicate"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("unknown verb 'frobnicate'"));
  EXPECT_EQ(Dpctl({"status", "job-1", "-o", "yaml"}), kExitUsage);
  EXPECT_EQ(Dpctl({"help"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("usage: dpctl"));
}

// Every verb and sub-verb of the verb table answers --help with its own
// usage line, on stdout, exit 0, without reaching a coordinator.
TEST_F(CliTest, EveryVerbHasHelp) {
  for (const VerbDef& verb : Verbs()) {
    std::vector<std::string> args = verb.path;
    args.push_back("--help");
    std::ostringstream out, err;
    ASSERT_EQ(RunDpctl(args, CliEnv{}, out, err), kExitOk) << absl::StrJoin(verb.path, " ") << ": " << err.str();
    EXPECT_THAT(out.str(), HasSubstr("usage: dpctl " + absl::StrJoin(verb.path, " "))) << out.str();
    EXPECT_THAT(out.str(), HasSubstr(verb.summary));
    for (const std::string& flag : verb.spec.values) EXPECT_THAT(out.str(), HasSubstr(flag)) << out.str();
  }
  ASSERT_EQ(Dpctl({"datasets", "add", "-h"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("--eval-fraction"));
  ASSERT_EQ(Dpctl({"help", "budget", "set"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("usage: dpctl budget set"));
  EXPECT_EQ(Dpctl({"--version"}), kExitOk);
  EXPECT_EQ(out_.str(), VersionLine("dpctl") + "\n");
}

TEST_F(CliTest, FlagErrorsNameTheFlagAndTheValue) {
  EXPECT_EQ(Dpctl({"list", "--bogus"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("dpctl list: unknown flag --bogus"));
  EXPECT_EQ(Dpctl({"submit", "--follow=yes", "x.yaml"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("flag --follow takes no value"));
  EXPECT_EQ(Dpctl({"list", "--limit", "x"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--limit: 'x' is not an integer"));
  EXPECT_EQ(Dpctl({"list", "--state", "DONE"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("--state: 'DONE' is not a job state"));
  EXPECT_EQ(Dpctl({"status", "job-1", "-o", "xml"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("-o: \"xml\" is not an output format (expected json, yaml, wide, name, text)"));
  EXPECT_EQ(Dpctl({"submit", "x.yaml", "--follow", "-o", "name"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("cannot follow"));
  EXPECT_TRUE(coordinator_.submitted().empty());
}

TEST_F(CliTest, ListSendsItsFiltersToTheCoordinator) {
  coordinator_.AddJob(Job("job-000001", v1::SUCCEEDED, 2));
  ASSERT_EQ(Dpctl({"list", "--state", "succeeded", "--owner", "alice", "--dataset", "acs", "--limit", "5"}), kExitOk)
      << err_.str();
  const v1::ListJobsRequest req = coordinator_.last_list();
  EXPECT_EQ(req.state(), v1::SUCCEEDED);
  EXPECT_EQ(req.owner(), "alice");
  EXPECT_EQ(req.dataset(), "acs");
  EXPECT_EQ(req.limit(), 5);
  ASSERT_EQ(Dpctl({"list"}), kExitOk);
  EXPECT_EQ(coordinator_.last_list().state(), v1::JOB_STATE_UNSPECIFIED);
  EXPECT_EQ(coordinator_.last_list().limit(), 0);
}

TEST_F(CliTest, NameYamlAndWideOutputs) {
  const std::string spec = WriteSpec("name: census\n");
  ASSERT_EQ(Dpctl({"submit", spec, "-o", "name"}), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "job-000001\n") << "like sbatch --parsable: the id alone";
  coordinator_.AddJob(Job("job-000007", v1::RUNNING, 1));
  ASSERT_EQ(Dpctl({"list", "-o", "name"}), kExitOk);
  EXPECT_EQ(out_.str(), "job-000001\njob-000007\n");
  ASSERT_EQ(Dpctl({"workers", "-o=name"}), kExitOk);
  EXPECT_EQ(out_.str(), "w-1\n");
  ASSERT_EQ(Dpctl({"status", "job-000007", "-o", "json"}), kExitOk);
  const nlohmann::json j = nlohmann::json::parse(out_.str());
  ASSERT_EQ(Dpctl({"status", "job-000007", "-o", "yaml"}), kExitOk);
  const YAML::Node y = YAML::Load(out_.str());
  ASSERT_TRUE(y.IsMap()) << out_.str();
  EXPECT_EQ(y.size(), j.size()) << "the same keys as the JSON";
  EXPECT_EQ(y["job_id"].as<std::string>(), "job-000007");
  EXPECT_EQ(y["epochs_done"].as<int>(), 1);
  EXPECT_EQ(y["history"].size(), 1u);
  ASSERT_EQ(Dpctl({"list", "-o", "wide"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("OWNER"));
  EXPECT_THAT(out_.str(), HasSubstr("ATTEMPT"));
  ASSERT_EQ(Dpctl({"cancel", "job-000007", "-o", "name"}), kExitOk);
  EXPECT_EQ(out_.str(), "job-000007\n");
  EXPECT_EQ(Dpctl({"status", "job-nope", "-o", "yaml"}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("NOT_FOUND"));
  EXPECT_EQ(out_.str(), "");
}

}  // namespace
}  // namespace dpfleet::client
