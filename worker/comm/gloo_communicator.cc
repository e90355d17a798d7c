#include "worker/comm/gloo_communicator.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

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

GlooCommunicator::GlooCommunicator(c10::intrusive_ptr<c10d::ProcessGroupGloo> pg, int rank, int world_size,
                                   const std::atomic<bool>* cancel)
    : pg_(std::move(pg)), rank_(rank), world_size_(world_size), cancel_(cancel) {}

GlooCommunicator::~GlooCommunicator() {
  if (broken_ || aborted_) {
    // An abandoned collective may still block Gloo's worker thread until its
    // own timeout; the group's destructor joins that thread. Release the
    // group off this thread so that a cancelled run ends at once.
    std::thread([pg = std::move(pg_)]() mutable { pg.reset(); }).detach();
  }
}

absl::Status GlooCommunicator::Await(const c10::intrusive_ptr<c10d::Work>& work, const char* op,
                                     absl::Duration timeout) {
  // Spin briefly (a small all-reduce on a fast link finishes in
  // microseconds), then poll, so a cancel or abort is noticed without
  // waiting for the collective's timeout.
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + timeout;
  while (!work->isCompleted()) {
    if (aborted_ || (cancel_ && cancel_->load())) {
      broken_ = true;
      return absl::CancelledError(absl::StrCat(op, " abandoned: the run was cancelled"));
    }
    const absl::Time now = absl::Now();
    if (now > deadline + absl::Seconds(1)) {
      broken_ = true;
      return absl::DeadlineExceededError(absl::StrCat(op, " timed out after ", absl::FormatDuration(timeout)));
    }
    if (now - start < absl::Microseconds(200)) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  work->wait();  // completed: returns or rethrows the collective's error
  return absl::OkStatus();
}

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
    return std::unique_ptr<GlooCommunicator>(new GlooCommunicator(std::move(pg), rank, world_size, options.cancel));
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
    return Await(pg_->allreduce(tensors, opts), "all-reduce", timeout);
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
    return Await(pg_->broadcast(tensors, opts), "broadcast", timeout);
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
    return Await(pg_->barrier(opts), "barrier", timeout);
  } catch (const std::exception& e) {
    broken_ = true;
    return CollectiveError("barrier", e);
  }
}

void GlooCommunicator::Abort() { aborted_ = true; }

}  // namespace dpfleet::comm
