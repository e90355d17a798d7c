#include "common/pums/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/pums/csv.h"
#include "common/pums/schema.h"
#include "common/pums/synth.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/files.h"
#include "tests/testing/pums_files.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::data {
namespace {

using ::dpfleet::testing::ReadAll;
using ::dpfleet::testing::WriteAll;

using ::testing::HasSubstr;

std::vector<std::vector<std::string>> SplitTable(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    rows.push_back(absl::StrSplit(line, ','));
  }
  return rows;
}

std::string JoinTable(const std::vector<std::vector<std::string>>& rows,
                      const std::string& eol = "\n") {
  std::string out;
  for (const auto& row : rows) absl::StrAppend(&out, absl::StrJoin(row, ","), eol);
  return out;
}

std::string Synth(const testing::TempDir& dir, int64_t rows, uint64_t seed = 1,
                  const std::string& state_column = "STATE", const std::string& name = "s.csv") {
  SynthOptions o;
  o.rows = rows;
  o.seed = seed;
  o.state_column = state_column;
  const std::string path = dir.Join(name);
  EXPECT_TRUE(WriteSyntheticPums(o, path).ok());
  return path;
}

EncodedDataset MustLoad(const std::vector<std::string>& paths, const EncodeOptions& options = {}) {
  auto ds = LoadAndEncode(paths, options);
  EXPECT_TRUE(ds.ok()) << ds.status();
  return ds.ok() ? std::move(*ds) : EncodedDataset{};
}

void ExpectSameEncoding(const EncodedDataset& a, const EncodedDataset& b) {
  EXPECT_EQ(a.columns, b.columns);
  EXPECT_EQ(a.rows_read, b.rows_read);
  EXPECT_EQ(a.rows_dropped, b.rows_dropped);
  EXPECT_EQ(a.train.rows, b.train.rows);
  EXPECT_EQ(a.eval.rows, b.eval.rows);
  EXPECT_TRUE(a.train.x == b.train.x);
  EXPECT_EQ(a.train.y, b.train.y);
  EXPECT_EQ(a.train.keys, b.train.keys);
  EXPECT_TRUE(a.eval.x == b.eval.x);
  EXPECT_EQ(a.eval.y, b.eval.y);
  EXPECT_EQ(a.eval.keys, b.eval.keys);
}

int64_t Column(const EncodedDataset& ds, const std::string& name) {
  auto it = std::find(ds.columns.begin(), ds.columns.end(), name);
  EXPECT_NE(it, ds.columns.end()) << name;
  return it - ds.columns.begin();
}

// A tiny hand-written file: one person per line, default features + ESR.
const char kSmallHeader[] =
    "SERIALNO,SPORDER,STATE,AGEP,SEX,MAR,SCHL,RAC1P,DIS,CIT,NATIVITY,MIL,DREM,ESR";

TEST(DatasetTest, ParseTaskAndName) {
  EXPECT_EQ(*ParseTask("employment"), Task::kEmployment);
  EXPECT_EQ(*ParseTask("Unemployment"), Task::kUnemployment);
  EXPECT_EQ(ParseTask("income").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TaskName(Task::kEmployment), "employment");
  EXPECT_EQ(TaskName(Task::kUnemployment), "unemployment");
}

TEST(DatasetTest, EncodesFromTheSchemaOnly) {
  testing::TempDir dir;
  WriteAll(dir.Join("a.csv"), absl::StrCat(kSmallHeader, "\n",
                                           "2024HU0000001,1,50,45,2,1,21,1,2,1,1,4,2,1\n",
                                           "2024HU0000001,2,50,99,1,1,16,1,1,1,1,2,1,6\n"));
  EncodeOptions o;
  o.eval_fraction = 0;
  const EncodedDataset ds = MustLoad({dir.Join("a.csv")}, o);
  ASSERT_EQ(ds.train.rows, 2);
  EXPECT_EQ(ds.eval.rows, 0);
  EXPECT_EQ(ds.features, DefaultFeatures());
  ASSERT_EQ(ds.train.dim, static_cast<int64_t>(ds.columns.size()));
  // AGEP scaled by the dictionary range 0..99, not by the data.
  EXPECT_FLOAT_EQ(ds.train.x[Column(ds, "AGEP")], 45.0f / 99.0f);
  EXPECT_FLOAT_EQ(ds.train.x[ds.train.dim + Column(ds, "AGEP")], 1.0f);
  EXPECT_EQ(ds.train.x[Column(ds, "SCHL=21")], 1.0f);
  EXPECT_EQ(ds.train.x[Column(ds, "SCHL=16")], 0.0f);
  EXPECT_EQ(ds.train.x[Column(ds, "MIL=4")], 1.0f);
  EXPECT_EQ(ds.train.x[Column(ds, "MIL=blank(not applicable)")], 0.0f);
  EXPECT_EQ(ds.train.x[ds.train.dim + Column(ds, "SCHL=16")], 1.0f);
  EXPECT_EQ(ds.train.y, (std::vector<float>{1.0f, 0.0f}));
  EXPECT_EQ(ds.train.keys[0], RecordKey("2024HU0000001", 1));
  EXPECT_EQ(ds.train.keys[1], RecordKey("2024HU0000001", 2));
  EXPECT_NE(ds.train.keys[0], ds.train.keys[1]);
}

TEST(DatasetTest, OneHotWidthsEqualDictionarySizes) {
  testing::TempDir dir;
  const EncodedDataset ds = MustLoad({Synth(dir, 3000)});
  int64_t expected_dim = 0;
  for (const std::string& name : DefaultFeatures()) {
    const PumsVariable* var = FindVariable(name);
    int64_t width = 0;
    for (const std::string& c : ds.columns) {
      width += absl::StartsWith(c, name + "=") || c == name;
    }
    const int64_t dictionary =
        var->kind == VarKind::kNumeric
            ? 1 + var->blank_allowed()
            : static_cast<int64_t>(var->codes.size()) + var->blank_allowed();
    EXPECT_EQ(width, dictionary) << name;
    expected_dim += dictionary;
    if (var->kind != VarKind::kCategorical) continue;
    // Exactly one hot column per categorical block in every row.
    const int64_t first = Column(ds, absl::StrCat(name, "=", var->codes.front()));
    for (int64_t r = 0; r < ds.train.rows; ++r) {
      const float* row = ds.train.x.data() + r * ds.train.dim;
      ASSERT_EQ(std::accumulate(row + first, row + first + dictionary, 0.0f), 1.0f) << name;
    }
  }
  EXPECT_EQ(ds.train.dim, expected_dim);
  auto cols = EncodedColumns({});
  ASSERT_TRUE(cols.ok());
  EXPECT_EQ(*cols, ds.columns);
}

TEST(DatasetTest, ColumnPermutationGivesIdenticalEncoding) {
  testing::TempDir dir;
  const std::string path = Synth(dir, 4000);
  auto table = SplitTable(ReadAll(path));
  // Reverse the column order and add an unknown extra column.
  for (size_t r = 0; r < table.size(); ++r) {
    std::reverse(table[r].begin(), table[r].end());
    table[r].insert(table[r].begin() + 3, r == 0 ? "EXTRA" : "x");
  }
  WriteAll(dir.Join("perm.csv"), JoinTable(table));
  ExpectSameEncoding(MustLoad({path}), MustLoad({dir.Join("perm.csv")}));
}

TEST(DatasetTest, LeadingZerosCrlfAndQuotesDoNotMatter) {
  testing::TempDir dir;
  const std::string path = Synth(dir, 3000);
  auto table = SplitTable(ReadAll(path));
  const auto& header = table[0];
  auto col = [&](const std::string& name) {
    return std::find(header.begin(), header.end(), name) - header.begin();
  };
  for (size_t r = 1; r < table.size(); ++r) {
    auto& row = table[r];
    for (const char* name : {"SCHL", "SPORDER", "MAR", "MIL", "CIT", "ESR", "AGEP"}) {
      std::string& v = row[col(name)];
      if (!v.empty()) v = "0" + v;  // "1" -> "01", "16" -> "016"
    }
    std::string& serial = row[col("SERIALNO")];
    serial = "\"" + serial + "\"";
  }
  WriteAll(dir.Join("zeros.csv"), JoinTable(table, "\r\n"));
  ExpectSameEncoding(MustLoad({path}), MustLoad({dir.Join("zeros.csv")}));
}

TEST(DatasetTest, StAndStateAreTheSameColumn) {
  testing::TempDir dir;
  EncodeOptions o;
  o.features = {"AGEP", "SCHL", "state"};
  const EncodedDataset a = MustLoad({Synth(dir, 2000, 5, "STATE", "a.csv")}, o);
  const EncodedDataset b = MustLoad({Synth(dir, 2000, 5, "ST", "b.csv")}, o);
  ExpectSameEncoding(a, b);
  EXPECT_EQ(a.features, (std::vector<std::string>{"AGEP", "SCHL", "ST"}));
  EXPECT_EQ(Column(a, "ST=72") - Column(a, "ST=1") + 1, 52);
}

TEST(DatasetTest, GzipInputEqualsPlainInput) {
  testing::TempDir dir;
  const std::string path = Synth(dir, 5000);
  const std::string text = ReadAll(path);
  const std::string gz_path = dir.Join("s.csv.gz");
  gzFile gz = gzopen(gz_path.c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  ASSERT_EQ(gzwrite(gz, text.data(), static_cast<unsigned>(text.size())),
            static_cast<int>(text.size()));
  ASSERT_EQ(gzclose(gz), Z_OK);
  ExpectSameEncoding(MustLoad({path}), MustLoad({gz_path}));
  // A truncated gzip stream is an I/O error, not silently fewer rows.
  const std::string gz_bytes = ReadAll(gz_path);
  WriteAll(dir.Join("cut.csv.gz"), gz_bytes.substr(0, gz_bytes.size() / 2));
  auto cut = LoadAndEncode({dir.Join("cut.csv.gz")}, {});
  EXPECT_FALSE(cut.ok());
  EXPECT_THAT(cut.status().message(), HasSubstr("cut.csv.gz"));
}

// Several files are one dataset, and one person is one record in it:
// synthetic files with different seeds share some (SERIALNO, SPORDER) keys,
// and those persons are kept once, from the first file.
TEST(DatasetTest, SeveralFilesAreOneDatasetWithEachPersonOnce) {
  testing::TempDir dir;
  const std::string a = Synth(dir, 1500, 1, "STATE", "a.csv");
  const std::string b = Synth(dir, 2500, 2, "ST", "b.csv");
  const EncodedDataset da = MustLoad({a});
  const EncodedDataset db = MustLoad({b});
  const EncodedDataset both = MustLoad({a, b});
  EXPECT_EQ(both.rows_read, 4000);
  // The expectation, computed independently: a's keys, then b's not in a.
  std::set<uint64_t> in_a(da.train.keys.begin(), da.train.keys.end());
  in_a.insert(da.eval.keys.begin(), da.eval.keys.end());
  std::vector<uint64_t> train = da.train.keys, eval = da.eval.keys;
  int64_t overlap = 0;
  for (const auto* side : {&db.train, &db.eval}) {
    for (uint64_t k : side->keys) {
      if (in_a.count(k)) {
        ++overlap;
      } else {
        (side == &db.train ? train : eval).push_back(k);
      }
    }
  }
  ASSERT_GT(overlap, 0) << "the test needs persons in both files";
  EXPECT_EQ(both.train.keys, train);
  EXPECT_EQ(both.eval.keys, eval);
  EXPECT_EQ(both.train.rows, static_cast<int64_t>(train.size()));
  EXPECT_EQ(both.train.x.size(), train.size() * both.train.dim);
  EXPECT_EQ(both.rows_dropped.at(kDuplicateReason), overlap);
  int64_t dropped = 0;
  for (const auto& [reason, n] : both.rows_dropped) dropped += n;
  EXPECT_EQ(both.rows_read, both.train.rows + both.eval.rows + dropped);
  // The rows kept from b are b's own encodings.
  const int64_t dim = both.train.dim;
  const int64_t first_b = da.train.rows;
  const auto at_b = std::find(db.train.keys.begin(), db.train.keys.end(), both.train.keys[first_b]);
  ASSERT_NE(at_b, db.train.keys.end());
  const int64_t i = at_b - db.train.keys.begin();
  EXPECT_TRUE(std::equal(both.train.x.begin() + first_b * dim, both.train.x.begin() + (first_b + 1) * dim,
                         db.train.x.begin() + i * dim));
}

// A person listed twice keeps the first row in input order, whatever
// threads and block sizes the encoder uses.
TEST(DatasetTest, DuplicatePersonsKeepTheirFirstRow) {
  testing::TempDir dir;
  const std::string first = "2024HU0000001,1,50,45,2,1,21,1,2,1,1,4,2,1";
  const std::string second = "2024HU0000001,01,50,30,2,1,21,1,2,1,1,4,2,3";  // SPORDER "01" is 1
  const std::string other = "2024HU0000001,2,50,60,2,1,21,1,2,1,1,4,2,1";
  std::string text = absl::StrCat(kSmallHeader, "\n", first, "\n", other, "\n");
  for (int i = 0; i < 300; ++i) absl::StrAppend(&text, "2024HU", 1000 + i, ",1,50,45,2,1,21,1,2,1,1,4,2,1\n");
  absl::StrAppend(&text, second, "\n");
  WriteAll(dir.Join("dup.csv"), text);
  EncodeOptions o;
  o.eval_fraction = 0;
  for (int threads : {1, 3}) {
    for (size_t chunk : {size_t{0}, size_t{700}}) {
      o.threads = threads;
      o.read_chunk_bytes = chunk;
      const EncodedDataset ds = MustLoad({dir.Join("dup.csv")}, o);
      EXPECT_EQ(ds.rows_read, 303);
      EXPECT_EQ(ds.train.rows, 302);
      EXPECT_EQ(ds.rows_dropped, (std::map<std::string, int64_t>{{kDuplicateReason, 1}}));
      EXPECT_FLOAT_EQ(ds.train.x[Column(ds, "AGEP")], 45.0f / 99.0f) << "the first row wins";
      EXPECT_EQ(ds.train.y[0], 1.0f);
    }
  }
}

// The same data given twice — the same file, its gzipped copy, or its rows
// in another order — is an error naming both inputs, not a silent
// de-duplication of the whole second input.
TEST(DatasetTest, TheSameFileTwiceIsRefusedNamingBoth) {
  testing::TempDir dir;
  const std::string a = Synth(dir, 1200, 4, "STATE", "a.csv");
  const std::string gz = Synth(dir, 1200, 4, "STATE", "a-copy.csv.gz");
  std::vector<std::string> lines = absl::StrSplit(ReadAll(a), '\n', absl::SkipEmpty());
  std::reverse(lines.begin() + 1, lines.end());
  WriteAll(dir.Join("reversed.csv"), absl::StrJoin(lines, "\n") + "\n");
  const std::string b = Synth(dir, 1000, 5, "STATE", "b.csv");
  for (const std::vector<std::string>& inputs :
       {std::vector<std::string>{a, a}, {a, gz}, {a, dir.Join("reversed.csv")}, {b, a, gz}}) {
    auto ds = LoadAndEncode(inputs, {});
    ASSERT_FALSE(ds.ok()) << absl::StrJoin(inputs, ", ");
    EXPECT_EQ(ds.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(ds.status().message()),
                ::testing::AllOf(HasSubstr(inputs[inputs.size() - 2]), HasSubstr(inputs.back()),
                                 HasSubstr("the same data given twice")));
  }
  // Overlapping but different files are de-duplicated, not refused.
  EXPECT_TRUE(LoadAndEncode({a, b}, {}).ok());
}

TEST(DatasetTest, ThreadCountDoesNotChangeTheResult) {
  testing::TempDir dir;
  const std::string path = Synth(dir, 20000);
  EncodeOptions one;
  one.threads = 1;
  EncodeOptions many;
  many.threads = 7;
  ExpectSameEncoding(MustLoad({path}, one), MustLoad({path}, many));
  // Small read blocks: many blocks, each split across threads, with the
  // next block read while the current one is parsed.
  EncodeOptions small = many;
  small.read_chunk_bytes = 5000;
  ExpectSameEncoding(MustLoad({path}, one), MustLoad({path}, small));
  small.threads = 1;
  ExpectSameEncoding(MustLoad({path}, one), MustLoad({path}, small));
}

TEST(DatasetTest, BadRowsAreDroppedAndCountedByReason) {
  testing::TempDir dir;
  std::string text = absl::StrCat(kSmallHeader, "\n");
  const std::string good = "2024HU0000001,1,50,45,2,1,21,1,2,1,1,4,2,1";
  auto row = [&](int person, const std::string& change_col, const std::string& value) {
    std::vector<std::string> fields = absl::StrSplit(good, ',');
    std::vector<std::string> names = absl::StrSplit(kSmallHeader, ',');
    fields[1] = std::to_string(person);
    if (!change_col.empty()) {
      fields[std::find(names.begin(), names.end(), change_col) - names.begin()] = value;
    }
    return absl::StrCat(absl::StrJoin(fields, ","), "\n");
  };
  int p = 1;
  for (int i = 0; i < 5; ++i) text += row(p++, "", "");                  // good
  text += "2024HU0000009,1,50,45\n";                                      // too few fields
  text += row(p++, "", "").substr(0, good.size()) + ",1,2\n";            // too many fields
  text += row(p++, "AGEP", "abc");                                        // not numeric
  text += row(p++, "AGEP", "120");                                        // out of range
  text += row(p++, "AGEP", "-1");                                         // out of range
  text += row(p++, "SEX", "");                                            // missing
  text += row(p++, "SCHL", "25");                                         // not a code
  text += row(p++, "MIL", "7");                                           // not a code
  text += row(p++, "ESR", "");                                            // under 16
  text += row(p++, "ESR", "");                                            // under 16
  text += row(p++, "ESR", "9");                                           // not a code
  text += row(p++, "ESR", "x");                                           // not numeric
  text += row(p++, "SERIALNO", "");                                       // no key
  text += row(p++, "SPORDER", "abc");                                     // bad key
  text += row(p++, "MIL", "");   // blank MIL is a category, kept
  text += row(p++, "SCHL", "");  // blank SCHL too
  text += "\n";                  // empty line: not a record
  WriteAll(dir.Join("bad.csv"), text);
  EncodeOptions o;
  o.eval_fraction = 0;
  const EncodedDataset ds = MustLoad({dir.Join("bad.csv")}, o);
  EXPECT_EQ(ds.rows_read, 21);
  EXPECT_EQ(ds.train.rows, 7);
  const std::map<std::string, int64_t> expected = {
      {"bad field count", 2},
      {"AGEP not numeric", 1},
      {"AGEP out of range", 2},
      {"SEX missing", 1},
      {"SCHL out of range", 1},
      {"MIL out of range", 1},
      {"outside task universe (ESR blank)", 2},
      {"ESR out of range", 1},
      {"ESR not numeric", 1},
      {"SERIALNO missing", 1},
      {"SPORDER not numeric", 1},
  };
  EXPECT_EQ(ds.rows_dropped, expected);
  int64_t dropped = 0;
  for (const auto& [reason, n] : ds.rows_dropped) dropped += n;
  EXPECT_EQ(ds.rows_read, ds.train.rows + ds.eval.rows + dropped);
  // The blank MIL row encodes the dictionary's "not applicable" category.
  const int64_t r = ds.train.rows - 2;
  EXPECT_EQ(ds.train.x[r * ds.train.dim + Column(ds, "MIL=blank(not applicable)")], 1.0f);
}

TEST(DatasetTest, UnemploymentTaskUsesTheLaborForce) {
  testing::TempDir dir;
  const std::string path = Synth(dir, 20000);
  EncodeOptions emp;
  const EncodedDataset e = MustLoad({path}, emp);
  EncodeOptions unemp;
  unemp.task = Task::kUnemployment;
  const EncodedDataset u = MustLoad({path}, unemp);
  const int64_t nilf = u.rows_dropped.at("outside task universe (ESR=6 not in labor force)");
  EXPECT_EQ(u.train.rows + u.eval.rows + nilf, e.train.rows + e.eval.rows);
  double pos = std::accumulate(u.train.y.begin(), u.train.y.end(), 0.0);
  const double rate = pos / u.train.rows;
  EXPECT_GT(rate, 0.01);
  EXPECT_LT(rate, 0.1);
}

TEST(DatasetTest, HeaderAndFileErrorsNameTheProblem) {
  testing::TempDir dir;
  const std::string path = Synth(dir, 200);
  auto table = SplitTable(ReadAll(path));
  for (const char* drop : {"ESR", "MIL", "SPORDER"}) {
    auto t = table;
    const size_t c = std::find(t[0].begin(), t[0].end(), drop) - t[0].begin();
    for (auto& row : t) row.erase(row.begin() + c);
    const std::string p = dir.Join(absl::StrCat("no_", drop, ".csv"));
    WriteAll(p, JoinTable(t));
    auto ds = LoadAndEncode({p}, {});
    ASSERT_FALSE(ds.ok()) << drop;
    EXPECT_EQ(ds.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(ds.status().message(), HasSubstr(absl::StrCat("'", drop, "'")));
    EXPECT_THAT(ds.status().message(), HasSubstr(p));
  }
  auto missing = LoadAndEncode({dir.Join("nope.csv")}, {});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nope.csv"));
  WriteAll(dir.Join("empty.csv"), "");
  EXPECT_EQ(LoadAndEncode({dir.Join("empty.csv")}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Header only, or only children: no usable rows.
  WriteAll(dir.Join("header.csv"), absl::StrCat(kSmallHeader, "\n"));
  auto none = LoadAndEncode({dir.Join("header.csv")}, {});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(), HasSubstr("no usable rows"));
  EXPECT_EQ(LoadAndEncode({}, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DatasetTest, FeatureAndOptionErrors) {
  testing::TempDir dir;
  const std::string path = Synth(dir, 100);
  EncodeOptions o;
  o.features = {"AGEP", "XYZ"};
  auto unknown = LoadAndEncode({path}, o);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("unknown PUMS feature 'XYZ'"));
  o.features = {"AGEP", "ESR"};
  EXPECT_EQ(LoadAndEncode({path}, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.features = {"AGEP", "agep"};
  EXPECT_EQ(LoadAndEncode({path}, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.features = {};
  o.eval_fraction = 1.5;
  EXPECT_EQ(LoadAndEncode({path}, o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DatasetTest, SplitIsDeterministicAndNearTheFraction) {
  testing::TempDir dir;
  const std::string path = Synth(dir, 30000);
  EncodeOptions o;
  o.split_seed = 11;
  const EncodedDataset a = MustLoad({path}, o);
  const EncodedDataset b = MustLoad({path}, o);
  ExpectSameEncoding(a, b);
  const double total = a.train.rows + a.eval.rows;
  EXPECT_NEAR(a.eval.rows / total, 0.2, 0.015);
  o.split_seed = 12;
  const EncodedDataset c = MustLoad({path}, o);
  EXPECT_NE(a.eval.keys, c.eval.keys);
  EXPECT_EQ(a.eval.rows + a.train.rows, c.eval.rows + c.train.rows);
  // The split is a function of the key and seed only.
  for (uint64_t key : a.eval.keys) ASSERT_TRUE(InEvalSplit(key, 11, 0.2));
  for (uint64_t key : a.train.keys) ASSERT_FALSE(InEvalSplit(key, 11, 0.2));
  o.eval_fraction = 0.0;
  EXPECT_EQ(MustLoad({path}, o).eval.rows, 0);
  o.eval_fraction = 1.0;
  EXPECT_EQ(MustLoad({path}, o).train.rows, 0);
  o.eval_fraction = 0.5;
  const EncodedDataset half = MustLoad({path}, o);
  EXPECT_NEAR(half.eval.rows / total, 0.5, 0.02);
}

TEST(DatasetTest, PartitionCoversEveryRowExactlyOnce) {
  testing::TempDir dir;
  const EncodedDataset ds = MustLoad({Synth(dir, 10000)});
  const EncodedSplit& split = ds.train;
  for (int world : {1, 2, 3, 5, 8}) {
    std::multiset<uint64_t> seen;
    int64_t rows = 0;
    for (int rank = 0; rank < world; ++rank) {
      const EncodedSplit part = Partition(split, rank, world);
      ASSERT_EQ(part.dim, split.dim);
      ASSERT_EQ(part.x.size(), static_cast<size_t>(part.rows * part.dim));
      ASSERT_EQ(part.y.size(), static_cast<size_t>(part.rows));
      rows += part.rows;
      if (world > 1) {
        EXPECT_GT(part.rows, split.rows / world / 2) << "rank " << rank << " of " << world;
      }
      for (int64_t i = 0; i < part.rows; ++i) {
        seen.insert(part.keys[i]);
        ASSERT_EQ(PartitionOf(part.keys[i], world), rank);
      }
      // Same rows as the source, features and labels included.
      if (rank == world - 1 && part.rows > 0) {
        const auto it = std::find(split.keys.begin(), split.keys.end(), part.keys[0]);
        const int64_t src = it - split.keys.begin();
        EXPECT_TRUE(std::equal(part.x.begin(), part.x.begin() + part.dim,
                               split.x.begin() + src * split.dim));
        EXPECT_EQ(part.y[0], split.y[src]);
      }
    }
    EXPECT_EQ(rows, split.rows);
    EXPECT_EQ(seen, std::multiset<uint64_t>(split.keys.begin(), split.keys.end()));
  }
  EXPECT_EQ(Partition(split, 3, 3).rows, 0);
  EXPECT_EQ(Partition(split, -1, 3).rows, 0);
}

TEST(DatasetTest, RecordKeyIsStable) {
  // Pinned values: shards, manifests and the Spark job depend on them, so a
  // change here is a format change.
  EXPECT_EQ(RecordKey("2024HU0000001", 1), 0x35a5a9ae20e1bb8fULL);
  EXPECT_EQ(RecordKey("2024GQ0001234", 3), 0x2d8908cb3b44b96eULL);
  EXPECT_NE(RecordKey("2024HU0000001", 1), RecordKey("2024HU0000001", 2));
  EXPECT_NE(RecordKey("2024HU0000001", 1), RecordKey("2024HU0000002", 1));
  EXPECT_NE(RecordKey("2024HU0000001", 1), RecordKey("2024GQ0000001", 1));
  EXPECT_EQ(PartitionOf(RecordKey("x", 1), 1), 0);
}

TEST(CsvTest, ChunksEndAtLineBoundaries) {
  testing::TempDir dir;
  std::string text = "A,B\n";
  for (int i = 0; i < 5000; ++i) absl::StrAppend(&text, i, ",", std::string(i % 37, 'z'), "\n");
  text += "last,line";  // no final newline
  WriteAll(dir.Join("c.csv"), text);
  auto reader = LineChunkReader::Open(dir.Join("c.csv"), /*chunk_bytes=*/4096);
  ASSERT_TRUE(reader.ok());
  std::string header;
  ASSERT_TRUE(*(*reader)->ReadLine(&header));
  EXPECT_EQ(header, "A,B");
  std::string all, chunk;
  int chunks = 0;
  while (true) {
    auto more = (*reader)->NextChunk(&chunk);
    ASSERT_TRUE(more.ok());
    if (!*more) break;
    ++chunks;
    if (chunk.back() != '\n') {
      EXPECT_TRUE(absl::EndsWith(chunk, "last,line"));
    }
    all += chunk;
  }
  EXPECT_GT(chunks, 10);
  EXPECT_EQ(all, text.substr(4));
}

TEST(CsvTest, SplitAndParse) {
  std::vector<absl::string_view> f;
  std::string scratch;
  SplitCsvLine("a,,\"b,c\",\"d\"\"e\",", &f, &scratch);
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f[0], "a");
  EXPECT_EQ(f[1], "");
  EXPECT_EQ(f[2], "b,c");
  EXPECT_EQ(f[3], "d\"e");
  EXPECT_EQ(f[4], "");
  int64_t v = 0;
  EXPECT_EQ(ParseCsvInt("007", &v), IntParse::kOk);
  EXPECT_EQ(v, 7);
  EXPECT_EQ(ParseCsvInt(" -12 ", &v), IntParse::kOk);
  EXPECT_EQ(v, -12);
  EXPECT_EQ(ParseCsvInt("", &v), IntParse::kBlank);
  EXPECT_EQ(ParseCsvInt("  ", &v), IntParse::kBlank);
  EXPECT_EQ(ParseCsvInt("1.5", &v), IntParse::kBad);
  EXPECT_EQ(ParseCsvInt("-", &v), IntParse::kBad);
  EXPECT_EQ(ParseCsvInt("N", &v), IntParse::kBad);
}

// Real data: every person with ESR present is kept for the employment task.
TEST(DatasetRealDataTest, VermontKeepsEveryRowWithEsr) {
  const std::string path = ::dpfleet::testing::SharedStateFile("pums2024_person_50_VT.csv");
  if (path.empty()) GTEST_SKIP() << "real PUMS files not found (../shared/data/pums)";
  const ::dpfleet::testing::EsrCounts counts = ::dpfleet::testing::CountEsr(path);
  const int64_t rows = counts.rows, with_esr = counts.with_esr, employed = counts.employed;
  EXPECT_EQ(rows, 6938);  // README row count
  const EncodedDataset ds = MustLoad({path});
  EXPECT_EQ(ds.rows_read, rows);
  EXPECT_EQ(ds.train.rows + ds.eval.rows, with_esr);
  EXPECT_EQ(ds.rows_dropped.size(), 1u);
  EXPECT_EQ(ds.rows_dropped.at("outside task universe (ESR blank)"), rows - with_esr);
  double positives = std::accumulate(ds.train.y.begin(), ds.train.y.end(), 0.0) +
                     std::accumulate(ds.eval.y.begin(), ds.eval.y.end(), 0.0);
  EXPECT_EQ(static_cast<int64_t>(positives), employed);
}

}  // namespace
}  // namespace dpfleet::data
