// Data preparation: raw PUMS person files in, private training shards out.
//
// PrepareShards is what `dpctl data prepare` runs and what the coordinator
// will run: it streams the input through the encoder of common/pums/dataset.h
// (same checks, drops, labels, encoding and train/eval split as
// LoadAndEncode) and writes the shard directory described in
// common/pums/shards.h: train-XXXXX-of-SSSSS.bin by PartitionOf(key, S), one
// eval.bin, and manifest.json. Memory holds one input block plus 12 bytes
// (label + key) per output row; features go to disk as they are encoded.
//
// SchemaJson is the public PUMS schema (common/pums/schema.h) as JSON; the
// Spark job (deploy/spark/prepare_pums.py) reads it, so the dictionary lives
// in one place, and the manifest records its SHA-256.
//
// Privacy rule (DESIGN.md, "Data path"): nothing here may derive anything
// that shapes the output from statistics of the input; the only
// data-dependent outputs are the encoded rows and the counts in the
// manifest. Output bytes must never depend on time, host, paths, thread
// count or block size (the C++/Spark parity test compares SHA-256s).
#ifndef DPFLEET_COMMON_PUMS_PREPARE_H_
#define DPFLEET_COMMON_PUMS_PREPARE_H_

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/pums/dataset.h"
#include "common/pums/shards.h"

namespace dpfleet::data {

// Bumped whenever the meaning of the schema JSON changes shape; changes of
// content are caught by the schema SHA-256 in the manifest.
inline constexpr int kSchemaVersion = 1;

struct PrepareOptions {
  std::vector<std::string> inputs;  // PUMS person CSV files (.csv or .csv.gz)
  // Task, features, split seed, eval fraction, threads, block size. Here
  // threads = 0 means one parser thread per core but one (at least 1, at
  // most 8): the reader thread and the shard writes need a core too.
  EncodeOptions encode;
  int shards = 1;       // S training shards, 1..kMaxShards
  std::string out_dir;  // created if missing
  // Called after each encoded block with the rows kept so far (train +
  // eval), from the preparing thread. Optional.
  std::function<void(int64_t rows_kept)> progress;
  // Checked after each encoded block: once set, the preparation stops with
  // Cancelled (no manifest written, partial shards removed). Optional.
  const std::atomic<bool>* cancel = nullptr;
};

// Runs the preparation and returns the manifest it wrote to
// <out_dir>/manifest.json. Errors: InvalidArgument for bad options (the
// message names the option and value) or when no usable row remains,
// NotFound for a missing input, InvalidArgument for a header without a
// required column, Internal/NotFound when the output cannot be written. On
// error no new manifest is written and partial shard files are removed.
// Earlier shard files in out_dir that the new manifest does not list
// (train-*-of-*.bin of another shard count) are removed.
absl::StatusOr<Manifest> PrepareShards(const PrepareOptions& options);

// The PUMS schema as canonical JSON (CanonicalJsonText): schema version,
// label variable, default features and every variable with its kind, codes
// or range, blank meaning and feature use.
std::string SchemaJson();

// Human-readable label rule of a task, as written into the manifest.
std::string TaskLabelRule(Task task);

}  // namespace dpfleet::data

#endif  // DPFLEET_COMMON_PUMS_PREPARE_H_
