// Prepared-data shards: the binary file format, its writer and its reader,
// and the manifest that describes a prepared dataset.
//
// `dpctl data prepare` (common/pums/prepare.h) and the Spark job
// (deploy/spark/prepare_pums.py) write a directory:
//
//   manifest.json                 what the data is (see Manifest below)
//   train-00000-of-0000S.bin ...  S training shards
//   eval.bin                      the whole held-out eval split, one file
//
// Training rows go to shard PartitionOf(RecordKey(SERIALNO, SPORDER), S)
// (common/pums/dataset.h), so a rank can take any subset of shards (the loader
// takes index % world == rank). Eval rows are one file because only rank 0
// evaluates, on the whole eval split. Inside every file rows keep input
// order (files in the order given, rows in file order).
//
// Shard file format, version 1. All integers little-endian; floats IEEE-754
// binary32 little-endian.
//
//   offset  size  field
//   0       8     magic "DPFSHARD"
//   8       4     u32 format version (1)
//   12      4     u32 dtype of features and labels (1 = float32)
//   16      8     u64 rows
//   24      8     u64 dim (encoded columns per row)
//   32      4     u32 shard index (0 for eval)
//   36      4     u32 shard count (1 for eval)
//   40      4     u32 split (0 = train, 1 = eval)
//   44      20    zero
//   64            features: rows * dim float32, row-major
//                 labels:   rows float32 (0 or 1)
//                 zero padding to the next multiple of 8 bytes
//                 keys:     rows u64 (RecordKey of each row)
//   end           nothing may follow: size is exactly as the header implies
//
// The 64-byte header keeps features 64-byte aligned in an mmap; the padding
// keeps the keys 8-byte aligned.
//
// The bytes of a shard are a pure function of the input rows and the
// options: no timestamps, paths or host names, so that two runs (and the
// C++ and Spark implementations) produce files with the same SHA-256.
// Nothing here may look at the values it writes beyond counting positives:
// the privacy rule of DESIGN.md ("Data path") applies to everything
// downstream of the raw file.
#ifndef DPFLEET_COMMON_PUMS_SHARDS_H_
#define DPFLEET_COMMON_PUMS_SHARDS_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/pums/dataset.h"
#include "common/sha256.h"
#include "nlohmann/json.hpp"

namespace dpfleet::data {

inline constexpr char kShardMagic[8] = {'D', 'P', 'F', 'S', 'H', 'A', 'R', 'D'};
inline constexpr uint32_t kShardFormatVersion = 1;
inline constexpr uint32_t kShardDtypeFloat32 = 1;
inline constexpr size_t kShardHeaderBytes = 64;
inline constexpr char kManifestFile[] = "manifest.json";
inline constexpr char kEvalShardFile[] = "eval.bin";
// Largest shard count accepted: the writer keeps one open file per shard.
inline constexpr int kMaxShards = 1024;

enum class ShardSplit : uint32_t { kTrain = 0, kEval = 1 };

struct ShardHeader {
  uint32_t version = kShardFormatVersion;
  uint32_t dtype = kShardDtypeFloat32;
  uint64_t rows = 0;
  uint64_t dim = 0;
  uint32_t shard_index = 0;
  uint32_t shard_count = 1;
  ShardSplit split = ShardSplit::kTrain;
};

// Encodes / decodes the 64-byte header. DecodeShardHeader checks magic,
// version and dtype (DataLoss naming `what` and the bad field).
std::string EncodeShardHeader(const ShardHeader& header);
absl::StatusOr<ShardHeader> DecodeShardHeader(absl::string_view bytes, absl::string_view what);

// Byte size of a shard file with `rows` rows of `dim` columns.
uint64_t ShardFileBytes(uint64_t rows, uint64_t dim);

// "train-00003-of-00008.bin".
std::string TrainShardFileName(int index, int count);

// What a finished shard file is; recorded in the manifest.
struct ShardInfo {
  std::string file;  // name inside the dataset directory
  int index = 0;
  int64_t rows = 0;
  int64_t positives = 0;  // rows with label 1
  int64_t bytes = 0;
  std::string sha256;  // lower-case hex
};

// Streams one shard to disk: features are written as rows arrive; labels and
// keys (12 bytes a row) are held until Finish, which appends them, writes the
// header and checksums the file. Output goes to `path` + ".partial" until
// Commit renames it, so a crash never leaves a complete-looking shard.
class ShardWriter {
 public:
  static absl::StatusOr<std::unique_ptr<ShardWriter>> Create(const std::string& path,
                                                             const ShardHeader& header);
  ~ShardWriter();  // removes the partial file unless committed
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends `n` rows: x holds n * dim floats.
  absl::Status Append(const float* x, const float* y, const uint64_t* keys, int64_t n);
  // Writes labels, keys and the header, flushes and hashes the file.
  absl::StatusOr<ShardInfo> Finish();
  // Renames the finished file to its final path.
  absl::Status Commit();

 private:
  ShardWriter(std::string path, const ShardHeader& header, std::FILE* file);

  std::string path_;
  ShardHeader header_;
  std::FILE* file_;
  std::vector<float> labels_;
  std::vector<uint64_t> keys_;
  bool finished_ = false;
  bool committed_ = false;
};

// A shard file mapped read-only into memory. Open validates the header and
// that the size is exactly what it implies.
class ShardFile {
 public:
  // NotFound when missing; DataLoss (naming the file and the field) when it
  // is not a shard, is truncated or has trailing bytes; Unimplemented for an
  // unknown version or dtype.
  static absl::StatusOr<std::unique_ptr<ShardFile>> Open(const std::string& path);
  ~ShardFile();
  ShardFile(const ShardFile&) = delete;
  ShardFile& operator=(const ShardFile&) = delete;

  const ShardHeader& header() const { return header_; }
  int64_t rows() const { return static_cast<int64_t>(header_.rows); }
  int64_t dim() const { return static_cast<int64_t>(header_.dim); }
  absl::Span<const float> features() const { return {features_, header_.rows * header_.dim}; }
  absl::Span<const float> labels() const { return {labels_, header_.rows}; }
  absl::Span<const uint64_t> keys() const { return {keys_, header_.rows}; }
  absl::Span<const float> row(int64_t i) const {
    return {features_ + static_cast<uint64_t>(i) * header_.dim, header_.dim};
  }
  // The whole file, header included (what the manifest checksums).
  absl::string_view bytes() const { return {static_cast<const char*>(base_), size_}; }
  const std::string& path() const { return path_; }

 private:
  ShardFile() = default;
  std::string path_;
  void* base_ = nullptr;
  size_t size_ = 0;
  ShardHeader header_;
  const float* features_ = nullptr;
  const float* labels_ = nullptr;
  const uint64_t* keys_ = nullptr;
};

struct ManifestInput {
  std::string file;  // base name of the input as given
  int64_t rows_read = 0;
};

// Everything manifest.json says. ManifestToJson writes it in one canonical
// text form (fixed key order, 2-space indent, floats in the shortest "%.17g"
// precision that round-trips) that the Spark job reproduces byte for byte.
struct Manifest {
  std::string format = "dpfleet-pums-shards";
  int format_version = static_cast<int>(kShardFormatVersion);
  int schema_version = 0;
  std::string schema_sha256;  // SHA-256 of SchemaJson() (common/pums/prepare.h)
  std::string task;
  std::string label;  // how the label was derived, in words
  std::vector<std::string> features;
  std::vector<std::string> columns;
  int64_t dim = 0;
  std::string dtype = "float32";
  uint64_t split_seed = 0;
  double eval_fraction = 0;
  std::string split_rule;
  std::string shard_rule;
  std::vector<ManifestInput> inputs;
  int64_t rows_read = 0;
  std::map<std::string, int64_t> rows_dropped;
  int64_t rows_train = 0;
  int64_t rows_eval = 0;
  int64_t positives_train = 0;
  int64_t positives_eval = 0;
  double positive_rate_train = 0;
  double positive_rate_eval = 0;
  int shards = 0;
  std::vector<ShardInfo> train_shards;
  ShardInfo eval_shard;
};

std::string ManifestToJson(const Manifest& manifest);
// Parses manifest.json text; InvalidArgument naming the missing or bad field.
absl::StatusOr<Manifest> ParseManifest(absl::string_view json);
// Reads <dir>/manifest.json. NotFound when absent.
absl::StatusOr<Manifest> ReadManifest(const std::string& dir);

// JSON number text both implementations agree on: the shortest "%.{p}g"
// (p = 1..17) that reads back as the same double.
std::string CanonicalDouble(double value);

// The canonical text of any JSON value (the manifest's and the schema's
// form): keys in insertion order, 2-space indent, arrays of scalars on one
// line, strings with only '"', '\\' and control characters escaped, floats
// as CanonicalDouble, a final newline. deploy/spark/prepare_pums.py
// implements the same rules.
std::string CanonicalJsonText(const nlohmann::ordered_json& value);

struct ShardLoadOptions {
  // Training shards with index % world_size == rank are loaded.
  int rank = 0;
  int world_size = 1;
  // Hash every file and compare with the manifest (DataLoss on mismatch).
  bool verify_checksums = true;
};

// Loads the training shards of the dataset in `dir` that belong to `rank`,
// in shard order, into one split. InvalidArgument for a bad rank/world;
// DataLoss when a file disagrees with the manifest (rows, dim, checksum).
absl::StatusOr<EncodedSplit> LoadTrainShards(const std::string& dir,
                                             const ShardLoadOptions& options = {});
// Loads eval.bin of the dataset in `dir`.
absl::StatusOr<EncodedSplit> LoadEvalShard(const std::string& dir, bool verify_checksum = true);

}  // namespace dpfleet::data

#endif  // DPFLEET_COMMON_PUMS_SHARDS_H_
