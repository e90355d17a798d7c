#include "worker/comm/cuda/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <functional>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace dpfleet::comm {
namespace {

absl::Status CudaError(const char* what, cudaError_t e) {
  return absl::UnavailableError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

absl::Status NcclError(const char* what, ncclResult_t r, ncclComm_t comm) {
  std::string detail = ncclGetErrorString(r);
  if (comm != nullptr) {
    if (const char* last = ncclGetLastError(comm); last != nullptr && *last) detail += absl::StrCat(" (", last, ")");
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", detail));
}

}  // namespace

std::string CudaBuildVersions() {
  return absl::StrCat("NCCL ", NCCL_MAJOR, ".", NCCL_MINOR, ".", NCCL_PATCH, ", CUDA runtime ", CUDART_VERSION / 1000,
                      ".", (CUDART_VERSION % 1000) / 10);
}

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

struct NcclCommunicator::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  // Orders the collective after the work that produced a device tensor.
  cudaEvent_t ready = nullptr;
  int device = 0;
  void* buffer = nullptr;  // device staging buffer for host tensors
  size_t buffer_bytes = 0;
  const std::atomic<bool>* cancel = nullptr;
  std::atomic<bool> aborted{false};
  bool broken = false;

  // Polls the communicator until `done()` or the deadline; aborts it on
  // expiry, cancel or an asynchronous NCCL error, so no caller hangs.
  absl::Status Poll(const char* op, absl::Time deadline, const std::function<bool()>& done) {
    while (true) {
      ncclResult_t async = ncclSuccess;
      ncclResult_t r = ncclCommGetAsyncError(comm, &async);
      if (r != ncclSuccess) return Fail(NcclError(op, r, comm));
      if (async != ncclSuccess && async != ncclInProgress) return Fail(NcclError(op, async, comm));
      if (async == ncclSuccess && done()) return absl::OkStatus();
      if (aborted || (cancel && cancel->load())) return Fail(absl::CancelledError(absl::StrCat(op, " cancelled")));
      if (absl::Now() > deadline) return Fail(absl::DeadlineExceededError(absl::StrCat(op, " timed out")));
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  absl::Status Fail(absl::Status s) {
    if (!broken && comm != nullptr) ncclCommAbort(comm);
    broken = true;
    comm = nullptr;
    return s;
  }

  ~Impl() {
    if (comm != nullptr) {
      if (ncclCommFinalize(comm) == ncclSuccess) {
        ncclResult_t state = ncclInProgress;
        const absl::Time deadline = absl::Now() + absl::Seconds(10);
        while (ncclCommGetAsyncError(comm, &state) == ncclSuccess && state == ncclInProgress &&
               absl::Now() < deadline) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        if (state == ncclSuccess) {
          ncclCommDestroy(comm);
        } else {
          ncclCommAbort(comm);
        }
      } else {
        ncclCommAbort(comm);
      }
    }
    if (buffer) cudaFree(buffer);
    if (ready) cudaEventDestroy(ready);
    if (stream) cudaStreamDestroy(stream);
  }
};

NcclCommunicator::NcclCommunicator(std::unique_ptr<Impl> impl, int rank, int world_size)
    : impl_(std::move(impl)), rank_(rank), world_size_(world_size) {}

NcclCommunicator::~NcclCommunicator() = default;

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(c10::intrusive_ptr<c10d::Store> store,
                                                                           int rank, int world_size,
                                                                           const NcclOptions& options) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " is outside a world of ", world_size));
  }
  const int devices = CudaDeviceCount();
  if (options.device < 0 || options.device >= devices) {
    return absl::FailedPreconditionError(
        absl::StrCat("cuda:", options.device, " is not available (", devices, " CUDA device(s) visible)"));
  }
  auto impl = std::make_unique<Impl>();
  impl->device = options.device;
  impl->cancel = options.cancel;
  if (cudaError_t e = cudaSetDevice(options.device); e != cudaSuccess) return CudaError("cudaSetDevice", e);
  char bus_id[64] = {0};
  if (cudaError_t e = cudaDeviceGetPCIBusId(bus_id, sizeof(bus_id), options.device); e != cudaSuccess) {
    return CudaError("cudaDeviceGetPCIBusId", e);
  }
  try {
    // One GPU per rank: NCCL would fail later and less clearly.
    const std::string mine = absl::StrCat(options.host, "/", bus_id);
    store->set(absl::StrCat("nccl/device/", rank), mine);
    std::map<std::string, int> seen;
    for (int r = 0; r < world_size; ++r) {
      const std::vector<uint8_t> v = store->get(absl::StrCat("nccl/device/", r));
      const std::string other(v.begin(), v.end());
      if (auto it = seen.find(other); it != seen.end()) {
        return absl::FailedPreconditionError(absl::StrCat("ranks ", it->second, " and ", r, " are both on GPU ", other,
                                                          "; each rank needs its own GPU"));
      }
      seen[other] = r;
    }
    ncclUniqueId id;
    if (rank == 0) {
      if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) return NcclError("ncclGetUniqueId", r, nullptr);
      store->set("nccl/unique_id", std::vector<uint8_t>(reinterpret_cast<uint8_t*>(&id),
                                                        reinterpret_cast<uint8_t*>(&id) + sizeof(id)));
    } else {
      const std::vector<uint8_t> v = store->get("nccl/unique_id");
      if (v.size() != sizeof(id)) return absl::DataLossError("published NCCL unique id has the wrong size");
      std::memcpy(&id, v.data(), sizeof(id));
    }
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&impl->comm, world_size, id, rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) return NcclError("ncclCommInitRankConfig", r, nullptr);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("NCCL rendezvous: ", e.what()));
  }
  if (absl::Status s = impl->Poll("NCCL init", absl::Now() + options.init_timeout, [] { return true; }); !s.ok()) {
    return s;
  }
  if (cudaError_t e = cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking); e != cudaSuccess) {
    return CudaError("cudaStreamCreate", e);
  }
  if (cudaError_t e = cudaEventCreateWithFlags(&impl->ready, cudaEventDisableTiming); e != cudaSuccess) {
    return CudaError("cudaEventCreate", e);
  }
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(impl), rank, world_size));
}

absl::Status NcclCommunicator::Collective(torch::Tensor& tensor, int root, absl::Duration timeout, const char* op) {
  Impl& im = *impl_;
  if (im.broken || im.comm == nullptr) return absl::FailedPreconditionError("NCCL communicator is broken");
  if (tensor.scalar_type() != torch::kFloat32 || !tensor.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": needs a contiguous float32 tensor"));
  }
  cudaSetDevice(im.device);
  const size_t bytes = static_cast<size_t>(tensor.numel()) * sizeof(float);
  const bool on_host = !tensor.is_cuda();
  void* data = tensor.data_ptr();
  if (!on_host) {
    if (tensor.device().index() != im.device) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": tensor is on ", tensor.device().str(),
                                                     ", this communicator on cuda:", im.device));
    }
    // The tensor was written by kernels LibTorch queued on its current
    // stream — the legacy default stream, as dpfleet never switches streams —
    // and the NCCL stream does not synchronise with it implicitly. Every
    // later use waits on the host until the collective has finished (Poll).
    if (cudaError_t e = cudaEventRecord(im.ready, cudaStreamLegacy); e != cudaSuccess) {
      return CudaError("cudaEventRecord", e);
    }
    if (cudaError_t e = cudaStreamWaitEvent(im.stream, im.ready, 0); e != cudaSuccess) {
      return CudaError("cudaStreamWaitEvent", e);
    }
  } else {
    if (bytes > im.buffer_bytes) {
      if (im.buffer) cudaFree(im.buffer);
      im.buffer = nullptr;
      im.buffer_bytes = 0;
      if (cudaError_t e = cudaMalloc(&im.buffer, bytes); e != cudaSuccess) return CudaError("cudaMalloc", e);
      im.buffer_bytes = bytes;
    }
    if (cudaError_t e = cudaMemcpyAsync(im.buffer, data, bytes, cudaMemcpyHostToDevice, im.stream); e != cudaSuccess) {
      return CudaError("copy to device", e);
    }
    data = im.buffer;
  }
  ncclResult_t r = root < 0 ? ncclAllReduce(data, data, tensor.numel(), ncclFloat32, ncclSum, im.comm, im.stream)
                            : ncclBroadcast(data, data, tensor.numel(), ncclFloat32, root, im.comm, im.stream);
  if (r != ncclSuccess && r != ncclInProgress) return im.Fail(NcclError(op, r, im.comm));
  if (on_host) {
    if (cudaError_t e = cudaMemcpyAsync(tensor.data_ptr(), im.buffer, bytes, cudaMemcpyDeviceToHost, im.stream);
        e != cudaSuccess) {
      return im.Fail(CudaError("copy to host", e));
    }
  }
  return im.Poll(op, absl::Now() + timeout, [&] { return cudaStreamQuery(im.stream) == cudaSuccess; });
}

absl::Status NcclCommunicator::AllReduceSum(torch::Tensor& tensor, absl::Duration timeout) {
  return Collective(tensor, -1, timeout, "NCCL all-reduce");
}

absl::Status NcclCommunicator::Broadcast(torch::Tensor& tensor, int root, absl::Duration timeout) {
  if (root < 0 || root >= world_size_) {
    return absl::InvalidArgumentError(absl::StrCat("broadcast root ", root, " outside world ", world_size_));
  }
  return Collective(tensor, root, timeout, "NCCL broadcast");
}

absl::Status NcclCommunicator::Barrier(absl::Duration timeout) {
  torch::Tensor one = torch::ones({1});
  return Collective(one, -1, timeout, "NCCL barrier");
}

void NcclCommunicator::Abort() { impl_->aborted = true; }

}  // namespace dpfleet::comm
