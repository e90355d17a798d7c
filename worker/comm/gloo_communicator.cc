#include "worker/comm/gloo_communicator.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "absl/strings/str_cat.h"

namespace dpfleet::comm {
namespace {

std::chrono::milliseconds ToMs(absl::Duration d) {
  return std::chrono::milliseconds(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

// Gloo reports timeouts and dead peers as c10::Error / std::exception with
// a message; keep it, and classify the common cases.
absl::Status CollectiveError(const char* op, const std::exception& e) {
  const std::string msg = e.what();
  const std::string text = absl::StrCat(op, " failed: ", msg.substr(0, msg.find('\n')));
  if (msg.find("imed out") != std::string::npos || msg.find("Timeout") != std::string::npos) {
    return absl::DeadlineExceededError(text);
  }
  return absl::UnavailableError(text);
}

}  // namespace

GlooCommunicator::GlooCommunicator(c10::intrusive_ptr<c10d::ProcessGroupGloo> pg, int rank, int world_size)
    : pg_(std::move(pg)), rank_(rank), world_size_(world_size) {}

GlooCommunicator::~GlooCommunicator() = default;

absl::StatusOr<std::unique_ptr<GlooCommunicator>> GlooCommunicator::Create(
    c10::intrusive_ptr<c10d::Store> store, int rank, int world_size, const GlooOptions& options) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " is outside a world of ", world_size));
  }
  try {
    auto opts = c10d::ProcessGroupGloo::Options::create();
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(options.host));
    opts->timeout = ToMs(options.connect_timeout);
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, opts);
    return std::unique_ptr<GlooCommunicator>(new GlooCommunicator(std::move(pg), rank, world_size));
  } catch (const std::exception& e) {
    return CollectiveError("gloo rendezvous", e);
  }
}

absl::Status GlooCommunicator::CheckUsable() const {
  if (aborted_) return absl::CancelledError("communicator was aborted");
  if (broken_) return absl::FailedPreconditionError("communicator is broken by an earlier failure");
  return absl::OkStatus();
}

absl::Status GlooCommunicator::AllReduceSum(torch::Tensor& tensor, absl::Duration timeout) {
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  try {
    std::vector<at::Tensor> tensors = {tensor};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = ToMs(timeout);
    auto work = pg_->allreduce(tensors, opts);
    work->wait(ToMs(timeout));
    return absl::OkStatus();
  } catch (const std::exception& e) {
    broken_ = true;
    return CollectiveError("all-reduce", e);
  }
}

absl::Status GlooCommunicator::Broadcast(torch::Tensor& tensor, int root, absl::Duration timeout) {
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  if (root < 0 || root >= world_size_) {
    return absl::InvalidArgumentError(absl::StrCat("broadcast root ", root, " outside world ", world_size_));
  }
  try {
    std::vector<at::Tensor> tensors = {tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = ToMs(timeout);
    pg_->broadcast(tensors, opts)->wait(ToMs(timeout));
    return absl::OkStatus();
  } catch (const std::exception& e) {
    broken_ = true;
    return CollectiveError("broadcast", e);
  }
}

absl::Status GlooCommunicator::Barrier(absl::Duration timeout) {
  if (absl::Status s = CheckUsable(); !s.ok()) return s;
  try {
    c10d::BarrierOptions opts;
    opts.timeout = ToMs(timeout);
    pg_->barrier(opts)->wait(ToMs(timeout));
    return absl::OkStatus();
  } catch (const std::exception& e) {
    broken_ = true;
    return CollectiveError("barrier", e);
  }
}

void GlooCommunicator::Abort() { aborted_ = true; }

}  // namespace dpfleet::comm
