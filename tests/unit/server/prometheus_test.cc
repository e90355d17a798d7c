// The coordinator's /metrics text (server/http).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "server/http/http_server.h"

namespace dpfleet::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(PrometheusTest, JobsWorkersAndFileBudgets) {
  JobRecord running;
  running.job_id = "job-000001";
  running.name = "say \"hi\"";
  running.state = JobState::kRunning;
  running.epsilon = 0.5;
  running.epochs_done = 2;
  JobRecord done = running;
  done.job_id = "job-000002";
  done.name = "b";
  done.state = JobState::kSucceeded;
  JobRecord baseline = running;  // privacy.mode none: no epsilon at all, not 0
  baseline.job_id = "job-000003";
  baseline.dp = false;
  baseline.epsilon = 0;
  WorkerRecord idle;
  idle.state = WorkerState::kIdle;
  BudgetView budgeted;
  budgeted.file = "sha256:ca";
  budgeted.names = {"acs", "/data/ca.csv"};
  budgeted.has_budget = true;
  budgeted.epsilon_budget = 3;
  budgeted.spent = 1.25;
  budgeted.committed = 2;
  BudgetView open;
  open.file = "sha256:vt";
  open.spent = std::numeric_limits<double>::infinity();  // a non-private job ran on it
  open.committed = open.spent;
  const std::string text = RenderPrometheus({running, done, baseline}, {idle}, {budgeted, open});
  EXPECT_THAT(text, HasSubstr("dpfleet_jobs{state=\"RUNNING\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("dpfleet_jobs{state=\"SUCCEEDED\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("dpfleet_jobs{state=\"FAILED\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("dpfleet_workers{state=\"IDLE\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("dpfleet_job_epsilon{job_id=\"job-000001\",name=\"say \\\"hi\\\"\"} 0.5\n"));
  EXPECT_THAT(text, HasSubstr("dpfleet_job_epochs_done{job_id=\"job-000001\"} 2\n"));
  // Per-job series only while a job runs.
  EXPECT_THAT(text, Not(HasSubstr("job_id=\"job-000002\"")));
  EXPECT_THAT(text, Not(HasSubstr("dpfleet_job_epsilon{job_id=\"job-000003\""))) << "no epsilon gauge for mode none";
  EXPECT_THAT(text, HasSubstr("dpfleet_job_epochs_done{job_id=\"job-000003\"} 2\n")) << "the job itself is there";
  EXPECT_THAT(text, HasSubstr("dpfleet_file_epsilon_spent{file=\"sha256:ca\",names=\"acs,/data/ca.csv\"} 1.25\n"));
  EXPECT_THAT(text, HasSubstr("dpfleet_file_epsilon_committed{file=\"sha256:ca\",names=\"acs,/data/ca.csv\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("dpfleet_file_epsilon_budget{file=\"sha256:ca\",names=\"acs,/data/ca.csv\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("dpfleet_file_epsilon_spent{file=\"sha256:vt\",names=\"\"} +Inf\n"));
  EXPECT_THAT(text, Not(HasSubstr("dpfleet_file_epsilon_budget{file=\"sha256:vt\"")));
  EXPECT_THAT(text, HasSubstr("# TYPE dpfleet_file_epsilon_spent gauge\n"));
}

TEST(PrometheusTest, BuildInfoNamesTheVersionCommitAndProtocol) {
  const std::string text = RenderPrometheus({}, {}, {});
  const BuildInfo& b = GetBuildInfo();
  EXPECT_FALSE(b.version.empty());
  EXPECT_THAT(text, HasSubstr(absl::StrCat("dpfleet_build_info{version=\"", b.version, "\",git=\"", b.git,
                                           "\",build_type=\"", b.build_type, "\",protocol=\"", kProtocolVersion,
                                           "\"} 1\n")));
  EXPECT_THAT(text, HasSubstr("# TYPE dpfleet_build_info gauge\n"));
}

TEST(PrometheusTest, BackgroundFailuresAreCountedByComponent) {
  BackgroundErrors jobs;
  jobs.Record("starting job 'job-1' attempt 1", absl::UnavailableError("disk I/O error"));
  jobs.Record("starting job 'job-1' attempt 1", absl::UnavailableError("disk I/O error"));
  BackgroundErrors audit;
  audit.Record("writing the audit entry of SubmitJob", absl::UnavailableError("disk I/O error"));
  const std::string text = RenderBackgroundFailures(jobs.Get(), BackgroundErrors().Get(), audit.Get());
  EXPECT_THAT(text, HasSubstr("# TYPE dpfleet_background_failures_total counter\n"));
  EXPECT_THAT(text, HasSubstr("dpfleet_background_failures_total{component=\"jobs\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("dpfleet_background_failures_total{component=\"datasets\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("dpfleet_background_failures_total{component=\"audit\"} 1\n"));
  EXPECT_EQ(jobs.Get().last, "starting job 'job-1' attempt 1: UNAVAILABLE: disk I/O error");
}

TEST(PrometheusTest, TheCountersAndHistogramsFollowTheGauges) {
  ServerMetrics metrics;
  metrics.jobs_submitted.Inc({"dp"});
  const std::string text = RenderPrometheus({}, {}, {}, &metrics);
  EXPECT_THAT(text, HasSubstr("dpfleet_jobs_submitted_total{mode=\"dp\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE dpfleet_rpc_duration_seconds histogram\n"));
  EXPECT_LT(text.find("dpfleet_build_info"), text.find("dpfleet_jobs_submitted_total"));
}

}  // namespace
}  // namespace dpfleet::server
