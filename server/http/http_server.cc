#include "server/http/http_server.h"

#include <httplib.h>

#include <cmath>
#include <cstdlib>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/version.h"

namespace dpfleet::server {
namespace {

nlohmann::json PublicJobJson(const JobRecord& r) {
  nlohmann::json j = ToJson(r);
  j.erase("spec_yaml");
  return j;
}

nlohmann::json WorkerJson(const WorkerRecord& w) {
  return {{"worker_id", w.worker_id}, {"hostname", w.hostname}, {"device", w.device},
          {"state", WorkerStateName(w.state)}, {"job_id", w.job_id}, {"rank", w.rank},
          {"last_heartbeat_ms", w.last_heartbeat_ms}};
}

// The same fields as `dpctl budget -o json`.
nlohmann::json BudgetJson(const BudgetView& b) {
  nlohmann::json j = {{"dataset", b.dataset},
                      {"delta", b.delta},
                      {"epsilon_spent", b.spent},
                      {"epsilon_committed", b.committed},
                      {"jobs", b.jobs},
                      {"epsilon_budget", nullptr},
                      {"epsilon_remaining", nullptr}};
  if (b.has_budget) {
    j["epsilon_budget"] = b.epsilon_budget;
    j["epsilon_remaining"] = b.remaining;
  }
  return j;
}

std::string EscapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

// A sample value in the exposition format (which spells infinity "+Inf").
std::string PromValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // The shortest of %.15g / %.17g that reads back as the same double.
  const std::string short_form = absl::StrFormat("%.15g", v);
  return std::strtod(short_form.c_str(), nullptr) == v ? short_form : absl::StrFormat("%.17g", v);
}

std::string RenderPrometheus(const std::vector<JobRecord>& jobs, const std::vector<WorkerRecord>& workers,
                             const std::vector<BudgetView>& budgets) {
  std::map<std::string, int> by_state;
  for (JobState s : {JobState::kQueued, JobState::kRunning, JobState::kSucceeded, JobState::kFailed,
                     JobState::kCancelled}) {
    by_state[JobStateName(s)] = 0;
  }
  for (const JobRecord& r : jobs) by_state[JobStateName(r.state)]++;
  const BuildInfo& build = GetBuildInfo();
  std::string out = absl::StrCat(
      "# HELP dpfleet_build_info The coordinator's build (value 1).\n# TYPE dpfleet_build_info gauge\n",
      "dpfleet_build_info{version=\"", EscapeLabel(build.version), "\",git=\"", EscapeLabel(build.git),
      "\",build_type=\"", EscapeLabel(build.build_type), "\",protocol=\"", kProtocolVersion, "\"} 1\n");
  out += "# HELP dpfleet_jobs Jobs known to the coordinator, by state.\n# TYPE dpfleet_jobs gauge\n";
  for (const auto& [s, n] : by_state) absl::StrAppend(&out, "dpfleet_jobs{state=\"", s, "\"} ", n, "\n");
  std::map<std::string, int> wstate = {{"IDLE", 0}, {"BUSY", 0}, {"LOST", 0}};
  for (const WorkerRecord& w : workers) wstate[WorkerStateName(w.state)]++;
  out += "# HELP dpfleet_workers Registered workers, by state.\n# TYPE dpfleet_workers gauge\n";
  for (const auto& [s, n] : wstate) absl::StrAppend(&out, "dpfleet_workers{state=\"", s, "\"} ", n, "\n");
  out += "# HELP dpfleet_job_epsilon Privacy budget spent by a job (ledger).\n# TYPE dpfleet_job_epsilon gauge\n";
  for (const JobRecord& r : jobs) {
    absl::StrAppend(&out, "dpfleet_job_epsilon{job_id=\"", EscapeLabel(r.job_id), "\",name=\"",
                    EscapeLabel(r.name), "\"} ", PromValue(r.epsilon), "\n");
  }
  out += "# HELP dpfleet_job_epochs_done Epochs finished by a job.\n# TYPE dpfleet_job_epochs_done gauge\n";
  for (const JobRecord& r : jobs) {
    absl::StrAppend(&out, "dpfleet_job_epochs_done{job_id=\"", EscapeLabel(r.job_id), "\"} ",
                    r.epochs_done, "\n");
  }
  out += "# HELP dpfleet_dataset_epsilon_spent Privacy budget spent on a dataset, composed over its ledger.\n"
         "# TYPE dpfleet_dataset_epsilon_spent gauge\n";
  for (const BudgetView& b : budgets) {
    absl::StrAppend(&out, "dpfleet_dataset_epsilon_spent{dataset=\"", EscapeLabel(b.dataset), "\"} ",
                    PromValue(b.spent), "\n");
  }
  out += "# HELP dpfleet_dataset_epsilon_committed Spent plus the remaining plans of queued and running jobs.\n"
         "# TYPE dpfleet_dataset_epsilon_committed gauge\n";
  for (const BudgetView& b : budgets) {
    absl::StrAppend(&out, "dpfleet_dataset_epsilon_committed{dataset=\"", EscapeLabel(b.dataset), "\"} ",
                    PromValue(b.committed), "\n");
  }
  out += "# HELP dpfleet_dataset_epsilon_budget A dataset's total privacy budget (datasets that have one).\n"
         "# TYPE dpfleet_dataset_epsilon_budget gauge\n";
  for (const BudgetView& b : budgets) {
    if (!b.has_budget) continue;
    absl::StrAppend(&out, "dpfleet_dataset_epsilon_budget{dataset=\"", EscapeLabel(b.dataset), "\"} ",
                    PromValue(b.epsilon_budget), "\n");
  }
  return out;
}

std::string RenderBackgroundFailures(const BackgroundErrors::Snapshot& jobs,
                                     const BackgroundErrors::Snapshot& datasets) {
  return absl::StrCat(
      "# HELP dpfleet_background_failures_total Background work the state store refused (a lost lease, a job "
      "start, a finished preparation); the coordinator keeps the stored state and retries.\n"
      "# TYPE dpfleet_background_failures_total counter\n",
      "dpfleet_background_failures_total{component=\"jobs\"} ", jobs.count, "\n",
      "dpfleet_background_failures_total{component=\"datasets\"} ", datasets.count, "\n");
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& host, int port,
                                                              JobManager* jobs, DatasetRegistry* datasets) {
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->server_ = std::make_unique<httplib::Server>();
  httplib::Server& srv = *s->server_;
  auto json_reply = [](httplib::Response& res, const nlohmann::json& j, int status = 200) {
    res.status = status;
    res.set_content(j.dump(2) + "\n", "application/json");
  };
  srv.Get("/healthz", [json_reply](const httplib::Request&, httplib::Response& res) {
    json_reply(res, {{"status", "ok"}});
  });
  srv.Get("/v1/jobs", [jobs, json_reply](const httplib::Request&, httplib::Response& res) {
    nlohmann::json list = nlohmann::json::array();
    for (const JobRecord& r : jobs->List()) list.push_back(PublicJobJson(r));
    json_reply(res, {{"jobs", list}});
  });
  srv.Get(R"(/v1/jobs/([A-Za-z0-9._-]+))", [jobs, json_reply](const httplib::Request& req,
                                                               httplib::Response& res) {
    absl::StatusOr<JobRecord> r = jobs->Get(req.matches[1]);
    if (!r.ok()) {
      json_reply(res, {{"error", std::string(r.status().message())}}, 404);
      return;
    }
    json_reply(res, PublicJobJson(*r));
  });
  srv.Get("/v1/workers", [jobs, json_reply](const httplib::Request&, httplib::Response& res) {
    nlohmann::json list = nlohmann::json::array();
    for (const WorkerRecord& w : jobs->ListWorkers()) list.push_back(WorkerJson(w));
    json_reply(res, {{"workers", list}});
  });
  srv.Get("/v1/datasets", [datasets, json_reply](const httplib::Request&, httplib::Response& res) {
    nlohmann::json list = nlohmann::json::array();
    for (const DatasetRecord& d : datasets->List()) {
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
  srv.Get("/v1/budgets", [jobs, json_reply](const httplib::Request& req, httplib::Response& res) {
    absl::StatusOr<std::vector<BudgetView>> budgets =
        jobs->GetBudgets(req.has_param("dataset") ? req.get_param_value("dataset") : "");
    if (!budgets.ok()) {
      json_reply(res, {{"error", std::string(budgets.status().message())}},
                 budgets.status().code() == absl::StatusCode::kNotFound ? 404 : 500);
      return;
    }
    nlohmann::json list = nlohmann::json::array();
    for (const BudgetView& b : *budgets) list.push_back(BudgetJson(b));
    json_reply(res, {{"datasets", list}});
  });
  srv.Get("/metrics", [jobs, datasets](const httplib::Request&, httplib::Response& res) {
    absl::StatusOr<std::vector<BudgetView>> budgets = jobs->GetBudgets("");
    res.set_content(RenderPrometheus(jobs->List(), jobs->ListWorkers(),
                                     budgets.ok() ? *budgets : std::vector<BudgetView>{}) +
                        RenderBackgroundFailures(jobs->background_errors(), datasets->background_errors()),
                    "text/plain; version=0.0.4");
  });
  if (port == 0) {
    s->port_ = srv.bind_to_any_port(host);
    if (s->port_ < 0) return absl::UnavailableError(absl::StrCat("--http ", host, ":0: cannot bind"));
  } else {
    if (!srv.bind_to_port(host, port)) {
      return absl::UnavailableError(absl::StrCat("--http ", host, ":", port, ": cannot bind (in use?)"));
    }
    s->port_ = port;
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
