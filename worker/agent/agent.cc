#include "worker/agent/agent.h"

#include <grpcpp/grpcpp.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/version.h"
#include "worker/agent/run.h"

namespace dpfleet::worker {
namespace {

std::string Hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

void Log(const std::string& msg) { log::Info(msg); }

}  // namespace

WorkerAgent::WorkerAgent(AgentOptions options) : options_(std::move(options)) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  // Reconnect quickly after a coordinator restart.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options_.tls_ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options_.tls_ca;
    ssl.pem_cert_chain = options_.tls_cert;
    ssl.pem_private_key = options_.tls_key;
    credentials = grpc::SslCredentials(ssl);
  }
  stub_ = v1::WorkerService::NewStub(grpc::CreateCustomChannel(options_.server, credentials, args));
}

WorkerAgent::~WorkerAgent() {
  run_cancel_ = true;
  if (run_thread_.joinable()) run_thread_.join();
}

absl::Status WorkerAgent::Register(bool keep_run) {
  v1::RegisterRequest req;
  req.set_hostname(Hostname());
  req.set_device(options_.device);
  req.set_pid(getpid());
  req.set_protocol_version(kProtocolVersion);
  {
    absl::MutexLock lock(&mu_);
    req.set_previous_worker_id(worker_id_);
  }
  if (keep_run && run_ && !run_finished_) {
    req.set_running_job_id(run_->job_id());
    req.set_running_attempt(run_->attempt());
    req.set_running_rank(run_->rank());
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  ctx.set_wait_for_ready(true);  // see the heartbeat below
  v1::RegisterResponse resp;
  grpc::Status s = stub_->Register(&ctx, req, &resp);
  if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    // Refused for what this worker is (another protocol version): retrying
    // cannot help.
    return absl::FailedPreconditionError(absl::StrCat("register with ", options_.server, ": ", s.error_message()));
  }
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("register with ", options_.server, ": ", s.error_message()));
  }
  absl::MutexLock lock(&mu_);
  worker_id_ = resp.worker_id();
  heartbeat_interval_ms_ = std::max<int64_t>(20, resp.heartbeat_interval_ms());
  Log(absl::StrCat("registered as ", worker_id_, " with ", options_.server, " (device ", options_.device, ")"));
  // Under systemd (Type=notify) the worker is ready once the coordinator
  // knows it; a no-op without NOTIFY_SOCKET.
  sd_notify(0, absl::StrCat("READY=1\nSTATUS=registered as ", worker_id_, " with ", options_.server).c_str());
  return absl::OkStatus();
}

void WorkerAgent::StartRun(const v1::Assignment& a) {
  run_ = std::make_unique<v1::Assignment>(a);
  run_log_ = std::make_unique<ReleasedLog>(options_.log_level);
  run_cancel_ = false;
  run_finished_ = false;
  Log(absl::StrCat("starting ", a.job_id(), " attempt ", a.attempt(), " rank ", a.rank(), "/", a.world_size()));
  run_thread_ = std::thread([this, a] {
    RunContext ctx;
    ctx.stub = stub_;
    ctx.gloo_host = options_.gloo_host;
    ctx.collective_timeout = options_.collective_timeout;
    ctx.fetch_shards = options_.fetch_shards;
    ctx.worker_id = [this] {
      absl::MutexLock lock(&mu_);
      return worker_id_;
    };
    ctx.device = options_.device;
    ctx.work_dir = options_.work_dir;
    ctx.threads = options_.threads;
    ctx.cancel = &run_cancel_;
    ctx.log = run_log_.get();
    absl::Status s;
    try {
      s = RunAssignment(a, ctx);
    } catch (const std::exception& e) {
      s = absl::InternalError(absl::StrCat("unexpected exception: ", e.what()));
    }
    run_result_ = s;
    run_finished_ = true;
  });
}

void WorkerAgent::ShipLogs(const v1::Assignment& a, ReleasedLog* run_log) {
  if (run_log == nullptr) return;
  int64_t dropped = 0;
  std::vector<v1::JobLogLine> lines = run_log->Take(&dropped);
  std::size_t next = 0;
  while (next < lines.size() || dropped > 0) {
    v1::ShipLogsRequest req;
    req.set_job_id(a.job_id());
    req.set_attempt(a.attempt());
    req.set_rank(a.rank());
    req.set_dropped_on_worker(dropped);
    const std::size_t end = std::min(lines.size(), next + 500);
    for (std::size_t i = next; i < end; ++i) *req.add_lines() = lines[i];
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ShipLogsResponse resp;
    const grpc::Status s = stub_->ShipLogs(&ctx, req, &resp);
    if (!s.ok()) {
      if (s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
          s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        // Kept for the next heartbeat.
        run_log->PutBack(std::vector<v1::JobLogLine>(lines.begin() + static_cast<std::ptrdiff_t>(next), lines.end()),
                         dropped);
      } else {
        log::Warn(absl::StrCat("log lines of ", a.job_id(), " attempt ", a.attempt(), " refused: ", s.error_message()));
      }
      return;
    }
    next = end;
    dropped = 0;
  }
}

void WorkerAgent::ReportDone(const v1::Assignment& a, const absl::Status& result, ReleasedLog* run_log) {
  v1::DoneReport req;
  req.set_job_id(a.job_id());
  req.set_attempt(a.attempt());
  req.set_rank(a.rank());
  {
    absl::MutexLock lock(&mu_);
    req.set_worker_id(worker_id_);
  }
  req.set_success(result.ok());
  req.set_error(std::string(result.message()));
  req.set_error_code(static_cast<int32_t>(result.code()));
  if (absl::IsAborted(result) && run_log != nullptr && stop_requested_) run_log->Stage(log::RunStage::kStopping);
  req.set_error_stage(log::RunStageName(run_log != nullptr ? run_log->stage() : log::RunStage::kStarting));
  if (run_log != nullptr) {
    if (result.ok()) {
      run_log->Finished();
    } else {
      run_log->Failed(result.code());
    }
    // The last lines (how it ended) go before the end is reported.
    ShipLogs(a, run_log);
  }
  const std::string said = absl::StrCat("finished ", a.job_id(), " attempt ", a.attempt(), ": ",
                                        result.ok() ? "ok" : result.ToString());
  if (result.ok()) {
    log::Info(said);
  } else {
    log::Warn(said);
  }
  for (int tries = 0; tries < 50; ++tries) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::DoneAck ack;
    grpc::Status s = stub_->ReportDone(&ctx, req, &ack);
    if (s.ok() || s.error_code() != grpc::StatusCode::UNAVAILABLE) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

void WorkerAgent::FinishRunIfDone() {
  if (!run_ || !run_finished_) return;
  run_thread_.join();
  ReportDone(*run_, run_result_, run_log_.get());
  run_.reset();
  run_log_.reset();
}

absl::Status WorkerAgent::Run(const std::atomic<bool>& stop) {
  absl::Time last_said = absl::InfinitePast();
  while (!stop) {
    const absl::Status registered = Register(false);
    if (registered.ok()) break;
    // A coordinator that refuses this worker (its protocol, its identity)
    // will not change its mind: stop. Anything else (down, a TLS handshake
    // refused) may be temporary; say why every few seconds and keep trying.
    if (absl::IsFailedPrecondition(registered) || absl::IsUnauthenticated(registered) ||
        absl::IsPermissionDenied(registered)) {
      return registered;
    }
    if (absl::Now() - last_said > absl::Seconds(5)) {
      Log(registered.ToString());
      last_said = absl::Now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  while (!stop) {
    FinishRunIfDone();
    v1::HeartbeatRequest req;
    {
      absl::MutexLock lock(&mu_);
      req.set_worker_id(worker_id_);
    }
    if (run_) {
      req.set_job_id(run_->job_id());
      req.set_attempt(run_->attempt());
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    // Wait for the channel instead of failing fast while it reconnects: a
    // synchronous call that fails at once polls nothing, and a new
    // connection to a restarted coordinator would then finish its handshake
    // only when gRPC's backup poller comes by (every 5 s): long enough to
    // miss the reattach lease. The crash-consistency test measured 10-90 ms
    // to reconnect this way, and several seconds the other.
    ctx.set_wait_for_ready(true);
    v1::HeartbeatResponse resp;
    grpc::Status s = stub_->Heartbeat(&ctx, req, &resp);
    if (run_) ShipLogs(*run_, run_log_.get());
    if (s.ok()) {
      if (resp.reregister()) {
        if (absl::Status again = Register(true); absl::IsFailedPrecondition(again)) return again;
      }
      for (const std::string& id : resp.cancel_job_ids()) {
        if (run_ && run_->job_id() == id) {
          Log(absl::StrCat("cancel order for ", id));
          run_cancel_ = true;
        }
      }
      for (const v1::Assignment& a : resp.assignments()) {
        if (run_) {
          // One run at a time; the coordinator never does this on purpose.
          ReportDone(a, absl::ResourceExhaustedError("worker is busy with another run"));
          continue;
        }
        StartRun(a);
      }
    }
    // Sleep in small slices so SIGTERM and a finished run are handled fast.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(heartbeat_interval_ms_);
    while (!stop && std::chrono::steady_clock::now() < until && !(run_ && run_finished_)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  if (run_) {
    run_cancel_ = true;
    stop_requested_ = true;
    run_thread_.join();
    ReportDone(*run_,
               run_result_.ok() && run_finished_ ? run_result_ : absl::AbortedError("worker stopped (SIGTERM)"),
               run_log_.get());
    run_.reset();
    run_log_.reset();
  }
  return absl::OkStatus();
}

}  // namespace dpfleet::worker
