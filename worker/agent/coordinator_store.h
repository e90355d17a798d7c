// CoordinatorStore: a c10d::Store whose keys live in the coordinator's
// rendezvous service, scoped to one job attempt (job/attempt/key). Gloo's
// connection keys and NCCL's unique id travel through it, so ranks meet
// without any extra port or service.
//
// Keys are never deleted by ranks; the coordinator drops an attempt's keys
// when the attempt ends.
#ifndef DPFLEET_WORKER_AGENT_COORDINATOR_STORE_H_
#define DPFLEET_WORKER_AGENT_COORDINATOR_STORE_H_

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <memory>
#include <string>

#include "dpfleet/v1/worker.grpc.pb.h"

namespace dpfleet::worker {

class CoordinatorStore final : public c10d::Store {
 public:
  CoordinatorStore(std::shared_ptr<v1::WorkerService::StubInterface> stub, std::string job_id,
                   int32_t attempt, std::chrono::milliseconds timeout);

  c10::intrusive_ptr<c10d::Store> clone() override;
  void set(const std::string& key, const std::vector<uint8_t>& value) override;
  std::vector<uint8_t> get(const std::string& key) override;
  int64_t add(const std::string& key, int64_t value) override;
  bool deleteKey(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;
  int64_t getNumKeys() override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  // Blocking get bounded by `timeout`; throws c10::DistStoreError on expiry.
  std::vector<uint8_t> GetWithin(const std::string& key, std::chrono::milliseconds timeout);

  std::shared_ptr<v1::WorkerService::StubInterface> stub_;
  std::string job_id_;
  int32_t attempt_;
};

}  // namespace dpfleet::worker

#endif  // DPFLEET_WORKER_AGENT_COORDINATOR_STORE_H_
