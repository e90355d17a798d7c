#include "server/rpc/audit.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"

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
  absl::Status s = store_->AppendAudit(r);
  if (!s.ok()) {
    std::fprintf(stderr, "dpfleet-server: audit trail: %s (lost: %s %s by %s)\n", std::string(s.message()).c_str(),
                 r.action.c_str(), r.target.c_str(), caller.Describe().c_str());
  }
}

}  // namespace dpfleet::server
