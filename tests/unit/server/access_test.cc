// The role table and the object-level rules (server/rpc/access.h).
#include "server/rpc/access.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/fleet/rpc_methods.h"

namespace dpfleet::server {
namespace {

using ::testing::HasSubstr;

const Identity kCustodianId = Identity::User("carol", Role::kCustodian);
const Identity kAlice = Identity::User("alice", Role::kAnalyst);
const Identity kBob = Identity::User("bob", Role::kAnalyst);
const Identity kViewerId = Identity::User("dash", Role::kViewer);
const Identity kWorkerId = Identity::Worker("worker-1");
const Identity kNobody;

TEST(AccessTest, TheTableHasARowForEveryMethodOfEveryService) {
  const std::set<std::string> declared = testing::DeclaredRpcMethods();
  ASSERT_EQ(declared.size(), 36u) << "the dpfleet protos' methods";
  for (const std::string& m : declared) {
    const RpcRule* rule = FindRpcRule(m);
    ASSERT_NE(rule, nullptr) << m << " has no row";
    EXPECT_EQ(rule->roles & kPublic, 0u) << m << " must need an identity";
  }
  for (const RpcRule& r : RpcRoleTable()) {
    if (r.method.rfind("/dpfleet.", 0) == 0) EXPECT_TRUE(declared.count(r.method)) << r.method << " is stale";
  }
  // Worker methods are for certificates only, user methods for tokens only.
  for (const RpcRule& r : RpcRoleTable()) {
    if (r.method.rfind("/dpfleet.v1.WorkerService/", 0) == 0) {
      EXPECT_EQ(r.roles, kWorker) << r.method;
    } else {
      EXPECT_EQ(r.roles & kWorker, 0u) << r.method;
    }
  }
}

TEST(AccessTest, AuthorizeFollowsTheTableAndDeniesUnknownMethods) {
  EXPECT_TRUE(AuthorizeRpc(kAlice, "/dpfleet.v1.Coordinator/SubmitJob").ok());
  auto viewer = AuthorizeRpc(kViewerId, "/dpfleet.v1.Coordinator/SubmitJob");
  EXPECT_EQ(viewer.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(viewer.message(),
            "viewer 'dash' is not allowed to call /dpfleet.v1.Coordinator/SubmitJob: it needs custodian or analyst");
  EXPECT_THAT(AuthorizeRpc(kCustodianId, "/dpfleet.v1.WorkerService/FetchShard").message(),
              HasSubstr("a user token is never a worker"));
  EXPECT_THAT(AuthorizeRpc(kWorkerId, "/dpfleet.v1.Admin/ListAudit").message(),
              HasSubstr("a worker certificate is never a user"));
  EXPECT_EQ(AuthorizeRpc(kNobody, "/dpfleet.v1.Coordinator/ListJobs").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(AuthorizeRpc(kNobody, "/x.Y/Z").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(AuthorizeRpc(kCustodianId, "/x.Y/Z").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(AuthorizeRpc(kNobody, "/grpc.health.v1.Health/Check").ok());
  EXPECT_TRUE(AuthorizeHttp(kViewerId, "GET", "/metrics").ok());
  EXPECT_EQ(AuthorizeHttp(kAlice, "GET", "/metrics").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(AuthorizeHttp(kAlice, "POST", "/v1/jobs").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(AuthorizeHttp(kNobody, "GET", "/nowhere").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(AuthorizeHttp(kAlice, "GET", "/v1/jobs/job-000001").ok());
  EXPECT_EQ(AuthorizeHttp(kAlice, "GET", "/v1/jobs/a/b").code(), absl::StatusCode::kNotFound);
}

TEST(AccessTest, RoutesMatchWholePathsWithOneIdSegmentPerHole) {
  EXPECT_TRUE(RouteMatches("/v1/jobs", "/v1/jobs"));
  EXPECT_FALSE(RouteMatches("/v1/jobs", "/v1/jobs/"));
  EXPECT_FALSE(RouteMatches("/v1/jobs", "/v1/job"));
  EXPECT_TRUE(RouteMatches("/v1/jobs/{id}", "/v1/jobs/job-000001"));
  EXPECT_TRUE(RouteMatches("/v1/jobs/{id}", "/v1/jobs/a.B_9-z"));
  EXPECT_FALSE(RouteMatches("/v1/jobs/{id}", "/v1/jobs/"));
  EXPECT_FALSE(RouteMatches("/v1/jobs/{id}", "/v1/jobs/a/b"));
  EXPECT_FALSE(RouteMatches("/v1/jobs/{id}", "/v1/jobs/a%2Fb"));
  EXPECT_FALSE(RouteMatches("/v1/jobs/{id}", "/v1/jobs/a b"));
  EXPECT_TRUE(RouteMatches("/v1/jobs/{id}/logs", "/v1/jobs/j1/logs"));
  EXPECT_FALSE(RouteMatches("/v1/jobs/{id}/logs", "/v1/jobs/j1/log"));
  EXPECT_FALSE(RouteMatches("/v1/jobs/{id}/logs", "/v1/jobs/j1"));
  // Every path the table knows maps to its own route, which is the label.
  for (const HttpRule& r : HttpRoleTable()) {
    std::string path = r.route;
    const size_t hole = path.find("{id}");
    if (hole != std::string::npos) path.replace(hole, 4, "job-000042");
    const HttpRule* found = FindHttpRule(r.method, path);
    ASSERT_NE(found, nullptr) << path;
    EXPECT_STREQ(found->route, r.route);
  }
  EXPECT_EQ(FindHttpRule("GET", "/v1/jobs/../metrics"), nullptr);
}

TEST(AccessTest, TheLivePageIsPublicAndReachesNothingElse) {
  // The page's files hold no data: anyone may load them.
  EXPECT_TRUE(AuthorizeHttp(kNobody, "GET", "/").ok());
  EXPECT_TRUE(AuthorizeHttp(kNobody, "GET", "/page/app.js").ok());
  // Its route is one file name deep: no way from it to a data route.
  EXPECT_EQ(AuthorizeHttp(kNobody, "GET", "/page/../v1/jobs").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(AuthorizeHttp(kNobody, "GET", "/page/").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(AuthorizeHttp(kNobody, "GET", "/index.html").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(AuthorizeHttp(kNobody, "POST", "/").code(), absl::StatusCode::kUnauthenticated);
  // Every other public row is a health check.
  for (const HttpRule& r : HttpRoleTable()) {
    if ((r.roles & kPublic) == 0) continue;
    const std::string p = r.route;
    EXPECT_TRUE(p == "/" || p.rfind("/page/", 0) == 0 || p == "/healthz" || p == "/readyz") << p << " is public";
  }
}

JobRecord Job(const std::string& owner) {
  JobRecord j;
  j.job_id = "job-000003";
  j.name = "n";
  j.owner = owner;
  j.spec_yaml = "name: n\n";
  j.data_paths = {"/data/p.csv"};
  j.input_files = {"sha256:" + std::string(64, 'd')};
  j.shard_dir = "/state/datasets/d";
  j.worker_identities = {"worker-1"};
  j.epsilon = 1.5;
  j.history.push_back(EpochRecord{1, 0.5, 0.7});
  return j;
}

TEST(AccessTest, AnalystsSeeTheirOwnJobsAndOthersGetTheMissingJobAnswer) {
  const JobRecord j = Job("alice");
  EXPECT_TRUE(MaySeeJob(kAlice, j));
  EXPECT_FALSE(MaySeeJob(kBob, j));
  EXPECT_TRUE(MaySeeJob(kCustodianId, j));
  EXPECT_TRUE(MaySeeJob(kViewerId, j));
  EXPECT_FALSE(MaySeeJob(kWorkerId, j));
  EXPECT_FALSE(MaySeeJob(kNobody, j));
  EXPECT_FALSE(MaySeeJob(Identity::User("", Role::kAnalyst), Job(""))) << "unowned jobs are the custodian's";
  auto hidden = VisibleJob(kBob, j);
  EXPECT_EQ(hidden.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(hidden.status().message(), "job 'job-000003' not found") << "JobManager's words for a missing job";
  EXPECT_EQ(CheckMayActOnJob(kBob, j).message(), hidden.status().message());
  EXPECT_EQ(CheckMayActOnJob(kViewerId, j).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(CheckMayActOnJob(kAlice, j).ok());
  EXPECT_TRUE(CheckMayActOnJob(kCustodianId, j).ok());
  // What each role sees of it.
  const JobRecord mine = *VisibleJob(kAlice, j);
  EXPECT_EQ(mine.spec_yaml, j.spec_yaml);
  EXPECT_EQ(mine.history.size(), 1u);
  EXPECT_TRUE(mine.data_paths.empty());
  EXPECT_TRUE(mine.input_files.empty()) << "a content hash is a function of the private records";
  EXPECT_TRUE(mine.shard_dir.empty());
  EXPECT_TRUE(mine.worker_identities.empty());
  const JobRecord dash = *VisibleJob(kViewerId, j);
  EXPECT_DOUBLE_EQ(dash.epsilon, 1.5);
  EXPECT_TRUE(dash.spec_yaml.empty());
  EXPECT_TRUE(dash.history.empty());
  EXPECT_TRUE(dash.owner.empty());
  EXPECT_EQ(VisibleJob(kCustodianId, j)->data_paths, j.data_paths);
  EXPECT_EQ(VisibleJob(kCustodianId, j)->input_files, j.input_files);
}

// ListJobs' and GET /v1/jobs' filters work on each caller's view of the
// jobs: nothing a role cannot see can be filtered on.
TEST(AccessTest, JobFiltersApplyToTheCallersViewOnly) {
  std::vector<JobRecord> all;
  for (const auto& [id, owner, state, dataset] :
       std::vector<std::tuple<std::string, std::string, JobState, std::string>>{
           {"job-000001", "alice", JobState::kSucceeded, "acs"},
           {"job-000002", "bob", JobState::kRunning, "acs"},
           {"job-000003", "alice", JobState::kRunning, "other"},
           {"job-000004", "alice", JobState::kFailed, "acs"}}) {
    JobRecord j = Job(owner);
    j.job_id = id;
    j.state = state;
    j.dataset = dataset;
    all.push_back(j);
  }
  auto ids = [](const std::vector<JobRecord>& jobs) {
    std::vector<std::string> out;
    for (const JobRecord& j : jobs) out.push_back(j.job_id);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids(VisibleJobs(kCustodianId, all, {})), (V{"job-000001", "job-000002", "job-000003", "job-000004"}));
  EXPECT_EQ(ids(VisibleJobs(kAlice, all, {})), (V{"job-000001", "job-000003", "job-000004"}));
  EXPECT_TRUE(VisibleJobs(kAlice, all, {std::nullopt, "bob", "", 0}).empty()) << "another analyst's jobs: none";
  EXPECT_EQ(ids(VisibleJobs(kCustodianId, all, {std::nullopt, "bob", "", 0})), (V{"job-000002"}));
  EXPECT_EQ(ids(VisibleJobs(kCustodianId, all, {JobState::kRunning, "", "", 0})), (V{"job-000002", "job-000003"}));
  EXPECT_EQ(ids(VisibleJobs(kAlice, all, {JobState::kRunning, "", "", 0})), (V{"job-000003"}));
  EXPECT_EQ(ids(VisibleJobs(kAlice, all, {std::nullopt, "", "acs", 0})), (V{"job-000001", "job-000004"}));
  EXPECT_EQ(ids(VisibleJobs(kCustodianId, all, {std::nullopt, "", "/data/p.csv", 0})).size(), 4u)
      << "a custodian may filter on the data path";
  EXPECT_TRUE(VisibleJobs(kAlice, all, {std::nullopt, "", "/data/p.csv", 0}).empty())
      << "an analyst does not see paths, so cannot filter on them";
  EXPECT_TRUE(VisibleJobs(kViewerId, all, {std::nullopt, "alice", "", 0}).empty()) << "viewers do not see owners";
  EXPECT_EQ(ids(VisibleJobs(kCustodianId, all, {std::nullopt, "", "", 2})), (V{"job-000003", "job-000004"}))
      << "the most recent, in submission order";
  EXPECT_EQ(ids(VisibleJobs(kAlice, all, {std::nullopt, "", "", 1})), (V{"job-000004"}));
  EXPECT_TRUE(VisibleJobs(kBob, all, {std::nullopt, "", "", 0})[0].data_paths.empty()) << "still the view";
}

TEST(AccessTest, AnalystsSubmitAgainstRegisteredDatasetsOnly) {
  const std::string raw = "name: x\ndata: {path: /data/p.csv}\n";
  auto refused = CheckSubmit(kAlice, raw);
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(refused.message(), HasSubstr("data.path"));
  EXPECT_TRUE(CheckSubmit(kCustodianId, raw).ok());
  EXPECT_TRUE(CheckSubmit(kAlice, "name: x\ndataset: acs\n").ok());
  EXPECT_TRUE(CheckSubmit(kAlice, "not: [a spec").ok()) << "left to Submit's precise error";
}

TEST(AccessTest, DatasetsAndBudgetsShowAnalystsOnlyWhatIsPublic) {
  DatasetRecord d;
  d.name = "acs";
  d.paths = {"/data/a.csv"};
  d.dir = "/state/datasets/acs";
  d.manifest_json = "{\"positive_rate\": 0.61}";
  d.reason = "row 7: ...";
  d.rows_train = 1000;
  d.rows_eval = 250;
  const DatasetRecord seen = DatasetView(kAlice, d);
  EXPECT_EQ(seen.name, "acs");
  EXPECT_EQ(seen.rows_train, 1000);
  EXPECT_TRUE(seen.paths.empty());
  EXPECT_TRUE(seen.dir.empty());
  EXPECT_TRUE(seen.manifest_json.empty());
  EXPECT_TRUE(seen.reason.empty());
  EXPECT_EQ(DatasetView(kCustodianId, d).manifest_json, d.manifest_json);
  // Budgets are per file; analysts see only registered datasets' files,
  // by the dataset's name and the file's place in it — no path, no hash.
  const std::string key_a = "sha256:" + std::string(64, 'a'), key_b = "sha256:" + std::string(64, 'b');
  d.input_files = {key_a};
  DatasetRecord both = d;
  both.name = "acs-more";
  both.paths = {"/data/b.csv", "/data/a.csv"};
  both.input_files = {key_b, key_a};
  BudgetView registered;
  registered.file = key_a;
  registered.names = {"acs", "acs-more", "/data/a.csv"};
  registered.jobs = 4;
  registered.spent = 2;
  BudgetView raw;
  raw.file = "sha256:" + std::string(64, 'c');
  raw.names = {"/elsewhere/c.csv"};
  auto views = BudgetViews(kAlice, {registered, raw}, {d, both});
  ASSERT_EQ(views.size(), 1u);
  EXPECT_EQ(views[0].file, "acs:1");
  EXPECT_EQ(views[0].names, (std::vector<std::string>{"acs", "acs-more"}));
  EXPECT_EQ(views[0].jobs, 0);
  EXPECT_DOUBLE_EQ(views[0].spent, 2);
  EXPECT_EQ(BudgetViews(kCustodianId, {registered, raw}, {d}).size(), 2u);
  // Asking by anything but a registered name would probe the data roots.
  EXPECT_TRUE(CheckBudgetArgument(kAlice, "acs", {d}).ok());
  EXPECT_TRUE(CheckBudgetArgument(kAlice, "", {d}).ok());
  EXPECT_EQ(CheckBudgetArgument(kAlice, "/data/a.csv", {d}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(CheckBudgetArgument(kAlice, key_a, {d}).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(CheckBudgetArgument(kCustodianId, "/data/a.csv", {d}).ok());
}

// A worker's error message may quote the private file: analysts see the
// public category of every reason, custodians the whole text; a reason
// recorded before public reasons shows analysts a placeholder.
TEST(AccessTest, AnalystsSeeFailureCategoriesNeverWorkerMessages) {
  JobRecord job;
  job.job_id = "job-000001";
  job.owner = "alice";
  job.state = JobState::kFailed;
  job.reason = "rank 0 (worker w-1): row 17: 'H,2019HU0001,...' is malformed";
  job.public_reason = "rank 0 (worker w-1): failed while loading data (INVALID_ARGUMENT)";
  job.pending_reason = "";
  AttemptRecord a;
  a.attempt = 1;
  a.outcome = JobState::kFailed;
  a.reason = job.reason;
  a.public_reason = job.public_reason;
  job.attempts = {a};
  const JobRecord seen = JobView(kAlice, job);
  EXPECT_EQ(seen.reason, job.public_reason);
  ASSERT_EQ(seen.attempts.size(), 1u);
  EXPECT_EQ(seen.attempts[0].reason, job.public_reason);
  EXPECT_EQ(seen.attempts[0].public_reason, job.public_reason);
  const JobRecord custodian = JobView(kCustodianId, job);
  EXPECT_EQ(custodian.reason, job.reason);
  EXPECT_EQ(custodian.attempts[0].reason, job.reason);
  EXPECT_TRUE(JobView(kViewerId, job).reason.empty());
  JobRecord old = job;
  old.public_reason.clear();
  old.attempts.clear();
  EXPECT_EQ(JobView(kAlice, old).reason, "(the reason is shown to custodians only)");
  // A queued job's pending reason is for everyone who may see the job.
  job.state = JobState::kQueued;
  job.pending_reason = "needs 4 cpu workers, 2 registered";
  EXPECT_EQ(JobView(kViewerId, job).pending_reason, job.pending_reason);
  EXPECT_EQ(JobView(kAlice, job).pending_reason, job.pending_reason);
}

TEST(ParseJobFilterTest, OneCheckForBothListingsNamingFieldAndValue) {
  absl::StatusOr<JobFilter> f = ParseJobFilter({"succeeded", "alice", "az-2024", 5});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->state, JobState::kSucceeded) << "state names are case-insensitive";
  EXPECT_EQ(f->owner, "alice");
  EXPECT_EQ(f->dataset, "az-2024");
  EXPECT_EQ(f->limit, 5);
  f = ParseJobFilter({});
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->state.has_value()) << "an empty state matches every state";
  EXPECT_EQ(f->limit, 0);

  f = ParseJobFilter({"DONE", "", "", 0});
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(f.status().message(), HasSubstr("state: 'DONE' is not a job state (expected QUEUED, RUNNING, "
                                              "SUCCEEDED, FAILED or CANCELLED)"));
  f = ParseJobFilter({"", "", "", -1});
  EXPECT_THAT(f.status().message(), HasSubstr("limit: '-1' must be >= 0 (0: no limit)"));
  f = ParseJobFilter({"", "", "", int64_t{1} << 40});
  EXPECT_THAT(f.status().message(), HasSubstr("limit: '1099511627776' must be >= 0 (0: no limit) and at most"));
}

}  // namespace
}  // namespace dpfleet::server

namespace dpfleet::server {
namespace {

// Audits use membership labels: starting one, reading one, and even
// knowing that one exists are the custodian's; the worker RPCs of a run are
// the run's worker's.
TEST(AccessTest, AuditsAreTheCustodiansAndTheirRunsAreHiddenFromEveryoneElse) {
  for (const char* m : {"/dpfleet.v1.Coordinator/AuditJob", "/dpfleet.v1.Coordinator/GetAudit"}) {
    EXPECT_TRUE(AuthorizeRpc(kCustodianId, m).ok()) << m;
    for (const Identity& who : {kAlice, kViewerId, kWorkerId}) {
      EXPECT_EQ(AuthorizeRpc(who, m).code(), absl::StatusCode::kPermissionDenied) << m << " " << who.Describe();
    }
    EXPECT_EQ(AuthorizeRpc(kNobody, m).code(), absl::StatusCode::kUnauthenticated) << m;
  }
  EXPECT_TRUE(FindRpcRule("/dpfleet.v1.Coordinator/AuditJob")->audited) << "it starts work: in the audit trail";
  for (const char* m : {"/dpfleet.v1.WorkerService/FetchModel", "/dpfleet.v1.WorkerService/ReportAudit"}) {
    EXPECT_TRUE(AuthorizeRpc(kWorkerId, m).ok()) << m;
    for (const Identity& who : {kCustodianId, kAlice, kViewerId}) {
      EXPECT_EQ(AuthorizeRpc(who, m).code(), absl::StatusCode::kPermissionDenied) << m << " " << who.Describe();
    }
  }
  EXPECT_TRUE(AuthorizeHttp(kCustodianId, "GET", "/v1/audits/job-000002").ok());
  EXPECT_FALSE(AuthorizeHttp(kAlice, "GET", "/v1/audits/job-000002").ok());
  EXPECT_FALSE(AuthorizeHttp(kViewerId, "GET", "/v1/audits/job-000002").ok());

  // An audit run, even one whose owner field names an analyst, is seen by
  // custodians only: not in a viewer's or an analyst's list, and a missing
  // job for them.
  JobRecord run;
  run.job_id = "job-000002";
  run.owner = "alice";
  run.audit = AuditOrder{};
  run.audit->target = "job-000001";
  JobRecord trained;
  trained.job_id = "job-000001";
  trained.owner = "alice";
  EXPECT_TRUE(MaySeeJob(kCustodianId, run));
  for (const Identity& who : {kAlice, kViewerId, kWorkerId}) {
    EXPECT_FALSE(MaySeeJob(who, run)) << who.Describe();
    EXPECT_EQ(VisibleJob(who, run).status().code(), absl::StatusCode::kNotFound) << who.Describe();
  }
  EXPECT_EQ(VisibleJob(kAlice, run).status().message(), "job 'job-000002' not found");
  for (const Identity& who : {kAlice, kViewerId}) {
    const std::vector<JobRecord> seen = VisibleJobs(who, {trained, run}, JobFilter{});
    ASSERT_EQ(seen.size(), 1u) << who.Describe();
    EXPECT_EQ(seen[0].job_id, "job-000001");
  }
  EXPECT_EQ(VisibleJobs(kCustodianId, {trained, run}, JobFilter{}).size(), 2u);
}

}  // namespace
}  // namespace dpfleet::server
