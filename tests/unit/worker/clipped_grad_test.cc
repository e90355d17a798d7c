// The machine-code builds of the fused clipping loop (worker/train/
// clipped_grad): each one is forced in turn and checked against the ATen
// pass, and the two builds against each other bit for bit. A build this CPU
// cannot run is skipped with a message saying so — never silently compared
// with itself.
#include "worker/train/clipped_grad.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace dpfleet::train {
namespace {

// Puts the CPU's own choice back after each test.
class ClipKernelTest : public ::testing::TestWithParam<ClipKernel> {
 protected:
  void TearDown() override { ForceClipKernel(ClipKernel::kAuto); }
};

ModelConfig Mlp(std::vector<int64_t> hidden) {
  ModelConfig c;
  c.type = ModelType::kMlp;
  c.hidden = std::move(hidden);
  return c;
}

struct Sums {
  at::Tensor clipped, norms;
  ClipKernel ran = ClipKernel::kAuto;  // the build of the fused loop that did the work
};

// The clipped sum and the norms of a batch where most rows are clipped
// (rows of widths that are not multiples of the 8 lanes, to reach the tails).
Sums ClippedSum(ClipPass pass) {
  auto model = Model::Create(Mlp({37, 13}), 21, /*init_seed=*/4);
  EXPECT_TRUE(model.ok()) << model.status();
  at::manual_seed(8);
  const at::Tensor x = at::randn({300, 21}) * 3.0;
  const at::Tensor y = (at::rand({300}) < 0.4).to(at::kFloat);
  GradientEngine engine(&*model, pass);
  Sums s;
  s.clipped = at::empty({model->num_parameters()});
  engine.ClippedSum(x, y, 0.2, s.clipped, &s.norms);
  s.ran = engine.last_kernel();
  EXPECT_GT(at::sum(s.norms > 0.2).item<int64_t>(), 200) << "most rows must be clipped to mean anything";
  return s;
}

TEST_P(ClipKernelTest, EachBuildRunsWhenForcedAndMatchesTheAtenPass) {
  const ClipKernel kernel = GetParam();
  if (!ClipKernelAvailable(kernel)) {
    GTEST_SKIP() << "this CPU cannot run the " << ClipKernelName(kernel)
                 << " build of the clipping loop; it is not tested on this machine";
  }
  ASSERT_TRUE(ForceClipKernel(kernel));
  ASSERT_EQ(ActiveClipKernel(), kernel);
  const Sums fused = ClippedSum(ClipPass::kFused);
  ASSERT_EQ(fused.ran, kernel) << "the forced build is the one that ran, not " << ClipKernelName(fused.ran);
  const Sums aten = ClippedSum(ClipPass::kAten);
  ASSERT_EQ(aten.ran, ClipKernel::kAuto) << "the ATen pass runs no build of the fused loop";
  const double err = (fused.clipped.to(at::kDouble) - aten.clipped.to(at::kDouble)).norm().item<double>() /
                     aten.clipped.to(at::kDouble).norm().item<double>();
  EXPECT_LT(err, 1e-6) << ClipKernelName(kernel);
  EXPECT_TRUE(at::allclose(fused.norms, aten.norms, 1e-5, 1e-6)) << ClipKernelName(kernel);
}

// Same lane-wise arithmetic, hence the same bits: a rank on an AVX2 machine
// and one without take identical steps. Needs both builds.
TEST(ClipKernelsTest, BothBuildsGiveTheSameBits) {
  if (!ClipKernelAvailable(ClipKernel::kAvx2)) {
    GTEST_SKIP() << "this CPU has no AVX2: only the baseline build runs here, there is nothing to compare";
  }
  ASSERT_TRUE(ForceClipKernel(ClipKernel::kBaseline));
  const Sums baseline = ClippedSum(ClipPass::kFused);
  ASSERT_TRUE(ForceClipKernel(ClipKernel::kAvx2));
  const Sums avx2 = ClippedSum(ClipPass::kFused);
  ForceClipKernel(ClipKernel::kAuto);
  ASSERT_EQ(baseline.ran, ClipKernel::kBaseline);
  ASSERT_EQ(avx2.ran, ClipKernel::kAvx2);
  EXPECT_TRUE(at::equal(baseline.clipped, avx2.clipped));
  EXPECT_TRUE(at::equal(baseline.norms, avx2.norms));
}

TEST(ClipKernelsTest, AutoPicksTheFastestBuildTheCpuHasAndRefusesTheOthers) {
  ASSERT_TRUE(ForceClipKernel(ClipKernel::kAuto));
  EXPECT_EQ(ActiveClipKernel(), ClipKernelAvailable(ClipKernel::kAvx2) ? ClipKernel::kAvx2 : ClipKernel::kBaseline);
  EXPECT_TRUE(ClipKernelAvailable(ClipKernel::kBaseline));
  if (!ClipKernelAvailable(ClipKernel::kAvx2)) {
    EXPECT_FALSE(ForceClipKernel(ClipKernel::kAvx2)) << "a build the CPU cannot run is never forced";
    EXPECT_EQ(ActiveClipKernel(), ClipKernel::kBaseline);
  }
}

INSTANTIATE_TEST_SUITE_P(Builds, ClipKernelTest, ::testing::Values(ClipKernel::kBaseline, ClipKernel::kAvx2),
                         [](const ::testing::TestParamInfo<ClipKernel>& info) {
                           return std::string(info.param == ClipKernel::kAvx2 ? "avx2" : "baseline");
                         });

}  // namespace
}  // namespace dpfleet::train
