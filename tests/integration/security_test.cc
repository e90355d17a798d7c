// Access control end to end: real dpfleet-server, dpfleet-worker and dpctl
// processes on loopback, TLS on. Every refusal the trust model promises
// (docs/SECURITY.md) is exercised here against the running coordinator.
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "client/certs.h"
#include "client/coordinator_client.h"
#include "dpfleet/v1/admin.grpc.pb.h"
#include "dpfleet/v1/coordinator.grpc.pb.h"
#include "dpfleet/v1/worker.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fleet/cluster.h"
#include "tests/testing/fleet/rpc_methods.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet {
namespace {

using ::dpfleet::testing::BinPath;
using ::dpfleet::testing::Cluster;
using ::dpfleet::testing::ClusterOptions;
using ::dpfleet::testing::Process;
using ::dpfleet::testing::RunCommand;
using ::dpfleet::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The phrase of a role-table refusal, as opposed to an object-level one.
constexpr char kRoleRefusal[] = "is not allowed to call";

// A channel to the fleet: plaintext, TLS with the fleet CA, or mutual TLS
// with worker-`k`'s certificate from `certs_dir`.
std::shared_ptr<grpc::Channel> Channel(const Cluster& c, const std::string& ca_pem, const std::string& cert_dir = "",
                                       int worker = 0) {
  if (ca_pem.empty()) return grpc::CreateChannel(c.address(), grpc::InsecureChannelCredentials());
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem;
  if (worker > 0) {
    ssl.pem_cert_chain = Slurp(absl::StrCat(cert_dir, "/worker-", worker, ".pem"));
    ssl.pem_private_key = Slurp(absl::StrCat(cert_dir, "/worker-", worker, "-key.pem"));
  }
  return grpc::CreateChannel(c.address(), grpc::SslCredentials(ssl));
}

// Calls `method` with an empty request, whatever its type (an empty
// message is every request's default), and the given authorization
// headers.
grpc::Status CallEmpty(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                       const std::vector<std::string>& authorization,
                       absl::Duration timeout = absl::Seconds(10)) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  for (const std::string& a : authorization) ctx.AddMetadata("authorization", a);
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  absl::Notification done;
  grpc::Status result;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
    result = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.Join("pums.csv");
    std::string out;
    ASSERT_EQ(RunCommand({BinPath("dpctl"), "data", "synth", "--rows", "20000", "--seed", "7", "-o", data_}, &out,
                         nullptr),
              0);
  }

  void Start(ClusterOptions options = {}) {
    cluster_ = std::make_unique<Cluster>(dir_.path(), std::move(options));
    cluster_->StartServer();
    ca_pem_ = cluster_->tls() ? Slurp(cluster_->ca_path()) : "";
  }

  // Registers the synthetic file as dataset `name` and waits until READY.
  void AddDataset(const std::string& name) {
    std::string out, err;
    ASSERT_EQ(cluster_->Dpctl({"datasets", "add", name, "--path", data_, "--shards", "2"}, &out, &err), 0) << err;
    ASSERT_TRUE(WaitFor(
        [&] {
          auto d = cluster_->client().GetDataset(name);
          return d.ok() && d->state() == "READY";
        },
        absl::Seconds(60)));
  }

  std::string DatasetSpec(const std::string& name, int epochs) {
    const std::string path = dir_.Join(name + ".yaml");
    std::ofstream(path) << "name: " << name << "\ndataset: synth\nmodel: {type: mlp, hidden: [16]}\n"
                        << "training: {epochs: " << epochs << ", batch_size: 256, learning_rate: 0.5, seed: 3}\n"
                        << "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5}\n";
    return path;
  }

  std::string SubmitAs(const std::string& token, const std::string& spec) {
    std::string out, err;
    EXPECT_EQ(cluster_->DpctlAs(token, {"submit", spec, "-o", "json"}, &out, &err), 0) << err;
    return out.empty() ? "" : nlohmann::json::parse(out).at("job_id").get<std::string>();
  }

  testing::TempDir dir_;
  std::string data_;
  std::string ca_pem_;
  std::unique_ptr<Cluster> cluster_;
};

// What each role may call, spelled out independently of the server's
// table: a wrong entry there fails here.
enum Who { kCustodian, kAnalyst, kViewer, kWorker };
const std::map<std::string, std::set<Who>>& ExpectedRpcRoles() {
  static const auto* roles = new std::map<std::string, std::set<Who>>{
      {"/dpfleet.v1.Coordinator/SubmitJob", {kCustodian, kAnalyst}},
      {"/dpfleet.v1.Coordinator/GetJob", {kCustodian, kAnalyst, kViewer}},
      {"/dpfleet.v1.Coordinator/ListJobs", {kCustodian, kAnalyst, kViewer}},
      {"/dpfleet.v1.Coordinator/CancelJob", {kCustodian, kAnalyst}},
      {"/dpfleet.v1.Coordinator/WatchJob", {kCustodian, kAnalyst}},
      {"/dpfleet.v1.Coordinator/GetModel", {kCustodian, kAnalyst}},
      {"/dpfleet.v1.Coordinator/ListWorkers", {kCustodian}},
      {"/dpfleet.v1.Coordinator/GetVersion", {kCustodian, kAnalyst, kViewer}},
      {"/dpfleet.v1.Coordinator/SetBudget", {kCustodian}},
      {"/dpfleet.v1.Coordinator/GetBudgets", {kCustodian, kAnalyst, kViewer}},
      {"/dpfleet.v1.Coordinator/AddDataset", {kCustodian}},
      {"/dpfleet.v1.Coordinator/GetDataset", {kCustodian, kAnalyst}},
      {"/dpfleet.v1.Coordinator/ListDatasets", {kCustodian, kAnalyst}},
      {"/dpfleet.v1.Coordinator/RemoveDataset", {kCustodian}},
      {"/dpfleet.v1.Coordinator/GetJobLogs", {kCustodian, kAnalyst}},
      {"/dpfleet.v1.Coordinator/AuditJob", {kCustodian}},
      {"/dpfleet.v1.Coordinator/GetAudit", {kCustodian}},
      {"/dpfleet.v1.Admin/CreateToken", {kCustodian}},
      {"/dpfleet.v1.Admin/ListTokens", {kCustodian}},
      {"/dpfleet.v1.Admin/RevokeToken", {kCustodian}},
      {"/dpfleet.v1.Admin/ListAudit", {kCustodian}},
      {"/dpfleet.v1.Admin/GetLedger", {kCustodian}},
      {"/dpfleet.v1.WorkerService/Register", {kWorker}},
      {"/dpfleet.v1.WorkerService/Heartbeat", {kWorker}},
      {"/dpfleet.v1.WorkerService/ChargeBudget", {kWorker}},
      {"/dpfleet.v1.WorkerService/ReportProgress", {kWorker}},
      {"/dpfleet.v1.WorkerService/ReportDone", {kWorker}},
      {"/dpfleet.v1.WorkerService/RendezvousSet", {kWorker}},
      {"/dpfleet.v1.WorkerService/RendezvousGet", {kWorker}},
      {"/dpfleet.v1.WorkerService/RendezvousAdd", {kWorker}},
      {"/dpfleet.v1.WorkerService/FetchShard", {kWorker}},
      {"/dpfleet.v1.WorkerService/FetchCheckpoint", {kWorker}},
      {"/dpfleet.v1.WorkerService/UploadModel", {kWorker}},
      {"/dpfleet.v1.WorkerService/ShipLogs", {kWorker}},
      {"/dpfleet.v1.WorkerService/FetchModel", {kWorker}},
      {"/dpfleet.v1.WorkerService/ReportAudit", {kWorker}},
  };
  return *roles;
}

// Every RPC of every dpfleet service x every kind of caller: allowed, or
// refused with exactly UNAUTHENTICATED / PERMISSION_DENIED; the server
// keeps serving throughout.
TEST_F(SecurityTest, EveryRpcAnswersEveryCallerAsTheRoleTableSays) {
  Start();
  const std::string analyst = cluster_->CreateToken("ann", "analyst");
  const std::string viewer = cluster_->CreateToken("vic", "viewer");
  const std::string revoked = cluster_->CreateToken("rex", "analyst");
  ASSERT_TRUE(cluster_->client().RevokeToken("rex").ok());
  // The table covers exactly the methods the protos declare.
  const std::set<std::string> declared = testing::DeclaredRpcMethods();
  std::set<std::string> expected;
  for (const auto& [m, roles] : ExpectedRpcRoles()) expected.insert(m);
  ASSERT_EQ(declared, expected) << "a method was added: give it a row in server/rpc/access.cc and here";

  const auto tls = Channel(*cluster_, ca_pem_);
  const auto worker = Channel(*cluster_, ca_pem_, cluster_->certs_dir(), 1);
  struct Caller {
    std::string name;
    std::shared_ptr<grpc::Channel> channel;
    std::vector<std::string> authorization;
    std::optional<Who> role;  // nullopt: must be UNAUTHENTICATED
  };
  const std::vector<Caller> callers = {
      {"no token", tls, {}, std::nullopt},
      {"bad token", tls, {"Bearer dpf_" + std::string(64, '0')}, std::nullopt},
      {"revoked token", tls, {"Bearer " + revoked}, std::nullopt},
      {"custodian", tls, {"Bearer " + cluster_->custodian_token()}, kCustodian},
      {"analyst", tls, {"Bearer " + analyst}, kAnalyst},
      {"viewer", tls, {"Bearer " + viewer}, kViewer},
      {"worker certificate", worker, {}, kWorker},
      {"worker certificate and a token", worker, {"Bearer " + cluster_->custodian_token()}, std::nullopt},
  };
  for (const auto& [method, allowed] : ExpectedRpcRoles()) {
    for (const Caller& c : callers) {
      const grpc::Status s = CallEmpty(c.channel, method, c.authorization);
      const std::string what = absl::StrCat(method, " by ", c.name, ": ", s.error_code(), " ", s.error_message());
      if (!c.role) {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << what;
      } else if (allowed.count(*c.role)) {
        EXPECT_NE(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << what;
        EXPECT_THAT(s.error_message(), Not(HasSubstr(kRoleRefusal))) << what;
      } else {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << what;
        EXPECT_THAT(s.error_message(), HasSubstr(kRoleRefusal)) << what;
      }
    }
  }
  // The revoked token says so; the bad one says nothing about other tokens.
  EXPECT_THAT(CallEmpty(tls, "/dpfleet.v1.Coordinator/ListJobs", {"Bearer " + revoked}).error_message(),
              HasSubstr("revoked"));
  // A method outside the table: refused by default.
  EXPECT_EQ(CallEmpty(tls, "/dpfleet.v1.Coordinator/NoSuchMethod", {}).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CallEmpty(tls, "/dpfleet.v1.Coordinator/NoSuchMethod", {"Bearer " + cluster_->custodian_token()})
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Health checks answer anyone.
  for (const Caller& c : callers) {
    EXPECT_TRUE(CallEmpty(c.channel, "/grpc.health.v1.Health/Check", c.authorization).ok()) << c.name;
  }
  EXPECT_TRUE(cluster_->server().running());
  EXPECT_TRUE(cluster_->client().List().ok()) << "the server serves after the walk";
}

TEST_F(SecurityTest, EveryHttpEndpointAnswersEveryCallerAsTheRoleTableSays) {
  Start();
  const std::string analyst = cluster_->CreateToken("ann", "analyst");
  const std::string viewer = cluster_->CreateToken("vic", "viewer");
  const std::string revoked = cluster_->CreateToken("rex", "viewer");
  ASSERT_TRUE(cluster_->client().RevokeToken("rex").ok());
  AddDataset("synth");
  const std::string job = SubmitAs(analyst, DatasetSpec("mine", 1));
  const std::map<std::string, std::set<Who>> endpoints = {
      {"/v1/jobs", {kCustodian, kAnalyst, kViewer}},
      {"/v1/jobs/" + job, {kCustodian, kAnalyst, kViewer}},
      {"/v1/workers", {kCustodian}},
      {"/v1/datasets", {kCustodian, kAnalyst}},
      {"/v1/budgets", {kCustodian, kAnalyst, kViewer}},
      {"/metrics", {kCustodian, kViewer}},
  };
  const std::vector<std::pair<std::string, std::optional<Who>>> callers = {
      {"", std::nullopt},
      {"dpf_" + std::string(64, '0'), std::nullopt},
      {revoked, std::nullopt},
      {cluster_->custodian_token(), kCustodian},
      {analyst, kAnalyst},
      {viewer, kViewer},
  };
  for (const auto& [path, allowed] : endpoints) {
    for (const auto& [token, role] : callers) {
      auto [code, body] = cluster_->HttpGet(path, token);
      const std::string what = absl::StrCat(path, " as ", role ? static_cast<int>(*role) : -1, ": ", code, " ", body);
      if (!role) {
        EXPECT_EQ(code, 401) << what;
      } else {
        EXPECT_EQ(code, allowed.count(*role) ? 200 : 403) << what;
      }
    }
  }
  EXPECT_EQ(cluster_->HttpGet("/healthz", "").first, 200);
  EXPECT_EQ(cluster_->HttpGet("/v1/nothing-here", "").first, 401) << "unknown routes tell strangers nothing";
  EXPECT_EQ(cluster_->HttpGet("/v1/nothing-here").first, 404);
  EXPECT_TRUE(cluster_->server().running());
}

// TLS: a client without the CA, a plaintext client, a client trusting
// another CA, and a worker whose certificate another CA signed, are all
// refused at the handshake.
TEST_F(SecurityTest, TransportRefusesWhatTheFleetCaDidNotSign) {
  Start();
  const std::string token = "Bearer " + cluster_->custodian_token();
  client::FleetCertOptions other;
  other.out_dir = dir_.Join("other-ca");
  other.server_names = {"127.0.0.1"};
  other.workers = 1;
  ASSERT_TRUE(client::WriteFleetCertificates(other).ok());
  EXPECT_EQ(CallEmpty(Channel(*cluster_, ""), "/dpfleet.v1.Coordinator/ListJobs", {token}).error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "plaintext against the TLS port";
  EXPECT_EQ(CallEmpty(Channel(*cluster_, Slurp(other.out_dir + "/ca.pem")), "/dpfleet.v1.Coordinator/ListJobs",
                      {token})
                .error_code(),
            grpc::StatusCode::UNAVAILABLE)
      << "a client that trusts another CA";
  const auto foreign_worker = Channel(*cluster_, ca_pem_, other.out_dir, 1);
  const grpc::Status s = CallEmpty(foreign_worker, "/dpfleet.v1.WorkerService/Register", {});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  auto workers = cluster_->client().Workers();
  ASSERT_TRUE(workers.ok());
  EXPECT_TRUE(workers->empty()) << "nobody registered";
  // dpctl without --ca: exit 3 with a hint; with it: 0.
  std::string out, err;
  EXPECT_EQ(RunCommand({BinPath("dpctl"), "--server", cluster_->address(), "--token", cluster_->custodian_token(),
                        "list"},
                       &out, &err),
            3);
  EXPECT_THAT(err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(err, HasSubstr("--ca"));
  EXPECT_EQ(cluster_->Dpctl({"list"}, &out, &err), 0) << err;
  EXPECT_TRUE(cluster_->server().running());
}

// A worker with a valid certificate asks for another worker's shard,
// checkpoint, rendezvous keys or charge: refused, exactly as for a job that
// does not exist; the holder itself is served.
TEST_F(SecurityTest, WorkersActOnlyForTheRunTheyHold) {
  Start();
  AddDataset("synth");
  cluster_->StartWorkers(1);  // worker-1 will hold the job
  const std::string job = SubmitAs(cluster_->custodian_token(), DatasetSpec("long", 500));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto j = cluster_->client().Get(job);
        return j.ok() && j->state() == v1::RUNNING && j->epochs_done() >= 1;
      },
      absl::Seconds(90)))
      << cluster_->Logs();
  auto running = *cluster_->client().Get(job);
  auto workers = *cluster_->client().Workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].identity(), "worker-1");

  auto holder = v1::WorkerService::NewStub(Channel(*cluster_, ca_pem_, cluster_->certs_dir(), 1));
  auto other = v1::WorkerService::NewStub(Channel(*cluster_, ca_pem_, cluster_->certs_dir(), 2));
  auto call = [](auto&& fn) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return fn(&ctx);
  };
  for (const std::string& id : {job, std::string("job-999999")}) {
    v1::FetchShardRequest shard;
    shard.set_job_id(id);
    shard.set_attempt(running.attempt());
    shard.set_rank(0);
    shard.set_file("manifest.json");
    shard.set_max_bytes(1024);
    v1::FetchShardResponse shard_resp;
    grpc::Status s = call([&](grpc::ClientContext* c) { return other->FetchShard(c, shard, &shard_resp); });
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << id << ": " << s.error_message();
    EXPECT_EQ(s.error_message(), absl::StrCat("worker 'worker-2' does not hold rank 0 of job '", id, "' attempt ",
                                              running.attempt()));
    EXPECT_TRUE(shard_resp.data().empty());
    v1::FetchCheckpointRequest ckpt;
    ckpt.set_job_id(id);
    ckpt.set_attempt(running.attempt());
    v1::FetchCheckpointResponse ckpt_resp;
    s = call([&](grpc::ClientContext* c) { return other->FetchCheckpoint(c, ckpt, &ckpt_resp); });
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    v1::RendezvousGetRequest get;
    get.set_job_id(id);
    get.set_attempt(running.attempt());
    get.set_key("x");
    v1::RendezvousGetResponse get_resp;
    s = call([&](grpc::ClientContext* c) { return other->RendezvousGet(c, get, &get_resp); });
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    v1::ChargeBudgetRequest charge;
    charge.set_job_id(id);
    charge.set_attempt(running.attempt());
    charge.set_epoch(running.epochs_done() + 1);
    v1::ChargeBudgetResponse charge_resp;
    s = call([&](grpc::ClientContext* c) { return other->ChargeBudget(c, charge, &charge_resp); });
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  }
  // Heartbeats under the holder's worker id: not worker-2's.
  v1::HeartbeatRequest hb;
  hb.set_worker_id(workers[0].worker_id());
  v1::HeartbeatResponse hb_resp;
  grpc::Status s = call([&](grpc::ClientContext* c) { return other->Heartbeat(c, hb, &hb_resp); });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  // The holder's identity is served (the refusals above are not blanket).
  v1::FetchShardRequest mine;
  mine.set_job_id(job);
  mine.set_attempt(running.attempt());
  mine.set_rank(0);
  mine.set_file("manifest.json");
  mine.set_max_bytes(1 << 20);
  v1::FetchShardResponse mine_resp;
  s = call([&](grpc::ClientContext* c) { return holder->FetchShard(c, mine, &mine_resp); });
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(mine_resp.data(), HasSubstr("rows_train"));
  // The job never noticed.
  std::string out, err;
  ASSERT_EQ(cluster_->Dpctl({"cancel", job}, &out, &err), 0) << err;
  auto after = *cluster_->client().Get(job);
  EXPECT_EQ(after.state(), v1::CANCELLED);
  EXPECT_THAT(after.reason(), HasSubstr("cancelled by user"));
}

// Analyst B cannot see, watch, cancel or download analyst A's job: the
// answer is NOT_FOUND, exactly as for a job that does not exist.
TEST_F(SecurityTest, AnalystsSeeAndActOnlyOnTheirOwnJobs) {
  Start();
  AddDataset("synth");
  const std::string alice = cluster_->CreateToken("alice", "analyst");
  const std::string bob = cluster_->CreateToken("bob", "analyst");
  const std::string viewer = cluster_->CreateToken("dash", "viewer");
  const std::string job = SubmitAs(alice, DatasetSpec("alices", 1));
  const std::string missing = "job-999999";
  const auto same_as_missing = [&](const std::vector<std::string>& verb) {
    std::string out, err_a, err_missing;
    std::vector<std::string> with_job = verb, with_missing = verb;
    with_job.insert(with_job.begin() + 1, job);
    with_missing.insert(with_missing.begin() + 1, missing);
    const int rc_job = cluster_->DpctlAs(bob, with_job, &out, &err_a);
    const int rc_missing = cluster_->DpctlAs(bob, with_missing, &out, &err_missing);
    EXPECT_EQ(rc_job, 2) << err_a;
    EXPECT_EQ(rc_job, rc_missing);
    EXPECT_THAT(err_a, HasSubstr("NOT_FOUND"));
    EXPECT_EQ(absl::StrReplaceAll(err_a, {{job, "ID"}}), absl::StrReplaceAll(err_missing, {{missing, "ID"}}));
  };
  same_as_missing({"status"});
  same_as_missing({"watch"});
  same_as_missing({"cancel"});
  same_as_missing({"model", "--out", dir_.Join("stolen.pt")});
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("stolen.pt")));
  auto [code_b, body_b] = cluster_->HttpGet("/v1/jobs/" + job, bob);
  auto [code_m, body_m] = cluster_->HttpGet("/v1/jobs/" + missing, bob);
  EXPECT_EQ(code_b, 404);
  EXPECT_EQ(absl::StrReplaceAll(body_b, {{job, "ID"}}), absl::StrReplaceAll(body_m, {{missing, "ID"}}));
  std::string out, err;
  ASSERT_EQ(cluster_->DpctlAs(bob, {"list", "-o", "json"}, &out, &err), 0) << err;
  EXPECT_TRUE(nlohmann::json::parse(out)["jobs"].empty()) << out;
  // One connection, two tokens: each call is its own caller (gRPC's auth
  // context is per connection; nothing of Alice's call may reach Bob's).
  auto shared = v1::Coordinator::NewStub(Channel(*cluster_, ca_pem_));
  for (const auto& [token, jobs] : std::vector<std::pair<std::string, int>>{{alice, 1}, {bob, 0}, {alice, 1}}) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    v1::ListJobsRequest req;
    v1::ListJobsResponse resp;
    ASSERT_TRUE(shared->ListJobs(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.jobs_size(), jobs) << (token == alice ? "alice" : "bob");
  }
  ASSERT_EQ(cluster_->DpctlAs(alice, {"status", job, "-o", "json"}, &out, &err), 0) << err;
  auto mine = nlohmann::json::parse(out);
  EXPECT_EQ(mine["owner"], "alice");
  // The custodian sees every job; the viewer its state and epsilon only.
  ASSERT_EQ(cluster_->Dpctl({"list", "-o", "json"}, &out, &err), 0) << err;
  ASSERT_EQ(nlohmann::json::parse(out)["jobs"].size(), 1u);
  auto v = cluster_->ClientWith(viewer)->Get(job);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->state(), v1::QUEUED);
  EXPECT_TRUE(v->spec_yaml().empty());
  EXPECT_TRUE(v->owner().empty());
  EXPECT_EQ(v->history_size(), 0);
  // Bob cannot cancel it; Alice can.
  EXPECT_EQ(cluster_->DpctlAs(alice, {"cancel", job}, &out, &err), 0) << err;
  // Analysts use registered datasets only; data.path is the custodian's.
  const std::string raw = dir_.Join("raw.yaml");
  std::ofstream(raw) << "name: raw\ndata: {path: " << data_ << "}\ntraining: {epochs: 1, batch_size: 256}\n";
  EXPECT_EQ(cluster_->DpctlAs(alice, {"submit", raw}, &out, &err), 4);
  EXPECT_THAT(err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(err, HasSubstr("data.path"));
  EXPECT_EQ(cluster_->Dpctl({"submit", raw}, &out, &err), 0) << err;
  // Budgets: by dataset name, without other people's job counts; datasets
  // without paths or manifest.
  ASSERT_EQ(cluster_->Dpctl({"budget", "set", "synth", "--epsilon", "50", "--delta", "1e-5"}, &out, &err), 0) << err;
  ASSERT_EQ(cluster_->DpctlAs(bob, {"budget", "-o", "json"}, &out, &err), 0) << err;
  auto budgets = nlohmann::json::parse(out)["files"];
  ASSERT_EQ(budgets.size(), 1u) << out;
  EXPECT_EQ(budgets[0]["file"], "synth:1") << "the file's place in the dataset, not its content hash";
  EXPECT_EQ(budgets[0]["names"], nlohmann::json({"synth"})) << "no path";
  EXPECT_EQ(budgets[0]["jobs"], 0);
  EXPECT_DOUBLE_EQ(budgets[0]["epsilon_budget"].get<double>(), 50);
  EXPECT_THAT(out, Not(HasSubstr("sha256:")));
  // Asked by path, the coordinator would say what lies under its roots.
  EXPECT_EQ(cluster_->DpctlAs(bob, {"budget", data_}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("NOT_FOUND"));
  ASSERT_EQ(cluster_->DpctlAs(bob, {"budget", "synth", "-o", "json"}, &out, &err), 0) << err;
  EXPECT_EQ(nlohmann::json::parse(out)["files"].size(), 1u);
  ASSERT_EQ(cluster_->DpctlAs(bob, {"datasets", "show", "synth", "-o", "json"}, &out, &err), 0) << err;
  auto shown = nlohmann::json::parse(out);
  EXPECT_TRUE(shown["paths"].empty());
  EXPECT_EQ(shown["dir"], "");
  EXPECT_TRUE(shown["manifest"].is_null());
  EXPECT_GT(shown["rows_train"].get<int64_t>(), 0);
  EXPECT_EQ(cluster_->DpctlAs(bob, {"budget", "set", "synth", "--epsilon", "500", "--delta", "1e-5"}, &out, &err), 4);
  EXPECT_THAT(err, HasSubstr("PERMISSION_DENIED"));
}

// Every raw path is resolved and must lie under a data root; the answer
// for a path outside never tells whether it exists.
TEST_F(SecurityTest, RawPathsStayInsideTheDataRootsWithoutRevealingWhatIsOutside) {
  Start();
  testing::TempDir outside;
  const std::string secret = outside.Join("secret.csv");
  std::filesystem::copy_file(data_, secret);
  std::filesystem::create_symlink(secret, dir_.Join("link.csv"));
  std::filesystem::create_directory_symlink(outside.path(), dir_.Join("linkdir"));
  ASSERT_EQ(link(secret.c_str(), dir_.Join("hard.csv").c_str()), 0);
  const auto refusal = [&](const std::string& path) {
    std::string out, err;
    EXPECT_EQ(cluster_->Dpctl({"datasets", "add", "x", "--path", path}, &out, &err), 2) << path << ": " << err;
    EXPECT_THAT(err, HasSubstr("INVALID_ARGUMENT"));
    return absl::StrReplaceAll(err, {{path, "P"}});
  };
  const std::string existing = refusal(secret);
  EXPECT_THAT(existing, HasSubstr("is not a readable file under the coordinator's data roots"));
  for (const std::string& p : {outside.Join("missing.csv"), dir_.path() + "/../" + std::filesystem::path(outside.path()).filename().string() + "/secret.csv",
                               dir_.Join("link.csv"), dir_.Join("linkdir/secret.csv"), dir_.Join("linkdir/missing.csv"),
                               std::string("/etc/shadow"), std::string("/etc/no-such-file")}) {
    EXPECT_EQ(refusal(p), existing) << p;
  }
  EXPECT_THAT(refusal(dir_.Join("hard.csv")), HasSubstr("hard links"));
  EXPECT_EQ(refusal(dir_.Join("state/coordinator.db")), existing) << "the state directory is never data";
  // The same rule for data.path.
  const std::string spec = dir_.Join("escape.yaml");
  std::ofstream(spec) << "name: e\ndata: {path: " << dir_.Join("link.csv") << "}\ntraining: {epochs: 1}\n";
  std::string out, err;
  EXPECT_EQ(cluster_->Dpctl({"submit", spec}, &out, &err), 2);
  EXPECT_THAT(err, HasSubstr("data.path: '" + dir_.Join("link.csv") + "' is not a readable file under"));
  EXPECT_EQ(cluster_->Dpctl({"datasets", "add", "ok", "--path", data_}, &out, &err), 0) << err;
}

// The audit trail lists exactly the state-changing calls made, with who
// made them and how they ended; the ledger lists every charge.
TEST_F(SecurityTest, AuditAndLedgerListExactlyWhatHappened) {
  Start();
  std::string out, err;
  const std::string analyst = cluster_->CreateToken("ann", "analyst");
  AddDataset("synth");
  ASSERT_EQ(cluster_->Dpctl({"budget", "set", "synth", "--epsilon", "40", "--delta", "1e-5"}, &out, &err), 0) << err;
  EXPECT_EQ(cluster_->DpctlAs(analyst, {"budget", "set", "synth", "--epsilon", "400", "--delta", "1e-5"}, &out, &err),
            4);
  EXPECT_EQ(cluster_->DpctlAs(analyst, {"datasets", "rm", "synth"}, &out, &err), 4);
  const std::string job = SubmitAs(analyst, DatasetSpec("audited", 2));
  cluster_->StartWorkers(1);
  ASSERT_EQ(cluster_->DpctlAs(analyst, {"watch", job}, &out, &err), 0) << err << cluster_->Logs();
  EXPECT_EQ(cluster_->DpctlAs(analyst, {"cancel", job}, &out, &err), 1) << "already SUCCEEDED";
  ASSERT_TRUE(cluster_->client().RevokeToken("ann").ok());
  EXPECT_EQ(cluster_->DpctlAs(analyst, {"cancel", job}, &out, &err), 4) << "revoked";

  ASSERT_EQ(cluster_->Dpctl({"admin", "audit", "-o", "json"}, &out, &err), 0) << err;
  const nlohmann::json audit = nlohmann::json::parse(out);
  std::vector<std::string> rows;
  for (const auto& e : audit["entries"]) {
    rows.push_back(absl::StrCat(e["kind"].get<std::string>(), " ", e["role"].get<std::string>(), ":",
                                e["name"].get<std::string>(), " ", e["action"].get<std::string>(), " ",
                                e["outcome"].get<std::string>()));
  }
  const std::vector<std::string> expected = {
      "local :" + audit["entries"][0]["name"].get<std::string>() + " CreateToken OK",
      "user custodian:custodian CreateToken OK",
      "user custodian:custodian AddDataset OK",
      "user custodian:custodian SetBudget OK",
      "user analyst:ann SetBudget PERMISSION_DENIED",
      "user analyst:ann RemoveDataset PERMISSION_DENIED",
      "user analyst:ann SubmitJob OK",
      "worker worker:worker-1 Register OK",
      "user analyst:ann CancelJob FAILED_PRECONDITION",
      "user custodian:custodian RevokeToken OK",
      "anonymous : CancelJob UNAUTHENTICATED",
  };
  EXPECT_EQ(rows, expected);
  EXPECT_THAT(out, Not(HasSubstr(analyst))) << "no token in the trail";
  EXPECT_THAT(out, Not(HasSubstr(cluster_->custodian_token())));

  // The ledger: per epoch a training charge and its eval release, owned by
  // the analyst, composing to the job's epsilon.
  ASSERT_EQ(cluster_->Dpctl({"ledger", "synth", "-o", "json"}, &out, &err), 0) << err;
  auto files = nlohmann::json::parse(out)["files"];
  ASSERT_EQ(files.size(), 1u) << out;
  EXPECT_EQ(files[0]["names"][0], "synth");
  auto ledger = files[0];
  ASSERT_EQ(ledger["charges"].size(), 4u) << out;
  auto final_job = *cluster_->client().Get(job);
  ASSERT_GT(final_job.eval_noise_multiplier(), 0);
  double sum = 0;
  for (int i = 0; i < 4; ++i) {
    const auto& c = ledger["charges"][i];
    const bool eval = i % 2 == 1;
    EXPECT_EQ(c["job_id"], job);
    EXPECT_EQ(c["owner"], "ann");
    EXPECT_EQ(c["attempt"], 1);
    EXPECT_EQ(c["epoch"], i / 2 + 1);
    EXPECT_EQ(c["mechanism"], eval ? "eval" : "train");
    EXPECT_DOUBLE_EQ(c["sample_rate"].get<double>(), eval ? 1.0 : final_job.sample_rate());
    EXPECT_DOUBLE_EQ(c["noise_multiplier"].get<double>(), eval ? final_job.eval_noise_multiplier() : 1.0);
    EXPECT_EQ(c["steps"], eval ? 1 : final_job.steps_per_epoch());
    EXPECT_GT(c["epsilon_increment"].get<double>(), 0);
    sum += c["epsilon_increment"].get<double>();
  }
  EXPECT_NEAR(sum, final_job.epsilon(), 1e-9);
  EXPECT_NEAR(ledger["charges"][3]["epsilon_total"].get<double>(), final_job.epsilon(), 1e-9);
  ASSERT_EQ(cluster_->Dpctl({"ledger", "synth", "-o", "csv"}, &out, &err), 0) << err;
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u) << out;
  EXPECT_THAT(lines[0], HasSubstr("job_id,owner,attempt,epoch"));
  EXPECT_THAT(lines[1], HasSubstr(job + ",ann,1,1,train,"));
  EXPECT_THAT(lines[2], HasSubstr(job + ",ann,1,1,eval,1,"));
}

// Malformed authorization metadata: UNAUTHENTICATED, never a crash.
TEST_F(SecurityTest, MalformedAuthMetadataIsUnauthenticated) {
  Start();
  const auto tls = Channel(*cluster_, ca_pem_);
  const std::string valid = cluster_->custodian_token();
  const std::vector<std::pair<std::string, std::vector<std::string>>> table = {
      {"empty", {""}},
      {"scheme only", {"Bearer"}},
      {"scheme and space", {"Bearer "}},
      {"another scheme", {"Basic " + valid}},
      {"two spaces", {"Bearer  " + valid}},
      {"trailing junk", {"Bearer " + valid + "x"}},
      {"short token", {"Bearer " + valid.substr(0, valid.size() - 1)}},
      {"upper-case hex", {"Bearer dpf_" + std::string(64, 'A')}},
      {"no prefix", {"Bearer " + valid.substr(4)}},
      {"4 KiB", {"Bearer " + std::string(4096, 'a')}},
      {"valid twice", {"Bearer " + valid, "Bearer " + valid}},
      {"fifty headers", std::vector<std::string>(50, "Bearer " + valid)},
  };
  for (const auto& [name, headers] : table) {
    const grpc::Status s = CallEmpty(tls, "/dpfleet.v1.Coordinator/ListJobs", headers);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), Not(HasSubstr(valid))) << name << ": a refusal never echoes a token";
  }
  // Beyond gRPC's metadata limit the transport refuses before any handler.
  EXPECT_FALSE(CallEmpty(tls, "/dpfleet.v1.Coordinator/ListJobs", {"Bearer " + std::string(64 << 10, 'a')}).ok());
  // HTTP takes any bytes: non-ASCII and binary headers too.
  for (const std::string& h : {std::string("Bearer \xc3\xa9\xff\xfe"), std::string("Bearer dpf_\x80\x81"),
                               std::string(8000, 'x'), std::string("")}) {
    httplib::SSLClient c("127.0.0.1", cluster_->http_port());
    c.set_ca_cert_path(cluster_->ca_path().c_str());
    auto r = c.Get("/v1/jobs", httplib::Headers{{"Authorization", h}});
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 401) << r->body;
  }
  EXPECT_TRUE(CallEmpty(tls, "/dpfleet.v1.Coordinator/ListJobs", {"Bearer " + valid}).ok());
  EXPECT_TRUE(cluster_->server().running());
}

// Bounds: request rate per token, watch streams per token, spec size.
TEST_F(SecurityTest, BoundsRefuseWithResourceExhausted) {
  ClusterOptions options;
  // Refills take minutes: what is refused below is the burst, not timing.
  options.config = "requests_per_second: 0.01\nrequest_burst: 20\nmax_watch_streams_per_token: 2\nmax_spec_bytes: 2048\n";
  Start(options);
  const std::string analyst = cluster_->CreateToken("ann", "analyst");  // one of the custodian's 20
  auto ann = cluster_->ClientWith(analyst);
  // Spec size.
  auto big = ann->Submit("name: x\ndataset: synth\n# " + std::string(4096, 'x') + "\n");
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();
  EXPECT_THAT(big.status().message(), HasSubstr("max_spec_bytes"));
  // Watch streams: the custodian's queued job (no workers) stays open.
  const std::string spec = dir_.Join("w.yaml");
  std::ofstream(spec) << "name: w\ndata: {path: " << data_ << "}\ntraining: {epochs: 1, batch_size: 256}\n";
  std::string out, err;
  ASSERT_EQ(cluster_->Dpctl({"submit", spec, "-o", "json"}, &out, &err), 0) << err;
  const std::string job = nlohmann::json::parse(out)["job_id"];
  std::vector<std::unique_ptr<client::CoordinatorClient>> watchers;
  std::vector<std::thread> threads;
  std::atomic<int> snapshots{0};
  std::vector<absl::Status> ends(3);
  for (int i = 0; i < 2; ++i) {
    watchers.push_back(cluster_->ClientWith(cluster_->custodian_token()));
    threads.emplace_back([&, i] {
      ends[i] = watchers[i]->Watch(job, [&](const v1::JobEvent&) {
                              ++snapshots;
                              return true;
                            }).status();
    });
  }
  ASSERT_TRUE(WaitFor([&] { return snapshots.load() == 2; }, absl::Seconds(30)));
  auto third = cluster_->client().Watch(job, [](const v1::JobEvent&) { return true; });
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted) << third.status();
  EXPECT_THAT(third.status().message(), HasSubstr("watch streams"));
  // The request rate: the analyst's burst runs out; the custodian's is its own.
  int refused = 0;
  absl::Status last;
  for (int i = 0; i < 30; ++i) {
    last = ann->List().status();
    refused += last.code() == absl::StatusCode::kResourceExhausted;
  }
  EXPECT_GE(refused, 30 - 20 + 1) << "the burst of 20 already had one call";
  EXPECT_THAT(last.message(), HasSubstr("requests per second"));
  EXPECT_EQ(cluster_->DpctlAs(analyst, {"list"}, &out, &err), 3) << "retryable";
  EXPECT_THAT(err, HasSubstr("RESOURCE_EXHAUSTED"));
  // Cancelling ends the watches (the custodian's burst still has calls).
  ASSERT_TRUE(cluster_->client().Cancel(job).ok());
  for (auto& t : threads) t.join();
  EXPECT_TRUE(ends[0].ok()) << ends[0];
  EXPECT_TRUE(cluster_->server().running());
}

// Plaintext only on loopback, and said so; elsewhere only with
// --insecure-plaintext, warned about. A plaintext fleet still trains.
TEST_F(SecurityTest, PlaintextIsLoopbackOnlyUnlessExplicitlyInsecure) {
  ClusterOptions plain;
  plain.tls = false;
  Start(plain);
  EXPECT_THAT(cluster_->server().Log(), HasSubstr("plaintext, loopback only"));
  cluster_->StartWorkers(1);
  const std::string spec = dir_.Join("p.yaml");
  std::ofstream(spec) << "name: p\ndata: {path: " << data_ << "}\nmodel: {type: logistic}\n"
                      << "training: {epochs: 1, batch_size: 256}\n";
  std::string out, err;
  EXPECT_EQ(cluster_->Dpctl({"submit", spec, "--follow"}, &out, &err), 0) << out << err << cluster_->Logs();
  EXPECT_EQ(cluster_->DpctlAs("", {"list"}, &out, &err), 4) << "tokens are needed on plaintext too";
  // Not loopback, no TLS: refuses to start...
  std::string log;
  const std::string state = dir_.Join("state2");
  EXPECT_EQ(RunCommand({BinPath("dpfleet-server"), "--listen", "0.0.0.0:0", "--http", "", "--state-dir", state},
                       &out, &log),
            2);
  EXPECT_THAT(log, HasSubstr("--insecure-plaintext"));
  EXPECT_THAT(log, HasSubstr("not a loopback address"));
  // ... unless told, and then warns.
  Process insecure({BinPath("dpfleet-server"), "--listen", "0.0.0.0:0", "--http", "", "--state-dir", state,
                    "--insecure-plaintext", "--port_file", dir_.Join("ports2")},
                   dir_.Join("insecure.log"));
  ASSERT_TRUE(WaitFor([&] { return std::ifstream(dir_.Join("ports2")).good(); }, absl::Seconds(30)))
      << insecure.Log();
  EXPECT_THAT(insecure.Log(), HasSubstr("WARNING: --insecure-plaintext"));
}

}  // namespace
}  // namespace dpfleet
