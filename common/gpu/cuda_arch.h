// Which GPU generations a LibTorch build can run on. A CUDA build carries
// machine code (SASS) for some compute capabilities and optionally PTX the
// driver compiles for newer ones; a GPU outside both gets "no kernel image"
// at its first step. The worker checks its device at start against the
// build it loaded (worker/train/device.h); `dpctl plan` marks fleet shapes
// whose GPUs the pinned build cannot run (common/plan).
//
// Pure functions on text; no CUDA needed.
#ifndef DPFLEET_COMMON_GPU_CUDA_ARCH_H_
#define DPFLEET_COMMON_GPU_CUDA_ARCH_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace dpfleet::gpu {

// The GPU generations a LibTorch build carries kernels for, read from its
// build configuration (the "NVCC architecture flags" line of
// CUDAHooks::showConfig, e.g. "-gencode;arch=compute_75,code=sm_75;...").
struct CudaArchList {
  std::vector<std::string> sass;  // machine code: "sm_75", "sm_90a", ...
  std::vector<std::string> ptx;   // PTX the driver can compile for newer GPUs: "compute_120"
};
CudaArchList ParseCudaArchFlags(absl::string_view build_config);
// "sm_75, sm_80, ..., PTX compute_120".
std::string ArchListString(const CudaArchList& archs);

// Whether a GPU of compute capability major.minor can run `archs`: machine
// code sm_XY runs on capability X.Z with Z >= Y (an "a" suffix: on X.Y
// only); PTX compute_XY is compiled by the driver for any capability >= X.Y.
// FailedPrecondition naming the capability and the list otherwise. An empty
// list (configuration not readable) is accepted: nothing to check against.
absl::Status CheckCudaCapability(int major, int minor, const CudaArchList& archs);

// The architecture flags of the LibTorch the project pins (torch 2.11.0,
// CUDA 13.0 wheel), as its libtorch_cuda reports them; a test checks them
// against the installed wheel.
inline constexpr char kPinnedTorchCudaArchFlags[] =
    "NVCC architecture flags: -gencode;arch=compute_75,code=sm_75;-gencode;arch=compute_80,code=sm_80;"
    "-gencode;arch=compute_86,code=sm_86;-gencode;arch=compute_90,code=sm_90;-gencode;arch=compute_100,"
    "code=sm_100;-gencode;arch=compute_120,code=sm_120";

}  // namespace dpfleet::gpu

#endif  // DPFLEET_COMMON_GPU_CUDA_ARCH_H_
