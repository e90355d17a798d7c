// Communicator: the collectives a DP-SGD rank needs (all-reduce sum,
// broadcast, barrier, abort), each bounded by a timeout.
//
// Implementations: LocalCommunicator (a single rank; every collective is the
// identity), Gloo (CPU ranks) and NCCL (GPU ranks). A dead peer must become an
// error within the timeout, never a hang. A communicator never adds, scales
// or inspects the data it moves: the privacy noise is the engine's business.
#ifndef DPFLEET_WORKER_COMM_COMMUNICATOR_H_
#define DPFLEET_WORKER_COMM_COMMUNICATOR_H_

#include <torch/types.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace dpfleet::comm {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // In place: every rank ends with the element-wise sum over all ranks.
  [[nodiscard]] virtual absl::Status AllReduceSum(torch::Tensor& tensor, absl::Duration timeout) = 0;
  // In place: every rank ends with root's tensor.
  [[nodiscard]] virtual absl::Status Broadcast(torch::Tensor& tensor, int root, absl::Duration timeout) = 0;
  [[nodiscard]] virtual absl::Status Barrier(absl::Duration timeout) = 0;
  // Tears down in-flight collectives so that blocked calls return an error.
  virtual void Abort() = 0;
};

// World of one: the collectives are identities.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  absl::Status AllReduceSum(torch::Tensor&, absl::Duration) override { return absl::OkStatus(); }
  absl::Status Broadcast(torch::Tensor&, int root, absl::Duration) override {
    return root == 0 ? absl::OkStatus() : absl::InvalidArgumentError("broadcast root out of range");
  }
  absl::Status Barrier(absl::Duration) override { return absl::OkStatus(); }
  void Abort() override {}
};

}  // namespace dpfleet::comm

#endif  // DPFLEET_WORKER_COMM_COMMUNICATOR_H_
