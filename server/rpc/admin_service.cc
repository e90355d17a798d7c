// The Admin service (tokens, audit trail, ledger listing); its class is
// declared with the other adapters in server/rpc/services.h.
#include <map>

#include "absl/strings/str_cat.h"
#include "common/status.h"
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
  absl::StatusOr<LedgerListing> listing =
      deps_.jobs->ListLedger(DatasetArgumentKey(deps_.datasets, req->dataset()));
  if (!listing.ok()) return ToGrpc(listing.status());
  resp->set_dataset(listing->dataset);
  resp->set_delta(listing->delta);
  std::map<std::string, std::string> owners;
  for (const ListedCharge& c : listing->charges) {
    const LedgerEntry& e = c.entry;
    if (!owners.count(e.job_id)) {
      absl::StatusOr<JobRecord> job = deps_.jobs->Get(e.job_id);
      owners[e.job_id] = job.ok() ? job->owner : "";
    }
    v1::LedgerCharge* out = resp->add_charges();
    out->set_job_id(e.job_id);
    out->set_owner(owners[e.job_id]);
    out->set_attempt(e.attempt);
    out->set_epoch(e.epoch);
    out->set_mechanism(MechanismName(e.mechanism));
    out->set_sample_rate(e.sample_rate);
    out->set_noise_multiplier(e.noise_multiplier);
    out->set_steps(e.steps);
    out->set_delta(e.delta);
    out->set_epsilon_total(c.epsilon_total);
    out->set_epsilon_increment(c.epsilon_increment);
    out->set_recorded_unix_ms(e.recorded_ms);
  }
  return grpc::Status::OK;
}

}  // namespace dpfleet::server
