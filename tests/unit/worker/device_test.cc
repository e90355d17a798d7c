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

// The architecture line of torch 2.11.0+cu130's build configuration
// (CUDAHooks::showConfig), as the wheel's libtorch_cuda.so carries it.
constexpr char kCu130Config[] =
    "PyTorch built with:\n"
    "  - CUDA Runtime 13.0\n"
    "  - NVCC architecture flags: -gencode;arch=compute_75,code=sm_75;-gencode;arch=compute_80,code=sm_80;"
    "-gencode;arch=compute_86,code=sm_86;-gencode;arch=compute_90,code=sm_90;-gencode;arch=compute_100,"
    "code=sm_100;-gencode;arch=compute_120,code=sm_120\n"
    "  - CuDNN 9.13\n";

TEST(DeviceTest, ReadsTheArchitecturesOfALibTorchBuild) {
  const CudaArchList archs = ParseCudaArchFlags(kCu130Config);
  EXPECT_THAT(archs.sass, ::testing::ElementsAre("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"));
  EXPECT_TRUE(archs.ptx.empty());
  const CudaArchList with_ptx = ParseCudaArchFlags(
      "  - NVCC architecture flags: -gencode;arch=compute_90a,code=sm_90a;-gencode;arch=compute_120,"
      "code=[sm_120,compute_120]\n");
  EXPECT_THAT(with_ptx.sass, ::testing::ElementsAre("sm_90a", "sm_120"));
  EXPECT_THAT(with_ptx.ptx, ::testing::ElementsAre("compute_120"));
  EXPECT_EQ(ArchListString(with_ptx), "sm_90a, sm_120, PTX compute_120");
  EXPECT_TRUE(ParseCudaArchFlags("PyTorch built with:\n  - CPU capability usage: AVX2\n").sass.empty());
}

TEST(DeviceTest, GpuGenerationsOfTheFleetAgainstTheCu130Build) {
  const CudaArchList archs = ParseCudaArchFlags(kCu130Config);
  // Tesla M60 (AWS g3) is Maxwell, 5.2; V100 (p3) is 7.0: no kernels.
  absl::Status m60 = CheckCudaCapability(5, 2, archs);
  EXPECT_EQ(m60.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(m60.message(), HasSubstr("compute capability 5.2"));
  EXPECT_THAT(m60.message(), HasSubstr("sm_75, sm_80"));
  EXPECT_FALSE(CheckCudaCapability(7, 0, archs).ok());
  // T4 7.5, A100 8.0, A10G 8.6, L4 8.9 (runs sm_86 code), H100/H200 9.0,
  // B200 10.0, RTX 5090 12.0.
  for (auto [major, minor] : {std::pair{7, 5}, {8, 0}, {8, 6}, {8, 9}, {9, 0}, {10, 0}, {12, 0}}) {
    EXPECT_TRUE(CheckCudaCapability(major, minor, archs).ok()) << major << "." << minor;
  }
  // A generation newer than every kernel, without PTX to compile.
  EXPECT_FALSE(CheckCudaCapability(13, 0, archs).ok());
}

TEST(DeviceTest, ArchSpecificCodeRunsOnItsOwnCapabilityAndPtxOnNewerOnes) {
  CudaArchList archs;
  archs.sass = {"sm_90a"};
  EXPECT_TRUE(CheckCudaCapability(9, 0, archs).ok());
  EXPECT_FALSE(CheckCudaCapability(9, 1, archs).ok());
  archs.ptx = {"compute_80"};
  EXPECT_TRUE(CheckCudaCapability(9, 1, archs).ok());
  EXPECT_TRUE(CheckCudaCapability(12, 0, archs).ok());
  EXPECT_FALSE(CheckCudaCapability(7, 5, archs).ok());
  // Nothing readable to check against: accepted.
  EXPECT_TRUE(CheckCudaCapability(5, 2, CudaArchList{}).ok());
}

}  // namespace
}  // namespace dpfleet::train
