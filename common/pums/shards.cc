#include "common/pums/shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace dpfleet::data {
namespace {

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shard files are little-endian; this reader and writer copy native words"
#endif

void PutU32(char* p, uint32_t v) { std::memcpy(p, &v, 4); }
void PutU64(char* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t GetU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

uint64_t PaddingAfterLabels(uint64_t rows, uint64_t dim) {
  const uint64_t used = kShardHeaderBytes + 4 * rows * (dim + 1);
  return (8 - used % 8) % 8;
}

// Hex SHA-256 of a file through read-only mappings of 32 MiB windows, so
// that the mapped (page-cache) pages never add more than a window to the
// resident set.
absl::StatusOr<std::string> HashMappedFile(const std::string& path) {
  constexpr size_t kWindow = size_t{32} << 20;  // a multiple of the page size
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return Sha256FileHex(path);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  Sha256 h;
  for (size_t at = 0; at < size; at += kWindow) {
    const size_t len = std::min(kWindow, size - at);
    void* base = ::mmap(nullptr, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd,
                        static_cast<off_t>(at));
    if (base == MAP_FAILED) {  // e.g. a filesystem without mmap
      ::close(fd);
      return Sha256FileHex(path);
    }
    h.Update(base, len);
    ::munmap(base, len);
  }
  ::close(fd);
  return DigestHex(h.Finish());
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

}  // namespace

std::string EncodeShardHeader(const ShardHeader& h) {
  std::string out(kShardHeaderBytes, '\0');
  std::memcpy(out.data(), kShardMagic, 8);
  PutU32(out.data() + 8, h.version);
  PutU32(out.data() + 12, h.dtype);
  PutU64(out.data() + 16, h.rows);
  PutU64(out.data() + 24, h.dim);
  PutU32(out.data() + 32, h.shard_index);
  PutU32(out.data() + 36, h.shard_count);
  PutU32(out.data() + 40, static_cast<uint32_t>(h.split));
  return out;
}

absl::StatusOr<ShardHeader> DecodeShardHeader(absl::string_view bytes, absl::string_view what) {
  if (bytes.size() < kShardHeaderBytes) {
    return absl::DataLossError(absl::StrCat(what, " is truncated: ", bytes.size(),
                                            " bytes, shorter than the ", kShardHeaderBytes,
                                            "-byte shard header"));
  }
  if (std::memcmp(bytes.data(), kShardMagic, 8) != 0) {
    return absl::DataLossError(
        absl::StrCat(what, " is not a dpfleet shard (magic is not \"DPFSHARD\")"));
  }
  ShardHeader h;
  h.version = GetU32(bytes.data() + 8);
  h.dtype = GetU32(bytes.data() + 12);
  h.rows = GetU64(bytes.data() + 16);
  h.dim = GetU64(bytes.data() + 24);
  h.shard_index = GetU32(bytes.data() + 32);
  h.shard_count = GetU32(bytes.data() + 36);
  const uint32_t split = GetU32(bytes.data() + 40);
  if (h.version != kShardFormatVersion) {
    return absl::UnimplementedError(absl::StrCat(what, " has shard format version ", h.version,
                                                 "; this build reads version ",
                                                 kShardFormatVersion));
  }
  if (h.dtype != kShardDtypeFloat32) {
    return absl::UnimplementedError(
        absl::StrCat(what, " has dtype ", h.dtype, "; only 1 (float32) is supported"));
  }
  if (split > 1) {
    return absl::DataLossError(absl::StrCat(what, " has split ", split, " (0 train, 1 eval)"));
  }
  h.split = static_cast<ShardSplit>(split);
  if (h.dim == 0 || h.dim > (uint64_t{1} << 24)) {
    return absl::DataLossError(absl::StrCat(what, " has implausible dim ", h.dim));
  }
  if (h.shard_count == 0 || h.shard_index >= h.shard_count) {
    return absl::DataLossError(absl::StrCat(what, " has shard index ", h.shard_index,
                                            " outside its shard count ", h.shard_count));
  }
  return h;
}

uint64_t ShardFileBytes(uint64_t rows, uint64_t dim) {
  return kShardHeaderBytes + 4 * rows * (dim + 1) + PaddingAfterLabels(rows, dim) + 8 * rows;
}

std::string TrainShardFileName(int index, int count) {
  return absl::StrFormat("train-%05d-of-%05d.bin", index, count);
}

// ---------------------------------------------------------------------------
// Writer.

ShardWriter::ShardWriter(std::string path, const ShardHeader& header, std::FILE* file)
    : path_(std::move(path)), header_(header), file_(file) {}

ShardWriter::~ShardWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (!committed_) std::remove((path_ + ".partial").c_str());
}

absl::StatusOr<std::unique_ptr<ShardWriter>> ShardWriter::Create(const std::string& path,
                                                                  const ShardHeader& header) {
  if (header.dim == 0) return absl::InvalidArgumentError("shard dim must be positive");
  const std::string partial = path + ".partial";
  std::FILE* f = std::fopen(partial.c_str(), "wb");
  if (f == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot create '", partial, "': ", std::strerror(errno)));
  }
  std::unique_ptr<ShardWriter> w(new ShardWriter(path, header, f));
  w->header_.rows = 0;
  // A placeholder: the row count is known only at Finish.
  const std::string zeros(kShardHeaderBytes, '\0');
  if (std::fwrite(zeros.data(), 1, zeros.size(), f) != zeros.size()) {
    return absl::InternalError(absl::StrCat("write to '", partial, "' failed"));
  }
  return w;
}

absl::Status ShardWriter::Append(const float* x, const float* y, const uint64_t* keys,
                                 int64_t n) {
  if (finished_) return absl::FailedPreconditionError("shard already finished");
  if (n <= 0) return absl::OkStatus();
  const size_t count = static_cast<size_t>(n) * header_.dim;
  if (std::fwrite(x, sizeof(float), count, file_) != count) {
    return absl::InternalError(
        absl::StrCat("write to '", path_, ".partial' failed: ", std::strerror(errno)));
  }
  labels_.insert(labels_.end(), y, y + n);
  keys_.insert(keys_.end(), keys, keys + n);
  header_.rows += static_cast<uint64_t>(n);
  return absl::OkStatus();
}

absl::StatusOr<ShardInfo> ShardWriter::Finish() {
  if (finished_) return absl::FailedPreconditionError("shard already finished");
  finished_ = true;
  const std::string partial = path_ + ".partial";
  const uint64_t pad = PaddingAfterLabels(header_.rows, header_.dim);
  const char zeros[8] = {};
  const std::string head = EncodeShardHeader(header_);
  const bool ok =
      std::fwrite(labels_.data(), sizeof(float), labels_.size(), file_) == labels_.size() &&
      std::fwrite(zeros, 1, pad, file_) == pad &&
      std::fwrite(keys_.data(), sizeof(uint64_t), keys_.size(), file_) == keys_.size() &&
      std::fseek(file_, 0, SEEK_SET) == 0 &&
      std::fwrite(head.data(), 1, head.size(), file_) == head.size();
  const int close_rc = std::fclose(file_);
  file_ = nullptr;
  if (!ok || close_rc != 0) {
    return absl::InternalError(
        absl::StrCat("write to '", partial, "' failed: ", std::strerror(errno)));
  }
  ShardInfo info;
  const size_t slash = path_.rfind('/');
  info.file = slash == std::string::npos ? path_ : path_.substr(slash + 1);
  info.index = static_cast<int>(header_.shard_index);
  info.rows = static_cast<int64_t>(header_.rows);
  for (float y : labels_) info.positives += y == 1.0f;
  info.bytes = static_cast<int64_t>(ShardFileBytes(header_.rows, header_.dim));
  // Hashed from the file rather than on the way out: the header (first in
  // the file) is only known now. The file is still in the page cache, and a
  // mapping reads it there without copying it again.
  ASSIGN_OR_RETURN(info.sha256, HashMappedFile(partial));
  labels_ = {};
  keys_ = {};
  return info;
}

absl::Status ShardWriter::Commit() {
  if (!finished_) return absl::FailedPreconditionError("shard not finished");
  const std::string partial = path_ + ".partial";
  if (std::rename(partial.c_str(), path_.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename '", partial, "' to '", path_,
                                            "': ", std::strerror(errno)));
  }
  committed_ = true;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Reader.

ShardFile::~ShardFile() {
  if (base_ != nullptr) ::munmap(base_, size_);
}

absl::StatusOr<std::unique_ptr<ShardFile>> ShardFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open shard '", path, "': ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("stat '", path, "': ", std::strerror(err)));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  const std::string what = absl::StrCat("shard '", path, "'");
  if (size < kShardHeaderBytes) {
    ::close(fd);
    return absl::DataLossError(absl::StrCat(what, " is truncated: ", size,
                                            " bytes, shorter than the ", kShardHeaderBytes,
                                            "-byte shard header"));
  }
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (base == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("mmap '", path, "': ", std::strerror(map_err)));
  }
  std::unique_ptr<ShardFile> f(new ShardFile());
  f->path_ = path;
  f->base_ = base;
  f->size_ = size;
  ASSIGN_OR_RETURN(f->header_,
                   DecodeShardHeader(absl::string_view(static_cast<const char*>(base), size), what));
  const ShardHeader& h = f->header_;
  // Checked in 128 bits first: a corrupt row count must not overflow into a
  // size that happens to match.
  const unsigned __int128 need = static_cast<unsigned __int128>(kShardHeaderBytes) +
                                 static_cast<unsigned __int128>(h.rows) * (h.dim + 1) * 4 +
                                 static_cast<unsigned __int128>(h.rows) * 8;
  if (need > size) {
    return absl::DataLossError(absl::StrCat(what, " is truncated: header says ", h.rows,
                                            " rows x ", h.dim, " columns, file has only ",
                                            size, " bytes"));
  }
  const uint64_t want = ShardFileBytes(h.rows, h.dim);
  if (want != size) {
    return absl::DataLossError(absl::StrCat(what, " has ", size, " bytes; header says ", h.rows,
                                            " rows x ", h.dim, " columns = ", want,
                                            size < want ? " bytes (truncated)"
                                                        : " bytes (trailing bytes)"));
  }
  const char* p = static_cast<const char*>(base) + kShardHeaderBytes;
  f->features_ = reinterpret_cast<const float*>(p);
  p += 4 * h.rows * h.dim;
  f->labels_ = reinterpret_cast<const float*>(p);
  p += 4 * h.rows + PaddingAfterLabels(h.rows, h.dim);
  f->keys_ = reinterpret_cast<const uint64_t*>(p);
  return f;
}

// ---------------------------------------------------------------------------
// Manifest.

std::string CanonicalDouble(double value) {
  if (!std::isfinite(value)) return "null";  // never written: rates are finite
  for (int p = 1; p <= 17; ++p) {
    std::string s = absl::StrFormat("%.*g", p, value);
    if (std::strtod(s.c_str(), nullptr) == value) return s;
  }
  return absl::StrFormat("%.17g", value);
}

namespace {

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", static_cast<unsigned char>(c));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

bool IsScalar(const nlohmann::ordered_json& v) { return !v.is_object() && !v.is_array(); }

void AppendCanonical(const nlohmann::ordered_json& v, int indent, std::string* out) {
  const std::string pad(2 * (indent + 1), ' ');
  const std::string close_pad(2 * indent, ' ');
  if (v.is_object()) {
    if (v.empty()) {
      out->append("{}");
      return;
    }
    out->append("{\n");
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out->append(",\n");
      first = false;
      out->append(pad);
      AppendJsonString(it.key(), out);
      out->append(": ");
      AppendCanonical(it.value(), indent + 1, out);
    }
    out->append("\n").append(close_pad).append("}");
  } else if (v.is_array()) {
    if (v.empty()) {
      out->append("[]");
      return;
    }
    bool scalars = true;
    for (const auto& e : v) scalars = scalars && IsScalar(e);
    if (scalars) {
      out->push_back('[');
      bool first = true;
      for (const auto& e : v) {
        if (!first) out->append(", ");
        first = false;
        AppendCanonical(e, indent, out);
      }
      out->push_back(']');
      return;
    }
    out->append("[\n");
    bool first = true;
    for (const auto& e : v) {
      if (!first) out->append(",\n");
      first = false;
      out->append(pad);
      AppendCanonical(e, indent + 1, out);
    }
    out->append("\n").append(close_pad).append("]");
  } else if (v.is_string()) {
    AppendJsonString(v.get_ref<const std::string&>(), out);
  } else if (v.is_boolean()) {
    out->append(v.get<bool>() ? "true" : "false");
  } else if (v.is_number_unsigned()) {
    absl::StrAppend(out, v.get<uint64_t>());
  } else if (v.is_number_integer()) {
    absl::StrAppend(out, v.get<int64_t>());
  } else if (v.is_number_float()) {
    out->append(CanonicalDouble(v.get<double>()));
  } else {
    out->append("null");
  }
}

nlohmann::ordered_json ShardJson(const ShardInfo& s, bool with_index) {
  nlohmann::ordered_json j;
  if (with_index) j["index"] = s.index;
  j["file"] = s.file;
  j["rows"] = s.rows;
  j["positives"] = s.positives;
  j["bytes"] = s.bytes;
  j["sha256"] = s.sha256;
  return j;
}

}  // namespace

std::string CanonicalJsonText(const nlohmann::ordered_json& value) {
  std::string out;
  AppendCanonical(value, 0, &out);
  out.push_back('\n');
  return out;
}

std::string ManifestToJson(const Manifest& m) {
  nlohmann::ordered_json j;
  j["format"] = m.format;
  j["format_version"] = m.format_version;
  j["schema_version"] = m.schema_version;
  j["schema_sha256"] = m.schema_sha256;
  j["task"] = m.task;
  j["label"] = m.label;
  j["features"] = m.features;
  j["columns"] = m.columns;
  j["dim"] = m.dim;
  j["dtype"] = m.dtype;
  j["split_seed"] = m.split_seed;
  j["eval_fraction"] = m.eval_fraction;
  j["split_rule"] = m.split_rule;
  j["shard_rule"] = m.shard_rule;
  j["inputs"] = nlohmann::ordered_json::array();
  for (const ManifestInput& in : m.inputs) {
    nlohmann::ordered_json e;
    e["file"] = in.file;
    e["rows_read"] = in.rows_read;
    j["inputs"].push_back(std::move(e));
  }
  j["rows_read"] = m.rows_read;
  j["rows_dropped"] = nlohmann::ordered_json::object();
  for (const auto& [reason, n] : m.rows_dropped) j["rows_dropped"][reason] = n;
  j["rows_train"] = m.rows_train;
  j["rows_eval"] = m.rows_eval;
  j["positives_train"] = m.positives_train;
  j["positives_eval"] = m.positives_eval;
  // Always a JSON float, so readers never see an integer where a rate is.
  j["positive_rate_train"] = m.positive_rate_train;
  j["positive_rate_eval"] = m.positive_rate_eval;
  j["shards"] = m.shards;
  j["train_shards"] = nlohmann::ordered_json::array();
  for (const ShardInfo& s : m.train_shards) j["train_shards"].push_back(ShardJson(s, true));
  j["eval_shard"] = ShardJson(m.eval_shard, false);
  return CanonicalJsonText(j);
}

namespace {

// Field access with errors that name the field.
class Fields {
 public:
  Fields(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {}

  template <typename T>
  absl::Status Get(const char* key, T* out) const {
    auto it = j_.find(key);
    if (it == j_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(where_, ": missing field '", key, "'"));
    }
    bool type_ok;
    if constexpr (std::is_same_v<T, std::string>) {
      type_ok = it->is_string();
    } else if constexpr (std::is_floating_point_v<T>) {
      type_ok = it->is_number();
    } else if constexpr (std::is_unsigned_v<T>) {
      type_ok = it->is_number_unsigned();
    } else if constexpr (std::is_integral_v<T>) {
      type_ok = it->is_number_integer();
    } else {
      type_ok = true;
    }
    if (!type_ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(where_, ": field '", key, "' has the wrong type (", it->type_name(), ")"));
    }
    // A list whose elements have the wrong type only shows in the
    // conversion (found by tests/fuzz/manifest_fuzzer: it used to throw).
    try {
      *out = it->get<T>();
    } catch (const nlohmann::json::exception&) {
      return absl::InvalidArgumentError(
          absl::StrCat(where_, ": field '", key, "' has the wrong type (", it->dump(), ")"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<const nlohmann::json*> Child(const char* key, bool array) const {
    auto it = j_.find(key);
    if (it == j_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(where_, ": missing field '", key, "'"));
    }
    if (array ? !it->is_array() : !it->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where_, ": field '", key, "' must be an ",
                                                     array ? "array" : "object"));
    }
    return &*it;
  }

 private:
  const nlohmann::json& j_;
  std::string where_;
};

absl::Status ParseShard(const nlohmann::json& j, const std::string& where, bool with_index,
                        ShardInfo* s) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, " must be an object"));
  Fields f(j, where);
  if (with_index) RETURN_IF_ERROR(f.Get("index", &s->index));
  RETURN_IF_ERROR(f.Get("file", &s->file));
  RETURN_IF_ERROR(f.Get("rows", &s->rows));
  RETURN_IF_ERROR(f.Get("positives", &s->positives));
  RETURN_IF_ERROR(f.Get("bytes", &s->bytes));
  RETURN_IF_ERROR(f.Get("sha256", &s->sha256));
  if (s->file.empty() || s->file.find('/') != std::string::npos || s->file == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": file '", s->file, "' must be a plain name inside the directory"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Manifest> ParseManifest(absl::string_view text) {
  const nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("manifest is not a JSON object");
  }
  Manifest m;
  Fields f(j, "manifest");
  RETURN_IF_ERROR(f.Get("format", &m.format));
  if (m.format != "dpfleet-pums-shards") {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest: format '", m.format, "' is not dpfleet-pums-shards"));
  }
  RETURN_IF_ERROR(f.Get("format_version", &m.format_version));
  if (m.format_version != static_cast<int>(kShardFormatVersion)) {
    return absl::UnimplementedError(absl::StrCat("manifest: format_version ", m.format_version,
                                                 "; this build reads ", kShardFormatVersion));
  }
  RETURN_IF_ERROR(f.Get("schema_version", &m.schema_version));
  RETURN_IF_ERROR(f.Get("schema_sha256", &m.schema_sha256));
  RETURN_IF_ERROR(f.Get("task", &m.task));
  RETURN_IF_ERROR(f.Get("label", &m.label));
  RETURN_IF_ERROR(f.Get("features", &m.features));
  RETURN_IF_ERROR(f.Get("columns", &m.columns));
  RETURN_IF_ERROR(f.Get("dim", &m.dim));
  RETURN_IF_ERROR(f.Get("dtype", &m.dtype));
  if (m.dtype != "float32") {
    return absl::UnimplementedError(absl::StrCat("manifest: dtype '", m.dtype, "'"));
  }
  if (m.dim != static_cast<int64_t>(m.columns.size()) || m.dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("manifest: dim ", m.dim, " but ",
                                                   m.columns.size(), " column names"));
  }
  // A seed of 0 parses as a signed integer; accept both signs' storage.
  {
    auto it = j.find("split_seed");
    if (it == j.end() || !(it->is_number_unsigned() || it->is_number_integer()) ||
        (it->is_number_integer() && !it->is_number_unsigned() && it->get<int64_t>() < 0)) {
      return absl::InvalidArgumentError("manifest: field 'split_seed' missing or not an integer");
    }
    m.split_seed = it->get<uint64_t>();
  }
  RETURN_IF_ERROR(f.Get("eval_fraction", &m.eval_fraction));
  RETURN_IF_ERROR(f.Get("split_rule", &m.split_rule));
  RETURN_IF_ERROR(f.Get("shard_rule", &m.shard_rule));
  ASSIGN_OR_RETURN(const nlohmann::json* inputs, f.Child("inputs", true));
  for (size_t i = 0; i < inputs->size(); ++i) {
    const nlohmann::json& e = (*inputs)[i];
    const std::string where = absl::StrCat("manifest: inputs[", i, "]");
    if (!e.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, " must be an object"));
    ManifestInput in;
    Fields fi(e, where);
    RETURN_IF_ERROR(fi.Get("file", &in.file));
    RETURN_IF_ERROR(fi.Get("rows_read", &in.rows_read));
    m.inputs.push_back(std::move(in));
  }
  RETURN_IF_ERROR(f.Get("rows_read", &m.rows_read));
  ASSIGN_OR_RETURN(const nlohmann::json* dropped, f.Child("rows_dropped", false));
  for (auto it = dropped->begin(); it != dropped->end(); ++it) {
    if (!it->is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("manifest: rows_dropped['", it.key(), "'] must be an integer"));
    }
    m.rows_dropped[it.key()] = it->get<int64_t>();
  }
  RETURN_IF_ERROR(f.Get("rows_train", &m.rows_train));
  RETURN_IF_ERROR(f.Get("rows_eval", &m.rows_eval));
  RETURN_IF_ERROR(f.Get("positives_train", &m.positives_train));
  RETURN_IF_ERROR(f.Get("positives_eval", &m.positives_eval));
  RETURN_IF_ERROR(f.Get("positive_rate_train", &m.positive_rate_train));
  RETURN_IF_ERROR(f.Get("positive_rate_eval", &m.positive_rate_eval));
  RETURN_IF_ERROR(f.Get("shards", &m.shards));
  ASSIGN_OR_RETURN(const nlohmann::json* train, f.Child("train_shards", true));
  if (m.shards < 1 || static_cast<size_t>(m.shards) != train->size()) {
    return absl::InvalidArgumentError(absl::StrCat("manifest: shards is ", m.shards, " but ",
                                                   train->size(), " train_shards are listed"));
  }
  int64_t rows = 0;
  for (size_t i = 0; i < train->size(); ++i) {
    ShardInfo s;
    RETURN_IF_ERROR(
        ParseShard((*train)[i], absl::StrCat("manifest: train_shards[", i, "]"), true, &s));
    if (s.index != static_cast<int>(i)) {
      return absl::InvalidArgumentError(
          absl::StrCat("manifest: train_shards[", i, "] has index ", s.index));
    }
    rows += s.rows;
    m.train_shards.push_back(std::move(s));
  }
  ASSIGN_OR_RETURN(const nlohmann::json* eval, f.Child("eval_shard", false));
  RETURN_IF_ERROR(ParseShard(*eval, "manifest: eval_shard", false, &m.eval_shard));
  if (rows != m.rows_train || m.eval_shard.rows != m.rows_eval) {
    return absl::InvalidArgumentError(absl::StrCat(
        "manifest: shard rows (train ", rows, ", eval ", m.eval_shard.rows,
        ") disagree with rows_train ", m.rows_train, " / rows_eval ", m.rows_eval));
  }
  return m;
}

absl::StatusOr<Manifest> ReadManifest(const std::string& dir) {
  const std::string path = JoinPath(dir, kManifestFile);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("no manifest at '", path, "': ", std::strerror(errno)));
  }
  std::string text;
  char buf[1 << 16];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (n < 0) return absl::DataLossError(absl::StrCat("reading '", path, "' failed"));
  absl::StatusOr<Manifest> m = ParseManifest(text);
  if (!m.ok()) return Annotate(m.status(), path);
  return m;
}

namespace {

// Opens one listed shard and checks it against the manifest entry.
absl::StatusOr<std::unique_ptr<ShardFile>> OpenListed(const std::string& dir,
                                                      const Manifest& m, const ShardInfo& entry,
                                                      ShardSplit split, bool verify) {
  ASSIGN_OR_RETURN(std::unique_ptr<ShardFile> f, ShardFile::Open(JoinPath(dir, entry.file)));
  const ShardHeader& h = f->header();
  const std::string what = absl::StrCat("shard '", f->path(), "'");
  const uint32_t want_count = split == ShardSplit::kTrain ? static_cast<uint32_t>(m.shards) : 1;
  const uint32_t want_index = split == ShardSplit::kTrain ? static_cast<uint32_t>(entry.index) : 0;
  if (h.split != split || h.shard_index != want_index || h.shard_count != want_count) {
    return absl::DataLossError(absl::StrCat(
        what, " is ", h.split == ShardSplit::kTrain ? "train" : "eval", " shard ", h.shard_index,
        " of ", h.shard_count, "; the manifest lists it as ",
        split == ShardSplit::kTrain ? "train" : "eval", " shard ", want_index, " of ",
        want_count));
  }
  if (f->dim() != m.dim) {
    return absl::DataLossError(
        absl::StrCat(what, " has dim ", f->dim(), "; the manifest says ", m.dim));
  }
  if (f->rows() != entry.rows) {
    return absl::DataLossError(
        absl::StrCat(what, " has ", f->rows(), " rows; the manifest says ", entry.rows));
  }
  if (verify) {
    const std::string sha = Sha256Hex(f->bytes());
    if (sha != entry.sha256) {
      return absl::DataLossError(absl::StrCat(what, " is corrupt: SHA-256 ", sha,
                                              ", the manifest says ", entry.sha256));
    }
  }
  return f;
}

void AppendShard(const ShardFile& f, EncodedSplit* out) {
  const auto x = f.features();
  const auto y = f.labels();
  const auto k = f.keys();
  out->x.insert(out->x.end(), x.begin(), x.end());
  out->y.insert(out->y.end(), y.begin(), y.end());
  out->keys.insert(out->keys.end(), k.begin(), k.end());
  out->rows += f.rows();
}

}  // namespace

absl::StatusOr<EncodedSplit> LoadTrainShards(const std::string& dir,
                                             const ShardLoadOptions& options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", options.rank,
                                                   " must be in [0, world_size) with world_size ",
                                                   options.world_size, " >= 1"));
  }
  ASSIGN_OR_RETURN(Manifest m, ReadManifest(dir));
  EncodedSplit out;
  out.dim = m.dim;
  std::vector<std::unique_ptr<ShardFile>> files;
  int64_t rows = 0;
  for (const ShardInfo& entry : m.train_shards) {
    if (entry.index % options.world_size != options.rank) continue;
    ASSIGN_OR_RETURN(std::unique_ptr<ShardFile> f,
                     OpenListed(dir, m, entry, ShardSplit::kTrain, options.verify_checksums));
    rows += f->rows();
    files.push_back(std::move(f));
  }
  out.x.reserve(static_cast<size_t>(rows * m.dim));
  out.y.reserve(static_cast<size_t>(rows));
  out.keys.reserve(static_cast<size_t>(rows));
  for (const auto& f : files) AppendShard(*f, &out);
  return out;
}

absl::StatusOr<EncodedSplit> LoadEvalShard(const std::string& dir, bool verify_checksum) {
  ASSIGN_OR_RETURN(Manifest m, ReadManifest(dir));
  ASSIGN_OR_RETURN(std::unique_ptr<ShardFile> f,
                   OpenListed(dir, m, m.eval_shard, ShardSplit::kEval, verify_checksum));
  EncodedSplit out;
  out.dim = m.dim;
  AppendShard(*f, &out);
  return out;
}

}  // namespace dpfleet::data
