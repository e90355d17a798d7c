// The one authentication point of the coordinator: Gate decides, for every
// gRPC call (through GrpcAuthProcessor, installed on the server's
// credentials, before any handler runs) and every HTTP request (through
// the middleware in server/http/), who is calling and whether the role
// table (server/rpc/access.h) lets them, and applies the per-token bounds.
//
// Credentials: a user sends "authorization: Bearer <token>"; a worker
// presents a client certificate the fleet CA (--client-ca) signed, whose CN
// names it. A call carrying both is refused: a worker certificate is never
// a user and a token is never a worker. On a plaintext coordinator (loopback
// or --insecure-plaintext) there are no certificates, and a call to a
// worker method without a token is the unauthenticated worker "plaintext".
//
// Never logs a token, and never stores one in the call's context: handlers
// ask the Gate again for the identity (Caller), from the same credentials.
#ifndef DPFLEET_SERVER_RPC_AUTH_H_
#define DPFLEET_SERVER_RPC_AUTH_H_

#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/server_context.h>

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/metrics.h"
#include "server/core/tokens.h"
#include "server/rpc/access.h"
#include "server/rpc/audit.h"

namespace dpfleet::server {

// Bounds on what one caller may ask of the coordinator (the `--config`
// YAML's keys of the same names).
struct SecurityLimits {
  double requests_per_second = 50;     // per token, sustained ...
  double request_burst = 100;          // ... and at once
  int max_watch_streams_per_token = 16;
  int64_t max_spec_bytes = 256 << 10;      // SubmitJob's spec_yaml
  int64_t max_message_bytes = 256 << 20;   // any gRPC message (checkpoints are the largest)
  int64_t max_http_request_bytes = 64 << 10;
  int64_t max_wait_ms = 300'000;           // the longest a rendezvous wait may block
};

// The name a plaintext coordinator gives every worker.
inline constexpr char kPlaintextWorker[] = "plaintext";

class Gate {
 public:
  // `certificate_workers`: workers must present a client certificate (TLS
  // with --client-ca); false on a plaintext coordinator.
  Gate(Tokens* tokens, AuditTrail* audit, Clock* clock, SecurityLimits limits, bool certificate_workers);

  const SecurityLimits& limits() const { return limits_; }

  // The identity behind one call's credentials: every value of its
  // authorization header and the CN of its verified client certificate
  // (empty when none). Unauthenticated, saying what is wrong, for a
  // malformed, unknown or revoked token, several tokens, or a token and a
  // certificate together; anonymous for no credentials at all.
  absl::StatusOr<Identity> Authenticate(const std::vector<std::string>& authorization, const std::string& cert_name,
                                        bool worker_method) const;

  // The whole decision for one gRPC call of `method` (full path) or one
  // HTTP request: identity, role table, request rate. Refusals of audited
  // methods are audited.
  absl::StatusOr<Identity> AdmitRpc(const std::string& method, const std::vector<std::string>& authorization,
                                    const std::string& cert_name);
  absl::StatusOr<Identity> AdmitHttp(const std::string& method, const std::string& path,
                                     const std::vector<std::string>& authorization);

  // For handlers: who the call admitted is (anonymous if its credentials
  // no longer authenticate, e.g. revoked in between).
  Identity Caller(const grpc::ServerContextBase& ctx, bool worker_method) const;
  Identity HttpCaller(const std::vector<std::string>& authorization) const;

  // One more watch stream for `caller`; ResourceExhausted beyond
  // max_watch_streams_per_token. Every success is paired with ReleaseWatch.
  absl::Status AcquireWatch(const Identity& caller);
  void ReleaseWatch(const Identity& caller);

 private:
  Tokens* const tokens_;
  AuditTrail* const audit_;
  const SecurityLimits limits_;
  const bool certificate_workers_;
  RateLimiter rate_;
  absl::Mutex mu_;
  std::map<std::string, int> watches_ ABSL_GUARDED_BY(mu_);
};

// The verified client certificate's CN of a TLS peer; "" for none.
std::string CertificateName(const grpc::AuthContext& ctx);

// Runs the Gate on every incoming gRPC call (SslServerCredentials and the
// plaintext credentials both carry it), so no handler runs for a call the
// role table refuses.
class GrpcAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  // `metrics` (may be null) counts refused calls in
  // dpfleet_rpc_requests_total, which the interceptor never sees.
  explicit GrpcAuthProcessor(Gate* gate, ServerMetrics* metrics = nullptr) : gate_(gate), metrics_(metrics) {}
  // Token checks read SQLite: gRPC runs blocking processors off its I/O threads.
  bool IsBlocking() const override { return true; }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata, OutputMetadata* response_metadata) override;

 private:
  Gate* const gate_;
  ServerMetrics* const metrics_;
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_AUTH_H_
