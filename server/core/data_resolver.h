// Resolves a job's data to the facts the coordinator needs before it can
// schedule and account for the job: the number of training records N (which
// fixes q = B/N), the eval size and the encoded width.
//
// The coordinator runs the same pipeline the workers run, so N here is
// exactly the N the workers sample from.
#ifndef DPFLEET_SERVER_CORE_DATA_RESOLVER_H_
#define DPFLEET_SERVER_CORE_DATA_RESOLVER_H_

#include <map>
#include <vector>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/spec/job_spec.h"

namespace dpfleet::server {

struct DataFacts {
  std::string dataset_key;  // identifies the data for the privacy ledger
  int64_t train_rows = 0;
  int64_t eval_rows = 0;
  int64_t input_dim = 0;
};

// The ledger's name for the data a job reads: its files' absolute paths,
// '+'-joined in spec order.
std::string DatasetKey(const std::vector<std::string>& paths);

class DataResolver {
 public:
  virtual ~DataResolver() = default;
  // InvalidArgument naming data.path when the files are missing or unusable.
  virtual absl::StatusOr<DataFacts> Resolve(const JobSpec& spec) = 0;
};

// Runs the embedded data pipeline, caching by (files, sizes, mtimes, task,
// features, eval fraction). The split is the coordinator's: `split_key` is
// its secret (Store::SplitKey), the same one the job's ranks get, and is
// never part of anything this class returns.
class PipelineDataResolver final : public DataResolver {
 public:
  explicit PipelineDataResolver(uint64_t split_key) : split_key_(split_key) {}
  absl::StatusOr<DataFacts> Resolve(const JobSpec& spec) override;

 private:
  const uint64_t split_key_;
  absl::Mutex mu_;
  std::map<std::string, DataFacts> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_DATA_RESOLVER_H_
