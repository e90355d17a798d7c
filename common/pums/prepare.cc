#include "common/pums/prepare.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <memory>
#include <set>
#include <system_error>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/pums/schema.h"
#include "common/status.h"

namespace dpfleet::data {
namespace {

namespace fs = std::filesystem;

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

absl::string_view VarKindName(VarKind kind) {
  switch (kind) {
    case VarKind::kCategorical:
      return "categorical";
    case VarKind::kNumeric:
      return "numeric";
    case VarKind::kText:
      return "text";
  }
  return "unknown";
}

absl::string_view FeatureUseName(FeatureUse use) {
  switch (use) {
    case FeatureUse::kAllowed:
      return "allowed";
    case FeatureUse::kIdentifier:
      return "identifier";
    case FeatureUse::kWeight:
      return "weight";
    case FeatureUse::kLabel:
      return "label";
    case FeatureUse::kLeaksLabel:
      return "leaks_label";
  }
  return "unknown";
}

// "train-00003-of-00008.bin" (optionally + ".partial"), any numbers.
bool IsTrainShardName(const std::string& name) {
  std::string base = name;
  if (absl::EndsWith(base, ".partial")) base.resize(base.size() - 8);
  if (base.size() != 24 || !absl::StartsWith(base, "train-") || !absl::EndsWith(base, ".bin") ||
      base.compare(11, 4, "-of-") != 0) {
    return false;
  }
  for (size_t i : {6, 7, 8, 9, 10, 15, 16, 17, 18, 19}) {
    if (!std::isdigit(static_cast<unsigned char>(base[i]))) return false;
  }
  return true;
}

absl::Status ValidateOptions(const PrepareOptions& o) {
  if (o.inputs.empty()) return absl::InvalidArgumentError("--input: no input files given");
  if (o.shards < 1 || o.shards > kMaxShards) {
    return absl::InvalidArgumentError(
        absl::StrCat("--shards: ", o.shards, " is outside [1, ", kMaxShards, "]"));
  }
  if (o.out_dir.empty()) return absl::InvalidArgumentError("--out: no output directory given");
  if (!(o.encode.eval_fraction >= 0.0 && o.encode.eval_fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("--eval-fraction: ", o.encode.eval_fraction,
                                                   " is outside [0, 1]"));
  }
  return absl::OkStatus();
}

// Routes encoded rows to the shard writers; runs on the encoder's thread.
class ShardRouter {
 public:
  ShardRouter(int64_t dim, std::vector<std::unique_ptr<ShardWriter>>* train, ShardWriter* eval)
      : dim_(dim), train_(*train), eval_(eval), staging_(train->size()) {}

  absl::Status Add(EncodedSplit&& train, EncodedSplit&& eval) {
    RETURN_IF_ERROR(eval_->Append(eval.x.data(), eval.y.data(), eval.keys.data(), eval.rows));
    if (train.rows == 0) return absl::OkStatus();
    const int shards = static_cast<int>(train_.size());
    if (shards == 1) {
      return train_[0]->Append(train.x.data(), train.y.data(), train.keys.data(), train.rows);
    }
    // Gather each shard's rows so every writer gets one contiguous append.
    for (int64_t i = 0; i < train.rows; ++i) {
      Staging& s = staging_[PartitionOf(train.keys[i], shards)];
      const float* row = train.x.data() + i * dim_;
      s.x.insert(s.x.end(), row, row + dim_);
      s.y.push_back(train.y[i]);
      s.keys.push_back(train.keys[i]);
    }
    for (int k = 0; k < shards; ++k) {
      Staging& s = staging_[k];
      const int64_t n = static_cast<int64_t>(s.y.size());
      RETURN_IF_ERROR(train_[k]->Append(s.x.data(), s.y.data(), s.keys.data(), n));
      s.x.clear();
      s.y.clear();
      s.keys.clear();
    }
    return absl::OkStatus();
  }

 private:
  struct Staging {
    std::vector<float> x, y;
    std::vector<uint64_t> keys;
  };
  int64_t dim_;
  std::vector<std::unique_ptr<ShardWriter>>& train_;
  ShardWriter* eval_;
  std::vector<Staging> staging_;
};

// Finishes (writes the tail and checksums) every writer, several at a time:
// hashing is the costly part and the files are independent.
absl::StatusOr<std::vector<ShardInfo>> FinishAll(const std::vector<ShardWriter*>& writers,
                                                 int threads) {
  std::vector<absl::StatusOr<ShardInfo>> results(writers.size(),
                                                 absl::InternalError("not finished"));
  std::atomic<size_t> next{0};
  auto work = [&]() {
    for (size_t i; (i = next.fetch_add(1)) < writers.size();) results[i] = writers[i]->Finish();
  };
  std::vector<std::thread> pool;
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(writers.size())));
  for (int t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  std::vector<ShardInfo> out;
  for (auto& r : results) {
    if (!r.ok()) return r.status();
    out.push_back(std::move(*r));
  }
  return out;
}

}  // namespace

std::string TaskLabelRule(Task task) {
  switch (task) {
    case Task::kEmployment:
      return "1 if ESR in {1,2,4,5} (employed, civilian or Armed Forces), 0 if ESR in {3,6}; "
             "rows with blank ESR (under 16) are dropped";
    case Task::kUnemployment:
      return "1 if ESR == 3 (unemployed), 0 if ESR in {1,2,4,5}; rows with blank ESR (under 16) "
             "or ESR 6 (not in labor force) are dropped";
  }
  return "";
}

std::string SchemaJson() {
  nlohmann::ordered_json j;
  j["schema"] = "dpfleet-pums-person";
  j["schema_version"] = kSchemaVersion;
  j["source"] =
      "Census Bureau PUMS Data Dictionary (2023 CSV and 2016 text editions); common/pums/schema.h";
  j["label_variable"] = kLabelVariable;
  j["default_features"] = DefaultFeatures();
  j["variables"] = nlohmann::ordered_json::array();
  for (const PumsVariable& v : PumsVariables()) {
    nlohmann::ordered_json e;
    e["name"] = v.name;
    e["aliases"] = v.aliases;
    e["description"] = v.description;
    e["kind"] = VarKindName(v.kind);
    e["codes"] = v.kind == VarKind::kCategorical ? v.codes : std::vector<int>{};
    e["min_value"] = v.kind == VarKind::kNumeric ? v.min_value : 0;
    e["max_value"] = v.kind == VarKind::kNumeric ? v.max_value : 0;
    e["blank_meaning"] = v.blank_meaning;
    e["feature_use"] = FeatureUseName(v.feature_use);
    j["variables"].push_back(std::move(e));
  }
  return CanonicalJsonText(j);
}

absl::StatusOr<Manifest> PrepareShards(const PrepareOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  ASSIGN_OR_RETURN(std::vector<std::string> columns, EncodedColumns(options.encode.features));
  const int64_t dim = static_cast<int64_t>(columns.size());
  const std::string& dir = options.out_dir;
  {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--out: cannot create directory '", dir, "': ", ec.message()));
    }
  }
  const int shards = options.shards;
  std::vector<std::unique_ptr<ShardWriter>> train;
  for (int k = 0; k < shards; ++k) {
    ShardHeader h;
    h.dim = static_cast<uint64_t>(dim);
    h.shard_index = static_cast<uint32_t>(k);
    h.shard_count = static_cast<uint32_t>(shards);
    h.split = ShardSplit::kTrain;
    ASSIGN_OR_RETURN(std::unique_ptr<ShardWriter> w,
                     ShardWriter::Create(fs::path(dir) / TrainShardFileName(k, shards), h));
    train.push_back(std::move(w));
  }
  ShardHeader eval_header;
  eval_header.dim = static_cast<uint64_t>(dim);
  eval_header.split = ShardSplit::kEval;
  ASSIGN_OR_RETURN(std::unique_ptr<ShardWriter> eval,
                   ShardWriter::Create(fs::path(dir) / kEvalShardFile, eval_header));

  ShardRouter router(dim, &train, eval.get());
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EncodeOptions encode = options.encode;
  if (encode.threads <= 0) {
    // One core is left to the reader thread (read/gunzip of the next block)
    // and the shard writes: on a 2-core machine one parser thread measured
    // faster than two (docs/BENCHMARKS.md, "Data pipeline").
    encode.threads = std::clamp(cores - 1, 1, 8);
  }
  ASSIGN_OR_RETURN(EncodeSummary summary,
                   EncodeStreaming(options.inputs, encode,
                                   [&router, &options, kept = int64_t{0}](EncodedSplit&& t,
                                                                          EncodedSplit&& e) mutable {
                                     if (options.cancel != nullptr && options.cancel->load()) {
                                       return absl::CancelledError("preparation cancelled");
                                     }
                                     kept += t.rows + e.rows;
                                     absl::Status s = router.Add(std::move(t), std::move(e));
                                     if (s.ok() && options.progress) options.progress(kept);
                                     return s;
                                   }));

  std::vector<ShardWriter*> all;
  for (auto& w : train) all.push_back(w.get());
  all.push_back(eval.get());
  const int threads = options.encode.threads > 0 ? options.encode.threads : cores;
  ASSIGN_OR_RETURN(std::vector<ShardInfo> infos, FinishAll(all, threads));

  Manifest m;
  m.schema_version = kSchemaVersion;
  m.schema_sha256 = Sha256Hex(SchemaJson());
  m.task = std::string(TaskName(options.encode.task));
  m.label = TaskLabelRule(options.encode.task);
  m.features = summary.features;
  m.columns = summary.columns;
  m.dim = dim;
  m.split_seed = options.encode.split_seed;
  m.eval_fraction = options.encode.eval_fraction;
  m.split_rule =
      "eval if InEvalSplit(RecordKey(SERIALNO, SPORDER), split_seed, eval_fraction), else train";
  m.shard_rule =
      "train rows go to train shard PartitionOf(RecordKey(SERIALNO, SPORDER), shards), eval rows "
      "to eval.bin; rows keep input order (files as given, rows in file order)";
  for (size_t i = 0; i < options.inputs.size(); ++i) {
    m.inputs.push_back({BaseName(options.inputs[i]), summary.rows_read_per_file[i]});
  }
  m.rows_read = summary.rows_read;
  m.rows_dropped = summary.rows_dropped;
  m.shards = shards;
  m.eval_shard = infos.back();
  infos.pop_back();
  m.train_shards = std::move(infos);
  for (const ShardInfo& s : m.train_shards) {
    m.rows_train += s.rows;
    m.positives_train += s.positives;
  }
  m.rows_eval = m.eval_shard.rows;
  m.positives_eval = m.eval_shard.positives;
  m.positive_rate_train =
      m.rows_train > 0 ? static_cast<double>(m.positives_train) / m.rows_train : 0.0;
  m.positive_rate_eval =
      m.rows_eval > 0 ? static_cast<double>(m.positives_eval) / m.rows_eval : 0.0;

  // Publish: shards first, then the manifest that lists them.
  for (ShardWriter* w : all) RETURN_IF_ERROR(w->Commit());
  std::set<std::string> listed;
  for (const ShardInfo& s : m.train_shards) listed.insert(s.file);
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const bool stale_shard = IsTrainShardName(name) && listed.count(name) == 0;
    const bool stale_partial = name == "eval.bin.partial" || name == "manifest.json.partial";
    if (stale_shard || stale_partial) fs::remove(e.path(), ec);
  }
  RETURN_IF_ERROR(
      WriteFileAtomically((fs::path(dir) / kManifestFile).string(), ManifestToJson(m)));
  return m;
}

}  // namespace dpfleet::data
