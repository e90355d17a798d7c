// Counters and histograms of the coordinator (server/core/metrics.h) in the
// Prometheus text format.
#include "server/core/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace dpfleet::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTest, ACounterIsPerLabelSetAndNeverGoesDown) {
  CounterFamily c("dpfleet_x_total", "Things.", {"method", "code"});
  c.Inc({"/a/B", "OK"});
  c.Inc({"/a/B", "OK"}, 2);
  c.Inc({"/a/B", "NOT_FOUND"});
  c.Inc({"/a/B", "OK"}, -5);  // refused
  EXPECT_EQ(c.Value({"/a/B", "OK"}), 3);
  std::string out;
  c.Render(&out);
  EXPECT_THAT(out, HasSubstr("# HELP dpfleet_x_total Things.\n# TYPE dpfleet_x_total counter\n"));
  EXPECT_THAT(out, HasSubstr("dpfleet_x_total{method=\"/a/B\",code=\"OK\"} 3\n"));
  EXPECT_THAT(out, HasSubstr("dpfleet_x_total{method=\"/a/B\",code=\"NOT_FOUND\"} 1\n"));
}

TEST(MetricsTest, AnUnlabelledCounterShowsZeroBeforeItsFirstEvent) {
  CounterFamily c("dpfleet_y_total", "Y.", {});
  std::string out;
  c.Render(&out);
  EXPECT_THAT(out, HasSubstr("\ndpfleet_y_total 0\n"));
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  CounterFamily c("dpfleet_z_total", "Z.", {"route"});
  c.Inc({"a\"b\\c\nd"});
  std::string out;
  c.Render(&out);
  EXPECT_THAT(out, HasSubstr("dpfleet_z_total{route=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithSumAndCount) {
  HistogramFamily h("dpfleet_t_seconds", "T.", {"method"}, {0.1, 1, 10});
  for (double v : {0.05, 0.1, 0.5, 5.0, 50.0}) h.Observe({"/m"}, v);
  h.Observe({"/m"}, std::numeric_limits<double>::quiet_NaN());  // ignored
  EXPECT_EQ(h.Count({"/m"}), 5);
  std::string out;
  h.Render(&out);
  EXPECT_THAT(out, HasSubstr("# TYPE dpfleet_t_seconds histogram\n"));
  // le is inclusive: 0.1 falls in the 0.1 bucket.
  EXPECT_THAT(out, HasSubstr("dpfleet_t_seconds_bucket{method=\"/m\",le=\"0.1\"} 2\n"));
  EXPECT_THAT(out, HasSubstr("dpfleet_t_seconds_bucket{method=\"/m\",le=\"1\"} 3\n"));
  EXPECT_THAT(out, HasSubstr("dpfleet_t_seconds_bucket{method=\"/m\",le=\"10\"} 4\n"));
  EXPECT_THAT(out, HasSubstr("dpfleet_t_seconds_bucket{method=\"/m\",le=\"+Inf\"} 5\n"));
  EXPECT_THAT(out, HasSubstr("dpfleet_t_seconds_sum{method=\"/m\"} 55.65\n"));
  EXPECT_THAT(out, HasSubstr("dpfleet_t_seconds_count{method=\"/m\"} 5\n"));
}

TEST(MetricsTest, AnUnlabelledHistogramShowsEmptyBucketsBeforeItsFirstObservation) {
  HistogramFamily h("dpfleet_e_seconds", "E.", {}, {1});
  std::string out;
  h.Render(&out);
  EXPECT_THAT(out, HasSubstr("dpfleet_e_seconds_bucket{le=\"1\"} 0\n"));
  EXPECT_THAT(out, HasSubstr("dpfleet_e_seconds_bucket{le=\"+Inf\"} 0\n"));
  EXPECT_THAT(out, HasSubstr("dpfleet_e_seconds_count 0\n"));
}

TEST(MetricsTest, ConcurrentUpdatesAreAllCounted) {
  ServerMetrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        m.rpc_requests.Inc({"/dpfleet.v1.Coordinator/GetJob", "OK"});
        m.rpc_duration.Observe({"/dpfleet.v1.Coordinator/GetJob"}, 0.002);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(m.rpc_requests.Value({"/dpfleet.v1.Coordinator/GetJob", "OK"}), 40000);
  EXPECT_EQ(m.rpc_duration.Count({"/dpfleet.v1.Coordinator/GetJob"}), 40000);
}

TEST(MetricsTest, EveryFamilyFollowsTheNamingConventions) {
  ServerMetrics m;
  const std::string out = m.Render();
  for (const char* name : {"dpfleet_jobs_submitted_total", "dpfleet_epochs_total", "dpfleet_jobs_finished_total",
                           "dpfleet_rpc_requests_total", "dpfleet_http_requests_total"}) {
    EXPECT_THAT(out, HasSubstr(std::string("# TYPE ") + name + " counter\n"));
  }
  for (const char* name : {"dpfleet_rpc_duration_seconds", "dpfleet_step_seconds", "dpfleet_epoch_seconds"}) {
    EXPECT_THAT(out, HasSubstr(std::string("# TYPE ") + name + " histogram\n"));
  }
  EXPECT_THAT(out, Not(HasSubstr("job_id")));
}

}  // namespace
}  // namespace dpfleet::server
