// Which GPU generations a LibTorch build runs on (common/gpu/cuda_arch.h).
#include "common/gpu/cuda_arch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>

namespace dpfleet::gpu {
namespace {

using ::testing::HasSubstr;

// The architecture line of torch 2.11.0+cu130's build configuration
// (CUDAHooks::showConfig), as the wheel's libtorch_cuda.so carries it.
const std::string kCu130Config =
    std::string("PyTorch built with:\n  - CUDA Runtime 13.0\n  - ") + kPinnedTorchCudaArchFlags + "\n  - CuDNN 9.13\n";

TEST(CudaArchTest, ReadsTheArchitecturesOfALibTorchBuild) {
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

TEST(CudaArchTest, GpuGenerationsOfTheFleetAgainstTheCu130Build) {
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

TEST(CudaArchTest, ArchSpecificCodeRunsOnItsOwnCapabilityAndPtxOnNewerOnes) {
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

// The pinned constant is what the installed wheel's libtorch_cuda.so
// carries: upgrading torch without updating it fails here.
TEST(CudaArchTest, PinnedFlagsMatchTheInstalledLibTorch) {
  const char* torch_lib = std::getenv("DPFLEET_TORCH_LIB_DIR");
  ASSERT_NE(torch_lib, nullptr);
  const std::string lib = std::string(torch_lib) + "/libtorch_cuda.so";
  std::ifstream f(lib, std::ios::binary);
  if (!f) GTEST_SKIP() << lib << " is not installed (a CPU-only torch)";
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t at = bytes.find("arch=compute_");
  ASSERT_NE(at, std::string::npos);
  // The flags are one NUL-terminated string starting with "-gencode;".
  const size_t begin = bytes.rfind('\0', at) + 1;
  const std::string flags = bytes.substr(begin, bytes.find('\0', at) - begin);
  const CudaArchList installed = ParseCudaArchFlags("NVCC architecture flags: " + flags);
  const CudaArchList pinned = ParseCudaArchFlags(kPinnedTorchCudaArchFlags);
  EXPECT_FALSE(installed.sass.empty()) << flags;
  EXPECT_EQ(installed.sass, pinned.sass) << flags;
  EXPECT_EQ(installed.ptx, pinned.ptx) << flags;
}

}  // namespace
}  // namespace dpfleet::gpu
