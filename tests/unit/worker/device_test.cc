// Device names and CUDA resolution (worker/train/device.h). On a machine
// without a usable GPU, a CUDA device must be refused with the reason; the
// GPU side is covered by the `gpu` tests.
#include "worker/train/device.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace dpfleet::train {
namespace {

using ::testing::HasSubstr;

TEST(DeviceTest, ParsesCpuAndCudaNames) {
  auto cpu = ParseDevice("cpu");
  ASSERT_TRUE(cpu.ok());
  EXPECT_TRUE(cpu->is_cpu());
  auto cuda = ParseDevice("cuda");
  ASSERT_TRUE(cuda.ok());
  EXPECT_TRUE(cuda->is_cuda());
  EXPECT_EQ(cuda->index(), 0);
  auto third = ParseDevice("cuda:3");
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->index(), 3);
  EXPECT_EQ(third->str(), "cuda:3");
}

TEST(DeviceTest, RefusesMalformedNamesNamingTheValue) {
  for (const char* bad : {"", "gpu", "CPU", "cuda:", "cuda:-1", "cuda:x", "cuda:1:2", "cuda:999", "cuda0", " cpu"}) {
    SCOPED_TRACE(bad);
    auto d = ParseDevice(bad);
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(d.status().message()), HasSubstr(std::string("'") + bad + "'"));
    EXPECT_EQ(ResolveDevice(bad).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(DeviceTest, CpuResolvesWithoutLoadingCuda) {
  auto d = ResolveDevice("cpu");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->is_cpu());
}

TEST(DeviceTest, CudaWithoutAGpuIsRefusedWithTheReason) {
  if (LoadCudaRuntime().ok() && CudaDevices() > 0) GTEST_SKIP() << "this machine has a GPU (see the gpu tests)";
  for (const char* name : {"cuda", "cuda:1"}) {
    SCOPED_TRACE(name);
    auto d = ResolveDevice(name);
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
    const std::string why(d.status().message());
    EXPECT_THAT(why, HasSubstr(std::string("device ") + name));
    // Either libtorch_cuda is absent or unloadable (the loader says which
    // library is missing), or it loaded and found no GPU.
    if (!LoadCudaRuntime().ok()) {
      EXPECT_THAT(why, HasSubstr("libtorch_cuda"));
      EXPECT_EQ(CudaDevices(), 0);
    }
  }
}

}  // namespace
}  // namespace dpfleet::train
