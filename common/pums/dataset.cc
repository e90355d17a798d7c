#include "common/pums/dataset.h"

#include <algorithm>
#include <cstring>

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <future>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/pums/csv.h"
#include "common/pums/schema.h"
#include "common/status.h"

namespace dpfleet::data {
namespace {

// splitmix64's finaliser: a bijective 64-bit mixer with full avalanche.
uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// ---------------------------------------------------------------------------
// Encoding plan: derived from the schema and the feature list only.

struct FeaturePlan {
  const PumsVariable* var = nullptr;
  int offset = 0;      // first encoded column
  int width = 0;       // encoded columns
  int blank_slot = -1; // slot (relative to offset) of the blank category/indicator
  std::vector<int16_t> code_slot;  // categorical: code -> slot, -1 = invalid
  // Reason ids for drops caused by this variable.
  int reason_not_numeric = 0, reason_out_of_range = 0, reason_missing = 0;
};

constexpr absl::string_view kBlankSuffix = "=blank(not applicable)";

struct Reasons {
  std::vector<std::string> names;
  int Add(std::string name) {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return static_cast<int>(i);
    }
    names.push_back(std::move(name));
    return static_cast<int>(names.size() - 1);
  }
  void AddVariable(const std::string& var, FeaturePlan* plan) {
    plan->reason_not_numeric = Add(absl::StrCat(var, " not numeric"));
    plan->reason_out_of_range = Add(absl::StrCat(var, " out of range"));
    plan->reason_missing = Add(absl::StrCat(var, " missing"));
  }
};

struct Plan {
  Task task = Task::kEmployment;
  uint64_t split_seed = 0;
  double eval_fraction = 0.2;
  std::vector<FeaturePlan> features;
  std::vector<std::string> columns;
  int dim = 0;
  // Key and label checks use FeaturePlan for their reason ids.
  FeaturePlan serialno, sporder, esr;
  Reasons reasons;
  int reason_field_count = 0;
  int reason_universe_blank = 0;
  int reason_universe_nilf = 0;
};

absl::StatusOr<Plan> BuildPlan(const EncodeOptions& options) {
  Plan plan;
  plan.task = options.task;
  plan.split_seed = options.split_seed;
  if (!(options.eval_fraction >= 0.0 && options.eval_fraction <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval_fraction must be in [0, 1], got ", options.eval_fraction));
  }
  plan.eval_fraction = options.eval_fraction;
  const std::vector<std::string>& names =
      options.features.empty() ? DefaultFeatures() : options.features;
  absl::flat_hash_set<std::string> seen;
  for (const std::string& raw : names) {
    ASSIGN_OR_RETURN(std::string name, CanonicalFeatureName(raw));
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("feature '", raw, "' listed twice"));
    }
    FeaturePlan f;
    f.var = FindVariable(name);
    f.offset = plan.dim;
    if (f.var->kind == VarKind::kNumeric) {
      // Scaled to [0, 1] by the dictionary range; a blank-able numeric gets a
      // 0/1 "not applicable" indicator next to it (value 0 when blank).
      plan.columns.push_back(f.var->name);
      f.width = 1;
      if (f.var->blank_allowed()) {
        f.blank_slot = 1;
        f.width = 2;
        plan.columns.push_back(absl::StrCat(f.var->name, kBlankSuffix));
      }
    } else {
      const int max_code = f.var->codes.empty() ? 0 : f.var->codes.back();
      f.code_slot.assign(max_code + 1, -1);
      for (size_t i = 0; i < f.var->codes.size(); ++i) {
        if (f.var->codes[i] >= 0) f.code_slot[f.var->codes[i]] = static_cast<int16_t>(i);
        plan.columns.push_back(absl::StrCat(f.var->name, "=", f.var->codes[i]));
      }
      f.width = static_cast<int>(f.var->codes.size());
      if (f.var->blank_allowed()) {
        f.blank_slot = f.width++;
        plan.columns.push_back(absl::StrCat(f.var->name, kBlankSuffix));
      }
    }
    plan.dim += f.width;
    plan.features.push_back(std::move(f));
  }
  plan.reason_field_count = plan.reasons.Add("bad field count");
  plan.serialno.var = FindVariable("SERIALNO");
  plan.reasons.AddVariable("SERIALNO", &plan.serialno);
  plan.sporder.var = FindVariable("SPORDER");
  plan.reasons.AddVariable("SPORDER", &plan.sporder);
  plan.esr.var = FindVariable(kLabelVariable);
  plan.reasons.AddVariable(kLabelVariable, &plan.esr);
  plan.reason_universe_blank = plan.reasons.Add("outside task universe (ESR blank)");
  plan.reason_universe_nilf =
      plan.reasons.Add("outside task universe (ESR=6 not in labor force)");
  for (FeaturePlan& f : plan.features) plan.reasons.AddVariable(f.var->name, &f);
  return plan;
}

// Column positions of one file's header.
struct FileLayout {
  size_t num_fields = 0;
  int serialno = -1, sporder = -1, esr = -1;
  std::vector<int> features;  // parallel to Plan::features
  size_t max_used = 0;
};

absl::StatusOr<FileLayout> MapHeader(const Plan& plan, const std::string& path,
                                     std::string header) {
  // A UTF-8 byte-order mark is not part of the first column name.
  if (header.size() >= 3 && std::memcmp(header.data(), "\xEF\xBB\xBF", 3) == 0) {
    header.erase(0, 3);
  }
  std::vector<absl::string_view> fields;
  std::string scratch;
  SplitCsvLine(header, &fields, &scratch);
  FileLayout layout;
  layout.num_fields = fields.size();
  // Canonical variable name -> column; names outside the schema are ignored.
  auto find = [&](const PumsVariable* var, int* out) -> absl::Status {
    for (size_t i = 0; i < fields.size(); ++i) {
      const PumsVariable* v = FindVariable(fields[i]);
      if (v != var) continue;
      if (*out >= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "file '", path, "': header has column '", var->name, "' (or an alias) twice"));
      }
      *out = static_cast<int>(i);
    }
    if (*out < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("file '", path, "': header lacks required column '", var->name, "'",
                       var->aliases.empty() ? "" : absl::StrCat(" (or ", var->aliases[0], ")")));
    }
    layout.max_used = std::max(layout.max_used, static_cast<size_t>(*out));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(find(plan.serialno.var, &layout.serialno));
  RETURN_IF_ERROR(find(plan.sporder.var, &layout.sporder));
  RETURN_IF_ERROR(find(plan.esr.var, &layout.esr));
  for (const FeaturePlan& f : plan.features) {
    int col = -1;
    RETURN_IF_ERROR(find(f.var, &col));
    layout.features.push_back(col);
  }
  return layout;
}

// ---------------------------------------------------------------------------
// Parsing one block of lines (runs on a worker thread).

struct BlockResult {
  EncodedSplit train, eval;
  std::vector<int64_t> drops;
  int64_t rows_read = 0;
};

void AppendRow(EncodedSplit& split, const float* row, int dim, float label, uint64_t key) {
  split.x.insert(split.x.end(), row, row + dim);
  split.y.push_back(label);
  split.keys.push_back(key);
  ++split.rows;
}

// Counts `byte` in [p, end), 16 bytes at a time, and ORs into *seen whether
// `also` occurs there. Real person files are ~286 columns of which the
// encoder reads a few dozen, so most of a line is only counted (for the
// field-count check); blocks are counted for '\n' to size their outputs.
size_t CountByte(const char* p, const char* end, char byte, char also, bool* seen) {
  size_t count = 0;
  bool found = false;
#ifdef __SSE2__
  const __m128i target = _mm_set1_epi8(byte);
  const __m128i other = _mm_set1_epi8(also);
  const __m128i zero = _mm_setzero_si128();
  __m128i other_hits = zero;
  while (end - p >= 16) {
    // Per-byte counters (a match is -1, subtracted) summed before they can
    // wrap at 255 iterations; psadbw adds the 16 counters into two words.
    __m128i counters = zero;
    for (int i = 0; i < 255 && end - p >= 16; ++i, p += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      counters = _mm_sub_epi8(counters, _mm_cmpeq_epi8(v, target));
      other_hits = _mm_or_si128(other_hits, _mm_cmpeq_epi8(v, other));
    }
    const __m128i sums = _mm_sad_epu8(counters, zero);
    count += static_cast<size_t>(_mm_cvtsi128_si32(sums)) +
             static_cast<size_t>(_mm_cvtsi128_si32(_mm_unpackhi_epi64(sums, sums)));
  }
  found = _mm_movemask_epi8(other_hits) != 0;
#endif
  for (; p < end; ++p) {
    count += *p == byte;
    found = found || *p == also;
  }
  *seen = *seen || found;
  return count;
}

// SplitCsvLine for a line without quotes, but only the first `need` fields
// are stored in out[0..need); *num_fields gets the line's field count. False
// (nothing usable) when the line has a quote anywhere.
bool SplitUnquotedPrefix(absl::string_view line, size_t need, absl::string_view* out,
                         size_t* num_fields) {
  const char* p = line.data();
  const char* const end = p + line.size();
  const char* start = p;
  size_t n = 0;
  for (; p < end && n < need; ++p) {
    if (*p == '"') return false;
    if (*p == ',') {
      out[n++] = absl::string_view(start, p - start);
      start = p + 1;
    }
  }
  if (n < need) {
    // The line ended inside the needed columns: its last field.
    out[n++] = absl::string_view(start, end - start);
    *num_fields = n;
    return true;
  }
  bool quote = false;
  *num_fields = need + CountByte(start, end, ',', '"', &quote) + 1;
  return !quote;
}

void ParseBlock(const Plan& plan, const FileLayout& layout, absl::string_view block,
                BlockResult* out) {
  out->drops.assign(plan.reasons.names.size(), 0);
  out->train.dim = out->eval.dim = plan.dim;
  std::vector<absl::string_view> fields;
  fields.reserve(layout.num_fields + 8);
  std::string scratch;
  std::vector<absl::string_view> prefix(layout.max_used + 1);
  std::vector<float> row(plan.dim);
  {
    // Reserve for every line so the row vectors never regrow (regrowth copies
    // and page faults were a large share of the parse time).
    bool unused = false;
    const int64_t lines =
        static_cast<int64_t>(CountByte(block.data(), block.data() + block.size(), '\n', '\n',
                                       &unused)) + 1;
    auto estimate = [lines](double share) {
      return std::min<int64_t>(lines, static_cast<int64_t>(lines * share * 1.1) + 16);
    };
    const int64_t eval = estimate(plan.eval_fraction);
    const int64_t train = estimate(1.0 - plan.eval_fraction);
    out->train.x.reserve(train * plan.dim);
    out->train.y.reserve(train);
    out->train.keys.reserve(train);
    out->eval.x.reserve(eval * plan.dim);
    out->eval.y.reserve(eval);
    out->eval.keys.reserve(eval);
  }
  const char* p = block.data();
  const char* end = p + block.size();
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
    const char* line_end = nl == nullptr ? end : nl;
    absl::string_view line(p, line_end - p);
    p = nl == nullptr ? end : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;  // blank lines are not records
    ++out->rows_read;
    // Only the columns up to the last one used are split; the rest are just
    // counted. Lines with a quote take the full RFC 4180 path.
    const absl::string_view* cols = prefix.data();
    size_t num_fields = 0;
    if (!SplitUnquotedPrefix(line, prefix.size(), prefix.data(), &num_fields)) {
      SplitCsvLine(line, &fields, &scratch);
      cols = fields.data();
      num_fields = fields.size();
    }
    if (num_fields != layout.num_fields) {
      ++out->drops[plan.reason_field_count];
      continue;
    }
    // Record key.
    absl::string_view serialno = absl::StripAsciiWhitespace(cols[layout.serialno]);
    if (serialno.empty()) {
      ++out->drops[plan.serialno.reason_missing];
      continue;
    }
    int64_t sporder = 0;
    const IntParse sp = ParseCsvInt(cols[layout.sporder], &sporder);
    if (sp != IntParse::kOk) {
      ++out->drops[sp == IntParse::kBlank ? plan.sporder.reason_missing
                                          : plan.sporder.reason_not_numeric];
      continue;
    }
    if (sporder < plan.sporder.var->min_value || sporder > plan.sporder.var->max_value) {
      ++out->drops[plan.sporder.reason_out_of_range];
      continue;
    }
    // Label and task universe.
    int64_t esr = 0;
    const IntParse ep = ParseCsvInt(cols[layout.esr], &esr);
    if (ep == IntParse::kBad) {
      ++out->drops[plan.esr.reason_not_numeric];
      continue;
    }
    if (ep == IntParse::kBlank) {
      ++out->drops[plan.reason_universe_blank];
      continue;
    }
    if (plan.esr.var->CodeIndex(esr) < 0) {
      ++out->drops[plan.esr.reason_out_of_range];
      continue;
    }
    float label;
    if (plan.task == Task::kEmployment) {
      label = (esr == 1 || esr == 2 || esr == 4 || esr == 5) ? 1.0f : 0.0f;
    } else {
      if (esr == 6) {
        ++out->drops[plan.reason_universe_nilf];
        continue;
      }
      label = esr == 3 ? 1.0f : 0.0f;
    }
    // Features.
    std::fill(row.begin(), row.end(), 0.0f);
    int drop_reason = -1;
    for (size_t i = 0; i < plan.features.size() && drop_reason < 0; ++i) {
      const FeaturePlan& f = plan.features[i];
      float* dst = row.data() + f.offset;
      int64_t v = 0;
      const IntParse r = ParseCsvInt(cols[layout.features[i]], &v);
      if (r == IntParse::kBad) {
        drop_reason = f.reason_not_numeric;
      } else if (r == IntParse::kBlank) {
        if (f.blank_slot < 0) {
          drop_reason = f.reason_missing;
        } else {
          dst[f.blank_slot] = 1.0f;
        }
      } else if (f.var->kind == VarKind::kNumeric) {
        if (v < f.var->min_value || v > f.var->max_value) {
          drop_reason = f.reason_out_of_range;
        } else {
          dst[0] = static_cast<float>(static_cast<double>(v - f.var->min_value) /
                                      static_cast<double>(f.var->max_value - f.var->min_value));
        }
      } else {
        const int slot =
            (v >= 0 && v < static_cast<int64_t>(f.code_slot.size())) ? f.code_slot[v] : -1;
        if (slot < 0) {
          drop_reason = f.reason_out_of_range;
        } else {
          dst[slot] = 1.0f;
        }
      }
    }
    if (drop_reason >= 0) {
      ++out->drops[drop_reason];
      continue;
    }
    const uint64_t key = RecordKey(serialno, sporder);
    EncodedSplit& split =
        InEvalSplit(key, plan.split_seed, plan.eval_fraction) ? out->eval : out->train;
    AppendRow(split, row.data(), plan.dim, label, key);
  }
}

void AppendSplit(EncodedSplit& dst, EncodedSplit&& src) {
  if (dst.rows == 0) {
    const int64_t dim = dst.dim;
    dst = std::move(src);
    dst.dim = dim;
    return;
  }
  dst.x.insert(dst.x.end(), src.x.begin(), src.x.end());
  dst.y.insert(dst.y.end(), src.y.begin(), src.y.end());
  dst.keys.insert(dst.keys.end(), src.keys.begin(), src.keys.end());
  dst.rows += src.rows;
}

// Drops from `split` (in place, order kept) every row whose key is already
// in `seen` and adds the others' keys; returns the number dropped. The
// first occurrence in input order wins: batches arrive in input order, and
// both copies of a person land in the same split (the split is a function
// of the key).
int64_t DropDuplicates(EncodedSplit& split, absl::flat_hash_set<uint64_t>& seen) {
  const int64_t dim = split.dim;
  int64_t kept = 0;
  for (int64_t i = 0; i < split.rows; ++i) {
    if (!seen.insert(split.keys[i]).second) continue;
    if (kept != i) {
      std::copy_n(split.x.begin() + i * dim, dim, split.x.begin() + kept * dim);
      split.y[kept] = split.y[i];
      split.keys[kept] = split.keys[i];
    }
    ++kept;
  }
  const int64_t dropped = split.rows - kept;
  if (dropped > 0) {
    split.x.resize(static_cast<size_t>(kept * dim));
    split.y.resize(static_cast<size_t>(kept));
    split.keys.resize(static_cast<size_t>(kept));
    split.rows = kept;
  }
  return dropped;
}

// What one input holds, independent of row order: the number of usable
// records and the wrapping sum of their mixed keys. Two inputs with the same
// persons (the same file twice, a gzipped or reordered copy) have equal
// fingerprints; different ones collide with probability ~2^-64.
struct InputFingerprint {
  int64_t records = 0;
  uint64_t key_sum = 0;
  void Add(const EncodedSplit& split) {
    records += split.rows;
    for (uint64_t key : split.keys) key_sum += Mix64(key ^ 0x2545f4914f6cdd1dULL);
  }
  bool operator==(const InputFingerprint& o) const { return records == o.records && key_sum == o.key_sum; }
};

// Splits `chunk` into at most `parts` pieces that end at line boundaries.
std::vector<absl::string_view> SplitAtLines(absl::string_view chunk, int parts) {
  std::vector<absl::string_view> pieces;
  size_t start = 0;
  for (int i = 1; i <= parts && start < chunk.size(); ++i) {
    size_t stop = chunk.size();
    if (i < parts) {
      const size_t target = std::max(start, chunk.size() * i / parts);
      const size_t nl = chunk.find('\n', target);
      stop = nl == absl::string_view::npos ? chunk.size() : nl + 1;
    }
    pieces.push_back(chunk.substr(start, stop - start));
    start = stop;
  }
  return pieces;
}

// Parses one file chunk by chunk and hands each block's rows to `sink` in
// file order.
absl::Status LoadFile(const Plan& plan, const std::string& path, int threads, size_t chunk_bytes,
                      const EncodedBatchSink& sink, int64_t* rows_read,
                      std::vector<int64_t>* drops) {
  ASSIGN_OR_RETURN(std::unique_ptr<LineChunkReader> reader,
                   LineChunkReader::Open(path, chunk_bytes > 0 ? chunk_bytes : size_t{16} << 20));
  std::string header;
  ASSIGN_OR_RETURN(bool has_header, reader->ReadLine(&header));
  if (!has_header || absl::StripAsciiWhitespace(header).empty()) {
    return absl::InvalidArgumentError(absl::StrCat("file '", path, "' is empty (no header)"));
  }
  ASSIGN_OR_RETURN(FileLayout layout, MapHeader(plan, path, std::move(header)));

  // Double buffering: the next chunk is read (and gunzipped) while the
  // current one is parsed.
  std::string current, next;
  ASSIGN_OR_RETURN(bool have, reader->NextChunk(&current));
  while (have) {
    auto prefetch = std::async(std::launch::async, [&]() { return reader->NextChunk(&next); });
    std::vector<absl::string_view> pieces = SplitAtLines(current, threads);
    std::vector<BlockResult> results(pieces.size());
    std::vector<std::thread> workers;
    for (size_t i = 1; i < pieces.size(); ++i) {
      workers.emplace_back(ParseBlock, std::cref(plan), std::cref(layout), pieces[i], &results[i]);
    }
    if (!pieces.empty()) ParseBlock(plan, layout, pieces[0], &results[0]);
    for (std::thread& t : workers) t.join();
    // Hand over in block order so the output order is the file order
    // whatever the thread count.
    absl::Status sunk = absl::OkStatus();
    for (BlockResult& r : results) {
      *rows_read += r.rows_read;
      for (size_t k = 0; k < r.drops.size(); ++k) (*drops)[k] += r.drops[k];
      if (sunk.ok()) sunk = sink(std::move(r.train), std::move(r.eval));
    }
    absl::StatusOr<bool> more = prefetch.get();
    RETURN_IF_ERROR(sunk);
    if (!more.ok()) return more.status();
    have = *more;
    current.swap(next);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Task> ParseTask(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(name));
  if (lower == "employment") return Task::kEmployment;
  if (lower == "unemployment") return Task::kUnemployment;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown task '", name, "'; known: employment, unemployment"));
}

absl::string_view TaskName(Task task) {
  switch (task) {
    case Task::kEmployment:
      return "employment";
    case Task::kUnemployment:
      return "unemployment";
  }
  return "unknown";
}

uint64_t RecordKey(absl::string_view serialno, int64_t sporder) {
  // Bytes are assembled little-endian by hand so the key is the same on every
  // platform; each 8-byte word goes through the bijective mixer.
  uint64_t h = Mix64(0x243f6a8885a308d3ULL ^ serialno.size());
  size_t i = 0;
  while (i < serialno.size()) {
    uint64_t word = 0;
    const size_t n = std::min<size_t>(8, serialno.size() - i);
    for (size_t b = 0; b < n; ++b) {
      word |= static_cast<uint64_t>(static_cast<unsigned char>(serialno[i + b])) << (8 * b);
    }
    h = Mix64(h + kGolden + word);
    i += n;
  }
  return Mix64(h + kGolden + static_cast<uint64_t>(sporder) * 0xff51afd7ed558ccdULL);
}

bool InEvalSplit(uint64_t key, uint64_t split_seed, double eval_fraction) {
  const uint64_t h = Mix64(key ^ Mix64(split_seed + 0x632be59bd9b4e019ULL));
  const double u = static_cast<double>(h >> 11) * 0x1.0p-53;
  return u < eval_fraction;
}

int PartitionOf(uint64_t key, int world_size) {
  if (world_size <= 1) return 0;
  // A different mixing constant from the split, so partitions and the
  // train/eval split are independent of each other. Multiply-shift maps the
  // hash to [0, world_size) without modulo bias worth mentioning.
  const uint64_t h = Mix64(key + 0xd1b54a32d192ed03ULL);
  return static_cast<int>(((h >> 32) * static_cast<uint64_t>(world_size)) >> 32);
}

absl::StatusOr<std::vector<std::string>> EncodedColumns(const std::vector<std::string>& features) {
  EncodeOptions options;
  options.features = features;
  if (features.empty()) options.features = DefaultFeatures();
  ASSIGN_OR_RETURN(Plan plan, BuildPlan(options));
  return plan.columns;
}

absl::StatusOr<EncodeSummary> EncodeStreaming(const std::vector<std::string>& csv_paths,
                                              const EncodeOptions& options,
                                              const EncodedBatchSink& sink) {
  if (csv_paths.empty()) return absl::InvalidArgumentError("no input files given");
  ASSIGN_OR_RETURN(Plan plan, BuildPlan(options));
  int threads = options.threads;
  if (threads <= 0) {
    threads = static_cast<int>(std::min(8u, std::max(1u, std::thread::hardware_concurrency())));
  }
  EncodeSummary summary;
  summary.columns = plan.columns;
  for (const FeaturePlan& f : plan.features) summary.features.push_back(f.var->name);
  // One person, one record: keys of every record kept so far, across all
  // inputs (8-byte keys in an open-addressing table: about 10-20 bytes a
  // record, docs/BENCHMARKS.md).
  absl::flat_hash_set<uint64_t> seen;
  int64_t duplicates = 0;
  std::vector<InputFingerprint> fingerprints;
  // De-duplicates and counts rows on their way to the caller's sink.
  const EncodedBatchSink counting = [&](EncodedSplit&& train, EncodedSplit&& eval) {
    fingerprints.back().Add(train);
    fingerprints.back().Add(eval);
    duplicates += DropDuplicates(train, seen) + DropDuplicates(eval, seen);
    summary.rows_train += train.rows;
    summary.rows_eval += eval.rows;
    return sink(std::move(train), std::move(eval));
  };
  std::vector<int64_t> drops(plan.reasons.names.size(), 0);
  for (size_t f = 0; f < csv_paths.size(); ++f) {
    const std::string& path = csv_paths[f];
    fingerprints.emplace_back();
    int64_t rows_read = 0;
    RETURN_IF_ERROR(
        LoadFile(plan, path, threads, options.read_chunk_bytes, counting, &rows_read, &drops));
    summary.rows_read_per_file.push_back(rows_read);
    summary.rows_read += rows_read;
    // De-duplication would quietly drop all of such an input; giving the
    // same data twice is a mistake worth naming.
    for (size_t g = 0; g < f; ++g) {
      if (fingerprints[f].records > 0 && fingerprints[f] == fingerprints[g]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "input ", f + 1, " ('", path, "') holds exactly the same ", fingerprints[f].records,
            " person records (SERIALNO, SPORDER) as input ", g + 1, " ('", csv_paths[g],
            "'): the same data given twice; give each file once"));
      }
    }
  }
  for (size_t k = 0; k < drops.size(); ++k) {
    if (drops[k] > 0) summary.rows_dropped[plan.reasons.names[k]] = drops[k];
  }
  if (duplicates > 0) summary.rows_dropped[std::string(kDuplicateReason)] = duplicates;
  if (summary.rows_train + summary.rows_eval == 0) {
    std::vector<std::string> why;
    for (const auto& [reason, count] : summary.rows_dropped) {
      why.push_back(absl::StrCat(reason, ": ", count));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "no usable rows in ", absl::StrJoin(csv_paths, ", "), " for task ", TaskName(options.task),
        " (", summary.rows_read, " rows read", why.empty() ? "" : "; dropped: ",
        absl::StrJoin(why, ", "), ")"));
  }
  return summary;
}

absl::StatusOr<EncodedDataset> LoadAndEncode(const std::vector<std::string>& csv_paths,
                                             const EncodeOptions& options) {
  EncodedDataset ds;
  ds.train.dim = ds.eval.dim = -1;  // set from the summary below
  ASSIGN_OR_RETURN(EncodeSummary summary,
                   EncodeStreaming(csv_paths, options,
                                   [&ds](EncodedSplit&& train, EncodedSplit&& eval) {
                                     AppendSplit(ds.train, std::move(train));
                                     AppendSplit(ds.eval, std::move(eval));
                                     return absl::OkStatus();
                                   }));
  ds.columns = std::move(summary.columns);
  ds.features = std::move(summary.features);
  ds.rows_read = summary.rows_read;
  ds.rows_dropped = std::move(summary.rows_dropped);
  ds.train.dim = ds.eval.dim = static_cast<int64_t>(ds.columns.size());
  return ds;
}

EncodedSplit Partition(const EncodedSplit& split, int rank, int world_size) {
  if (world_size <= 1) return split;
  EncodedSplit out;
  out.dim = split.dim;
  if (rank < 0 || rank >= world_size) return out;
  for (int64_t i = 0; i < split.rows; ++i) {
    if (PartitionOf(split.keys[i], world_size) != rank) continue;
    out.x.insert(out.x.end(), split.x.begin() + i * split.dim,
                 split.x.begin() + (i + 1) * split.dim);
    out.y.push_back(split.y[i]);
    out.keys.push_back(split.keys[i]);
    ++out.rows;
  }
  return out;
}

}  // namespace dpfleet::data
