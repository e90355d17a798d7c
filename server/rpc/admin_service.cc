// The Admin service (tokens, audit trail, ledger listing); its class is
// declared with the other adapters in server/rpc/services.h.
#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/privacy/accountant.h"
#include "common/status.h"
#include "server/core/data_resolver.h"
#include "server/rpc/convert.h"
#include "server/rpc/services.h"

namespace dpfleet::server {
namespace {

constexpr int32_t kMaxAuditEntries = 10000;

void ToProto(const TokenRecord& t, v1::TokenInfo* out) {
  out->set_name(t.name);
  out->set_role(t.role);
  out->set_created_unix_ms(t.created_ms);
  out->set_revoked_unix_ms(t.revoked_ms);
}

}  // namespace

grpc::Status AdminServiceImpl::CreateToken(grpc::ServerContext* ctx, const v1::CreateTokenRequest* req,
                                           v1::CreateTokenResponse* resp) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  absl::StatusOr<std::string> secret = [&]() -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(Role role, ParseTokenRole(req->role()));
    return deps_.tokens->Create(req->name(), role);
  }();
  deps_.audit->Record(caller, "CreateToken", absl::StrCat(req->name(), " (", req->role(), ")"), secret.status());
  if (!secret.ok()) return ToGrpc(secret.status());
  resp->set_token(*secret);
  resp->mutable_info()->set_name(req->name());
  resp->mutable_info()->set_role(req->role());
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListTokens(grpc::ServerContext*, const v1::ListTokensRequest*,
                                          v1::ListTokensResponse* resp) {
  absl::StatusOr<std::vector<TokenRecord>> tokens = deps_.tokens->List();
  if (!tokens.ok()) return ToGrpc(tokens.status());
  for (const TokenRecord& t : *tokens) ToProto(t, resp->add_tokens());
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::RevokeToken(grpc::ServerContext* ctx, const v1::RevokeTokenRequest* req,
                                           v1::RevokeTokenResponse*) {
  const Identity caller = deps_.gate->Caller(*ctx, false);
  const absl::Status s = deps_.tokens->Revoke(req->name());
  deps_.audit->Record(caller, "RevokeToken", req->name(), s);
  return ToGrpc(s);
}

grpc::Status AdminServiceImpl::ListAudit(grpc::ServerContext*, const v1::ListAuditRequest* req,
                                         v1::ListAuditResponse* resp) {
  const int32_t limit = req->limit() <= 0 ? kMaxAuditEntries : std::min(req->limit(), kMaxAuditEntries);
  absl::StatusOr<std::vector<AuditRecord>> entries = deps_.store->ListAudit(req->after_id(), limit);
  if (!entries.ok()) return ToGrpc(entries.status());
  for (const AuditRecord& r : *entries) {
    v1::AuditEntry* e = resp->add_entries();
    e->set_id(r.id);
    e->set_time_unix_ms(r.time_ms);
    e->set_kind(r.kind);
    e->set_name(r.name);
    e->set_role(r.role);
    e->set_action(r.action);
    e->set_target(r.target);
    e->set_outcome(r.outcome);
    e->set_detail(r.detail);
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::GetLedger(grpc::ServerContext*, const v1::GetLedgerRequest* req,
                                         v1::GetLedgerResponse* resp) {
  if (req->dataset().empty()) return ToGrpc(absl::InvalidArgumentError("dataset: a name or data path is required"));
  const std::string key = DatasetKey(absl::StrSplit(DatasetArgumentKey(deps_.datasets, req->dataset()), '+'));
  absl::StatusOr<std::vector<LedgerEntry>> entries = deps_.store->LedgerForDataset(key);
  if (!entries.ok()) return ToGrpc(entries.status());
  // The delta the dataset's budget view states epsilon at.
  absl::StatusOr<std::vector<BudgetView>> views = deps_.jobs->GetBudgets(key);
  if (!views.ok()) return ToGrpc(views.status());
  const double delta = views->empty() ? 1e-5 : views->front().delta;
  resp->set_dataset(key);
  resp->set_delta(delta);
  std::map<std::string, std::string> owners;
  std::vector<privacy::SubsampledGaussian> composed;
  double before = 0;
  bool infinite = false;
  for (const LedgerEntry& e : *entries) {
    v1::LedgerCharge* c = resp->add_charges();
    c->set_job_id(e.job_id);
    if (!owners.count(e.job_id)) {
      absl::StatusOr<JobRecord> job = deps_.jobs->Get(e.job_id);
      owners[e.job_id] = job.ok() ? job->owner : "";
    }
    c->set_owner(owners[e.job_id]);
    c->set_attempt(e.attempt);
    c->set_epoch(e.epoch);
    c->set_mechanism("subsampled_gaussian");
    c->set_sample_rate(e.sample_rate);
    c->set_noise_multiplier(e.noise_multiplier);
    c->set_steps(e.steps);
    c->set_delta(e.delta);
    c->set_recorded_unix_ms(e.recorded_ms);
    double after = std::numeric_limits<double>::infinity();
    if (e.noise_multiplier == 0) {
      infinite = true;  // a non-private epoch: no finite guarantee from here on
    } else {
      composed.push_back({e.sample_rate, e.noise_multiplier, e.steps});
    }
    if (!infinite) {
      absl::StatusOr<double> eps = privacy::ComputeEpsilon(privacy::AccountantKind::kRdp, composed, delta);
      if (!eps.ok()) return ToGrpc(eps.status());
      after = *eps;
    }
    c->set_epsilon_total(after);
    // Once a non-private epoch is in, nothing more can be lost.
    c->set_epsilon_increment(std::isinf(before) ? 0.0 : after - before);
    before = after;
  }
  return grpc::Status::OK;
}

}  // namespace dpfleet::server
