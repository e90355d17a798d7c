#include "server/core/data_resolver.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/pums/dataset.h"
#include "common/status.h"

namespace dpfleet::server {

namespace {

// realpath(3): the canonical path, or "" when it does not resolve.
std::string RealPath(const std::string& path) {
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return "";
  std::string out(resolved);
  std::free(resolved);
  return out;
}

bool IsInside(const std::string& root, const std::string& path) {
  if (root == "/") return path.size() > 1 && path[0] == '/';
  return path.size() > root.size() && path.compare(0, root.size(), root) == 0 && path[root.size()] == '/';
}

}  // namespace

absl::StatusOr<DataRoots> DataRoots::Create(const std::vector<std::string>& roots, const std::string& state_dir) {
  DataRoots out;
  if (!state_dir.empty()) out.state_dir_ = RealPath(state_dir);
  for (const std::string& r : roots) {
    const std::string real = RealPath(r);
    struct stat st;
    if (real.empty() || stat(real.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("--data-root: '", r, "' is not a directory"));
    }
    out.roots_.push_back(real);
    out.given_.push_back(std::filesystem::path(r).lexically_normal().string());
  }
  return out;
}

absl::StatusOr<std::string> DataRoots::Resolve(const std::string& field, const std::string& path) const {
  if (roots_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": '", path, "': this coordinator reads no raw files (it was started without --data-root); "
        "use a registered dataset"));
  }
  // One answer for every path that is outside the roots or does not
  // resolve: which of the two it is must stay unknown.
  const absl::Status refused = absl::InvalidArgumentError(
      absl::StrCat(field, ": '", path, "' is not a readable file under the coordinator's data roots"));
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(field, ": '", path, "' is not an absolute path"));
  }
  // Lexically outside every root: refused without touching the file system.
  std::string lexical = std::filesystem::path(path).lexically_normal().string();
  while (lexical.size() > 1 && lexical.back() == '/') lexical.pop_back();
  bool near = false;
  for (std::size_t i = 0; i < roots_.size(); ++i) {
    std::string given = given_[i];
    while (given.size() > 1 && given.back() == '/') given.pop_back();
    near = near || IsInside(roots_[i], lexical) || IsInside(given, lexical);
  }
  if (!near) return refused;
  const std::string real = RealPath(path);
  bool inside = false;
  for (const std::string& root : roots_) inside = inside || (!real.empty() && IsInside(root, real));
  if (!inside || (!state_dir_.empty() && (real == state_dir_ || IsInside(state_dir_, real)))) return refused;
  struct stat st;
  if (stat(real.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || access(real.c_str(), R_OK) != 0) return refused;
  if (st.st_nlink > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": '", path, "' has ", st.st_nlink,
        " hard links; a file under a data root must have exactly one (a hard link can alias a file outside "
        "the roots)"));
  }
  return real;
}

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
  std::vector<std::string> real_paths;
  for (std::size_t i = 0; i < spec.data_paths.size(); ++i) {
    ASSIGN_OR_RETURN(const std::string real,
                     roots_.Resolve(spec.data_paths.size() == 1 ? std::string("data.path")
                                                                : absl::StrCat("data.path[", i, "]"),
                                    spec.data_paths[i]));
    std::error_code ec;
    const auto size = std::filesystem::file_size(real, ec);
    const auto mtime = std::filesystem::last_write_time(real, ec).time_since_epoch().count();
    absl::StrAppend(&key, "|", real, ":", size, ":", mtime);
    real_paths.push_back(real);
  }
  dataset_key = DatasetKey(spec.data_paths);
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
  }
  // The checked files, not the names the spec gave them.
  absl::StatusOr<data::EncodedDataset> ds = data::LoadAndEncode(real_paths, options);
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
