// Where a rank's DP-SGD engine computes: the CPU or one CUDA device.
//
// The build links LibTorch's CPU library only (cmake/Torch.cmake), so the
// same worker binary runs on machines without any CUDA library. A CUDA device
// becomes usable when libtorch_cuda — the GPU kernels of the very LibTorch
// the binary is linked against — is loaded into the process; ResolveDevice
// does that on first use, from the directory libtorch_cpu was loaded from.
// ATen decides once per process whether CUDA exists (the first query of its
// CUDA hooks), so a CUDA device must be resolved before any CUDA tensor is
// touched: the worker does it at start-up.
#ifndef DPFLEET_WORKER_TRAIN_DEVICE_H_
#define DPFLEET_WORKER_TRAIN_DEVICE_H_

#include <c10/core/Device.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/gpu/cuda_arch.h"

namespace dpfleet::train {

// Syntax only: "cpu", "cuda" (= cuda:0) or "cuda:N". Anything else is
// InvalidArgument naming the value.
absl::StatusOr<c10::Device> ParseDevice(absl::string_view name);

// ParseDevice, then for CUDA: loads libtorch_cuda (once) and checks that
// device N exists and that the loaded LibTorch has kernels for its compute
// capability. FailedPrecondition says why a CUDA device cannot be used
// (library not found or not loadable, with the loader's message; no driver
// or no device; index out of range; a GPU generation this LibTorch build
// does not support, naming both).
absl::StatusOr<c10::Device> ResolveDevice(absl::string_view name);

// Loads libtorch_cuda into the process if it is not loaded yet; the result
// of the first call is kept. OK does not mean a GPU is present.
absl::Status LoadCudaRuntime();

// Number of CUDA devices ATen sees (0 when the CUDA runtime is not loaded).
int CudaDevices();

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_DEVICE_H_
