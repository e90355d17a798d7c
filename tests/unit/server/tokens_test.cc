// Tokens (server/core/tokens.h) over a real store: hashed at rest, roles,
// revocation, and precise refusals; a store that refuses the write leaves
// no token (and no secret shown) and no revocation.
#include "server/core/tokens.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/testing/files.h"
#include "tests/testing/server/faulty_store.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

class TokensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = *Store::Open(dir_.path());
    tokens_ = std::make_unique<Tokens>(store_.get(), &clock_);
  }
  testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Tokens> tokens_;
};

TEST_F(TokensTest, ATokenAuthenticatesAsItsNameAndRole) {
  auto secret = tokens_->Create("alice", Role::kAnalyst);
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_THAT(*secret, MatchesRegex("dpf_[0-9a-f]{64}"));
  auto user = tokens_->Authenticate(*secret);
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->name, "alice");
  EXPECT_EQ(user->role, Role::kAnalyst);
  auto other = tokens_->Create("bob", Role::kCustodian);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*other, *secret);
  EXPECT_EQ(tokens_->Authenticate(*other)->role, Role::kCustodian);
}

TEST_F(TokensTest, OnlyTheHashIsStored) {
  auto secret = tokens_->Create("alice", Role::kViewer);
  ASSERT_TRUE(secret.ok());
  auto listed = tokens_->List();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].sha256, TokenSha256(*secret));
  EXPECT_EQ((*listed)[0].sha256.size(), 32u);
  // Neither the database nor its write-ahead log holds the secret or its
  // hex digits.
  std::string all;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) all += testing::ReadAll(e.path().string());
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.find(*secret), std::string::npos);
  EXPECT_EQ(all.find(secret->substr(4, 32)), std::string::npos);
}

TEST_F(TokensTest, RevokedUnknownAndMalformedTokensAreRefused) {
  auto secret = *tokens_->Create("alice", Role::kAnalyst);
  clock_.AdvanceMs(5);
  ASSERT_TRUE(tokens_->Revoke("alice").ok());
  auto revoked = tokens_->Authenticate(secret);
  EXPECT_EQ(revoked.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(revoked.status().message(), HasSubstr("revoked"));
  EXPECT_EQ(tokens_->Revoke("alice").code(), absl::StatusCode::kNotFound) << "nothing valid left";
  auto unknown = tokens_->Authenticate("dpf_" + std::string(64, '0'));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(unknown.status().message(), HasSubstr("unknown"));
  for (const std::string& bad : {std::string(""), std::string("dpf_"), secret.substr(0, 67), secret + "0",
                                 "DPF_" + secret.substr(4), "dpf_" + std::string(64, 'G')}) {
    auto r = tokens_->Authenticate(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("malformed")) << bad;
  }
  // The name is free again: a new token for the same person.
  auto fresh = tokens_->Create("alice", Role::kAnalyst);
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(tokens_->Authenticate(*fresh).ok());
  EXPECT_FALSE(tokens_->Authenticate(secret).ok());
}

// Checked tokens are answered from memory (no store read per request), and
// Revoke drops them: the very next call with one is refused, while other
// names' tokens stay.
TEST_F(TokensTest, ACheckedTokenIsRememberedUntilRevokeDropsIt) {
  const std::string alice = *tokens_->Create("alice", Role::kAnalyst);
  const std::string bob = *tokens_->Create("bob", Role::kViewer);
  ASSERT_TRUE(tokens_->Authenticate(alice).ok());
  ASSERT_TRUE(tokens_->Authenticate(bob).ok());
  // Revoked in the store behind the object's back (no such path exists in
  // the coordinator): still admitted, which shows the answer comes from
  // memory.
  ASSERT_EQ(*store_->RevokeTokens("alice", 1), 1);
  EXPECT_TRUE(tokens_->Authenticate(alice).ok());
  // Revoke drops the name's entries even when the store has nothing left
  // to revoke.
  EXPECT_EQ(tokens_->Revoke("alice").code(), absl::StatusCode::kNotFound);
  auto refused = tokens_->Authenticate(alice);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(refused.status().message(), HasSubstr("revoked"));
  EXPECT_TRUE(tokens_->Authenticate(bob).ok());
  // A revocation through the object, of a remembered token.
  ASSERT_TRUE(tokens_->Revoke("bob").ok());
  EXPECT_EQ(tokens_->Authenticate(bob).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(TokensTest, NamesAndRolesAreChecked) {
  ASSERT_TRUE(tokens_->Create("alice", Role::kAnalyst).ok());
  EXPECT_EQ(tokens_->Create("alice", Role::kViewer).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(tokens_->Create("a b", Role::kViewer).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokens_->Create(std::string(65, 'a'), Role::kViewer).status().code(), absl::StatusCode::kInvalidArgument);
  auto worker = tokens_->Create("w", Role::kWorker);
  EXPECT_EQ(worker.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(worker.status().message(), HasSubstr("certificate"));
  EXPECT_EQ(ParseTokenRole("root").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseTokenRole("viewer"), Role::kViewer);
}

// A token the store did not keep was never handed out, and a revocation
// it did not keep never happened: the old token still works until one is
// stored.
TEST_F(TokensTest, AStoreThatRefusesTheWriteLeavesNoTokenAndNoRevocation) {
  dpfleet::testing::FaultyStore faulty(store_.get());
  Tokens tokens(&faulty, &clock_);
  faulty.Arm(dpfleet::testing::FaultyStore::Fault::kEveryWrite);
  auto refused = tokens.Create("alice", Role::kAnalyst);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr("store token alice"));
  EXPECT_TRUE(store_->ListTokens()->empty());
  faulty.Disarm();
  const std::string secret = *tokens.Create("alice", Role::kAnalyst);
  faulty.Arm(dpfleet::testing::FaultyStore::Fault::kEveryWrite);
  const absl::Status revoke = tokens.Revoke("alice");
  EXPECT_EQ(revoke.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(revoke.message(), HasSubstr("revoke the tokens of alice"));
  EXPECT_TRUE(tokens.Authenticate(secret).ok()) << "not revoked until the revocation is stored";
  faulty.Disarm();
  ASSERT_TRUE(tokens.Revoke("alice").ok());
  EXPECT_EQ(tokens.Authenticate(secret).status().code(), absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace dpfleet::server
