#include "server/core/dataset_registry.h"

#include <filesystem>
#include <regex>

#include "absl/strings/str_cat.h"
#include "common/pums/dataset.h"
#include "common/pums/prepare.h"
#include "common/pums/schema.h"
#include "common/pums/shards.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace dpfleet::server {
namespace {

nlohmann::json ToJson(const DatasetRecord& d) {
  return {{"name", d.name},         {"paths", d.paths},         {"input_files", d.input_files}, {"task", d.task},
          {"features", d.features}, {"shards", d.shards},       {"split_seed", d.split_seed},
          {"eval_fraction", d.eval_fraction}, {"state", d.state}, {"reason", d.reason},
          {"dir", d.dir},           {"manifest_json", d.manifest_json}, {"rows_train", d.rows_train},
          {"rows_eval", d.rows_eval}, {"rows_prepared", d.rows_prepared}, {"created_ms", d.created_ms}, {"ready_ms", d.ready_ms}};
}

absl::StatusOr<DatasetRecord> FromJson(const std::string& text) {
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    DatasetRecord d;
    d.name = j.at("name");
    d.paths = j.at("paths").get<std::vector<std::string>>();
    d.input_files = j.value("input_files", std::vector<std::string>{});
    d.task = j.at("task");
    d.features = j.at("features").get<std::vector<std::string>>();
    d.shards = j.at("shards");
    d.split_seed = j.at("split_seed");
    d.eval_fraction = j.at("eval_fraction");
    d.state = j.at("state");
    d.reason = j.at("reason");
    d.dir = j.at("dir");
    d.manifest_json = j.at("manifest_json");
    d.rows_train = j.at("rows_train");
    d.rows_eval = j.at("rows_eval");
    d.rows_prepared = j.value("rows_prepared", int64_t{0});
    d.created_ms = j.at("created_ms");
    d.ready_ms = j.at("ready_ms");
    return d;
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat("stored dataset record is malformed: ", e.what()));
  }
}

}  // namespace

DatasetRegistry::DatasetRegistry(Store* store, Clock* clock, std::string state_dir, PrepareFn prepare)
    : store_(store),
      clock_(clock),
      state_dir_(std::move(state_dir)),
      prepare_(std::move(prepare)),
      files_(store, clock) {}

DatasetRegistry::~DatasetRegistry() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    // A preparation still running finishes; one still retrying its store
    // write stops (the record stays PREPARING and a restart prepares again).
    stopping_ = true;
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

absl::Status DatasetRegistry::Recover() {
  ASSIGN_OR_RETURN(std::vector<std::string> rows, store_->LoadDatasets());
  absl::MutexLock lock(&mu_);
  std::set<std::string> dirs;
  for (const std::string& r : rows) {
    ASSIGN_OR_RETURN(DatasetRecord d, FromJson(r));
    if (absl::StatusOr<bool> moved = RelocateLocked(&d); !moved.ok()) return moved.status();
    dirs.insert(std::filesystem::path(d.dir).filename().string());
    if (d.input_files.size() != d.paths.size()) {
      // Recorded before content keys. The paths are the coordinator's own
      // record of files it read, so they are hashed where they are.
      d.input_files.clear();
      for (const std::string& path : d.paths) {
        absl::StatusOr<std::string> key = files_.Identify(path);
        d.input_files.push_back(key.ok() ? *key : LegacyPathKey(path));
      }
      RETURN_IF_ERROR(store_->PutDataset(d.name, ToJson(d).dump()));
    }
    if (d.state == "PREPARING") {
      // The roots may have changed since the dataset was added.
      for (std::size_t i = 0; i < d.paths.size() && d.state == "PREPARING"; ++i) {
        absl::StatusOr<std::string> real = roots_.Resolve(absl::StrCat("path[", i, "]"), d.paths[i]);
        if (!real.ok()) {
          d.state = "FAILED";
          d.reason = std::string(real.status().message());
          RETURN_IF_ERROR(store_->PutDataset(d.name, ToJson(d).dump()));
        }
      }
    }
    datasets_[d.name] = d;
    if (d.state == "PREPARING") StartLocked(d);
  }
  // Shard directories no record names (by their last component: the state
  // directory may be spelled differently from one start to the next), left
  // by a crash during a removal.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(state_dir_) / "datasets", ec)) {
    if (entry.is_directory(ec) && !dirs.count(entry.path().filename().string())) {
      DeleteDir(entry.path().string());
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> DatasetRegistry::RelocateLocked(DatasetRecord* d) {
  std::error_code ec;
  const std::string here = absl::StrCat(state_dir_, "/datasets/", d->name);
  bool changed = false;
  // A record restored from a backup of another state directory names a
  // directory that is not there; its shards belong here.
  if (!std::filesystem::exists(d->dir, ec) && d->dir != here) {
    d->dir = here;
    changed = true;
  }
  // Shards are derived data, not in a backup: a READY dataset without them
  // is prepared again from its raw files (the same inputs, split seed and
  // split key give the same shards).
  if (d->state == "READY" && !std::filesystem::exists(std::filesystem::path(d->dir) / data::kManifestFile, ec)) {
    d->state = "PREPARING";
    d->reason.clear();
    d->rows_prepared = 0;
    changed = true;
  }
  if (changed) RETURN_IF_ERROR(store_->PutDataset(d->name, ToJson(*d).dump()));
  return changed;
}

absl::StatusOr<DatasetRecord> DatasetRegistry::Add(DatasetRecord d) {
  if (!std::regex_match(d.name, std::regex("[A-Za-z0-9][A-Za-z0-9._-]{0,63}"))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "name: '", d.name, "' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"));
  }
  if (d.paths.empty()) return absl::InvalidArgumentError("path: at least one PUMS person file is required");
  std::vector<std::string> given = d.paths;
  d.input_files.clear();
  for (std::size_t i = 0; i < d.paths.size(); ++i) {
    ASSIGN_OR_RETURN(d.paths[i], roots_.Resolve(absl::StrCat("path[", i, "]"), d.paths[i]));
    absl::StatusOr<std::string> key = files_.Identify(d.paths[i]);
    if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat("path[", i, "]: ", key.status().message()));
    d.input_files.push_back(*std::move(key));
  }
  RETURN_IF_ERROR(CheckDistinctInputs("path", given, d.input_files));
  if (!data::ParseTask(d.task).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("task: '", d.task, "' is not one of: employment, unemployment"));
  }
  for (std::size_t i = 0; i < d.features.size(); ++i) {
    if (absl::Status s = data::ValidateFeatureName(d.features[i]); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("features[", i, "]: '", d.features[i], "' ", s.message()));
    }
  }
  if (d.shards < 1 || d.shards > data::kMaxShards) {
    return absl::InvalidArgumentError(absl::StrCat("shards: '", d.shards, "' must be in 1..", data::kMaxShards));
  }
  if (!(d.eval_fraction > 0 && d.eval_fraction < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("eval_fraction: '", d.eval_fraction, "' must be in (0, 1)"));
  }
  absl::MutexLock write(&write_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (datasets_.count(d.name)) {
      return absl::AlreadyExistsError(absl::StrCat("dataset '", d.name, "' is already registered"));
    }
    if (removing_.count(d.name)) {
      return absl::UnavailableError(absl::StrCat("dataset '", d.name,
                                                 "' is being removed (its preparation is stopping); add it again shortly"));
    }
  }
  d.state = "PREPARING";
  d.reason.clear();
  d.dir = absl::StrCat(state_dir_, "/datasets/", d.name);
  d.created_ms = clock_->NowMs();
  RETURN_IF_ERROR(store_->PutDataset(d.name, ToJson(d).dump()));
  absl::MutexLock lock(&mu_);
  datasets_[d.name] = d;
  StartLocked(d);
  return d;
}

void DatasetRegistry::StartLocked(const DatasetRecord& record) {
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  preparing_[record.name] = cancel;
  threads_.emplace_back([this, record, cancel] { Prepare(record, cancel); });
}

void DatasetRegistry::DeleteDir(const std::string& dir) const {
  // Only ever a directory this registry created.
  const std::filesystem::path root = std::filesystem::path(state_dir_) / "datasets";
  const std::filesystem::path p(dir);
  if (p.parent_path().lexically_normal() != root.lexically_normal() || p.filename().empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(p, ec);
}

absl::StatusOr<DatasetRecord> DatasetRegistry::Remove(const std::string& name) {
  absl::MutexLock write(&write_mu_);
  DatasetRecord d;
  {
    absl::MutexLock lock(&mu_);
    auto it = datasets_.find(name);
    if (it == datasets_.end()) return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
    d = it->second;
  }
  RETURN_IF_ERROR(store_->DeleteDataset(name));
  {
    absl::MutexLock lock(&mu_);
    datasets_.erase(name);
    if (auto p = preparing_.find(name); p != preparing_.end()) {
      // The preparing thread stops at its next block and deletes the directory.
      p->second->store(true);
      removing_.insert(name);
      return d;
    }
  }
  DeleteDir(d.dir);
  return d;
}

void DatasetRegistry::Prepare(DatasetRecord d, std::shared_ptr<std::atomic<bool>> cancel) {
  data::PrepareOptions options;
  options.inputs = d.paths;
  options.encode.task = *data::ParseTask(d.task);
  options.encode.features = d.features;
  options.encode.split_seed = d.split_seed;
  options.encode.eval_fraction = d.eval_fraction;
  options.shards = d.shards;
  options.out_dir = d.dir;
  options.cancel = cancel.get();
  options.progress = [this, name = d.name](int64_t kept) {
    // Progress is shown, not stored: a restart prepares again from zero.
    absl::MutexLock lock(&mu_);
    if (auto it = datasets_.find(name); it != datasets_.end()) it->second.rows_prepared = kept;
  };
  absl::StatusOr<data::Manifest> m = prepare_(options);
  if (m.ok()) {
    d.state = "READY";
    d.manifest_json = data::ManifestToJson(*m);
    d.rows_train = m->rows_train;
    d.rows_eval = m->rows_eval;
    d.rows_prepared = m->rows_train + m->rows_eval;
    d.ready_ms = clock_->NowMs();
  } else {
    d.state = "FAILED";
    d.reason = std::string(m.status().message());
  }
  StorePrepared(d);
}

void DatasetRegistry::StorePrepared(const DatasetRecord& d) {
  absl::Duration delay = absl::Milliseconds(50);
  while (true) {
    {
      absl::MutexLock write(&write_mu_);
      bool removed = false;
      {
        absl::MutexLock lock(&mu_);
        removed = removing_.count(d.name) > 0;
      }
      if (removed) {
        // Removed while it was being prepared: nothing of it is kept.
        DeleteDir(d.dir);
        absl::MutexLock lock(&mu_);
        preparing_.erase(d.name);
        removing_.erase(d.name);
        return;
      }
      absl::Status s = store_->PutDataset(d.name, ToJson(d).dump());
      if (s.ok()) {
        absl::MutexLock lock(&mu_);
        preparing_.erase(d.name);
        datasets_[d.name] = d;
        return;
      }
      background_errors_.Record(absl::StrCat("storing dataset '", d.name, "' as ", d.state), s);
    }
    absl::MutexLock lock(&mu_);
    auto give_up = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || removing_.count(d.name) > 0; };
    mu_.AwaitWithTimeout(absl::Condition(&give_up), delay);
    if (stopping_) {
      // Still PREPARING on disk: the next start prepares it again.
      preparing_.erase(d.name);
      return;
    }
    delay = std::min(delay * 2, kMaxRetryDelay);
  }
}

absl::StatusOr<DatasetRecord> DatasetRegistry::Get(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = datasets_.find(name);
  if (it == datasets_.end()) return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  return it->second;
}

std::vector<DatasetRecord> DatasetRegistry::List() {
  absl::MutexLock lock(&mu_);
  std::vector<DatasetRecord> out;
  for (const auto& [n, d] : datasets_) out.push_back(d);
  return out;
}

absl::Status DatasetRegistry::WaitRemoved(const std::string& name, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&] { return removing_.count(name) == 0; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("dataset '", name, "' is still being removed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<DatasetRecord> DatasetRegistry::WaitPrepared(const std::string& name, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [&] {
    auto it = datasets_.find(name);
    return it == datasets_.end() || it->second.state != "PREPARING";
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  auto it = datasets_.find(name);
  if (it == datasets_.end()) return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  return it->second;
}

}  // namespace dpfleet::server
