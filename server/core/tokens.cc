#include "server/core/tokens.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <regex>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace dpfleet::server {
namespace {

constexpr absl::string_view kPrefix = "dpf_";
constexpr size_t kSecretBytes = 32;  // 256 bits

bool LooksLikeToken(absl::string_view secret) {
  if (!absl::StartsWith(secret, kPrefix) || secret.size() != kPrefix.size() + 2 * kSecretBytes) return false;
  for (char c : secret.substr(kPrefix.size())) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kCustodian:
      return "custodian";
    case Role::kAnalyst:
      return "analyst";
    case Role::kViewer:
      return "viewer";
    case Role::kWorker:
      return "worker";
  }
  return "unknown";
}

absl::StatusOr<Role> ParseTokenRole(const std::string& name) {
  for (Role r : {Role::kCustodian, Role::kAnalyst, Role::kViewer}) {
    if (name == RoleName(r)) return r;
  }
  if (name == RoleName(Role::kWorker)) {
    return absl::InvalidArgumentError(
        "role: 'worker' is not a token role; workers authenticate with a certificate the fleet CA signed");
  }
  return absl::InvalidArgumentError(absl::StrCat("role: '", name, "' is not one of custodian, analyst, viewer"));
}

absl::Status ValidateTokenName(const std::string& name) {
  static const std::regex kName("[A-Za-z0-9._@-]{1,64}");
  if (!std::regex_match(name, kName)) {
    return absl::InvalidArgumentError(
        absl::StrCat("name: '", name, "' must be 1-64 letters, digits, '.', '_', '@' or '-'"));
  }
  return absl::OkStatus();
}

std::string TokenSha256(absl::string_view secret) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(secret.data(), secret.size(), digest, &n, EVP_sha256(), nullptr) != 1) return "";
  return std::string(reinterpret_cast<const char*>(digest), n);
}

absl::StatusOr<std::string> Tokens::Create(const std::string& name, Role role) {
  RETURN_IF_ERROR(ValidateTokenName(name));
  if (role == Role::kWorker) return ParseTokenRole(RoleName(role)).status();
  unsigned char bytes[kSecretBytes];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return absl::InternalError("the OS random generator failed");
  std::string secret = absl::StrCat(
      kPrefix, absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes))));
  OPENSSL_cleanse(bytes, sizeof(bytes));
  TokenRecord record;
  record.name = name;
  record.role = RoleName(role);
  record.sha256 = TokenSha256(secret);
  if (record.sha256.size() != 32) return absl::InternalError("SHA-256 failed");
  record.created_ms = clock_->NowMs();
  RETURN_IF_ERROR(store_->PutToken(record).status());
  return secret;
}

absl::StatusOr<TokenUser> Tokens::Authenticate(absl::string_view secret) {
  if (!LooksLikeToken(secret)) {
    return absl::UnauthenticatedError("malformed token (expected dpf_ and 64 hex digits)");
  }
  const std::string digest = TokenSha256(secret);
  int64_t revocations_at_read;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = valid_.find(digest); it != valid_.end()) return it->second;
    revocations_at_read = revocations_;
  }
  ASSIGN_OR_RETURN(std::optional<TokenRecord> found, store_->FindToken(digest));
  // The lookup is by the digest of the secret, so its timing tells nothing
  // about the secret; the compare is constant-time all the same.
  if (!found || found->sha256.size() != digest.size() ||
      CRYPTO_memcmp(found->sha256.data(), digest.data(), digest.size()) != 0) {
    return absl::UnauthenticatedError("unknown token");
  }
  if (found->revoked_ms != 0) {
    return absl::UnauthenticatedError(absl::StrCat("the token of '", found->name, "' was revoked"));
  }
  absl::StatusOr<Role> role = ParseTokenRole(found->role);
  if (!role.ok())
    return absl::DataLossError(absl::StrCat("stored token of '", found->name, "' has role '", found->role, "'"));
  TokenUser user{found->name, *role};
  absl::MutexLock lock(&mu_);
  // A Revoke stored between the read and here would be outlived by the
  // entry: then the answer stands (the read was before the revocation) but
  // nothing is cached.
  if (revocations_ != revocations_at_read) return user;
  if (valid_.size() >= kMaxCached) valid_.clear();
  valid_.emplace(digest, user);
  return user;
}

absl::StatusOr<std::vector<TokenRecord>> Tokens::List() { return store_->ListTokens(); }

absl::Status Tokens::Revoke(const std::string& name) {
  ASSIGN_OR_RETURN(int revoked, store_->RevokeTokens(name, clock_->NowMs()));
  {
    // Dropped whatever the count: what memory holds never outlives what the
    // store says.
    absl::MutexLock lock(&mu_);
    ++revocations_;
    absl::erase_if(valid_, [&](const auto& entry) { return entry.second.name == name; });
  }
  if (revoked == 0) return absl::NotFoundError(absl::StrCat("no valid token named '", name, "'"));
  return absl::OkStatus();
}

}  // namespace dpfleet::server
