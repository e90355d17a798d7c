// GlooCommunicator: CPU collectives through c10d's ProcessGroupGloo, the
// Gloo engine as LibTorch ships it (libtorch_cpu carries Gloo; the system's
// libgloo-dev provides only the declarations its header needs and is never
// linked, so one process holds one copy of Gloo).
//
// Rendezvous goes through a c10d::Store the caller provides: in the worker
// daemon that store is the coordinator's per-attempt key-value service, so
// no extra port or service is opened by hand. Every collective has a
// timeout; a dead peer surfaces as an error (closed TCP connection at once,
// a silent one at the timeout), never a hang.
#ifndef DPFLEET_WORKER_COMM_GLOO_COMMUNICATOR_H_
#define DPFLEET_WORKER_COMM_GLOO_COMMUNICATOR_H_

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"

namespace c10d {
class ProcessGroupGloo;
class Work;
}

namespace dpfleet::comm {

struct GlooOptions {
  // Address peers reach this rank on (its interface's IP or hostname).
  std::string host = "127.0.0.1";
  // Bound on connecting the full mesh.
  absl::Duration connect_timeout = absl::Seconds(60);
  // When set and true, waiting collectives give up at once (the job was
  // cancelled or failed elsewhere). Not owned.
  const std::atomic<bool>* cancel = nullptr;
};

class GlooCommunicator final : public Communicator {
 public:
  // Blocks until all `world_size` ranks joined through `store` (or the
  // connect timeout passes).
  static absl::StatusOr<std::unique_ptr<GlooCommunicator>> Create(c10::intrusive_ptr<c10d::Store> store,
                                                                  int rank, int world_size,
                                                                  const GlooOptions& options);
  ~GlooCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  absl::Status AllReduceSum(torch::Tensor& tensor, absl::Duration timeout) override;
  absl::Status Broadcast(torch::Tensor& tensor, int root, absl::Duration timeout) override;
  absl::Status Barrier(absl::Duration timeout) override;
  void Abort() override;

 private:
  GlooCommunicator(c10::intrusive_ptr<c10d::ProcessGroupGloo> pg, int rank, int world_size,
                   const std::atomic<bool>* cancel);
  absl::Status CheckUsable() const;
  // Waits for `work` until it completes, the timeout passes or a cancel.
  absl::Status Await(const c10::intrusive_ptr<c10d::Work>& work, const char* op, absl::Duration timeout);

  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
  int rank_;
  int world_size_;
  const std::atomic<bool>* cancel_;
  std::atomic<bool> aborted_{false};
  std::atomic<bool> broken_{false};  // a collective failed: the group is unusable
};

}  // namespace dpfleet::comm

#endif  // DPFLEET_WORKER_COMM_GLOO_COMMUNICATOR_H_
