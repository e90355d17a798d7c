// What Prometheus and a load balancer see of a live coordinator: a scrape of
// /metrics that `promtool check metrics` accepts, counters and histograms
// that match what happened (a submission, its epochs, its calls, a refused
// call), per-job series only while the job runs, and gRPC health per
// service.
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/coordinator_client.h"
#include "nlohmann/json.hpp"
#include "tests/testing/files.h"
#include "tests/testing/fleet/cluster.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet {
namespace {

using ::dpfleet::testing::BinPath;
using ::dpfleet::testing::Cluster;
using ::dpfleet::testing::ReadAll;
using ::dpfleet::testing::RunCommand;
using ::dpfleet::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;

// The value of the series `series` (name and labels, exactly as rendered),
// or -1 when the scrape has no such line.
double Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

// grpc.health.v1.Health/Check for `service`: the status enum (1 SERVING,
// 2 NOT_SERVING), or -code for a failed call. The messages are encoded by
// hand: HealthCheckRequest{service = 1}, HealthCheckResponse{status = 1}.
int HealthOf(const std::shared_ptr<grpc::Channel>& channel, const std::string& service) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  std::string req;
  if (!service.empty())
    req = absl::StrCat(std::string(1, '\x0a'), std::string(1, static_cast<char>(service.size())), service);
  grpc::Slice slice(req);
  grpc::ByteBuffer request(&slice, 1), response;
  absl::Notification done;
  grpc::Status result;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
    result = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  if (!result.ok()) return -static_cast<int>(result.error_code());
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return -100;
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (bytes.empty()) return 0;  // UNKNOWN, the default, is not encoded
  return bytes.size() == 2 && bytes[0] == '\x08' ? bytes[1] : -101;
}

TEST(ObservabilityTest, AScrapeIsValidAndCountsWhatHappened) {
  testing::TempDir dir;
  const std::string data = dir.Join("pums.csv");
  std::string out, err;
  ASSERT_EQ(RunCommand({BinPath("dpctl"), "data", "synth", "--rows", "6000", "--seed", "2", "-o", data}, &out, &err), 0)
      << err;
  Cluster c(dir.path());
  c.StartServer();
  c.StartWorkers(1);
  ASSERT_EQ(c.Dpctl({"submit", testing::WriteSmallJobSpec(dir.Join("job.yaml"), "observed", data, 1000), "-o", "json"},
                    &out, &err),
            0)
      << err;
  const std::string job = nlohmann::json::parse(out).at("job_id");
  const std::string job_series = absl::StrCat("dpfleet_job_epochs_done{job_id=\"", job, "\"}");
  // While it runs, the job has its series. The job is far longer than the
  // test (1000 epochs): it is still running when its series is looked for,
  // and it ends by a cancel, not by finishing between two scrapes.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto [code, body] = c.HttpGet("/metrics");
        return code == 200 && Sample(body, job_series) >= 1;
      },
      absl::Seconds(120)))
      << c.Logs();
  ASSERT_EQ(c.Dpctl({"cancel", job}, &out, &err), 0) << err;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto j = c.client().Get(job);
        return j.ok() && client::IsTerminal(j->state());
      },
      absl::Seconds(120)))
      << c.Logs();
  auto ended = c.client().Get(job);
  ASSERT_TRUE(ended.ok());
  ASSERT_EQ(ended->state(), v1::CANCELLED);
  const double epochs = ended->epochs_done();
  ASSERT_GE(epochs, 1);
  // A call the role table refuses: an anonymous caller may not list jobs.
  EXPECT_NE(c.DpctlAs("", {"list"}, &out, &err), 0);

  auto [code, text] = c.HttpGet("/metrics");
  ASSERT_EQ(code, 200);
  EXPECT_EQ(Sample(text, "dpfleet_jobs_submitted_total{mode=\"dp\"}"), 1);
  EXPECT_EQ(Sample(text, "dpfleet_epochs_total"), epochs);
  EXPECT_EQ(Sample(text, "dpfleet_jobs_finished_total{state=\"CANCELLED\"}"), 1);
  EXPECT_EQ(Sample(text, "dpfleet_epoch_seconds_count"), epochs);
  EXPECT_EQ(Sample(text, "dpfleet_step_seconds_count"), epochs);
  EXPECT_GT(Sample(text, "dpfleet_epoch_seconds_sum"), 0);
  EXPECT_EQ(Sample(text, "dpfleet_rpc_requests_total{method=\"/dpfleet.v1.Coordinator/SubmitJob\",code=\"OK\"}"), 1);
  EXPECT_GE(Sample(text, "dpfleet_rpc_requests_total{method=\"/dpfleet.v1.WorkerService/ChargeBudget\",code=\"OK\"}"),
            epochs);
  EXPECT_EQ(Sample(text, "dpfleet_rpc_duration_seconds_count{method=\"/dpfleet.v1.Coordinator/SubmitJob\"}"), 1);
  EXPECT_GE(Sample(text,
                   "dpfleet_rpc_requests_total{method=\"/dpfleet.v1.Coordinator/ListJobs\","
                   "code=\"UNAUTHENTICATED\"}"),
            1)
      << "refusals in the Gate are counted too";
  EXPECT_GE(Sample(text, "dpfleet_http_requests_total{route=\"/metrics\",code=\"200\"}"), 1);
  EXPECT_THAT(text, Not(HasSubstr(job_series))) << "an ended job has no per-job series";

  // promtool (Debian's prometheus package) lints the live scrape.
  std::string promtool_out, promtool_err;
  const std::string scrape = dir.Join("scrape.txt");
  std::ofstream(scrape) << text;
  ASSERT_EQ(RunCommand({"sh", "-c", absl::StrCat("promtool check metrics < ", scrape)}, &promtool_out, &promtool_err),
            0)
      << "promtool (apt-get install prometheus) refused the scrape:\n"
      << promtool_out << promtool_err;

  // gRPC health: the whole server and each service SERVING.
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadAll(c.ca_path());
  auto channel = grpc::CreateChannel(c.address(), grpc::SslCredentials(ssl));
  for (const std::string service : {"", "dpfleet.v1.Coordinator", "dpfleet.v1.Admin", "dpfleet.v1.WorkerService"}) {
    EXPECT_EQ(HealthOf(channel, service), 1) << "service '" << service << "'";
  }
  EXPECT_EQ(HealthOf(channel, "dpfleet.v1.NoSuchService"), -static_cast<int>(grpc::StatusCode::NOT_FOUND));
}

}  // namespace
}  // namespace dpfleet
