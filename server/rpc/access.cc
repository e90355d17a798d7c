#include "server/rpc/access.h"

#include <algorithm>
#include <limits>

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/spec/job_spec.h"

namespace dpfleet::server {
namespace {

constexpr char kCoordinator[] = "/dpfleet.v1.Coordinator/";
constexpr char kAdmin[] = "/dpfleet.v1.Admin/";
constexpr char kWorkerService[] = "/dpfleet.v1.WorkerService/";

std::vector<RpcRule> BuildRpcTable() {
  std::vector<RpcRule> table;
  auto add = [&](std::string method, RoleMask roles, bool audited) {
    table.push_back({std::move(method), roles, audited});
  };
  auto c = [](const char* m) { return absl::StrCat(kCoordinator, m); };
  auto a = [](const char* m) { return absl::StrCat(kAdmin, m); };
  auto w = [](const char* m) { return absl::StrCat(kWorkerService, m); };
  // The coordinator's API.
  add(c("SubmitJob"), kCustodian | kAnalyst, true);
  add(c("GetJob"), kCustodian | kAnalyst | kViewer, false);
  add(c("ListJobs"), kCustodian | kAnalyst | kViewer, false);
  add(c("CancelJob"), kCustodian | kAnalyst, true);
  add(c("WatchJob"), kCustodian | kAnalyst, false);
  add(c("GetModel"), kCustodian | kAnalyst, false);
  add(c("ListWorkers"), kCustodian, false);
  add(c("GetVersion"), kAnyUser, false);
  add(c("SetBudget"), kCustodian, true);
  add(c("GetBudgets"), kCustodian | kAnalyst | kViewer, false);
  add(c("AddDataset"), kCustodian, true);
  add(c("GetDataset"), kCustodian | kAnalyst, false);
  add(c("ListDatasets"), kCustodian | kAnalyst, false);
  add(c("RemoveDataset"), kCustodian, true);
  // A run's log: the job's owner and custodians (CheckMayActOnJob).
  add(c("GetJobLogs"), kCustodian | kAnalyst, false);
  // Privacy audits use membership labels (who trained a model): their runs
  // and reports are the custodian's (docs/PRIVACY.md).
  add(c("AuditJob"), kCustodian, true);
  add(c("GetAudit"), kCustodian, false);
  // Administration.
  add(a("CreateToken"), kCustodian, true);
  add(a("ListTokens"), kCustodian, false);
  add(a("RevokeToken"), kCustodian, true);
  add(a("ListAudit"), kCustodian, false);
  add(a("GetLedger"), kCustodian, false);
  // Workers, each for its own runs only (CheckRun, CheckWorkerId).
  add(w("Register"), kWorker, true);
  for (const char* m : {"Heartbeat", "ChargeBudget", "ReportProgress", "ReportDone", "RendezvousSet",
                        "RendezvousGet", "RendezvousAdd", "FetchShard", "FetchCheckpoint", "UploadModel",
                        "ShipLogs", "FetchModel", "ReportAudit"}) {
    add(w(m), kWorker, false);
  }
  // Health checks answer anyone (load balancers hold no token); reflection
  // describes the public API to users.
  add("/grpc.health.v1.Health/Check", kPublic, false);
  add("/grpc.health.v1.Health/Watch", kPublic, false);
  add("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", kAnyUser, false);
  return table;
}

}  // namespace

std::string Identity::Describe() const {
  switch (kind) {
    case Kind::kUser: return absl::StrCat(RoleName(role), " '", name, "'");
    case Kind::kWorker: return absl::StrCat("worker '", name, "'");
    case Kind::kAnonymous: break;
  }
  return "an unauthenticated caller";
}

const char* Identity::KindName() const {
  switch (kind) {
    case Kind::kUser: return "user";
    case Kind::kWorker: return "worker";
    case Kind::kAnonymous: break;
  }
  return "anonymous";
}

const std::vector<RpcRule>& RpcRoleTable() {
  static const std::vector<RpcRule>* table = new std::vector<RpcRule>(BuildRpcTable());
  return *table;
}

const std::vector<HttpRule>& HttpRoleTable() {
  static const std::vector<HttpRule>* table = new std::vector<HttpRule>{
      {"GET", "/healthz", kPublic},
      {"GET", "/readyz", kPublic},
      // The live page's static files: no data in them (each figure it
      // shows is fetched from the rows below with the user's token).
      {"GET", "/", kPublic},
      {"GET", "/page/{id}", kPublic},
      {"GET", "/v1/jobs", kCustodian | kAnalyst | kViewer},
      {"GET", "/v1/jobs/{id}", kCustodian | kAnalyst | kViewer},
      {"GET", "/v1/workers", kCustodian},
      {"GET", "/v1/datasets", kCustodian | kAnalyst},
      {"GET", "/v1/budgets", kCustodian | kAnalyst | kViewer},
      // An audit run and its report (membership labels): custodians only.
      {"GET", "/v1/audits/{id}", kCustodian},
      // Every job's name and ε: dashboards, not analysts.
      {"GET", "/metrics", kCustodian | kViewer},
  };
  return *table;
}

const RpcRule* FindRpcRule(absl::string_view method) {
  for (const RpcRule& r : RpcRoleTable()) {
    if (method == r.method) return &r;
  }
  return nullptr;
}

bool RouteMatches(absl::string_view route, absl::string_view path) {
  constexpr absl::string_view kId = "{id}";
  while (true) {
    const size_t hole = route.find(kId);
    if (hole == absl::string_view::npos) return route == path;
    if (!absl::StartsWith(path, route.substr(0, hole))) return false;
    path.remove_prefix(hole);
    route.remove_prefix(hole + kId.size());
    size_t n = 0;
    while (n < path.size() && (absl::ascii_isalnum(path[n]) || path[n] == '.' || path[n] == '_' || path[n] == '-')) ++n;
    if (n == 0) return false;
    path.remove_prefix(n);
  }
}

const HttpRule* FindHttpRule(absl::string_view method, absl::string_view path) {
  for (const HttpRule& r : HttpRoleTable()) {
    if (method == r.method && RouteMatches(r.route, path)) return &r;
  }
  return nullptr;
}

std::string RoleList(RoleMask roles) {
  std::vector<std::string> names;
  for (Role r : {Role::kCustodian, Role::kAnalyst, Role::kViewer, Role::kWorker}) {
    if (roles & Bit(r)) names.push_back(RoleName(r));
  }
  if (roles & kPublic) names.push_back("anyone");
  if (names.size() <= 1) return names.empty() ? "nobody" : names[0];
  return absl::StrCat(absl::StrJoin(names.begin(), names.end() - 1, ", "), " or ", names.back());
}

namespace {

absl::Status Authorize(const Identity& caller, const std::string& what, RoleMask roles) {
  if (roles & kPublic) return absl::OkStatus();
  if (caller.kind == Identity::Kind::kAnonymous) {
    return absl::UnauthenticatedError(
        absl::StrCat(what, roles == kWorker ? " needs a worker certificate" : " needs a token"));
  }
  if (roles & Bit(caller.role)) return absl::OkStatus();
  std::string hint;
  if (caller.is_user() && roles == kWorker) hint = " (a user token is never a worker: workers present a certificate)";
  if (caller.is_worker()) hint = " (a worker certificate is never a user)";
  return absl::PermissionDeniedError(
      absl::StrCat(caller.Describe(), " is not allowed to call ", what, ": it needs ", RoleList(roles), hint));
}

}  // namespace

absl::Status AuthorizeRpc(const Identity& caller, absl::string_view method) {
  const RpcRule* rule = FindRpcRule(method);
  if (rule == nullptr) {
    // Unknown methods are denied by default, after authentication so that
    // the answer does not tell an anonymous caller what exists.
    if (caller.kind == Identity::Kind::kAnonymous) {
      return absl::UnauthenticatedError(absl::StrCat(method, " needs a token or a worker certificate"));
    }
    return absl::PermissionDeniedError(absl::StrCat(method, " is not in the coordinator's role table"));
  }
  return Authorize(caller, std::string(method), rule->roles);
}

absl::Status AuthorizeHttp(const Identity& caller, const std::string& method, const std::string& path) {
  const HttpRule* rule = FindHttpRule(method, path);
  if (rule == nullptr) {
    if (caller.kind == Identity::Kind::kAnonymous) {
      return absl::UnauthenticatedError(absl::StrCat(method, " ", path, " needs a token"));
    }
    return absl::NotFoundError(absl::StrCat(method, " ", path, " is not an endpoint of the coordinator"));
  }
  return Authorize(caller, absl::StrCat(method, " ", path), rule->roles);
}

std::string ShortMethodName(absl::string_view method) {
  const auto slash = method.rfind('/');
  return std::string(slash == absl::string_view::npos ? method : method.substr(slash + 1));
}

bool MaySeeJob(const Identity& caller, const JobRecord& job) {
  if (!caller.is_user()) return false;
  if (caller.role == Role::kCustodian) return true;
  // An audit run is about who trained a model; nobody but custodians learns
  // that one exists (not even the audited job's owner).
  if (job.audit) return false;
  if (caller.role == Role::kViewer) return true;
  return caller.role == Role::kAnalyst && !job.owner.empty() && job.owner == caller.name;
}

absl::StatusOr<JobFilter> ParseJobFilter(const JobFilterQuery& query) {
  JobFilter filter;
  if (!query.state.empty()) {
    absl::StatusOr<JobState> state = ParseJobState(absl::AsciiStrToUpper(query.state));
    if (!state.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "state: '", query.state, "' is not a job state (expected QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED)"));
    }
    filter.state = *state;
  }
  if (query.limit < 0 || query.limit > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("limit: '", query.limit, "' must be >= 0 (0: no limit) and at most ",
                                                   std::numeric_limits<int32_t>::max()));
  }
  filter.limit = static_cast<int32_t>(query.limit);
  filter.owner = query.owner;
  filter.dataset = query.dataset;
  return filter;
}

std::vector<JobRecord> VisibleJobs(const Identity& caller, const std::vector<JobRecord>& all, const JobFilter& filter) {
  std::vector<JobRecord> out;
  for (const JobRecord& r : all) {
    if (!MaySeeJob(caller, r)) continue;
    JobRecord view = JobView(caller, r);
    if (filter.state && view.state != *filter.state) continue;
    if (!filter.owner.empty() && view.owner != filter.owner) continue;
    if (!filter.dataset.empty() && view.dataset != filter.dataset &&
        std::find(view.data_paths.begin(), view.data_paths.end(), filter.dataset) == view.data_paths.end()) {
      continue;
    }
    out.push_back(std::move(view));
  }
  if (filter.limit > 0 && out.size() > static_cast<std::size_t>(filter.limit)) {
    out.erase(out.begin(), out.end() - filter.limit);
  }
  return out;
}

JobRecord JobView(const Identity& caller, JobRecord job) {
  if (caller.is_user() && caller.role == Role::kCustodian) return job;
  // Analysts never see where the coordinator keeps data or which
  // certificate runs a rank.
  job.data_paths.clear();
  job.input_files.clear();
  job.shard_dir.clear();
  job.worker_identities.clear();
  // A worker's error message may quote record values: analysts get the
  // category the coordinator composed (AttemptRecord::public_reason).
  job.reason = PublicReason(job.reason, job.public_reason);
  job.public_reason = job.reason;
  for (AttemptRecord& a : job.attempts) {
    a.reason = PublicReason(a.reason, a.public_reason);
    a.public_reason = a.reason;
  }
  if (caller.is_user() && caller.role == Role::kAnalyst) return job;
  // Viewers: states and ε, for dashboards; nothing an analyst submitted or
  // learnt.
  JobRecord v;
  v.job_id = job.job_id;
  v.name = job.name;
  v.state = job.state;
  v.epochs = job.epochs;
  v.epochs_done = job.epochs_done;
  v.dp = job.dp;
  v.epsilon = job.epsilon;
  v.delta = job.delta;
  v.created_ms = job.created_ms;
  v.started_ms = job.started_ms;
  v.finished_ms = job.finished_ms;
  v.attempt = job.attempt;
  v.world_size = job.world_size;
  v.accountant = job.accountant;
  v.pending_reason = job.pending_reason;
  return v;
}

std::string PublicReason(const std::string& reason, const std::string& public_reason) {
  if (!public_reason.empty() || reason.empty()) return public_reason;
  // A record from before public reasons: nothing of it is known to be safe.
  return "(the reason is shown to custodians only)";
}

std::string ReasonView(const Identity& caller, const std::string& reason, const std::string& public_reason) {
  if (caller.is_user() && caller.role == Role::kCustodian) return reason;
  return PublicReason(reason, public_reason);
}

absl::StatusOr<JobRecord> VisibleJob(const Identity& caller, const JobRecord& job) {
  if (!MaySeeJob(caller, job)) return absl::NotFoundError(absl::StrCat("job '", job.job_id, "' not found"));
  return JobView(caller, job);
}

absl::Status CheckMayActOnJob(const Identity& caller, const JobRecord& job) {
  if (caller.is_user() && (caller.role == Role::kCustodian ||
                           (caller.role == Role::kAnalyst && !job.owner.empty() && job.owner == caller.name))) {
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("job '", job.job_id, "' not found"));
}

absl::Status CheckSubmit(const Identity& caller, const std::string& spec_yaml) {
  if (caller.is_user() && caller.role == Role::kCustodian) return absl::OkStatus();
  absl::StatusOr<JobSpec> spec = ParseJobSpec(spec_yaml);
  if (!spec.ok()) return absl::OkStatus();  // Submit names the field
  if (!spec->data_paths.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "data.path: ", caller.Describe(),
        " may only submit against registered datasets (dataset: NAME, see `dpctl datasets list`); raw paths are "
        "the custodian's"));
  }
  return absl::OkStatus();
}

DatasetRecord DatasetView(const Identity& caller, DatasetRecord d) {
  if (caller.is_user() && caller.role == Role::kCustodian) return d;
  DatasetRecord v;
  v.name = d.name;
  v.task = d.task;
  v.features = d.features;
  v.state = d.state;
  v.rows_train = d.rows_train;  // N: public, it fixes q = B/N
  v.created_ms = d.created_ms;
  v.ready_ms = d.ready_ms;
  // The manifest's counts by reason and its positive rate are exact
  // statistics of the private file, and the reason of a failure may quote
  // it; a path says where the coordinator keeps data.
  return v;
}

std::vector<BudgetView> BudgetViews(const Identity& caller, std::vector<BudgetView> budgets,
                                    const std::vector<DatasetRecord>& datasets) {
  if (caller.is_user() && caller.role == Role::kCustodian) return budgets;
  std::map<std::string, std::string> labels;              // ledger key -> "<dataset>:<k>"
  std::map<std::string, std::vector<std::string>> names;  // ledger key -> datasets reading it
  for (const DatasetRecord& d : datasets) {
    for (std::size_t k = 0; k < d.input_files.size(); ++k) {
      labels.emplace(d.input_files[k], absl::StrCat(d.name, ":", k + 1));
      names[d.input_files[k]].push_back(d.name);
    }
  }
  std::vector<BudgetView> out;
  for (BudgetView& b : budgets) {
    auto it = labels.find(b.file);
    if (it == labels.end()) continue;
    b.names = names[b.file];
    b.file = it->second;
    b.jobs = 0;  // how many jobs others run is theirs
    out.push_back(std::move(b));
  }
  return out;
}

absl::Status CheckBudgetArgument(const Identity& caller, const std::string& argument,
                                 const std::vector<DatasetRecord>& datasets) {
  if ((caller.is_user() && caller.role == Role::kCustodian) || argument.empty()) return absl::OkStatus();
  for (const DatasetRecord& d : datasets) {
    if (d.name == argument) return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("dataset '", argument, "' not found"));
}

absl::Status CheckRun(const Identity& caller, JobManager* jobs, const std::string& job_id, int32_t attempt,
                      int32_t rank) {
  if (caller.is_worker() && jobs->HoldsRun(caller.name, job_id, attempt, rank)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(caller.Describe(), " does not hold ",
                                                  rank < 0 ? std::string("a rank") : absl::StrCat("rank ", rank),
                                                  " of job '", job_id, "' attempt ", attempt));
}

absl::Status CheckWorkerId(const Identity& caller, JobManager* jobs, const std::string& worker_id) {
  const std::optional<std::string> bound = jobs->WorkerIdentity(worker_id);
  // An id the coordinator does not know is answered by the JobManager
  // (re-register); one bound to another certificate is not the caller's.
  if (caller.is_worker() && (!bound || *bound == caller.name)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(caller.Describe(), " is not registered as worker '", worker_id, "'"));
}

}  // namespace dpfleet::server
