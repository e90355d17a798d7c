#include "server/rpc/coordinator_server.h"

#include "common/log/logging.h"

#include <arpa/inet.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "server/http/http_server.h"
#include "server/rpc/rpc_metrics.h"
#include "server/rpc/services.h"

namespace dpfleet::server {

absl::StatusOr<std::pair<std::string, int>> ParseHostPort(const std::string& flag,
                                                          const std::string& value) {
  const auto colon = value.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(value.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", value, "' is not HOST:PORT (port 0..65535)"));
  }
  std::string host = value.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::make_pair(host, port);
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  unsigned char v4[4];
  if (inet_pton(AF_INET, host.c_str(), v4) == 1) return v4[0] == 127;
  unsigned char v6[16];
  if (inet_pton(AF_INET6, host.c_str(), v6) == 1) {
    static const unsigned char kLoopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::equal(v6, v6 + 16, kLoopback6);
  }
  return false;
}

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f || ss.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": not a readable PEM file"));
  }
  return ss.str();
}

}  // namespace

absl::Status LoadServerConfig(const std::string& path, ServerOptions* options) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("--config ", path, ": ", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat("--config ", path, ": not a mapping"));
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    try {
      SecurityLimits& l = options->limits;
      if (key == "lease_ttl_ms") {
        options->coordinator.lease_ttl_ms = kv.second.as<int64_t>();
      } else if (key == "heartbeat_interval_ms") {
        options->coordinator.heartbeat_interval_ms = kv.second.as<int64_t>();
      } else if (key == "requests_per_second") {
        l.requests_per_second = kv.second.as<double>();
      } else if (key == "request_burst") {
        l.request_burst = kv.second.as<double>();
      } else if (key == "max_watch_streams_per_token") {
        l.max_watch_streams_per_token = kv.second.as<int>();
      } else if (key == "max_spec_bytes") {
        l.max_spec_bytes = kv.second.as<int64_t>();
      } else if (key == "max_message_bytes") {
        l.max_message_bytes = kv.second.as<int64_t>();
      } else if (key == "max_http_request_bytes") {
        l.max_http_request_bytes = kv.second.as<int64_t>();
      } else if (key == "max_wait_ms") {
        l.max_wait_ms = kv.second.as<int64_t>();
      } else if (key == "max_log_lines_per_job") {
        options->coordinator.log_limits.max_lines = kv.second.as<int64_t>();
      } else if (key == "max_log_bytes_per_job") {
        options->coordinator.log_limits.max_bytes = kv.second.as<int64_t>();
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "--config ", path, ": ", key,
            " is not a known setting (lease_ttl_ms, heartbeat_interval_ms, requests_per_second, request_burst, "
            "max_watch_streams_per_token, max_spec_bytes, max_message_bytes, max_http_request_bytes, "
            "max_wait_ms, max_log_lines_per_job, max_log_bytes_per_job)"));
      }
    } catch (const YAML::Exception&) {
      return absl::InvalidArgumentError(absl::StrCat("--config ", path, ": ", key, " must be a number"));
    }
  }
  const SecurityLimits& l = options->limits;
  if (!(l.requests_per_second > 0) || !(l.request_burst >= 1) || l.max_watch_streams_per_token < 1 ||
      l.max_spec_bytes < 1024 || l.max_message_bytes < (1 << 20) || l.max_message_bytes > (1LL << 31) - 1 ||
      l.max_http_request_bytes < 1024 || l.max_wait_ms < 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--config ", path,
        ": limits out of range (requests_per_second > 0, request_burst >= 1, max_watch_streams_per_token >= 1, "
        "max_spec_bytes >= 1024, max_message_bytes in [1 MiB, 2 GiB), max_http_request_bytes >= 1024, "
        "max_wait_ms >= 1000)"));
  }
  const LogLimits& logs = options->coordinator.log_limits;
  if (logs.max_lines < 1 || logs.max_bytes < 1024) {
    return absl::InvalidArgumentError(absl::StrCat("--config ", path, ": max_log_lines_per_job ", logs.max_lines,
                                                   " must be >= 1 and max_log_bytes_per_job ", logs.max_bytes,
                                                   " >= 1024"));
  }
  if (options->coordinator.lease_ttl_ms < 100 ||
      options->coordinator.heartbeat_interval_ms * 2 > options->coordinator.lease_ttl_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--config ", path, ": lease_ttl_ms must be >= 100 and at least twice heartbeat_interval_ms"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(const ServerOptions& options) {
  if (options.state_dir.empty()) return absl::InvalidArgumentError("--state-dir is required");
  ASSIGN_OR_RETURN(auto listen, ParseHostPort("--listen", options.listen));
  std::optional<std::pair<std::string, int>> http;
  if (!options.http.empty()) {
    ASSIGN_OR_RETURN(http, ParseHostPort("--http", options.http));
  }
  // Transport security is settled before anything is opened.
  const int tls_flags = !options.tls_cert.empty() + !options.tls_key.empty() + !options.client_ca.empty();
  if (tls_flags != 0 && tls_flags != 3) {
    return absl::InvalidArgumentError(
        "--tls-cert, --tls-key and --client-ca go together (the client CA is what identifies workers)");
  }
  const bool tls = tls_flags == 3;
  std::vector<std::string> exposed;
  if (!IsLoopbackHost(listen.first)) exposed.push_back("--listen " + options.listen);
  if (http && !IsLoopbackHost(http->first)) exposed.push_back("--http " + options.http);
  if (!tls && !exposed.empty() && !options.insecure_plaintext) {
    return absl::FailedPreconditionError(absl::StrCat(
        absl::StrJoin(exposed, " and "), " is not a loopback address: serve it with TLS (--tls-cert, --tls-key, ",
        "--client-ca; `dpctl admin certs` makes them) or accept plaintext with --insecure-plaintext"));
  }
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  if (tls) {
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    ASSIGN_OR_RETURN(pair.cert_chain, ReadPem("--tls-cert", options.tls_cert));
    ASSIGN_OR_RETURN(pair.private_key, ReadPem("--tls-key", options.tls_key));
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem("--client-ca", options.client_ca));
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
  }

  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer());
  if (tls) {
    s->security_notes_.push_back(absl::StrCat(
        "TLS on every listener; workers authenticate with certificates signed by ", options.client_ca,
        "; users with tokens"));
  } else if (exposed.empty()) {
    s->security_notes_.push_back(
        "plaintext, loopback only (no --tls-cert): users authenticate with tokens, but any local process can "
        "act as a worker; use TLS on a shared host");
  } else {
    s->security_notes_.push_back(absl::StrCat(
        "WARNING: --insecure-plaintext: ", absl::StrJoin(exposed, " and "),
        " serve plaintext: tokens cross the network in the clear and anyone who reaches the port can act as a "
        "worker and read the shards of running jobs"));
  }
  // One coordinator per state directory: a second one (or a restore) is
  // refused before anything is opened.
  ASSIGN_OR_RETURN(s->state_lock_, StateDirLock::Acquire(options.state_dir, "dpfleet-server"));
  ASSIGN_OR_RETURN(s->store_, Store::Open(options.state_dir));
  ASSIGN_OR_RETURN(DataRoots roots, DataRoots::Create(options.data_roots, options.state_dir));
  s->security_notes_.push_back(
      roots.empty() ? "no --data-root: raw files are refused; only datasets already registered can be used"
                    : absl::StrCat("raw files only from ", absl::StrJoin(roots.roots(), ", ")));
  // One secret split for every data.path job: the resolver counts N with it
  // and the assignments carry it to the ranks.
  CoordinatorOptions coordinator = options.coordinator;
  ASSIGN_OR_RETURN(coordinator.split_key, s->store_->SplitKey());
  s->clock_ = std::make_unique<SystemClock>();
  s->files_ = std::make_unique<FileIdentifier>(s->store_.get(), s->clock_.get());
  s->data_ = std::make_unique<PipelineDataResolver>(roots, coordinator.split_key, s->files_.get());
  s->datasets_ = std::make_unique<DatasetRegistry>(s->store_.get(), s->clock_.get(), options.state_dir);
  s->datasets_->set_data_roots(roots);
  RETURN_IF_ERROR(s->datasets_->Recover());
  s->jobs_ = std::make_unique<JobManager>(s->store_.get(), s->data_.get(), s->clock_.get(), coordinator);
  s->jobs_->set_datasets(s->datasets_.get());
  s->jobs_->set_metrics(&s->metrics_);
  RETURN_IF_ERROR(s->jobs_->Recover());
  s->tokens_ = std::make_unique<Tokens>(s->store_.get(), s->clock_.get());
  ASSIGN_OR_RETURN(std::vector<TokenRecord> tokens, s->tokens_->List());
  if (std::none_of(tokens.begin(), tokens.end(),
                   [](const TokenRecord& t) { return t.revoked_ms == 0 && t.role == "custodian"; })) {
    s->security_notes_.push_back(absl::StrCat("no custodian token yet: dpfleet-server token create --state-dir ",
                                              options.state_dir, " --name NAME --role custodian"));
  }
  s->audit_ = std::make_unique<AuditTrail>(s->store_.get(), s->clock_.get());
  s->gate_ = std::make_unique<Gate>(s->tokens_.get(), s->audit_.get(), s->clock_.get(), options.limits, tls);

  ServiceDeps deps{s->jobs_.get(), s->datasets_.get(), s->store_.get(), s->tokens_.get(), s->gate_.get(),
                   s->audit_.get()};
  s->coordinator_service_ = std::make_unique<CoordinatorServiceImpl>(deps);
  s->admin_service_ = std::make_unique<AdminServiceImpl>(deps);
  s->worker_service_ = std::make_unique<WorkerServiceImpl>(deps);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (tls) {
    credentials = grpc::SslServerCredentials(ssl);
  } else if (exposed.empty()) {
    // Plaintext that the transport itself confines to loopback peers.
    credentials = grpc::experimental::LocalServerCredentials(LOCAL_TCP);
  } else {
    // Plaintext to anyone. InsecureServerCredentials cannot carry an auth
    // processor; xDS credentials without an xDS configuration are exactly
    // their fallback, plaintext, and can.
    credentials = grpc::XdsServerCredentials(grpc::InsecureServerCredentials());
  }
  // Every call, whatever the transport, passes the Gate before a handler.
  credentials->SetAuthMetadataProcessor(std::make_shared<GrpcAuthProcessor>(s->gate_.get(), &s->metrics_));
  grpc::ServerBuilder builder;
  const std::string addr = listen.first.find(':') != std::string::npos
                               ? absl::StrCat("[", listen.first, "]:", listen.second)
                               : absl::StrCat(listen.first, ":", listen.second);
  builder.AddListeningPort(addr, credentials, &s->grpc_port_);
  // Epoch reports carry checkpoints (jobs with resources.max_attempts > 1).
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.limits.max_message_bytes));
  builder.RegisterService(s->coordinator_service_.get());
  builder.RegisterService(s->admin_service_.get());
  builder.RegisterService(s->worker_service_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(RpcMetricsInterceptorFactory(&s->metrics_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  s->grpc_ = builder.BuildAndStart();
  if (!s->grpc_ || s->grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--listen ", options.listen, ": cannot bind (in use?)"));
  }
  if (http) {
    HttpOptions http_options;
    http_options.host = http->first;
    http_options.port = http->second;
    if (tls) {
      http_options.tls_cert = options.tls_cert;
      http_options.tls_key = options.tls_key;
    }
    ASSIGN_OR_RETURN(s->http_, HttpServer::Start(http_options, s->jobs_.get(), s->datasets_.get(), s->gate_.get(),
                                                 &s->metrics_, s->audit_.get()));
  }
  const int64_t tick_ms = std::max<int64_t>(20, options.coordinator.heartbeat_interval_ms / 2);
  s->UpdateHealth();
  s->ticker_ = std::thread([srv = s.get(), tick_ms] {
    int64_t jobs_seen = 0, datasets_seen = 0, audit_seen = 0;
    // Work the store refused in the background is retried by the core; the
    // operator learns of it here (and from /metrics).
    auto report = [](const char* component, const BackgroundErrors::Snapshot& now, int64_t* seen) {
      if (now.count == *seen) return;
      log::Warn(absl::StrCat(component, ": ", now.last, " (", now.count, " background failures so far; retrying)"));
      *seen = now.count;
    };
    absl::Time next_health = absl::Now() + absl::Seconds(1);
    while (!srv->stop_.WaitForNotificationWithTimeout(absl::Milliseconds(tick_ms))) {
      srv->jobs_->Tick();
      report("jobs", srv->jobs_->background_errors(), &jobs_seen);
      report("datasets", srv->datasets_->background_errors(), &datasets_seen);
      // Audit entries the store refused are written once it works again.
      srv->audit_->Flush();
      report("audit", srv->audit_->background_errors(), &audit_seen);
      if (absl::Now() >= next_health) {
        srv->UpdateHealth();
        next_health = absl::Now() + absl::Seconds(1);
      }
    }
  });
  return s;
}

void CoordinatorServer::UpdateHealth() {
  grpc::HealthCheckServiceInterface* health = grpc_->GetHealthCheckService();
  if (health == nullptr) return;
  // Readiness is the store's: a coordinator whose SQLite does not answer
  // can take no call that records anything.
  const bool ready = jobs_->Ready().ok();
  health->SetServingStatus("", ready);
  for (const char* service : {"dpfleet.v1.Coordinator", "dpfleet.v1.Admin", "dpfleet.v1.WorkerService"}) {
    health->SetServingStatus(service, ready);
  }
}

int CoordinatorServer::http_port() const { return http_ ? http_->port() : 0; }

void CoordinatorServer::Shutdown() {
  std::call_once(shutdown_once_, [this] {
    stop_.Notify();
    if (ticker_.joinable()) ticker_.join();
    if (jobs_) jobs_->Shutdown();  // null when Start failed before it
    if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    if (http_) http_->Shutdown();
  });
}

void CoordinatorServer::Wait() {
  if (grpc_) grpc_->Wait();
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

}  // namespace dpfleet::server
