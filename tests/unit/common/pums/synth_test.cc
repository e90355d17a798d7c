#include "common/pums/synth.h"

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/pums/dataset.h"
#include "common/pums/schema.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::data {
namespace {

using ::dpfleet::testing::ReadAll;

// A parsed synthetic file: header and rows as strings (no quoting in synth).
struct Table {
  std::vector<std::string> header;
  std::map<std::string, size_t> col;
  std::vector<std::vector<std::string>> rows;
  const std::string& At(size_t r, const std::string& name) const { return rows[r][col.at(name)]; }
  int Int(size_t r, const std::string& name) const {
    int v = -1;
    const std::string& s = At(r, name);
    if (!s.empty()) {
      EXPECT_TRUE(absl::SimpleAtoi(s, &v)) << name << "='" << s << "'";
    }
    return v;
  }
};

Table Parse(const std::string& text) {
  Table t;
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  t.header = absl::StrSplit(lines[0], ',');
  for (size_t i = 0; i < t.header.size(); ++i) t.col[t.header[i]] = i;
  for (size_t i = 1; i < lines.size(); ++i) t.rows.push_back(absl::StrSplit(lines[i], ','));
  return t;
}

Table Generate(const SynthOptions& options, const testing::TempDir& dir) {
  const std::string path = dir.Join("synth.csv");
  EXPECT_TRUE(WriteSyntheticPums(options, path).ok());
  return Parse(ReadAll(path));
}

TEST(SynthTest, SameSeedSameBytesOtherSeedDifferent) {
  testing::TempDir dir;
  SynthOptions a;
  a.rows = 5000;
  a.seed = 7;
  ASSERT_TRUE(WriteSyntheticPums(a, dir.Join("a1.csv")).ok());
  ASSERT_TRUE(WriteSyntheticPums(a, dir.Join("a2.csv")).ok());
  SynthOptions b = a;
  b.seed = 8;
  ASSERT_TRUE(WriteSyntheticPums(b, dir.Join("b.csv")).ok());
  const std::string a1 = ReadAll(dir.Join("a1.csv"));
  EXPECT_FALSE(a1.empty());
  EXPECT_EQ(a1, ReadAll(dir.Join("a2.csv")));
  EXPECT_NE(a1, ReadAll(dir.Join("b.csv")));
}

TEST(SynthTest, ExactRowCountAndRealHeaderOrder) {
  testing::TempDir dir;
  SynthOptions o;
  o.rows = 1234;
  const Table t = Generate(o, dir);
  EXPECT_EQ(t.rows.size(), 1234u);
  EXPECT_EQ(t.header, SyntheticPumsColumns(o));
  const std::vector<std::string> head = {"RT",     "SERIALNO", "DIVISION", "SPORDER", "PUMA",
                                         "REGION", "STATE",    "PWGTP",    "AGEP"};
  for (size_t i = 0; i < head.size(); ++i) EXPECT_EQ(t.header[i], head[i]);
  for (const char* needed : {"SEX", "MAR", "SCHL", "RAC1P", "HISP", "CIT", "NATIVITY", "MIL",
                             "DIS", "DEAR", "DEYE", "DREM", "ESR"}) {
    EXPECT_TRUE(t.col.count(needed)) << needed;
  }
  for (const auto& row : t.rows) ASSERT_EQ(row.size(), t.header.size());
  // Zero rows: only the header.
  o.rows = 0;
  const Table empty = Generate(o, dir);
  EXPECT_TRUE(empty.rows.empty());
  EXPECT_EQ(empty.header, SyntheticPumsColumns(o));
}

TEST(SynthTest, EveryValueIsAValidDictionaryCode) {
  testing::TempDir dir;
  SynthOptions o;
  o.rows = 20000;
  const Table t = Generate(o, dir);
  for (size_t c = 0; c < t.header.size(); ++c) {
    const PumsVariable* var = FindVariable(t.header[c]);
    ASSERT_NE(var, nullptr) << t.header[c];
    if (var->kind == VarKind::kText) continue;
    for (size_t r = 0; r < t.rows.size(); ++r) {
      const std::string& s = t.rows[r][c];
      if (s.empty()) {
        ASSERT_TRUE(var->blank_allowed()) << var->name << " blank in row " << r;
        continue;
      }
      int v;
      ASSERT_TRUE(absl::SimpleAtoi(s, &v)) << var->name << "=" << s;
      if (var->kind == VarKind::kNumeric) {
        ASSERT_GE(v, var->min_value) << var->name;
        ASSERT_LE(v, var->max_value) << var->name;
      } else {
        ASSERT_GE(var->CodeIndex(v), 0) << var->name << "=" << s;
      }
    }
  }
}

TEST(SynthTest, BlanksExactlyWhereTheCensusLeavesThem) {
  testing::TempDir dir;
  SynthOptions o;
  o.rows = 30000;
  o.seed = 3;
  const Table t = Generate(o, dir);
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const int age = t.Int(r, "AGEP");
    ASSERT_EQ(t.At(r, "ESR").empty(), age < 16) << "age " << age;
    ASSERT_EQ(t.At(r, "MIL").empty(), age < 17) << "age " << age;
    ASSERT_EQ(t.At(r, "SCHL").empty(), age < 3) << "age " << age;
    ASSERT_EQ(t.At(r, "DREM").empty(), age < 5) << "age " << age;
    ASSERT_EQ(t.At(r, "DPHY").empty(), age < 5) << "age " << age;
    ASSERT_EQ(t.At(r, "DDRS").empty(), age < 5) << "age " << age;
    ASSERT_EQ(t.At(r, "LANX").empty(), age < 5) << "age " << age;
    ASSERT_EQ(t.At(r, "DOUT").empty(), age < 15) << "age " << age;
    ASSERT_FALSE(t.At(r, "DEAR").empty());
    ASSERT_FALSE(t.At(r, "MAR").empty());
    if (age < 15) {
      ASSERT_EQ(t.Int(r, "MAR"), 5);
    }
    if (age < 16) {
      ASSERT_TRUE(t.At(r, "COW").empty());
      ASSERT_TRUE(t.At(r, "WKHP").empty());
    }
    if (t.Int(r, "SEX") == 1 || age < 15 || age > 50) {
      ASSERT_TRUE(t.At(r, "FER").empty());
    }
    // ENG only for people who speak another language at home.
    ASSERT_EQ(t.At(r, "ENG").empty(), t.At(r, "LANX") != "1");
    // NATIVITY agrees with CIT (1-3 native, 4-5 foreign born).
    ASSERT_EQ(t.Int(r, "NATIVITY") == 1, t.Int(r, "CIT") <= 3);
    // DIS is 1 exactly when some difficulty item is 1.
    bool any = false;
    for (const char* item : {"DEAR", "DEYE", "DREM", "DPHY", "DDRS", "DOUT"}) {
      any = any || t.At(r, item) == "1";
    }
    ASSERT_EQ(t.Int(r, "DIS") == 1, any);
    // Active duty means armed forces employment.
    if (t.Int(r, "MIL") == 1) {
      ASSERT_TRUE(t.Int(r, "ESR") == 4 || t.Int(r, "ESR") == 5);
    }
  }
}

TEST(SynthTest, HouseholdsShareSerialWithConsecutivePersonNumbers) {
  testing::TempDir dir;
  SynthOptions o;
  o.rows = 10000;
  const Table t = Generate(o, dir);
  std::map<std::string, int> persons;
  std::string previous;
  int expected = 1;
  int multi = 0, gq = 0;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const std::string& serial = t.At(r, "SERIALNO");
    ASSERT_EQ(serial.size(), 13u) << serial;
    ASSERT_EQ(serial.substr(0, 4), "2024");
    const std::string type = serial.substr(4, 2);
    ASSERT_TRUE(type == "HU" || type == "GQ") << serial;
    if (serial != previous) {
      ASSERT_EQ(persons.count(serial), 0u) << "household split: " << serial;
      expected = 1;
      previous = serial;
      gq += type == "GQ";
    }
    ASSERT_EQ(t.Int(r, "SPORDER"), expected++) << serial;
    if (++persons[serial] == 2) ++multi;
    if (type == "GQ") {
      ASSERT_EQ(persons[serial], 1) << "group quarters hold one person";
    }
    ASSERT_EQ(t.At(r, "RT"), "P");
    ASSERT_EQ(t.At(r, "PUMA").size(), 5u);
    ASSERT_EQ(t.At(r, "STATE").size(), 2u);
  }
  EXPECT_GT(multi, static_cast<int>(persons.size()) / 3);
  EXPECT_GT(gq, 0);
}

TEST(SynthTest, LabelRatesAreRealistic) {
  testing::TempDir dir;
  SynthOptions o;
  o.rows = 100000;
  const Table t = Generate(o, dir);
  int64_t with_esr = 0, employed = 0, unemployed = 0;
  // Employment rate of 25-54 year olds by schooling and disability.
  int64_t hs_n = 0, hs_emp = 0, ba_n = 0, ba_emp = 0, dis_n = 0, dis_emp = 0;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const int esr = t.Int(r, "ESR");
    if (esr < 0) continue;
    ++with_esr;
    const bool emp = esr == 1 || esr == 2 || esr == 4 || esr == 5;
    employed += emp;
    unemployed += esr == 3;
    const int age = t.Int(r, "AGEP");
    if (age < 25 || age > 54) continue;
    const int schl = t.Int(r, "SCHL");
    if (t.Int(r, "DIS") == 1) {
      ++dis_n;
      dis_emp += emp;
    } else if (schl == 16) {
      ++hs_n;
      hs_emp += emp;
    } else if (schl >= 21) {
      ++ba_n;
      ba_emp += emp;
    }
  }
  const double rate = static_cast<double>(employed) / with_esr;
  // Real 2024 files: 0.574 of ESR-present persons are employed.
  EXPECT_GT(rate, 0.52);
  EXPECT_LT(rate, 0.64);
  const double unemployment = static_cast<double>(unemployed) / (employed + unemployed);
  EXPECT_GT(unemployment, 0.02);  // real: 0.042
  EXPECT_LT(unemployment, 0.08);
  EXPECT_GT(static_cast<double>(ba_emp) / ba_n, static_cast<double>(hs_emp) / hs_n + 0.05);
  EXPECT_LT(static_cast<double>(dis_emp) / dis_n, static_cast<double>(hs_emp) / hs_n - 0.15);
}

TEST(SynthTest, StateOptionsAndErrors) {
  testing::TempDir dir;
  SynthOptions o;
  o.rows = 500;
  o.state_fips = 50;
  o.state_column = "ST";
  const Table t = Generate(o, dir);
  ASSERT_TRUE(t.col.count("ST"));
  EXPECT_FALSE(t.col.count("STATE"));
  for (size_t r = 0; r < t.rows.size(); ++r) {
    ASSERT_EQ(t.At(r, "ST"), "50");
    ASSERT_EQ(t.At(r, "REGION"), "1");    // Northeast
    ASSERT_EQ(t.At(r, "DIVISION"), "1");  // New England
  }
  SynthOptions bad = o;
  bad.state_fips = 3;  // not a FIPS state code
  EXPECT_EQ(WriteSyntheticPums(bad, dir.Join("x.csv")).code(), absl::StatusCode::kInvalidArgument);
  bad = o;
  bad.rows = -1;
  EXPECT_EQ(WriteSyntheticPums(bad, dir.Join("x.csv")).code(), absl::StatusCode::kInvalidArgument);
  bad = o;
  bad.state_column = "STATEFIP";
  EXPECT_EQ(WriteSyntheticPums(bad, dir.Join("x.csv")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(WriteSyntheticPums(o, dir.Join("no/such/dir/x.csv")).ok());
}

TEST(SynthTest, GzipOutputHoldsTheSameRecords) {
  testing::TempDir dir;
  SynthOptions o;
  o.rows = 3000;
  ASSERT_TRUE(WriteSyntheticPums(o, dir.Join("p.csv")).ok());
  ASSERT_TRUE(WriteSyntheticPums(o, dir.Join("p.csv.gz")).ok());
  const std::string gz = ReadAll(dir.Join("p.csv.gz"));
  ASSERT_GE(gz.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  auto plain = LoadAndEncode({dir.Join("p.csv")}, EncodeOptions{});
  auto zipped = LoadAndEncode({dir.Join("p.csv.gz")}, EncodeOptions{});
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(zipped.ok()) << zipped.status();
  EXPECT_EQ(plain->train.x, zipped->train.x);
  EXPECT_EQ(plain->eval.keys, zipped->eval.keys);
}

}  // namespace
}  // namespace dpfleet::data
