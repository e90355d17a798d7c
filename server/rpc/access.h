// Access control, in one place: who a caller is (Identity), the one role
// table saying which roles may call each gRPC method and HTTP route, and
// the object-level rules next to it (an analyst's own jobs, a worker's own
// run, what each role may see of a job, a dataset or a budget).
//
// The authentication points (server/rpc/auth.h for gRPC, the HTTP
// middleware in server/http/) consult the table before any handler runs;
// handlers only apply the object-level rules below. A method or route that
// is not in the table is denied. Never grants anything to a caller whose
// identity was not established by an authentication point.
//
// Job refusals are indistinguishable from a missing job (NOT_FOUND, the
// same message), so an analyst learns nothing about other people's jobs.
#ifndef DPFLEET_SERVER_RPC_ACCESS_H_
#define DPFLEET_SERVER_RPC_ACCESS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/dataset_registry.h"
#include "server/core/job_manager.h"
#include "server/core/tokens.h"
#include "server/core/types.h"

namespace dpfleet::server {

// Who is calling. A user holds a token (name, role); a worker holds a
// certificate the fleet CA signed (its CN is the name, the role is always
// kWorker). Never both.
struct Identity {
  enum class Kind { kAnonymous, kUser, kWorker };
  Kind kind = Kind::kAnonymous;
  std::string name;
  Role role = Role::kViewer;  // meaningful for users; kWorker for workers

  static Identity User(std::string name, Role role) { return {Kind::kUser, std::move(name), role}; }
  static Identity Worker(std::string name) { return {Kind::kWorker, std::move(name), Role::kWorker}; }
  bool is_user() const { return kind == Kind::kUser; }
  bool is_worker() const { return kind == Kind::kWorker; }
  // "analyst 'alice'", "worker 'worker-1'", "an unauthenticated caller".
  std::string Describe() const;
  const char* KindName() const;  // user | worker | anonymous
};

// Roles as bits, for the table.
using RoleMask = uint32_t;
constexpr RoleMask Bit(Role r) { return RoleMask{1} << static_cast<int>(r); }
inline constexpr RoleMask kCustodian = Bit(Role::kCustodian);
inline constexpr RoleMask kAnalyst = Bit(Role::kAnalyst);
inline constexpr RoleMask kViewer = Bit(Role::kViewer);
inline constexpr RoleMask kWorker = Bit(Role::kWorker);
inline constexpr RoleMask kAnyUser = kCustodian | kAnalyst | kViewer;
// Served without any identity (health checks); never combined with roles.
inline constexpr RoleMask kPublic = RoleMask{1} << 31;

struct RpcRule {
  std::string method;  // full gRPC path: /dpfleet.v1.Coordinator/SubmitJob
  RoleMask roles;
  bool audited;  // changes state: every call and refusal goes to the audit trail
};
struct HttpRule {
  const char* method;  // GET
  // The path, where "{id}" stands for one segment of [A-Za-z0-9._-]+ (a job
  // id); also the route's metrics label, so callers cannot mint labels.
  const char* route;
  RoleMask roles;
};

const std::vector<RpcRule>& RpcRoleTable();
const std::vector<HttpRule>& HttpRoleTable();
// nullptr for a method the table does not know.
const RpcRule* FindRpcRule(absl::string_view method);
const HttpRule* FindHttpRule(absl::string_view method, absl::string_view path);
// Whether `path` is `route` with each "{id}" replaced by one id segment.
bool RouteMatches(absl::string_view route, absl::string_view path);
// "custodian or analyst".
std::string RoleList(RoleMask roles);

// Whether `caller` may call `method` / the route: PermissionDenied (the
// message says what the method needs) or, for a method outside the table,
// PermissionDenied naming it. The caller is already authenticated.
absl::Status AuthorizeRpc(const Identity& caller, absl::string_view method);
absl::Status AuthorizeHttp(const Identity& caller, const std::string& method, const std::string& path);
// The method name without its service, for the audit trail ("SubmitJob").
std::string ShortMethodName(absl::string_view method);

// --- Object-level rules ---

// Custodians see every job, viewers every job but audit runs, analysts
// their own (never an audit run).
bool MaySeeJob(const Identity& caller, const JobRecord& job);
// A job listing's filters (ListJobs, GET /v1/jobs). Empty fields match all.
struct JobFilter {
  std::optional<JobState> state;
  std::string owner;    // the submitting token's name
  std::string dataset;  // the registered dataset name or one of the data paths
  int32_t limit = 0;    // the most recently submitted `limit` matches; 0: all
};
// A listing filter as a caller wrote it, before it is checked: the state by
// name (case-insensitive; "" = any), owner and dataset as given, the limit
// (0 = all).
struct JobFilterQuery {
  std::string state;
  std::string owner;
  std::string dataset;
  int64_t limit = 0;
};
// The one check of a listing filter, for gRPC and HTTP alike: InvalidArgument
// naming the field, the value and why ("state: 'DONE' is not a job state
// (expected QUEUED, ...)", "limit: '-2' must be >= 0 (0: no limit)").
absl::StatusOr<JobFilter> ParseJobFilter(const JobFilterQuery& query);
// The jobs of `all` (in submission order) that `caller` may see, as
// JobView shows them, that match `filter`. The filter is applied to the
// view, never to fields the caller cannot see: an analyst asking for
// another owner's jobs gets none, and nobody learns a path by filtering on
// it without seeing it. Kept in submission order.
std::vector<JobRecord> VisibleJobs(const Identity& caller, const std::vector<JobRecord>& all, const JobFilter& filter);
// What `caller` may see of a job it may see: viewers get states and ε only;
// analysts lose the coordinator's paths, the files' content keys, worker
// identities and workers' error messages (reasons become their public
// category).
JobRecord JobView(const Identity& caller, JobRecord job);
// What a non-custodian sees of a reason: `public_reason`, or a fixed
// placeholder for a reason recorded before public reasons existed.
std::string PublicReason(const std::string& reason, const std::string& public_reason);
// The reason `caller` sees: the whole one for custodians, PublicReason for
// everyone else (as JobView decides for a job's and its attempts' reasons).
std::string ReasonView(const Identity& caller, const std::string& reason, const std::string& public_reason);
// The job as `caller` may see it, or NotFound exactly as for a job that
// does not exist.
absl::StatusOr<JobRecord> VisibleJob(const Identity& caller, const JobRecord& job);
// For cancel, watch and the model: the job's owner or a custodian;
// NotFound (as for a missing job) for anyone else.
absl::Status CheckMayActOnJob(const Identity& caller, const JobRecord& job);
// Analysts submit against registered datasets only (data.path is the
// custodian's); PermissionDenied naming data.path otherwise. A spec that
// does not parse is left for the JobManager to reject precisely.
absl::Status CheckSubmit(const Identity& caller, const std::string& spec_yaml);

// Analysts see a dataset's name, task, state and N; the custodian sees its
// paths, directory and exact manifest.
DatasetRecord DatasetView(const Identity& caller, DatasetRecord dataset);
// Custodians see every file's budget as it is; analysts and viewers see
// only the files of registered datasets, each labelled "<dataset>:<k>" (its
// k-th file) and named by the datasets that read it — no path, no content
// hash (a function of the private records), no count of other people's
// jobs.
std::vector<BudgetView> BudgetViews(const Identity& caller, std::vector<BudgetView> budgets,
                                    const std::vector<DatasetRecord>& datasets);
// Analysts and viewers ask for the budgets of a registered dataset by name,
// or of all (empty): a path or a file key would make the coordinator tell
// them what lies under its data roots. NotFound otherwise, as for a name
// that exists nowhere.
absl::Status CheckBudgetArgument(const Identity& caller, const std::string& argument,
                                 const std::vector<DatasetRecord>& datasets);

// A worker RPC naming (job, attempt, rank) is allowed only to the worker
// holding that rank of the current attempt (rank -1: any of its ranks);
// PermissionDenied otherwise, the same whether or not the job exists.
absl::Status CheckRun(const Identity& caller, JobManager* jobs, const std::string& job_id, int32_t attempt,
                      int32_t rank);
// A worker RPC naming a worker id: only the worker registered under it.
absl::Status CheckWorkerId(const Identity& caller, JobManager* jobs, const std::string& worker_id);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_ACCESS_H_
