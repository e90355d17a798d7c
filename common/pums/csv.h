// Fast, minimal CSV reading for large PUMS files.
//
// LineChunkReader hands out big blocks of whole lines from a plain or gzip
// file so that several threads can parse one block each; SplitCsvLine and
// ParseCsvInt are the per-line primitives. This unit knows nothing about PUMS
// and must never interpret field contents beyond CSV quoting and integers.
#ifndef DPFLEET_COMMON_PUMS_CSV_H_
#define DPFLEET_COMMON_PUMS_CSV_H_

#include <zlib.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dpfleet::data {

// Reads a text file in blocks of complete lines. gzip input is detected from
// the content (zlib reads plain files transparently), so ".csv.gz" and ".csv"
// need no flag. Not thread-safe; one reader per file.
class LineChunkReader {
 public:
  // NotFound when the file does not exist or cannot be opened.
  static absl::StatusOr<std::unique_ptr<LineChunkReader>> Open(const std::string& path,
                                                               size_t chunk_bytes = 16 << 20);
  ~LineChunkReader();
  LineChunkReader(const LineChunkReader&) = delete;
  LineChunkReader& operator=(const LineChunkReader&) = delete;

  // Reads one line without its terminator ("\n" or "\r\n"); false at EOF.
  absl::StatusOr<bool> ReadLine(std::string* line);
  // Replaces *chunk with the next block of whole lines (about chunk_bytes;
  // each line ends in '\n' except possibly the file's last); false at EOF.
  // DataLoss for a corrupt or truncated gzip stream.
  absl::StatusOr<bool> NextChunk(std::string* chunk);

  const std::string& path() const { return path_; }

 private:
  LineChunkReader(std::string path, gzFile file, size_t chunk_bytes);
  // Appends up to `max_bytes` from the file to *out; sets eof_.
  absl::Status ReadMore(std::string* out, size_t max_bytes);

  std::string path_;
  gzFile file_;
  size_t chunk_bytes_;
  std::string pending_;  // bytes read past the last handed-out line
  bool eof_ = false;
};

// Splits one CSV line (no terminator) into fields. Unquoted fields are views
// into `line`; quoted fields (RFC 4180, "" for a quote) are unescaped into
// *scratch, which must outlive the views. Fast path when there is no quote.
void SplitCsvLine(absl::string_view line, std::vector<absl::string_view>* fields,
                  std::string* scratch);

enum class IntParse { kOk, kBlank, kBad };
// Parses an optionally signed decimal integer, ignoring surrounding spaces;
// leading zeros are fine ("01" == 1). kBlank for an empty or all-space field,
// kBad for anything else that is not an integer of at most 18 digits.
IntParse ParseCsvInt(absl::string_view field, int64_t* value);

}  // namespace dpfleet::data

#endif  // DPFLEET_COMMON_PUMS_CSV_H_
