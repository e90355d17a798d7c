#include "worker/train/device.h"

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <limits>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace dpfleet::train {
namespace {

// Directory of the shared object that defines at::globalContext — the
// libtorch_cpu this process runs. libtorch_cuda must come from the same
// LibTorch build.
std::string TorchLibraryDir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&at::globalContext), &info) == 0 || info.dli_fname == nullptr) return "";
  return std::filesystem::path(info.dli_fname).parent_path().string();
}

absl::Status LoadOnce() {
  // Already in the process (e.g. linked by a host application): nothing to do.
  if (dlopen("libtorch_cuda.so", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD) != nullptr) return absl::OkStatus();
  const std::string dir = TorchLibraryDir();
  if (dir.empty()) return absl::FailedPreconditionError("cannot locate the LibTorch library directory");
  const std::string path = dir + "/libtorch_cuda.so";
  if (!std::filesystem::exists(path)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " does not exist: this LibTorch has no CUDA kernels (a CPU-only torch build)"));
  }
  // RTLD_GLOBAL: libtorch_cuda's registrations (CUDA hooks, allocator,
  // kernels) are made by its static initialisers and must see, and be seen
  // by, the symbols of the libtorch_cpu already loaded.
  if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    const char* why = dlerror();
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load ", path, ": ", why != nullptr ? why : "unknown loader error",
                     " (its CUDA libraries — cuBLAS, cuDNN, NCCL, ... — come with the full torch install: "
                     "`./dpfleet setup --gpu`)"));
  }
  return absl::OkStatus();
}

// Compute capability of CUDA device `index` through the CUDA runtime that
// libtorch_cuda brought into the process (looked up by name, so the CPU
// build needs no CUDA headers). cudaDevAttrComputeCapabilityMajor/Minor are
// 75 and 76 in every CUDA runtime API.
absl::Status DeviceCapability(int index, int* major, int* minor) {
  using GetAttribute = int (*)(int* value, int attribute, int device);
  auto get = reinterpret_cast<GetAttribute>(dlsym(RTLD_DEFAULT, "cudaDeviceGetAttribute"));
  if (get == nullptr) return absl::FailedPreconditionError("the CUDA runtime is not loaded");
  if (get(major, 75, index) != 0 || get(minor, 76, index) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot read the compute capability of cuda:", index));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<c10::Device> ParseDevice(absl::string_view name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  if (name == "cuda") return c10::Device(c10::kCUDA, 0);
  if (absl::StartsWith(name, "cuda:")) {
    absl::string_view index = name.substr(5);
    int n = -1;
    const bool digits = !index.empty() && index.size() <= 3 &&
                        std::all_of(index.begin(), index.end(), [](char c) { return std::isdigit(c) != 0; });
    if (digits && absl::SimpleAtoi(index, &n) && n <= std::numeric_limits<c10::DeviceIndex>::max()) {
      return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(n));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("device '", name, "' must be cpu, cuda or cuda:N"));
}

absl::Status LoadCudaRuntime() {
  static std::once_flag once;
  static absl::Status* status = nullptr;
  std::call_once(once, [] { status = new absl::Status(LoadOnce()); });
  return *status;
}

int CudaDevices() {
  if (!LoadCudaRuntime().ok()) return 0;
  return at::detail::getCUDAHooks().deviceCount();
}

absl::StatusOr<c10::Device> ResolveDevice(absl::string_view name) {
  absl::StatusOr<c10::Device> device = ParseDevice(name);
  if (!device.ok() || device->is_cpu()) return device;
  if (absl::Status s = LoadCudaRuntime(); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("device ", name, ": ", s.message()));
  }
  if (!at::globalContext().hasCUDA()) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", name, ": libtorch_cuda is loaded but finds no usable CUDA driver or GPU"));
  }
  const int count = CudaDevices();
  if (device->index() >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", name, " does not exist: ", count, " CUDA device(s) visible"));
  }
  // A GPU without kernels in this build would fail at its first step, after
  // the worker took a job; refuse it now, naming both sides.
  int major = 0, minor = 0;
  RETURN_IF_ERROR(DeviceCapability(device->index(), &major, &minor));
  if (absl::Status s = gpu::CheckCudaCapability(
          major, minor, gpu::ParseCudaArchFlags(at::detail::getCUDAHooks().showConfig()));
      !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("device ", name, ": ", s.message()));
  }
  return device;
}

}  // namespace dpfleet::train
