// The Gate (server/rpc/auth.h): what counts as credentials, the request
// rate and watch bounds, and the audit of refusals; and the rate limiter
// and audit trail it uses (server/rpc/audit.h).
#include "server/rpc/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class GateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = *Store::Open(dir_.path());
    tokens_ = std::make_unique<Tokens>(store_.get(), &clock_);
    audit_ = std::make_unique<AuditTrail>(store_.get(), &clock_);
    limits_.requests_per_second = 1;
    limits_.request_burst = 3;
    limits_.max_watch_streams_per_token = 2;
    gate_ = std::make_unique<Gate>(tokens_.get(), audit_.get(), &clock_, limits_, /*certificate_workers=*/true);
    alice_ = "Bearer " + *tokens_->Create("alice", Role::kAnalyst);
  }
  std::vector<AuditRecord> Audit() { return *store_->ListAudit(0, 1000); }

  testing::TempDir dir_;
  ManualClock clock_;
  SecurityLimits limits_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Tokens> tokens_;
  std::unique_ptr<AuditTrail> audit_;
  std::unique_ptr<Gate> gate_;
  std::string alice_;
};

TEST_F(GateTest, CredentialsAreATokenOrACertificateNeverBoth) {
  auto user = gate_->Authenticate({alice_}, "", false);
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->Describe(), "analyst 'alice'");
  auto worker = gate_->Authenticate({}, "worker-3", true);
  ASSERT_TRUE(worker.ok());
  EXPECT_TRUE(worker->is_worker());
  EXPECT_EQ(worker->name, "worker-3");
  EXPECT_EQ(gate_->Authenticate({alice_}, "worker-3", true).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(gate_->Authenticate({}, "", true)->kind, Identity::Kind::kAnonymous)
      << "no certificate, no worker, when workers need one";
  Gate plaintext(tokens_.get(), audit_.get(), &clock_, limits_, /*certificate_workers=*/false);
  EXPECT_EQ(plaintext.Authenticate({}, "", true)->name, kPlaintextWorker);
  EXPECT_EQ(plaintext.Authenticate({}, "", false)->kind, Identity::Kind::kAnonymous);
  EXPECT_TRUE(plaintext.Authenticate({alice_}, "", true)->is_user()) << "a token is never a worker";
}

TEST_F(GateTest, MalformedAuthorizationIsUnauthenticated) {
  for (const std::vector<std::string>& h : std::vector<std::vector<std::string>>{
           {""}, {"Bearer"}, {"Bearer "}, {"Basic x"}, {alice_, alice_}, {"Bearer " + std::string(300, 'a')},
           {"Bearer \xc3\xa9\xff"}, {std::string("Bearer dpf_\0", 12)}, {alice_ + " "}}) {
    auto r = gate_->Authenticate(h, "", false);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated) << (h.empty() ? "" : h[0]);
    for (const std::string& v : h) {
      if (v.size() > 20) EXPECT_THAT(r.status().message(), Not(HasSubstr(v.substr(7)))) << "no echo";
    }
  }
  EXPECT_TRUE(gate_->Authenticate({"bearer " + alice_.substr(7)}, "", false).ok()) << "the scheme is case-blind";
}

TEST_F(GateTest, AdmitAppliesTheTableAndTheRateAndAuditsRefusals) {
  EXPECT_TRUE(gate_->AdmitRpc("/dpfleet.v1.Coordinator/ListJobs", {alice_}, "").ok());
  auto denied = gate_->AdmitRpc("/dpfleet.v1.Coordinator/SetBudget", {alice_}, "");
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  // Burst 3 at 1/s (a refusal by the table costs nothing): two more, then none.
  EXPECT_TRUE(gate_->AdmitRpc("/dpfleet.v1.Coordinator/ListJobs", {alice_}, "").ok());
  EXPECT_TRUE(gate_->AdmitRpc("/dpfleet.v1.Coordinator/GetJob", {alice_}, "").ok());
  auto limited = gate_->AdmitRpc("/dpfleet.v1.Coordinator/ListJobs", {alice_}, "");
  EXPECT_EQ(limited.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(limited.status().message(), HasSubstr("'alice' exceeded 1 requests per second"));
  clock_.AdvanceMs(1000);
  EXPECT_TRUE(gate_->AdmitRpc("/dpfleet.v1.Coordinator/ListJobs", {alice_}, "").ok()) << "one refilled";
  EXPECT_EQ(gate_->AdmitRpc("/dpfleet.v1.Coordinator/ListJobs", {alice_}, "").status().code(),
            absl::StatusCode::kResourceExhausted);
  // Workers are not counted against any token.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(gate_->AdmitRpc("/dpfleet.v1.WorkerService/Heartbeat", {}, "worker-1").ok());
  // Only the refusal of a state-changing method was audited.
  auto audit = Audit();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].name, "alice");
  EXPECT_EQ(audit[0].action, "SetBudget");
  EXPECT_EQ(audit[0].outcome, "PERMISSION_DENIED");
}

TEST_F(GateTest, WatchStreamsPerTokenAreBounded) {
  const Identity alice = Identity::User("alice", Role::kAnalyst);
  const Identity bob = Identity::User("bob", Role::kAnalyst);
  ASSERT_TRUE(gate_->AcquireWatch(alice).ok());
  ASSERT_TRUE(gate_->AcquireWatch(alice).ok());
  EXPECT_EQ(gate_->AcquireWatch(alice).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(gate_->AcquireWatch(bob).ok());
  gate_->ReleaseWatch(alice);
  EXPECT_TRUE(gate_->AcquireWatch(alice).ok());
}

TEST_F(GateTest, AnonymousRefusalsAreAuditedAtABoundedRate) {
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(gate_->AdmitRpc("/dpfleet.v1.Coordinator/SubmitJob", {}, "").ok());
  }
  EXPECT_EQ(Audit().size(), 20u) << "the anonymous burst";
  clock_.AdvanceMs(1000);
  EXPECT_FALSE(gate_->AdmitRpc("/dpfleet.v1.Coordinator/CancelJob", {}, "").ok());
  auto audit = Audit();
  ASSERT_EQ(audit.size(), 21u);
  EXPECT_EQ(audit.back().kind, "anonymous");
  EXPECT_EQ(audit.back().outcome, "UNAUTHENTICATED");
  EXPECT_THAT(audit.back().detail, HasSubstr("+80 anonymous refusals not recorded"));
}

}  // namespace
}  // namespace dpfleet::server
