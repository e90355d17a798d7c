#include "worker/agent/coordinator_store.h"

#include <grpcpp/grpcpp.h>

#include <thread>

#include "absl/strings/str_cat.h"

namespace dpfleet::worker {
namespace {

constexpr auto kRpcSlack = std::chrono::seconds(5);

[[noreturn]] void Throw(const std::string& what, const grpc::Status& s) {
  const std::string msg = absl::StrCat("coordinator store: ", what, ": ", s.error_message());
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    C10_THROW_ERROR(DistStoreError, msg);
  }
  C10_THROW_ERROR(DistNetworkError, msg);
}

}  // namespace

CoordinatorStore::CoordinatorStore(std::shared_ptr<v1::WorkerService::StubInterface> stub, std::string job_id,
                                   int32_t attempt, std::chrono::milliseconds timeout)
    : c10d::Store(timeout), stub_(std::move(stub)), job_id_(std::move(job_id)), attempt_(attempt) {}

c10::intrusive_ptr<c10d::Store> CoordinatorStore::clone() {
  return c10::make_intrusive<CoordinatorStore>(stub_, job_id_, attempt_, timeout_);
}

void CoordinatorStore::set(const std::string& key, const std::vector<uint8_t>& value) {
  v1::RendezvousSetRequest req;
  req.set_job_id(job_id_);
  req.set_attempt(attempt_);
  req.set_key(key);
  req.set_value(std::string(value.begin(), value.end()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout_ + kRpcSlack);
  v1::RendezvousSetResponse resp;
  grpc::Status s = stub_->RendezvousSet(&ctx, req, &resp);
  if (!s.ok()) Throw("set " + key, s);
}

std::vector<uint8_t> CoordinatorStore::GetWithin(const std::string& key, std::chrono::milliseconds timeout) {
  v1::RendezvousGetRequest req;
  req.set_job_id(job_id_);
  req.set_attempt(attempt_);
  req.set_key(key);
  req.set_timeout_ms(timeout.count());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout + kRpcSlack);
  v1::RendezvousGetResponse resp;
  grpc::Status s = stub_->RendezvousGet(&ctx, req, &resp);
  if (!s.ok()) Throw("get " + key, s);
  return std::vector<uint8_t>(resp.value().begin(), resp.value().end());
}

std::vector<uint8_t> CoordinatorStore::get(const std::string& key) { return GetWithin(key, timeout_); }

int64_t CoordinatorStore::add(const std::string& key, int64_t value) {
  v1::RendezvousAddRequest req;
  req.set_job_id(job_id_);
  req.set_attempt(attempt_);
  req.set_key(key);
  req.set_delta(value);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout_ + kRpcSlack);
  v1::RendezvousAddResponse resp;
  grpc::Status s = stub_->RendezvousAdd(&ctx, req, &resp);
  if (!s.ok()) Throw("add " + key, s);
  return resp.value();
}

bool CoordinatorStore::deleteKey(const std::string&) { return false; }

bool CoordinatorStore::check(const std::vector<std::string>& keys) {
  for (const std::string& k : keys) {
    try {
      GetWithin(k, std::chrono::milliseconds(0));
    } catch (const c10::DistStoreError&) {
      return false;
    }
  }
  return true;
}

int64_t CoordinatorStore::getNumKeys() {
  C10_THROW_ERROR(NotImplementedError, "coordinator store does not count keys");
}

void CoordinatorStore::wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }

void CoordinatorStore::wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const std::string& k : keys) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    GetWithin(k, std::max(left, std::chrono::milliseconds(0)));
  }
}

}  // namespace dpfleet::worker
