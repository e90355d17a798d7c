#include "server/rpc/auth.h"

#include <grpc/grpc_security_constants.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/rpc/convert.h"

namespace dpfleet::server {
namespace {

// Longer than any token this coordinator issues, short enough that a
// refusal never echoes much of what was sent.
constexpr size_t kMaxAuthorizationBytes = 256;

bool IsWorkerMethod(const RpcRule* rule) { return rule != nullptr && rule->roles == kWorker; }

std::string ToString(grpc::string_ref s) { return std::string(s.data(), s.size()); }

}  // namespace

Gate::Gate(Tokens* tokens, AuditTrail* audit, Clock* clock, SecurityLimits limits, bool certificate_workers)
    : tokens_(tokens),
      audit_(audit),
      limits_(limits),
      certificate_workers_(certificate_workers),
      rate_(limits.requests_per_second, limits.request_burst, clock) {}

absl::StatusOr<Identity> Gate::Authenticate(const std::vector<std::string>& authorization,
                                            const std::string& cert_name, bool worker_method) const {
  if (!cert_name.empty()) {
    if (!authorization.empty()) {
      return absl::UnauthenticatedError(
          "a call carries a worker certificate or a user token, never both (a worker certificate is never a user)");
    }
    return Identity::Worker(cert_name);
  }
  if (authorization.empty()) {
    if (!certificate_workers_ && worker_method) return Identity::Worker(kPlaintextWorker);
    return Identity();
  }
  if (authorization.size() > 1) {
    return absl::UnauthenticatedError(
        absl::StrCat("the call carries ", authorization.size(), " authorization headers; send exactly one"));
  }
  const std::string& value = authorization[0];
  if (value.size() > kMaxAuthorizationBytes) {
    return absl::UnauthenticatedError(absl::StrCat("the authorization header is ", value.size(),
                                                   " bytes, longer than any token (", kMaxAuthorizationBytes, ")"));
  }
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() || !absl::StartsWithIgnoreCase(value, kScheme)) {
    return absl::UnauthenticatedError("the authorization header must be 'Bearer <token>'");
  }
  absl::StatusOr<TokenUser> user = tokens_->Authenticate(absl::string_view(value).substr(kScheme.size()));
  if (!user.ok()) {
    if (user.status().code() == absl::StatusCode::kUnauthenticated) return user.status();
    // The store failed: the caller cannot be told apart from a stranger.
    return absl::UnavailableError(absl::StrCat("cannot check the token: ", user.status().message()));
  }
  return Identity::User(user->name, user->role);
}

absl::StatusOr<Identity> Gate::AdmitRpc(const std::string& method, const std::vector<std::string>& authorization,
                                        const std::string& cert_name) {
  const RpcRule* rule = FindRpcRule(method);
  if (rule != nullptr && (rule->roles & kPublic)) return Identity();
  absl::StatusOr<Identity> caller = Authenticate(authorization, cert_name, IsWorkerMethod(rule));
  absl::Status s = caller.ok() ? AuthorizeRpc(*caller, method) : caller.status();
  if (s.ok() && caller->is_user() && !rate_.Allow(caller->name)) {
    s = absl::ResourceExhaustedError(absl::StrCat("the token of '", caller->name, "' exceeded ",
                                                  limits_.requests_per_second, " requests per second (burst ",
                                                  limits_.request_burst, "); slow down and retry"));
  }
  if (!s.ok()) {
    if (rule != nullptr && rule->audited) {
      audit_->Record(caller.ok() ? *caller : Identity(), ShortMethodName(method), "", s);
    }
    return s;
  }
  return caller;
}

absl::StatusOr<Identity> Gate::AdmitHttp(const std::string& method, const std::string& path,
                                         const std::vector<std::string>& authorization) {
  const HttpRule* rule = FindHttpRule(method, path);
  if (rule != nullptr && (rule->roles & kPublic)) return Identity();
  ASSIGN_OR_RETURN(Identity caller, Authenticate(authorization, "", false));
  RETURN_IF_ERROR(AuthorizeHttp(caller, method, path));
  if (caller.is_user() && !rate_.Allow(caller.name)) {
    return absl::ResourceExhaustedError(absl::StrCat("the token of '", caller.name, "' exceeded ",
                                                     limits_.requests_per_second, " requests per second"));
  }
  return caller;
}

Identity Gate::Caller(const grpc::ServerContextBase& ctx, bool worker_method) const {
  std::vector<std::string> authorization;
  auto range = ctx.client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it) authorization.push_back(ToString(it->second));
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  absl::StatusOr<Identity> caller =
      Authenticate(authorization, auth ? CertificateName(*auth) : "", worker_method);
  return caller.ok() ? *caller : Identity();
}

Identity Gate::HttpCaller(const std::vector<std::string>& authorization) const {
  absl::StatusOr<Identity> caller = Authenticate(authorization, "", false);
  return caller.ok() ? *caller : Identity();
}

absl::Status Gate::AcquireWatch(const Identity& caller) {
  absl::MutexLock lock(&mu_);
  int& open = watches_[caller.name];
  if (open >= limits_.max_watch_streams_per_token) {
    return absl::ResourceExhaustedError(absl::StrCat(caller.Describe(), " already has ", open,
                                                     " watch streams open (max_watch_streams_per_token)"));
  }
  ++open;
  return absl::OkStatus();
}

void Gate::ReleaseWatch(const Identity& caller) {
  absl::MutexLock lock(&mu_);
  auto it = watches_.find(caller.name);
  if (it != watches_.end() && --it->second <= 0) watches_.erase(it);
}

std::string CertificateName(const grpc::AuthContext& ctx) {
  // Local (loopback plaintext) credentials call every peer authenticated;
  // only a TLS peer's verified certificate names a worker.
  const std::vector<grpc::string_ref> type = ctx.FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
  if (!ctx.IsPeerAuthenticated() || type.size() != 1 || type[0] != GRPC_SSL_TRANSPORT_SECURITY_TYPE) return "";
  const std::vector<grpc::string_ref> cn = ctx.FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
  if (cn.size() != 1 || cn[0].empty()) return "";
  return ToString(cn[0]);
}

grpc::Status GrpcAuthProcessor::Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                                        OutputMetadata*, OutputMetadata*) {
  std::string method;
  std::vector<std::string> authorization;
  for (const auto& [key, value] : auth_metadata) {
    if (key == ":path") method = ToString(value);
    if (key == "authorization") authorization.push_back(ToString(value));
  }
  absl::StatusOr<Identity> caller = gate_->AdmitRpc(method, authorization, CertificateName(*context));
  if (!caller.ok() && metrics_ != nullptr) {
    // A method outside the table is "unknown": a caller cannot mint label
    // values.
    metrics_->rpc_requests.Inc({FindRpcRule(method) != nullptr ? method : "unknown",
                                absl::StatusCodeToString(caller.status().code())});
  }
  return caller.ok() ? grpc::Status::OK : ToGrpc(caller.status());
}

}  // namespace dpfleet::server
