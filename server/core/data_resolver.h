// Resolves a job's data to the facts the coordinator needs before it can
// schedule and account for the job: the number of training records N (which
// fixes q = B/N), the eval size and the encoded width.
//
// The coordinator runs the same pipeline the workers run, so N here is
// exactly the N the workers sample from.
//
// DataRoots confines every raw path a request names (data.path, `datasets
// add --path`) to the directories the coordinator was started with
// (--data-root): the coordinator often runs as a privileged user, and must
// never open, or say anything about, a file outside them.
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

// The directories raw PUMS files may be read from. A path is accepted when
// it is absolute, its realpath (every symlink followed, every ".."
// resolved) is a regular file inside a root's realpath, and it has exactly
// one hard link (a second link could alias a file outside the roots; a
// hard link's target cannot be told from the link itself). Every refusal
// of a path outside the roots, or of one that does not resolve, carries
// the same message, so a refusal says nothing about whether a file exists
// there. Without roots no raw path is accepted.
//
// Not protected: someone who can write inside a root can swap a checked
// file for a symlink before it is read (keep roots writable by the
// custodian only).
class DataRoots {
 public:
  DataRoots() = default;  // no roots: every raw path is refused
  // Each root must be an existing directory (InvalidArgument naming it).
  // Nothing inside `state_dir` is ever a raw file, even under a root: the
  // coordinator's database and shards are not data an input may name.
  static absl::StatusOr<DataRoots> Create(const std::vector<std::string>& roots, const std::string& state_dir = "");

  bool empty() const { return roots_.empty(); }
  const std::vector<std::string>& roots() const { return roots_; }  // their realpaths
  // The canonical path of `path`, or InvalidArgument naming `field`.
  absl::StatusOr<std::string> Resolve(const std::string& field, const std::string& path) const;

 private:
  std::vector<std::string> roots_;
  std::vector<std::string> given_;  // as configured, for the lexical pre-check
  std::string state_dir_;           // its realpath, or "" when none
};

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

// Runs the embedded data pipeline on files inside `roots`, caching by
// (files, sizes, mtimes, task, features, eval fraction). The split is the
// coordinator's: `split_key` is its secret (Store::SplitKey), the same one
// the job's ranks get, and is never part of anything this class returns.
class PipelineDataResolver final : public DataResolver {
 public:
  PipelineDataResolver(DataRoots roots, uint64_t split_key) : roots_(std::move(roots)), split_key_(split_key) {}
  absl::StatusOr<DataFacts> Resolve(const JobSpec& spec) override;

 private:
  const DataRoots roots_;
  const uint64_t split_key_;
  absl::Mutex mu_;
  std::map<std::string, DataFacts> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_DATA_RESOLVER_H_
