// Tests for client/report_cli.h and client/svg.h: the plots hold the jobs'
// released numbers, one vertex per epoch, mapped to the axes.
#include "client/report_cli.h"

#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace dpfleet::client {
namespace {

v1::Job Job(const std::string& id, bool is_private, double eps, std::vector<double> acc) {
  v1::Job job;
  job.set_job_id(id);
  job.set_mode(is_private ? "dp" : "none");
  job.set_epochs(static_cast<int>(acc.size()));
  job.set_epochs_done(static_cast<int>(acc.size()));
  if (is_private) job.set_epsilon(eps);
  for (size_t i = 0; i < acc.size(); ++i) {
    v1::EpochMetrics* m = job.add_history();
    m->set_epoch(static_cast<int>(i + 1));
    m->set_eval_accuracy(acc[i]);
    m->set_eval_loss(1.0 - acc[i]);
    if (is_private) m->set_epsilon(eps * (i + 1) / acc.size());
  }
  return job;
}

// The vertices of the polyline with data-series="name".
std::vector<std::pair<double, double>> Vertices(const std::string& svg, const std::string& name) {
  std::smatch m;
  const std::regex re("<polyline data-series=\"" + name + "\" points=\"([^\"]*)\"");
  std::vector<std::pair<double, double>> out;
  if (!std::regex_search(svg, m, re)) return out;
  for (absl::string_view p : absl::StrSplit(m[1].str(), ' ')) {
    std::vector<std::string> xy = absl::StrSplit(p, ',');
    double x = 0, y = 0;
    EXPECT_TRUE(xy.size() == 2 && absl::SimpleAtod(xy[0], &x) && absl::SimpleAtod(xy[1], &y)) << p;
    out.emplace_back(x, y);
  }
  return out;
}

TEST(ReportTest, OneVertexPerEpochMappedToTheAxes) {
  const v1::Job job = Job("job-1", true, 2.0, {0.6, 0.7, 0.75, 0.8});
  std::map<std::string, Plot> plots = ReportPlots({job});
  ASSERT_TRUE(plots.count("job-1-accuracy.svg"));
  ASSERT_TRUE(plots.count("job-1-loss.svg"));
  ASSERT_TRUE(plots.count("job-1-epsilon.svg"));
  EXPECT_FALSE(plots.count("privacy_utility.svg"));
  const Plot& acc = plots["job-1-accuracy.svg"];
  const std::string svg = RenderSvg(acc);
  const auto v = Vertices(svg, "eval accuracy");
  ASSERT_EQ(v.size(), 4u);
  const PlotArea area = AreaOf(acc);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(v[i].first, area.X(i + 1), 0.01);
    EXPECT_NEAR(v[i].second, area.Y(job.history(i).eval_accuracy()), 0.01);
  }
  // Higher accuracy is drawn higher up, the epochs left to right.
  EXPECT_LT(v[3].second, v[0].second);
  EXPECT_LT(v[0].first, v[3].first);
  EXPECT_EQ(Vertices(RenderSvg(plots["job-1-epsilon.svg"]), "epsilon").size(), 4u);
}

TEST(ReportTest, NonPrivateJobHasNoEpsilonPlotAndIsTheBaseline) {
  std::vector<v1::Job> jobs = {Job("a", true, 0.5, {0.6}), Job("b", true, 8, {0.8}), Job("c", true, 2, {0.7}),
                               Job("base", false, 0, {0.85})};
  std::map<std::string, Plot> plots = ReportPlots(jobs);
  EXPECT_FALSE(plots.count("base-epsilon.svg"));
  ASSERT_TRUE(plots.count("privacy_utility.svg"));
  const Plot& pu = plots["privacy_utility.svg"];
  const std::string svg = RenderSvg(pu);
  const auto v = Vertices(svg, "DP-SGD jobs");
  ASSERT_EQ(v.size(), 3u);
  const PlotArea area = AreaOf(pu);
  // Sorted by epsilon: 0.5, 2, 8 (log scale: equal steps of 2 doublings).
  EXPECT_NEAR(v[0].first, area.X(0.5), 0.01);
  EXPECT_NEAR(v[1].second, area.Y(0.7), 0.01);
  EXPECT_NEAR(v[1].first - v[0].first, v[2].first - v[1].first, 0.02);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m,
                                std::regex("<line data-baseline=\"non-private base\" data-y=\"([0-9.]+)\" "
                                           "x1=\"[0-9.]+\" y1=\"([0-9.]+)\"")));
  EXPECT_EQ(m[1].str(), "0.85");
  EXPECT_NEAR(std::stod(m[2].str()), area.Y(0.85), 0.01);

  const std::string html = ReportIndexHtml(jobs, {"privacy_utility.svg", "a-accuracy.svg"});
  EXPECT_NE(html.find("<img src=\"privacy_utility.svg\""), std::string::npos);
  EXPECT_NE(html.find("<tr data-job=\"base\">"), std::string::npos);
  const size_t row = html.find("<tr data-job=\"base\">");
  const std::string base_row = html.substr(row, html.find("</tr>", row) - row);
  EXPECT_NE(base_row.find("<td>not private</td>"), std::string::npos) << base_row;
  EXPECT_EQ(base_row.find(">0<"), std::string::npos) << base_row;  // never epsilon 0
}

TEST(ReportTest, EscapesNamesAndSaysNoData) {
  v1::Job job = Job("j<1>", true, 1, {});
  job.set_name("a&b");
  std::map<std::string, Plot> plots = ReportPlots({job});
  const std::string svg = RenderSvg(plots["j<1>-accuracy.svg"]);
  EXPECT_NE(svg.find("a&amp;b"), std::string::npos);
  EXPECT_EQ(svg.find("a&b"), std::string::npos);
  EXPECT_NE(svg.find("no data"), std::string::npos);
}

}  // namespace
}  // namespace dpfleet::client
