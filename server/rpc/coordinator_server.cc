#include "server/rpc/coordinator_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/http/http_server.h"
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
      if (key == "lease_ttl_ms") {
        options->coordinator.lease_ttl_ms = kv.second.as<int64_t>();
      } else if (key == "heartbeat_interval_ms") {
        options->coordinator.heartbeat_interval_ms = kv.second.as<int64_t>();
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "--config ", path, ": ", key, " is not a known setting (lease_ttl_ms, heartbeat_interval_ms)"));
      }
    } catch (const YAML::Exception&) {
      return absl::InvalidArgumentError(absl::StrCat("--config ", path, ": ", key, " must be an integer"));
    }
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
  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer());
  ASSIGN_OR_RETURN(s->store_, Store::Open(options.state_dir));
  s->data_ = std::make_unique<PipelineDataResolver>();
  s->clock_ = std::make_unique<SystemClock>();
  s->datasets_ = std::make_unique<DatasetRegistry>(s->store_.get(), s->clock_.get(), options.state_dir);
  RETURN_IF_ERROR(s->datasets_->Recover());
  s->jobs_ = std::make_unique<JobManager>(s->store_.get(), s->data_.get(), s->clock_.get(),
                                          options.coordinator);
  s->jobs_->set_datasets(s->datasets_.get());
  RETURN_IF_ERROR(s->jobs_->Recover());

  s->coordinator_service_ = std::make_unique<CoordinatorServiceImpl>(s->jobs_.get(), s->datasets_.get());
  s->worker_service_ = std::make_unique<WorkerServiceImpl>(s->jobs_.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string addr = listen.first.find(':') != std::string::npos
                               ? absl::StrCat("[", listen.first, "]:", listen.second)
                               : absl::StrCat(listen.first, ":", listen.second);
  builder.AddListeningPort(addr, grpc::InsecureServerCredentials(), &s->grpc_port_);
  // Epoch reports carry checkpoints (jobs with resources.max_attempts > 1).
  builder.SetMaxReceiveMessageSize(256 << 20);
  builder.RegisterService(s->coordinator_service_.get());
  builder.RegisterService(s->worker_service_.get());
  s->grpc_ = builder.BuildAndStart();
  if (!s->grpc_ || s->grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--listen ", options.listen, ": cannot bind (in use?)"));
  }
  if (!options.http.empty()) {
    ASSIGN_OR_RETURN(auto http, ParseHostPort("--http", options.http));
    ASSIGN_OR_RETURN(s->http_, HttpServer::Start(http.first, http.second, s->jobs_.get(), s->datasets_.get()));
  }
  const int64_t tick_ms = std::max<int64_t>(20, options.coordinator.heartbeat_interval_ms / 2);
  s->ticker_ = std::thread([srv = s.get(), tick_ms] {
    int64_t jobs_seen = 0, datasets_seen = 0;
    // Work the store refused in the background is retried by the core; the
    // operator learns of it here (and from /metrics).
    auto report = [](const char* component, const BackgroundErrors::Snapshot& now, int64_t* seen) {
      if (now.count == *seen) return;
      std::fprintf(stderr, "dpfleet-server: %s: %s (%lld background failures so far; retrying)\n", component,
                   now.last.c_str(), static_cast<long long>(now.count));
      *seen = now.count;
    };
    while (!srv->stop_.WaitForNotificationWithTimeout(absl::Milliseconds(tick_ms))) {
      srv->jobs_->Tick();
      report("jobs", srv->jobs_->background_errors(), &jobs_seen);
      report("datasets", srv->datasets_->background_errors(), &datasets_seen);
    }
  });
  return s;
}

int CoordinatorServer::http_port() const { return http_ ? http_->port() : 0; }

void CoordinatorServer::Shutdown() {
  std::call_once(shutdown_once_, [this] {
    stop_.Notify();
    if (ticker_.joinable()) ticker_.join();
    jobs_->Shutdown();
    if (grpc_) grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    if (http_) http_->Shutdown();
  });
}

void CoordinatorServer::Wait() {
  if (grpc_) grpc_->Wait();
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

}  // namespace dpfleet::server
