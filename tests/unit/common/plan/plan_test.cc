#include "common/plan/plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace dpfleet::plan {
namespace {

TEST(PlanTest, MlpParameterCount) {
  EXPECT_EQ(MlpParameters(59, {64, 32}), (59 + 1) * 64 + (64 + 1) * 32 + 33);
  EXPECT_EQ(MlpParameters(10, {}), 11);
}

TEST(PlanTest, ModelArithmeticAndRanking) {
  PriceList prices;
  prices.shapes = {{"one", 1, 1.0}, {"four", 4, 3.0}};
  prices.instance_counts = {1};
  JobShape job{100000, 1000, 10, 2500};  // 100 steps/epoch, 1000 steps
  Performance perf{10000, 100, 1.0};      // 0.1 s per 1000 examples on one rank
  auto rows = Plan(job, prices, perf);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  const PlanRow* one = (*rows)[0].shape == "one" ? &(*rows)[0] : &(*rows)[1];
  const PlanRow* four = (*rows)[0].shape == "four" ? &(*rows)[0] : &(*rows)[1];
  EXPECT_NEAR(one->step_seconds, 0.1, 1e-12);
  EXPECT_NEAR(one->job_seconds, 100.0, 1e-9);
  EXPECT_NEAR(one->cost, 100.0 / 3600.0, 1e-12);
  // 4 ranks: 250 examples each + 100 us + 10 kB * 1.5 / 1 GB/s.
  const double step4 = 0.025 + 100e-6 + 10000.0 * 1.5 / 1e9;
  EXPECT_NEAR(four->step_seconds, step4, 1e-12);
  EXPECT_NEAR(four->cost, 3.0 * step4 * 1000 / 3600.0, 1e-12);
  EXPECT_TRUE(four->fastest);
  EXPECT_TRUE(four->cheapest);  // 3x price for ~3.9x speed
  EXPECT_LE((*rows)[0].cost, (*rows)[1].cost) << "cheapest first";
}

TEST(PlanTest, MissingPerformanceIsAPreciseError) {
  JobShape job{1000, 100, 1, 100};
  auto rows = Plan(job, DefaultPriceList(), Performance{});
  EXPECT_THAT(std::string(rows.status().message()), ::testing::HasSubstr("examples_per_second_per_rank"));
  auto multi = Plan(job, DefaultPriceList(), Performance{1000, 0, 0});
  EXPECT_THAT(std::string(multi.status().message()), ::testing::HasSubstr("allreduce_busbw_gbps"));
}

TEST(PlanTest, ShippedPriceListParses) {
  const char* src = std::getenv("DPFLEET_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  std::ifstream f(std::string(src) + "/deploy/examples/g3-prices.yaml");
  std::stringstream ss;
  ss << f.rdbuf();
  auto p = ParsePriceList(ss.str());
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->shapes.size(), 4u);
  EXPECT_EQ(p->shapes[3].name, "g3.16xlarge");
  EXPECT_EQ(p->shapes[3].gpus, 4);
  EXPECT_DOUBLE_EQ(p->shapes[3].price_per_hour, 4.56);
  // The file and the built-in defaults agree.
  const PriceList d = DefaultPriceList();
  for (std::size_t i = 0; i < d.shapes.size(); ++i) {
    EXPECT_EQ(p->shapes[i].name, d.shapes[i].name);
    EXPECT_DOUBLE_EQ(p->shapes[i].price_per_hour, d.shapes[i].price_per_hour);
  }
  EXPECT_THAT(std::string(ParsePriceList("shapes: [{name: x, price_per_hour: -1}]").status().message()),
              ::testing::HasSubstr("shapes[0].price_per_hour"));
  EXPECT_FALSE(ParsePriceList("colour: red\nshapes: [{name: x, price_per_hour: 1}]").ok());
}

TEST(PlanTest, CurrentPriceListParsesAndEveryShapeIsSupported) {
  const char* src = std::getenv("DPFLEET_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  std::ifstream f(std::string(src) + "/deploy/examples/current-prices.yaml");
  std::stringstream ss;
  ss << f.rdbuf();
  auto p = ParsePriceList(ss.str());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_GE(p->shapes.size(), 6u);
  auto rows = Plan(JobShape{1000000, 1000, 1, 10000}, *p, Performance{50000, 20, 100});
  ASSERT_TRUE(rows.ok()) << rows.status();
  for (const PlanRow& r : *rows) EXPECT_TRUE(r.supported) << r.shape << ": " << r.unsupported_reason;
}

TEST(PlanTest, ShapesThePinnedBuildCannotRunAreMarkedAndNeverRecommended) {
  PriceList prices;
  prices.shapes = {{"old", 1, 0.5, "Tesla M60", "5.2"}, {"new", 1, 1.0, "L4", "8.9"}, {"unknown", 1, 2.0}};
  auto rows = Plan(JobShape{100000, 1000, 1, 100}, prices, Performance{10000, 0, 0});
  ASSERT_TRUE(rows.ok()) << rows.status();
  for (const PlanRow& r : *rows) {
    if (r.shape == "old") {
      EXPECT_FALSE(r.supported);
      EXPECT_THAT(r.unsupported_reason, ::testing::HasSubstr("Tesla M60 (compute capability 5.2)"));
      EXPECT_THAT(r.unsupported_reason, ::testing::HasSubstr("sm_75"));
      EXPECT_FALSE(r.cheapest);  // cheapest by price, but it cannot run
    } else {
      EXPECT_TRUE(r.supported) << r.shape;  // no capability given: nothing to check
    }
    if (r.shape == "new") EXPECT_TRUE(r.cheapest);
  }
  // Every G3 shape is unsupported by the pinned build; the ranking still
  // names the best among them.
  auto g3 = Plan(JobShape{100000, 1000, 1, 100}, DefaultPriceList(), Performance{10000, 100, 1});
  ASSERT_TRUE(g3.ok()) << g3.status();
  int cheapest = 0;
  for (const PlanRow& r : *g3) {
    EXPECT_FALSE(r.supported) << r.shape;
    cheapest += r.cheapest;
  }
  EXPECT_EQ(cheapest, 1);
  EXPECT_THAT(std::string(ParsePriceList("shapes: [{name: x, price_per_hour: 1, compute_capability: '86'}]")
                              .status()
                              .message()),
              ::testing::HasSubstr("shapes[0].compute_capability"));
  EXPECT_THAT(std::string(ParsePriceList("shapes: [{name: x, price_per_hour: 1, colour: red}]").status().message()),
              ::testing::HasSubstr("'colour'"));
}

}  // namespace
}  // namespace dpfleet::plan
