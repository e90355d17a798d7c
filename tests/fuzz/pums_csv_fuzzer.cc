// Fuzz target: the PUMS CSV reader, end to end — the bytes of a person file
// (plain or gzip; the reader tells them apart by content) are loaded and
// encoded exactly as the coordinator and the workers do, and each line also
// goes through the CSV primitives on their own. Whatever the bytes, the
// result is a dataset or an error: never a crash, and the row accounting
// always adds up (rows read = train + eval + dropped).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/pums/csv.h"
#include "common/pums/dataset.h"

namespace {

// One file per fuzzing process, rewritten for every input.
const std::string& InputPath() {
  static const std::string path = "/tmp/dpfleet-pums-fuzz-" + std::to_string(getpid()) + ".csv";
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<absl::string_view> fields;
  std::string scratch;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    dpfleet::data::SplitCsvLine(line, &fields, &scratch);
    for (absl::string_view f : fields) {
      int64_t v = 0;
      dpfleet::data::ParseCsvInt(f, &v);
    }
  }
  {
    std::ofstream out(InputPath(), std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
  }
  dpfleet::data::EncodeOptions options;
  options.threads = 1;
  options.read_chunk_bytes = 64;  // many block borders in a small input
  absl::StatusOr<dpfleet::data::EncodedDataset> ds = dpfleet::data::LoadAndEncode({InputPath()}, options);
  if (!ds.ok()) return 0;
  int64_t dropped = 0;
  for (const auto& [reason, n] : ds->rows_dropped) dropped += n;
  if (ds->rows_read != ds->train.rows + ds->eval.rows + dropped) std::abort();
  if (static_cast<int64_t>(ds->train.x.size()) != ds->train.rows * ds->train.dim) std::abort();
  return 0;
}
