// NcclCommunicator: GPU collectives through NCCL's own API (built only with
// DPFLEET_WITH_CUDA). Rank 0 creates the NCCL unique id and publishes it in
// the c10d store the caller provides (the coordinator's rendezvous service
// in the worker daemon); the others read it there.
//
// A dead peer never hangs a rank: the communicator is created non-blocking,
// every operation is polled against its timeout (and an optional cancel
// flag), and on expiry the communicator is aborted, which makes NCCL give up
// the in-flight kernels. Two ranks on one GPU are refused before NCCL init.
//
// Tensors may live on the host (copied through a device buffer on this
// rank's GPU) or on this rank's GPU.
#ifndef DPFLEET_WORKER_COMM_CUDA_NCCL_COMMUNICATOR_H_
#define DPFLEET_WORKER_COMM_CUDA_NCCL_COMMUNICATOR_H_

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"

namespace dpfleet::comm {

struct NcclOptions {
  int device = 0;                               // CUDA ordinal of this rank
  std::string host = "localhost";               // identifies the machine for the one-GPU-per-rank check
  absl::Duration init_timeout = absl::Seconds(60);
  const std::atomic<bool>* cancel = nullptr;    // not owned
};

// Number of CUDA devices visible (0 when the driver or a GPU is missing).
int CudaDeviceCount();

// The NCCL and CUDA runtime versions this binary was built against:
// "NCCL 2.27.7, CUDA runtime 13.0".
std::string CudaBuildVersions();

class NcclCommunicator final : public Communicator {
 public:
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(c10::intrusive_ptr<c10d::Store> store, int rank,
                                                                  int world_size, const NcclOptions& options);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  absl::Status AllReduceSum(torch::Tensor& tensor, absl::Duration timeout) override;
  absl::Status Broadcast(torch::Tensor& tensor, int root, absl::Duration timeout) override;
  absl::Status Barrier(absl::Duration timeout) override;
  void Abort() override;

  struct Impl;

 private:
  NcclCommunicator(std::unique_ptr<Impl> impl, int rank, int world_size);
  absl::Status Collective(torch::Tensor& tensor, int root, absl::Duration timeout, const char* op);

  std::unique_ptr<Impl> impl_;
  int rank_;
  int world_size_;
};

}  // namespace dpfleet::comm

#endif  // DPFLEET_WORKER_COMM_CUDA_NCCL_COMMUNICATOR_H_
