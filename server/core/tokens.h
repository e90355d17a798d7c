// Tokens: the API tokens people and programs use, each standing for one
// name (whose jobs it owns) with one role. A token is 256 random bits from
// the OS CSPRNG, shown once when it is created; only its SHA-256 is stored.
//
// Never logs, stores or returns a secret after Create, and never keeps one
// in memory longer than the call that checks it. A token is never a worker:
// workers prove who they are with a certificate (server/rpc/access.h).
#ifndef DPFLEET_SERVER_CORE_TOKENS_H_
#define DPFLEET_SERVER_CORE_TOKENS_H_

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/core/clock.h"
#include "server/core/store.h"

namespace dpfleet::server {

// What a caller may do. Tokens carry the first three; kWorker belongs to
// certificate identities only.
enum class Role { kCustodian, kAnalyst, kViewer, kWorker };
const char* RoleName(Role role);  // custodian, analyst, viewer, worker
// A role a token may carry; InvalidArgument naming the value otherwise.
absl::StatusOr<Role> ParseTokenRole(const std::string& name);

struct TokenUser {
  std::string name;
  Role role = Role::kViewer;
};

// Token names: 1-64 of letters, digits, '.', '_', '@', '-'.
absl::Status ValidateTokenName(const std::string& name);

// SHA-256 of the secret (32 raw bytes), with OpenSSL's EVP_Digest.
std::string TokenSha256(absl::string_view secret);

class Tokens {
 public:
  Tokens(Store* store, Clock* clock) : store_(store), clock_(clock) {}

  // A new token for `name` with `role`; returns the secret ("dpf_" and 64
  // hex digits). AlreadyExists while `name` has a valid token.
  absl::StatusOr<std::string> Create(const std::string& name, Role role);
  // Unauthenticated unless `secret` is a valid token (the message says
  // whether it is unknown, malformed or revoked, never anything about other
  // tokens).
  absl::StatusOr<TokenUser> Authenticate(absl::string_view secret);
  absl::StatusOr<std::vector<TokenRecord>> List();
  // Revokes every valid token of `name`; the next call with it fails.
  // NotFound when there is none.
  absl::Status Revoke(const std::string& name);

 private:
  Store* const store_;
  Clock* const clock_;
  // Valid tokens already checked, by SHA-256 (never the secret), so a
  // request costs no SQLite read (which would queue behind the fsync of a
  // write). Filled on a successful lookup; Revoke drops the name's entries
  // once the store has recorded the revocation, so no call is admitted with
  // a revoked token after Revoke returns. Revocation happens only through
  // this object (the offline `token create` only adds tokens, which a miss
  // finds); unknown and revoked tokens are never cached.
  static constexpr std::size_t kMaxCached = 10000;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, TokenUser> valid_ ABSL_GUARDED_BY(mu_);
  int64_t revocations_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_TOKENS_H_
