#include "server/http/http_server.h"

#include <httplib.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "common/version.h"
#include "server/http/page_assets.h"
#include "server/rpc/access.h"

namespace dpfleet::server {
namespace {

// A job as the API states it: a non-private job's epsilon (and its
// epochs') is null with "private": false, never a 0 that reads as perfect
// privacy. The same fields as `dpctl status -o json` gives them.
nlohmann::json PublicJobJson(const JobRecord& r) {
  nlohmann::json j = ToJson(r);
  j.erase("spec_yaml");
  j["private"] = r.dp;
  j["pending_reason"] = r.pending_reason;
  j["kind"] = JobKindName(r);
  if (!r.dp) {
    j["epsilon"] = nullptr;
    for (auto& e : j["history"]) e["epsilon"] = nullptr;
  }
  return j;
}

nlohmann::json WorkerJson(const WorkerRecord& w) {
  return {{"worker_id", w.worker_id}, {"hostname", w.hostname}, {"device", w.device}, {"identity", w.identity},
          {"state", WorkerStateName(w.state)}, {"job_id", w.job_id}, {"rank", w.rank},
          {"last_heartbeat_ms", w.last_heartbeat_ms}};
}

// The same fields as `dpctl budget -o json`. A file that a non-private
// job has read has no finite epsilon: null with "private": false.
nlohmann::json BudgetJson(const BudgetView& b) {
  auto finite = [](double v) { return std::isinf(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
  nlohmann::json j = {{"file", b.file},
                      {"names", b.names},
                      {"private", !std::isinf(b.spent)},
                      {"delta", b.delta},
                      {"epsilon_spent", finite(b.spent)},
                      {"epsilon_committed", finite(b.committed)},
                      {"jobs", b.jobs},
                      {"epsilon_budget", nullptr},
                      {"epsilon_remaining", nullptr}};
  if (b.has_budget) {
    j["epsilon_budget"] = b.epsilon_budget;
    j["epsilon_remaining"] = b.remaining;
  }
  return j;
}

}  // namespace

std::string RenderPrometheus(const std::vector<JobRecord>& jobs, const std::vector<WorkerRecord>& workers,
                             const std::vector<BudgetView>& budgets, const ServerMetrics* metrics) {
  std::map<std::string, int> by_state;
  for (JobState s : {JobState::kQueued, JobState::kRunning, JobState::kSucceeded, JobState::kFailed,
                     JobState::kCancelled}) {
    by_state[JobStateName(s)] = 0;
  }
  for (const JobRecord& r : jobs) by_state[JobStateName(r.state)]++;
  const BuildInfo& build = GetBuildInfo();
  std::string out = absl::StrCat(
      "# HELP dpfleet_build_info The coordinator's build (value 1).\n# TYPE dpfleet_build_info gauge\n",
      "dpfleet_build_info{version=\"", EscapeLabelValue(build.version), "\",git=\"", EscapeLabelValue(build.git),
      "\",build_type=\"", EscapeLabelValue(build.build_type), "\",protocol=\"", kProtocolVersion, "\"} 1\n");
  out += "# HELP dpfleet_jobs Jobs known to the coordinator, by state.\n# TYPE dpfleet_jobs gauge\n";
  for (const auto& [s, n] : by_state) absl::StrAppend(&out, "dpfleet_jobs{state=\"", s, "\"} ", n, "\n");
  std::map<std::string, int> wstate = {{"IDLE", 0}, {"BUSY", 0}, {"LOST", 0}};
  for (const WorkerRecord& w : workers) wstate[WorkerStateName(w.state)]++;
  out += "# HELP dpfleet_workers Registered workers, by state.\n# TYPE dpfleet_workers gauge\n";
  for (const auto& [s, n] : wstate) absl::StrAppend(&out, "dpfleet_workers{state=\"", s, "\"} ", n, "\n");
  // Per-job series only while a job runs: ended jobs would pile up series
  // forever (their figures stay in the job record and /v1/jobs).
  std::vector<const JobRecord*> running;
  for (const JobRecord& r : jobs) {
    if (r.state == JobState::kRunning) running.push_back(&r);
  }
  // A non-private job has no finite epsilon: it gets no sample at all
  // rather than a 0.
  out += "# HELP dpfleet_job_epsilon Privacy budget spent by a running private job (ledger); non-private jobs have "
         "none.\n"
         "# TYPE dpfleet_job_epsilon gauge\n";
  for (const JobRecord* job : running) {
    const std::optional<double> eps = ReportedEpsilon(*job);
    if (!eps) continue;
    absl::StrAppend(&out, "dpfleet_job_epsilon{job_id=\"", EscapeLabelValue(job->job_id), "\",name=\"",
                    EscapeLabelValue(job->name), "\"} ", PromValue(*eps), "\n");
  }
  out += "# HELP dpfleet_job_epochs_done Epochs finished by a running job.\n"
         "# TYPE dpfleet_job_epochs_done gauge\n";
  for (const JobRecord* r : running) {
    absl::StrAppend(&out, "dpfleet_job_epochs_done{job_id=\"", EscapeLabelValue(r->job_id), "\"} ",
                    r->epochs_done, "\n");
  }
  // Budgets are per input file; `names` are the datasets (and, for the
  // custodian, paths) that map to it.
  auto labels = [](const BudgetView& b) {
    return absl::StrCat("file=\"", EscapeLabelValue(b.file), "\",names=\"",
                        EscapeLabelValue(absl::StrJoin(b.names, ",")), "\"");
  };
  out += "# HELP dpfleet_file_epsilon_spent Privacy budget spent on an input file, composed over its ledger.\n"
         "# TYPE dpfleet_file_epsilon_spent gauge\n";
  for (const BudgetView& b : budgets) {
    absl::StrAppend(&out, "dpfleet_file_epsilon_spent{", labels(b), "} ", PromValue(b.spent), "\n");
  }
  out += "# HELP dpfleet_file_epsilon_committed Spent plus the remaining plans of queued and running jobs.\n"
         "# TYPE dpfleet_file_epsilon_committed gauge\n";
  for (const BudgetView& b : budgets) {
    absl::StrAppend(&out, "dpfleet_file_epsilon_committed{", labels(b), "} ", PromValue(b.committed), "\n");
  }
  out += "# HELP dpfleet_file_epsilon_budget An input file's total privacy budget (files that have one).\n"
         "# TYPE dpfleet_file_epsilon_budget gauge\n";
  for (const BudgetView& b : budgets) {
    if (!b.has_budget) continue;
    absl::StrAppend(&out, "dpfleet_file_epsilon_budget{", labels(b), "} ", PromValue(b.epsilon_budget), "\n");
  }
  if (metrics != nullptr) out += metrics->Render();
  return out;
}

std::string RenderBackgroundFailures(const BackgroundErrors::Snapshot& jobs, const BackgroundErrors::Snapshot& datasets,
                                     const BackgroundErrors::Snapshot& audit) {
  return absl::StrCat(
      "# HELP dpfleet_background_failures_total Background work the state store refused (a lost lease, a job "
      "start, a finished preparation, an audit entry); the coordinator keeps the stored state and retries.\n"
      "# TYPE dpfleet_background_failures_total counter\n",
      "dpfleet_background_failures_total{component=\"jobs\"} ", jobs.count, "\n",
      "dpfleet_background_failures_total{component=\"datasets\"} ", datasets.count, "\n",
      "dpfleet_background_failures_total{component=\"audit\"} ", audit.count, "\n");
}

namespace {

std::vector<std::string> AuthorizationHeaders(const httplib::Request& req) {
  std::vector<std::string> values;
  const size_t n = req.get_header_value_count("Authorization");
  for (size_t i = 0; i < n; ++i) values.push_back(req.get_header_value("Authorization", i));
  return values;
}

// Every answer: never cached (a status or a budget read through a shared
// cache would reach the next user of it), never sniffed into another type,
// never framed, never sent on as a referrer. JSON needs no policy beyond
// "load nothing".
void SetCommonHeaders(httplib::Response& res) {
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("X-Frame-Options", "DENY");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("Cross-Origin-Resource-Policy", "same-origin");
  res.set_header("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
}

// The live page's policy: its own script, style and icon, fetches to this
// origin only; no inline script or style, no eval, no forms sent anywhere,
// no plugins, no framing.
constexpr char kPagePolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

void ServeAsset(const PageAsset& asset, httplib::Response& res) {
  // The files hold no data and change only with the binary; revalidated
  // so that an upgraded coordinator is not shown with an old page.
  res.headers.erase("Cache-Control");
  res.headers.erase("Content-Security-Policy");
  res.set_header("Cache-Control", "no-cache");
  res.set_header("Content-Security-Policy", kPagePolicy);
  res.set_header("Cross-Origin-Opener-Policy", "same-origin");
  res.set_content(std::string(asset.body()), asset.content_type);
}

// GET /v1/jobs?state=&owner=&dataset=&limit=: every refusal names the
// parameter, the value and why (a 400).
absl::StatusOr<JobFilter> JobFilterFromQuery(const httplib::Params& params) {
  JobFilterQuery query;
  std::set<std::string> seen;
  for (const auto& [key, value] : params) {
    if (!seen.insert(key).second) {
      return absl::InvalidArgumentError(absl::StrCat("query parameter '", key, "' given more than once"));
    }
    if (key == "state") {
      query.state = value;
    } else if (key == "owner") {
      query.owner = value;
    } else if (key == "dataset") {
      query.dataset = value;
    } else if (key == "limit") {
      // In a query string "no limit" is leaving it out, so 0 is refused.
      if (value.empty()) continue;
      if (!absl::SimpleAtoi(value, &query.limit) || query.limit < 1) {
        return absl::InvalidArgumentError(absl::StrCat("limit: '", value, "' is not a positive integer"));
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("query parameter '", key, "' is not a filter of /v1/jobs (state, owner, dataset, limit)"));
    }
  }
  return ParseJobFilter(query);
}

}  // namespace

int HttpStatusOf(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    case absl::StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpOptions& options, JobManager* jobs,
                                                              DatasetRegistry* datasets, Gate* gate,
                                                              ServerMetrics* metrics, const AuditTrail* audit) {
  if (FindPageAsset("index.html") == nullptr) {
    return absl::InternalError("the live page (server/http/page/index.html) is not compiled into this binary");
  }
  std::unique_ptr<HttpServer> s(new HttpServer());
  if (!options.tls_cert.empty()) {
    // Server authentication only: HTTP callers are users with tokens;
    // workers never speak HTTP.
    auto tls = std::make_unique<httplib::SSLServer>(options.tls_cert.c_str(), options.tls_key.c_str());
    if (!tls->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat("--tls-cert ", options.tls_cert, " / --tls-key ",
                                                     options.tls_key, ": not a usable certificate and key"));
    }
    s->server_ = std::move(tls);
  } else {
    s->server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& srv = *s->server_;
  auto json_reply = [](httplib::Response& res, const nlohmann::json& j, int status = 200) {
    res.status = status;
    res.set_content(j.dump(2) + "\n", "application/json");
  };
  auto error_reply = [json_reply](httplib::Response& res, const absl::Status& st) {
    json_reply(res, {{"error", std::string(st.message())}}, HttpStatusOf(st));
  };
  // Replies are small and polled on keep-alive connections: without
  // TCP_NODELAY each one waits out the peer's delayed ACK (~40 ms).
  srv.set_tcp_nodelay(true);
  // A poller keeps its connection: cpp-httplib's default closes it after 5
  // requests, which over TLS costs a handshake every 5 polls.
  srv.set_keep_alive_max_count(10000);
  srv.set_payload_max_length(static_cast<size_t>(gate->limits().max_http_request_bytes));
  if (metrics != nullptr) {
    // After every request, refused ones included; the route label is the
    // role table's route ({id} for a job id), "other" for any other path,
    // so a caller cannot mint label values.
    srv.set_logger([metrics](const httplib::Request& req, const httplib::Response& res) {
      const HttpRule* rule = FindHttpRule(req.method, req.path);
      metrics->http_requests.Inc({rule == nullptr ? "other" : rule->route, absl::StrCat(res.status)});
    });
  }
  // The middleware: no route runs for a request the Gate refuses.
  srv.set_pre_routing_handler([gate, error_reply](const httplib::Request& req, httplib::Response& res) {
    SetCommonHeaders(res);
    absl::StatusOr<Identity> caller = gate->AdmitHttp(req.method, req.path, AuthorizationHeaders(req));
    if (caller.ok()) return httplib::Server::HandlerResponse::Unhandled;
    if (caller.status().code() == absl::StatusCode::kUnauthenticated) {
      res.set_header("WWW-Authenticate", "Bearer realm=\"dpfleet\"");
    }
    error_reply(res, caller.status());
    return httplib::Server::HandlerResponse::Handled;
  });
  auto caller_of = [gate](const httplib::Request& req) { return gate->HttpCaller(AuthorizationHeaders(req)); };
  // The live page (server/http/page/): static, public, no data in it.
  srv.Get("/", [](const httplib::Request&, httplib::Response& res) { ServeAsset(*FindPageAsset("index.html"), res); });
  srv.Get(R"(/page/([A-Za-z0-9._-]+))", [error_reply](const httplib::Request& req, httplib::Response& res) {
    const PageAsset* asset = FindPageAsset(req.matches[1].str());
    if (asset == nullptr) {
      error_reply(res, absl::NotFoundError(absl::StrCat("GET ", req.path, ": no such file of the live page")));
      return;
    }
    ServeAsset(*asset, res);
  });
  // Liveness: the process serves HTTP. Readiness: the store answers too.
  srv.Get("/healthz", [json_reply](const httplib::Request&, httplib::Response& res) {
    json_reply(res, {{"status", "ok"}});
  });
  srv.Get("/readyz", [jobs, json_reply](const httplib::Request&, httplib::Response& res) {
    absl::StatusOr<int> workers = jobs->Ready();
    if (!workers.ok()) {
      json_reply(res, {{"status", "unavailable"}, {"reason", std::string(workers.status().message())}}, 503);
      return;
    }
    json_reply(res, {{"status", "ready"}, {"workers", *workers}});
  });
  srv.Get("/v1/jobs", [jobs, json_reply, error_reply, caller_of](const httplib::Request& req,
                                                                 httplib::Response& res) {
    const Identity caller = caller_of(req);
    absl::StatusOr<JobFilter> filter = JobFilterFromQuery(req.params);
    if (!filter.ok()) return error_reply(res, filter.status());
    nlohmann::json list = nlohmann::json::array();
    for (const JobRecord& r : VisibleJobs(caller, jobs->List(), *filter)) list.push_back(PublicJobJson(r));
    json_reply(res, {{"jobs", list}});
  });
  srv.Get(R"(/v1/jobs/([A-Za-z0-9._-]+))", [jobs, json_reply, error_reply, caller_of](const httplib::Request& req,
                                                                                    httplib::Response& res) {
    absl::StatusOr<JobRecord> r = jobs->Get(req.matches[1]);
    if (r.ok()) r = VisibleJob(caller_of(req), *r);
    if (!r.ok()) {
      error_reply(res, r.status());
      return;
    }
    json_reply(res, PublicJobJson(*r));
  });
  // The role table lets custodians only here.
  srv.Get(R"(/v1/audits/([A-Za-z0-9._-]+))",
          [jobs, json_reply, error_reply](const httplib::Request& req, httplib::Response& res) {
            absl::StatusOr<JobManager::AuditView> view = jobs->GetAudit(req.matches[1]);
            if (!view.ok()) return error_reply(res, view.status());
            nlohmann::json report = nullptr;
            if (view->report) {
              report = nlohmann::json::parse(*view->report, nullptr, /*allow_exceptions=*/false);
              if (report.is_discarded())
                return error_reply(res, absl::DataLossError("the stored audit report is not JSON"));
            }
            json_reply(res, {{"run", PublicJobJson(view->run)}, {"report", report}});
          });
  srv.Get("/v1/workers", [jobs, json_reply](const httplib::Request&, httplib::Response& res) {
    nlohmann::json list = nlohmann::json::array();
    for (const WorkerRecord& w : jobs->ListWorkers()) list.push_back(WorkerJson(w));
    json_reply(res, {{"workers", list}});
  });
  srv.Get("/v1/datasets", [datasets, json_reply, caller_of](const httplib::Request& req, httplib::Response& res) {
    const Identity caller = caller_of(req);
    nlohmann::json list = nlohmann::json::array();
    for (const DatasetRecord& full : datasets->List()) {
      const DatasetRecord d = DatasetView(caller, full);
      list.push_back({{"name", d.name},
                      {"paths", d.paths},
                      {"task", d.task},
                      {"state", d.state},
                      {"reason", d.reason},
                      {"rows_prepared", d.rows_prepared},
                      {"rows_train", d.rows_train},
                      {"rows_eval", d.rows_eval},
                      {"manifest", d.manifest_json.empty()
                                       ? nlohmann::json(nullptr)
                                       : nlohmann::json::parse(d.manifest_json, nullptr, false)}});
    }
    json_reply(res, {{"datasets", list}});
  });
  srv.Get("/v1/budgets", [jobs, datasets, json_reply, error_reply, caller_of](const httplib::Request& req,
                                                                             httplib::Response& res) {
    const std::string dataset = req.has_param("dataset") ? req.get_param_value("dataset") : "";
    const Identity caller = caller_of(req);
    const std::vector<DatasetRecord> registered = datasets->List();
    absl::StatusOr<std::vector<BudgetView>> budgets = [&]() -> absl::StatusOr<std::vector<BudgetView>> {
      RETURN_IF_ERROR(CheckBudgetArgument(caller, dataset, registered));
      return jobs->GetBudgets(dataset);
    }();
    if (!budgets.ok()) {
      error_reply(res, budgets.status());
      return;
    }
    nlohmann::json list = nlohmann::json::array();
    for (const BudgetView& b : BudgetViews(caller, *std::move(budgets), registered)) list.push_back(BudgetJson(b));
    json_reply(res, {{"files", list}});
  });
  srv.Get("/metrics", [jobs, datasets, audit, caller_of, metrics](const httplib::Request& req,
                                                                   httplib::Response& res) {
    const Identity caller = caller_of(req);
    absl::StatusOr<std::vector<BudgetView>> budgets = jobs->GetBudgets("");
    std::vector<JobRecord> visible;
    for (const JobRecord& r : jobs->List()) {
      if (MaySeeJob(caller, r)) visible.push_back(JobView(caller, r));
    }
    res.set_content(RenderPrometheus(visible, jobs->ListWorkers(),
                                     budgets.ok() ? BudgetViews(caller, *std::move(budgets), datasets->List())
                                                  : std::vector<BudgetView>{},
                                      metrics) +
                        RenderBackgroundFailures(jobs->background_errors(), datasets->background_errors(),
                                                 audit != nullptr ? audit->background_errors()
                                                                  : BackgroundErrors::Snapshot{}),
                    "text/plain; version=0.0.4");
  });
  const std::string& host = options.host;
  if (options.port == 0) {
    s->port_ = srv.bind_to_any_port(host);
    if (s->port_ < 0) return absl::UnavailableError(absl::StrCat("--http ", host, ":0: cannot bind"));
  } else {
    if (!srv.bind_to_port(host, options.port)) {
      return absl::UnavailableError(absl::StrCat("--http ", host, ":", options.port, ": cannot bind (in use?)"));
    }
    s->port_ = options.port;
  }
  s->thread_ = std::thread([server = s->server_.get()] { server->listen_after_bind(); });
  return s;
}

void HttpServer::Shutdown() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

HttpServer::~HttpServer() { Shutdown(); }

}  // namespace dpfleet::server
