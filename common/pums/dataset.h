// PUMS person CSV -> encoded, split training data.
//
// Reads one or more ACS PUMS person files (.csv or .csv.gz; any column order;
// ST or STATE; codes with or without leading zeros), drops and counts invalid
// rows, derives the binary label of a task from ESR, encodes the chosen
// features with the public schema (common/pums/schema.h) and splits rows into
// train/eval deterministically by a hash of the record key.
//
// One person, one record: a person (SERIALNO, SPORDER) is kept once across
// all the inputs of one encode, the first occurrence in input order; later
// ones are dropped and counted as kDuplicateReason. An input that holds
// exactly the persons of an earlier one (the same file given twice, or a
// gzipped or reordered copy) is refused with an error naming both.
//
// Privacy rule (DESIGN.md, "Data path"): nothing here may compute a statistic
// of the input that shapes the encoding. Vocabularies, one-hot widths and
// numeric scaling come from the schema only; the only data-dependent outputs
// are the encoded rows themselves and the drop counters. Rows are never
// reordered by content, and the split depends on keys and a seed only.
#ifndef DPFLEET_COMMON_PUMS_DATASET_H_
#define DPFLEET_COMMON_PUMS_DATASET_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dpfleet::data {

enum class Task {
  kEmployment,    // universe: ESR present (age 16+); label ESR in {1,2,4,5}
  kUnemployment,  // universe: ESR in 1..5 (labor force); label ESR == 3
};

// "employment" | "unemployment" (case-insensitive); InvalidArgument otherwise.
absl::StatusOr<Task> ParseTask(absl::string_view name);
absl::string_view TaskName(Task task);

// The drop reason of a record whose person was already kept.
inline constexpr char kDuplicateReason[] = "duplicate";

struct EncodeOptions {
  Task task = Task::kEmployment;
  std::vector<std::string> features;  // PUMS variable names; empty = DefaultFeatures()
  uint64_t split_seed = 0;
  double eval_fraction = 0.2;  // share of rows in the held-out eval split, in [0, 1]
  int threads = 0;             // parser threads; 0 = hardware concurrency (at most 8)
  // Bytes read per block (each block is split across the threads); 0 = 16 MiB.
  // Results do not depend on it; tests make it small to cross block borders.
  size_t read_chunk_bytes = 0;
};

struct EncodedSplit {
  int64_t rows = 0;
  int64_t dim = 0;
  std::vector<float> x;        // row-major rows x dim
  std::vector<float> y;        // 0/1 labels
  std::vector<uint64_t> keys;  // RecordKey(SERIALNO, SPORDER) per row
};

struct EncodedDataset {
  EncodedSplit train, eval;
  // Name of every encoded column: "AGEP", "SCHL=16", "MIL=blank(not applicable)".
  std::vector<std::string> columns;
  // Canonical names of the features, in encoding order.
  std::vector<std::string> features;
  int64_t rows_read = 0;  // data rows seen (header and empty lines excluded)
  // reason -> rows dropped for it (first failing check only), including rows
  // outside the task universe and kDuplicateReason (checked last, among
  // rows that passed every other check). rows_read == train.rows +
  // eval.rows + sum.
  std::map<std::string, int64_t> rows_dropped;
};

// Loads and encodes `csv_paths` as one dataset, rows in file order. Errors:
// InvalidArgument for bad options or features (NotFound for an unknown
// feature), NotFound for a missing file, InvalidArgument naming the file and
// column when a header lacks a required column, InvalidArgument naming both
// inputs when one holds the same persons as an earlier one, InvalidArgument
// when no usable row remains. Bad and duplicate rows are never an error:
// they are dropped and counted.
absl::StatusOr<EncodedDataset> LoadAndEncode(const std::vector<std::string>& csv_paths,
                                             const EncodeOptions& options);

// What a streaming encode saw, without the rows themselves.
struct EncodeSummary {
  std::vector<std::string> columns;   // as EncodedDataset::columns
  std::vector<std::string> features;  // as EncodedDataset::features
  int64_t rows_read = 0;
  std::vector<int64_t> rows_read_per_file;  // parallel to the input paths
  std::map<std::string, int64_t> rows_dropped;
  int64_t rows_train = 0;
  int64_t rows_eval = 0;
};

// Receives consecutive batches of encoded rows. Concatenating every `train`
// (and every `eval`) batch in call order gives exactly LoadAndEncode's train
// (eval) split. A batch may be empty; the sink may move from it. A non-OK
// return stops the encode with that status.
using EncodedBatchSink = std::function<absl::Status(EncodedSplit&& train, EncodedSplit&& eval)>;

// Streaming form of LoadAndEncode: same checks, same rows, same errors
// (including "no usable rows", reported after the last batch), but the rows
// go to `sink` block by block (about EncodeOptions::read_chunk_bytes of input
// at a time) instead of being held, so memory does not grow with the input.
absl::StatusOr<EncodeSummary> EncodeStreaming(const std::vector<std::string>& csv_paths,
                                              const EncodeOptions& options,
                                              const EncodedBatchSink& sink);

// Keeps only rows whose key falls in partition `rank` of `world_size` (stable
// hash partition): ranks 0..world_size-1 together hold every row exactly once.
// world_size <= 1 returns a copy; a rank outside [0, world_size) gets no rows.
EncodedSplit Partition(const EncodedSplit& split, int rank, int world_size);

// --- Building blocks, exposed for the Spark job's parity tests and the shard
// --- writer. All are pure functions, stable across platforms and releases.

// 64-bit key of a person record; SPORDER as an integer so "01" == "1".
uint64_t RecordKey(absl::string_view serialno, int64_t sporder);
// Whether the record with `key` belongs to the eval split.
bool InEvalSplit(uint64_t key, uint64_t split_seed, double eval_fraction);
// Partition (0..world_size-1) that holds the record with `key`.
int PartitionOf(uint64_t key, int world_size);

// Encoded column names and width for `features` (canonical or alias names),
// from the schema alone.
absl::StatusOr<std::vector<std::string>> EncodedColumns(const std::vector<std::string>& features);

}  // namespace dpfleet::data

#endif  // DPFLEET_COMMON_PUMS_DATASET_H_
