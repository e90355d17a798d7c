#include "server/core/data_resolver.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/pums/dataset.h"
#include "common/status.h"

namespace dpfleet::server {

std::string DatasetKey(const std::vector<std::string>& paths) {
  std::string key;
  for (const std::string& p : paths) {
    std::error_code ec;
    const std::filesystem::path abs = std::filesystem::absolute(p, ec).lexically_normal();
    absl::StrAppend(&key, key.empty() ? "" : "+", ec ? p : abs.string());
  }
  return key;
}

absl::StatusOr<DataFacts> PipelineDataResolver::Resolve(const JobSpec& spec) {
  ASSIGN_OR_RETURN(data::EncodeOptions options, EncodeOptionsFor(spec, split_key_));
  std::string key = absl::StrCat(spec.task, "|", absl::StrJoin(spec.features, ","), "|", options.eval_fraction);
  std::string dataset_key;
  for (std::size_t i = 0; i < spec.data_paths.size(); ++i) {
    const std::string& p = spec.data_paths[i];
    std::error_code ec;
    const std::filesystem::path abs = std::filesystem::absolute(p, ec);
    if (!std::filesystem::is_regular_file(abs, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec.data_paths.size() == 1 ? std::string("data.path") : absl::StrCat("data.path[", i, "]"),
          ": '", p, "' does not exist or is not a readable file on the coordinator"));
    }
    const auto size = std::filesystem::file_size(abs, ec);
    const auto mtime = std::filesystem::last_write_time(abs, ec).time_since_epoch().count();
    absl::StrAppend(&key, "|", abs.string(), ":", size, ":", mtime);
  }
  dataset_key = DatasetKey(spec.data_paths);
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
  }
  absl::StatusOr<data::EncodedDataset> ds = data::LoadAndEncode(spec.data_paths, options);
  if (!ds.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("data.path: ", ds.status().message()));
  }
  DataFacts facts;
  facts.dataset_key = dataset_key;
  facts.train_rows = ds->train.rows;
  facts.eval_rows = ds->eval.rows;
  facts.input_dim = ds->train.dim;
  absl::MutexLock lock(&mu_);
  cache_[key] = facts;
  return facts;
}

}  // namespace dpfleet::server
