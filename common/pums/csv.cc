#include "common/pums/csv.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dpfleet::data {

absl::StatusOr<std::unique_ptr<LineChunkReader>> LineChunkReader::Open(const std::string& path,
                                                                       size_t chunk_bytes) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("file '", path, "' not found"));
  }
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is a directory, not a file"));
  }
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  gzbuffer(file, 1 << 20);
  return std::unique_ptr<LineChunkReader>(
      new LineChunkReader(path, file, std::max<size_t>(chunk_bytes, 1 << 12)));
}

LineChunkReader::LineChunkReader(std::string path, gzFile file, size_t chunk_bytes)
    : path_(std::move(path)), file_(file), chunk_bytes_(chunk_bytes) {}

LineChunkReader::~LineChunkReader() { gzclose(file_); }

absl::Status LineChunkReader::ReadMore(std::string* out, size_t max_bytes) {
  if (eof_) return absl::OkStatus();
  const size_t old = out->size();
  // gzread takes an unsigned count; read in slices well below its limit.
  const size_t want = std::min<size_t>(max_bytes, 1u << 26);
  out->resize(old + want);
  const int n = gzread(file_, out->data() + old, static_cast<unsigned>(want));
  if (n < 0) {
    int errnum = 0;
    const char* msg = gzerror(file_, &errnum);
    out->resize(old);
    return absl::DataLossError(absl::StrCat("reading '", path_, "': ", msg));
  }
  out->resize(old + static_cast<size_t>(n));
  if (static_cast<size_t>(n) < want) {
    // Short read: end of file, or a truncated gzip member (reported by zlib as
    // Z_BUF_ERROR once the input runs out).
    int errnum = 0;
    const char* msg = gzerror(file_, &errnum);
    if (errnum != Z_OK && errnum != Z_STREAM_END) {
      return absl::DataLossError(absl::StrCat("reading '", path_, "': ", msg));
    }
    eof_ = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> LineChunkReader::ReadLine(std::string* line) {
  size_t pos;
  while ((pos = pending_.find('\n')) == std::string::npos && !eof_) {
    absl::Status s = ReadMore(&pending_, 1 << 16);
    if (!s.ok()) return s;
  }
  if (pos == std::string::npos) {
    if (pending_.empty()) return false;
    line->swap(pending_);
    pending_.clear();
  } else {
    line->assign(pending_, 0, pos);
    pending_.erase(0, pos + 1);
  }
  if (!line->empty() && line->back() == '\r') line->pop_back();
  return true;
}

absl::StatusOr<bool> LineChunkReader::NextChunk(std::string* chunk) {
  chunk->swap(pending_);
  pending_.clear();
  while (!eof_ && chunk->size() < chunk_bytes_) {
    absl::Status s = ReadMore(chunk, chunk_bytes_ - chunk->size());
    if (!s.ok()) return s;
  }
  if (chunk->empty()) return false;
  if (!eof_) {
    size_t pos;
    // A line longer than the chunk: keep reading until it ends.
    while ((pos = chunk->rfind('\n')) == std::string::npos && !eof_) {
      absl::Status s = ReadMore(chunk, chunk_bytes_);
      if (!s.ok()) return s;
    }
    if (pos != std::string::npos && pos + 1 < chunk->size()) {
      pending_.assign(*chunk, pos + 1, std::string::npos);
      chunk->resize(pos + 1);
    }
  }
  return true;
}

void SplitCsvLine(absl::string_view line, std::vector<absl::string_view>* fields,
                  std::string* scratch) {
  const char* p = line.data();
  const char* end = p + line.size();
  if (std::memchr(p, '"', line.size()) == nullptr) {
    // Fast path: PUMS fields are short, so a plain byte loop beats memchr per
    // field, and writing into pre-sized storage avoids emplace_back overhead.
    if (fields->size() < 64) fields->resize(64);
    size_t n = 0;
    const char* start = p;
    for (; p < end; ++p) {
      if (*p != ',') continue;
      if (n + 1 >= fields->size()) fields->resize(fields->size() * 2);
      (*fields)[n++] = absl::string_view(start, p - start);
      start = p + 1;
    }
    (*fields)[n++] = absl::string_view(start, end - start);
    fields->resize(n);
    return;
  }
  fields->clear();
  // Slow path with quotes. Reserve so that views into scratch stay valid.
  scratch->clear();
  scratch->reserve(line.size());
  while (true) {
    if (p < end && *p == '"') {
      const size_t start = scratch->size();
      ++p;
      while (p < end) {
        if (*p == '"') {
          if (p + 1 < end && p[1] == '"') {
            scratch->push_back('"');
            p += 2;
            continue;
          }
          ++p;  // closing quote
          break;
        }
        scratch->push_back(*p++);
      }
      // Anything between the closing quote and the comma is kept verbatim.
      while (p < end && *p != ',') scratch->push_back(*p++);
      fields->emplace_back(scratch->data() + start, scratch->size() - start);
    } else {
      const char* comma = static_cast<const char*>(std::memchr(p, ',', end - p));
      const char* stop = comma == nullptr ? end : comma;
      fields->emplace_back(p, stop - p);
      p = stop;
    }
    if (p >= end) return;
    ++p;  // skip the comma
    if (p == end) {
      fields->emplace_back(p, 0);  // trailing empty field
      return;
    }
  }
}

IntParse ParseCsvInt(absl::string_view field, int64_t* value) {
  size_t b = 0, e = field.size();
  while (b < e && field[b] == ' ') ++b;
  while (e > b && field[e - 1] == ' ') --e;
  if (b == e) return IntParse::kBlank;
  bool negative = false;
  if (field[b] == '-' || field[b] == '+') {
    negative = field[b] == '-';
    ++b;
  }
  if (b == e || e - b > 18) return IntParse::kBad;
  int64_t v = 0;
  for (size_t i = b; i < e; ++i) {
    const unsigned d = static_cast<unsigned char>(field[i]) - '0';
    if (d > 9) return IntParse::kBad;
    v = v * 10 + d;
  }
  *value = negative ? -v : v;
  return IntParse::kOk;
}

}  // namespace dpfleet::data
