// Client library for the coordinator's gRPC API: one call per RPC, each with
// a deadline, errors as absl::Status (the server's code and message kept).
// dpctl and other C++ programs use it; it never links LibTorch.
#ifndef DPFLEET_CLIENT_COORDINATOR_CLIENT_H_
#define DPFLEET_CLIENT_COORDINATOR_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dpfleet/v1/coordinator.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {

class CoordinatorClient {
 public:
  // target: HOST:PORT. Does not connect yet.
  explicit CoordinatorClient(const std::string& target, absl::Duration timeout = absl::Seconds(30));

  absl::StatusOr<v1::Job> Submit(const std::string& spec_yaml);
  absl::StatusOr<v1::Job> Get(const std::string& job_id);
  absl::StatusOr<std::vector<v1::Job>> List();
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id);
  absl::StatusOr<std::vector<v1::WorkerInfo>> Workers();
  absl::StatusOr<v1::DatasetBudget> SetBudget(const std::string& dataset, double epsilon, double delta);
  absl::StatusOr<std::vector<v1::DatasetBudget>> Budgets(const std::string& dataset);
  absl::StatusOr<v1::Dataset> AddDataset(const v1::AddDatasetRequest& request);
  absl::StatusOr<v1::Dataset> GetDataset(const std::string& name);
  absl::StatusOr<std::vector<v1::Dataset>> ListDatasets();
  absl::StatusOr<v1::Dataset> RemoveDataset(const std::string& name);
  // The whole trained model of a SUCCEEDED job (fetched in chunks).
  absl::StatusOr<std::string> GetModel(const std::string& job_id);
  // Streams events until the job is terminal (returns its final record) or
  // on_event returns false. Reconnects if the coordinator restarts.
  absl::StatusOr<v1::Job> Watch(const std::string& job_id,
                                const std::function<bool(const v1::JobEvent&)>& on_event);

 private:
  std::string target_;
  absl::Duration timeout_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
};

// The JSON form of a job that `dpctl status -o json` prints.
std::string JobToJson(const v1::Job& job, int indent = 2);
// One epoch of a job's history as JSON: eval metrics null when the epoch had
// no eval release.
nlohmann::json EpochJson(const v1::EpochMetrics& m);
const char* StateName(v1::JobState s);
bool IsTerminal(v1::JobState s);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_COORDINATOR_CLIENT_H_
