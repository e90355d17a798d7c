#include "server/rpc/audit.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/log/logging.h"

namespace dpfleet::server {

bool RateLimiter::Allow(const std::string& key) {
  const int64_t now = clock_->NowMs();
  absl::MutexLock lock(&mu_);
  auto [it, fresh] = buckets_.try_emplace(key);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = burst_;
  } else {
    b.tokens = std::min(burst_, b.tokens + per_second_ * static_cast<double>(std::max<int64_t>(0, now - b.last_ms)) / 1e3);
  }
  b.last_ms = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

void AuditTrail::Record(const Identity& caller, absl::string_view action, absl::string_view target,
                        const absl::Status& outcome) {
  AuditRecord r;
  r.time_ms = clock_->NowMs();
  r.kind = caller.KindName();
  r.name = caller.name;
  r.role = caller.kind == Identity::Kind::kAnonymous ? "" : RoleName(caller.role);
  r.action = std::string(action);
  r.target = std::string(target.substr(0, 512));
  r.outcome = outcome.ok() ? "OK" : absl::StatusCodeToString(outcome.code());
  r.detail = std::string(outcome.message().substr(0, 512));
  if (caller.kind == Identity::Kind::kAnonymous) {
    absl::MutexLock lock(&mu_);
    if (!anonymous_.Allow("")) {
      ++suppressed_;
      return;
    }
    if (suppressed_ > 0) {
      absl::StrAppend(&r.detail, " (+", suppressed_, " anonymous refusals not recorded)");
      suppressed_ = 0;
    }
  }
  absl::MutexLock lock(&write_mu_);
  FlushLocked();
  AppendLocked(std::move(r));
}

void AuditTrail::Flush() {
  absl::MutexLock lock(&write_mu_);
  FlushLocked();
}

std::size_t AuditTrail::pending() const {
  absl::MutexLock lock(&write_mu_);
  return pending_.size();
}

absl::Status AuditTrail::WriteLocked(const AuditRecord& r) {
  absl::Status s;
  if (dropped_ == 0) {
    s = store_->AppendAudit(r);
  } else {
    AuditRecord noted = r;
    absl::StrAppend(&noted.detail, " (+", dropped_, " audit entries lost while the state store refused them)");
    s = store_->AppendAudit(noted);
  }
  if (s.ok()) {
    dropped_ = 0;
  } else {
    background_errors_.Record(absl::StrCat("writing the audit entry of ", r.action), s);
  }
  return s;
}

void AuditTrail::FlushLocked() {
  while (!pending_.empty() && WriteLocked(pending_.front()).ok()) pending_.pop_front();
}

void AuditTrail::AppendLocked(AuditRecord r) {
  if (pending_.empty()) {
    const absl::Status s = WriteLocked(r);
    if (s.ok()) return;
    log::Warn(absl::StrCat("audit trail: ", s.message(), " (kept; written once the store works)"));
  }
  pending_.push_back(std::move(r));
  if (pending_.size() > kMaxPending) {
    pending_.pop_front();
    ++dropped_;
  }
}

}  // namespace dpfleet::server
