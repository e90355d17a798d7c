// Parity of the two data preparation implementations: the embedded C++
// pipeline (`dpctl data prepare`, client/data_cli.h over common/pums/prepare.h)
// and the PySpark job (deploy/spark/prepare_pums.py) must turn the same raw
// files into byte-identical shards and manifests. Runs on a synthetic file
// with bad rows of every kind mixed in, and on a real 2024 state file.
//
// Skips (with the reason) when pyspark is not importable from the project's
// virtual environment (`./dpfleet setup` installs it) or when the real file
// is absent.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "client/data_cli.h"
#include "common/pums/shards.h"
#include "common/pums/synth.h"
#include "nlohmann/json.hpp"
#include "tests/testing/process.h"
#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet {
namespace {

using ::dpfleet::testing::ReadAll;
using ::dpfleet::testing::WriteAll;

namespace fs = std::filesystem;
using ::dpfleet::testing::BinPath;
using ::dpfleet::testing::RunCommand;
using ::testing::HasSubstr;

// The repository root: $DPFLEET_SOURCE_DIR, else derived from this file.
std::string SourceDir() {
  if (const char* env = std::getenv("DPFLEET_SOURCE_DIR")) return env;
  const std::string source = __FILE__;  // <root>/tests/integration/spark_parity_test.cc
  return source.substr(0, source.rfind("/tests/integration/"));
}

std::string SharedDir() {
  if (const char* env = std::getenv("DPFLEET_SHARED_DIR")) return env;
  return SourceDir() + "/../shared";
}

std::string VenvPython() { return SourceDir() + "/.venv/bin/python"; }

// Why Spark cannot run here, or "" when it can.
std::string SparkUnavailable() {
  std::string out, err;
  if (!fs::exists(VenvPython())) return absl::StrCat(VenvPython(), " does not exist");
  if (RunCommand({VenvPython(), "-c", "import pyspark"}, &out, &err, absl::Seconds(60)) != 0) {
    return absl::StrCat("pyspark is not importable from ", VenvPython(),
                        " (run ./dpfleet setup): ", err);
  }
  if (RunCommand({"/usr/bin/env", "java", "-version"}, &out, &err, absl::Seconds(60)) != 0) {
    return "no java on PATH (Spark needs a JRE)";
  }
  return "";
}

struct Args {
  std::vector<std::string> inputs;
  std::string task = "employment";
  std::string features;  // "" = default
  std::string split_seed = "0";
  std::string eval_fraction = "0.2";
  int shards = 2;
};

std::vector<std::string> CommonFlags(const Args& a, const std::string& out) {
  std::vector<std::string> v = {"--input"};
  v.insert(v.end(), a.inputs.begin(), a.inputs.end());
  v.insert(v.end(), {"--task", a.task, "--split-seed", a.split_seed, "--eval-fraction",
                     a.eval_fraction, "--shards", std::to_string(a.shards), "--out", out});
  if (!a.features.empty()) v.insert(v.end(), {"--features", a.features});
  return v;
}

// The C++ side, through the dpctl verb's code.
void PrepareCpp(const Args& a, const std::string& out) {
  std::ostringstream o, e;
  ASSERT_EQ(client::RunDataPrepare(CommonFlags(a, out), o, e), 0) << e.str();
}

// The Spark side, local[2], with the schema the C++ side emits.
void PrepareSpark(const testing::TempDir& dir, const Args& a, const std::string& out) {
  const std::string schema = dir.Join("schema.json");
  {
    std::ostringstream o, e;
    ASSERT_EQ(client::RunDataSchema({"-o", "json"}, o, e), 0) << e.str();
    WriteAll(schema, o.str());
  }
  const std::string venv_bin = SourceDir() + "/.venv/bin";
  const char* path = std::getenv("PATH");
  std::vector<std::string> argv = {
      "/usr/bin/env",
      "PYSPARK_PYTHON=" + VenvPython(),
      "PYSPARK_DRIVER_PYTHON=" + VenvPython(),
      absl::StrCat("PATH=", venv_bin, ":", path ? path : "/usr/bin:/bin"),
      VenvPython(),
      SourceDir() + "/deploy/spark/prepare_pums.py",
      "--master",
      "local[2]",
      "--schema",
      schema};
  const std::vector<std::string> flags = CommonFlags(a, out);
  argv.insert(argv.end(), flags.begin(), flags.end());
  std::string o, e;
  const int rc = RunCommand(argv, &o, &e, absl::Minutes(10));
  ASSERT_EQ(rc, 0) << "spark job failed:\n" << o << "\n" << e;
}

// Every file of the two directories, byte for byte.
void ExpectIdenticalDirs(const std::string& cpp, const std::string& spark) {
  std::set<std::string> names_cpp, names_spark;
  for (const auto& e : fs::directory_iterator(cpp)) names_cpp.insert(e.path().filename());
  for (const auto& e : fs::directory_iterator(spark)) names_spark.insert(e.path().filename());
  EXPECT_EQ(names_cpp, names_spark);
  EXPECT_EQ(ReadAll(cpp + "/manifest.json"), ReadAll(spark + "/manifest.json"))
      << "--- C++ manifest:\n"
      << ReadAll(cpp + "/manifest.json") << "--- Spark manifest:\n"
      << ReadAll(spark + "/manifest.json");
  for (const std::string& name : names_cpp) {
    EXPECT_TRUE(ReadAll(cpp + "/" + name) == ReadAll(spark + "/" + name)) << name << " differs";
  }
  // And the Spark output loads through the C++ reader, checksums verified.
  EXPECT_TRUE(data::LoadTrainShards(spark).ok());
  EXPECT_TRUE(data::LoadEvalShard(spark).ok());
}

// A synthetic file from `dpctl data synth` (the library when dpctl is not
// built), plus a second file with bad rows of every kind.
std::vector<std::string> SyntheticInputs(const testing::TempDir& dir) {
  const std::string synth = dir.Join("synth.csv.gz");  // gzip: both readers must inflate it
  std::string out, err;
  if (fs::exists(BinPath("dpctl"))) {
    EXPECT_EQ(RunCommand({BinPath("dpctl"), "data", "synth", "--rows", "6000", "--seed", "5",
                          "-o", synth},
                         &out, &err),
              0)
        << err;
  } else {
    data::SynthOptions o;
    o.rows = 6000;
    o.seed = 5;
    EXPECT_TRUE(data::WriteSyntheticPums(o, synth).ok());
  }
  // The bad file: another column order (ST, not STATE), a UTF-8 byte-order
  // mark, CRLF and LF lines, and the synthetic file's first good rows with
  // one field broken each.
  data::SynthOptions small;
  small.rows = 40;
  small.seed = 9;
  WriteSyntheticPums(small, dir.Join("small.csv")).IgnoreError();
  std::vector<std::string> lines = absl::StrSplit(ReadAll(dir.Join("small.csv")), '\n',
                                                  absl::SkipEmpty());
  const std::vector<std::string> header = absl::StrSplit(lines[0], ',');
  // Reverse the column order: the encoding must not depend on it.
  std::vector<int> order(header.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(order.size() - 1 - i);
  auto col = [&](const std::string& name) {
    return static_cast<int>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  auto emit = [&](std::vector<std::string> f) {
    std::vector<std::string> r;
    for (int i : order) r.push_back(f[i]);
    return absl::StrJoin(r, ",");
  };
  std::vector<std::string> renamed = header;
  renamed[col("STATE")] = "ST";
  std::string text = "\xEF\xBB\xBF" + emit(renamed) + "\r\n";
  int row = 1;
  auto next = [&]() -> std::vector<std::string> {
    std::vector<std::string> f = absl::StrSplit(lines[row], ',');
    row = row % (static_cast<int>(lines.size()) - 1) + 1;
    return f;
  };
  // Find adults with ESR set to break their fields (others would be
  // dropped for ESR blank first).
  auto adult = [&]() {
    while (true) {
      std::vector<std::string> f = next();
      if (!f[col("ESR")].empty() && f[col("ESR")] != "6") return f;
    }
  };
  auto broken = [&](const std::string& name, const std::string& value) {
    std::vector<std::string> f = adult();
    f[col(name)] = value;
    return emit(f);
  };
  const std::string first_good = emit(adult());
  std::vector<std::string> rows = {
      first_good,                                    // good
      broken("AGEP", " 045 "),                       // good: spaces, leading zero
      broken("AGEP", "+45"),                         // good: sign
      broken("PUMA", "\"00,100\""),                  // good: quoted comma (slow path)
      broken("RT", "\"P\"\"x\"tail"),                // good: escaped quote
      broken("SERIALNO", "2024HU\xC3\xA9" "01"),     // good: UTF-8 in the key
      emit(adult()) + ",extra",                      // bad field count
      emit(adult()).substr(0, 20),                   // bad field count
      "   ",                                         // bad field count
      broken("SERIALNO", ""),                        // SERIALNO missing
      broken("SERIALNO", "  \t"),                    // SERIALNO missing
      broken("SPORDER", "x"),                        // SPORDER not numeric
      broken("SPORDER", ""),                         // SPORDER missing
      broken("SPORDER", "21"),                       // SPORDER out of range
      broken("SPORDER", "0"),                        // SPORDER out of range
      broken("ESR", "7"),                            // ESR out of range
      broken("ESR", "1.0"),                          // ESR not numeric
      broken("ESR", ""),                             // outside universe
      broken("ESR", "6"),                            // NILF (unemployment only)
      broken("AGEP", "abc"),                         // AGEP not numeric
      broken("AGEP", "100"),                         // AGEP out of range
      broken("AGEP", "-1"),                          // AGEP out of range
      broken("AGEP", "1234567890123456789"),         // AGEP not numeric (19 digits)
      broken("SEX", ""),                             // SEX missing
      broken("SEX", "3"),                            // SEX out of range
      broken("SCHL", "25"),                          // SCHL out of range
      broken("SCHL", ""),                            // blank category: good
      broken("MIL", "0"),                            // MIL out of range
      broken("DREM", "-"),                           // DREM not numeric
      broken("HISP", "99"),                          // HISP out of range (if a feature)
      broken("FER", "x"),                            // FER not numeric (if a feature)
      "",                                            // empty line: not a record
      first_good,                                    // duplicate of the first row
      broken("AGEP", "30"),                          // a person seen above, changed: duplicate
  };
  for (size_t i = 0; i < rows.size(); ++i) text += rows[i] + (i % 2 ? "\r\n" : "\n");
  text += emit(adult());  // last line without a newline
  WriteAll(dir.Join("bad.csv"), text);
  // A third input overlapping the second: the first half of small.csv's
  // persons (in its own column order) again, and none new.
  std::string overlap = lines[0] + "\n";
  for (size_t i = 1; i < lines.size() / 2; ++i) overlap += lines[i] + "\n";
  WriteAll(dir.Join("overlap.csv"), overlap);
  return {synth, dir.Join("bad.csv"), dir.Join("small.csv"), dir.Join("overlap.csv")};
}

TEST(SparkParityTest, SyntheticWithBadRowsOfEveryKind) {
  const std::string why = SparkUnavailable();
  if (!why.empty()) GTEST_SKIP() << why;
  testing::TempDir dir;
  Args a;
  a.inputs = SyntheticInputs(dir);
  a.split_seed = "18446744073709551557";
  a.eval_fraction = "0.3";
  a.shards = 3;
  PrepareCpp(a, dir.Join("cpp"));
  PrepareSpark(dir, a, dir.Join("spark"));
  ExpectIdenticalDirs(dir.Join("cpp"), dir.Join("spark"));
  auto m = data::ReadManifest(dir.Join("cpp"));
  ASSERT_TRUE(m.ok()) << m.status();
  // Every kind of drop the default features can produce happened.
  std::set<std::string> reasons;
  for (const auto& [reason, n] : m->rows_dropped) reasons.insert(reason);
  for (const char* want :
       {"bad field count", "SERIALNO missing", "SPORDER not numeric", "SPORDER missing",
        "SPORDER out of range", "ESR out of range", "ESR not numeric",
        "outside task universe (ESR blank)", "AGEP not numeric", "AGEP out of range",
        "SEX missing", "SEX out of range", "SCHL out of range", "MIL out of range",
        "DREM not numeric", "duplicate"}) {
    EXPECT_EQ(reasons.count(want), 1u) << want;
  }
  // overlap.csv adds no person of its own (every usable row of it is a
  // duplicate), and bad.csv repeats two of its own persons.
  auto overlap = data::LoadAndEncode({a.inputs[3]}, {});
  ASSERT_TRUE(overlap.ok()) << overlap.status();
  EXPECT_GE(m->rows_dropped.at("duplicate"), overlap->train.rows + overlap->eval.rows + 2);
  int64_t dropped = 0;
  for (const auto& [reason, n] : m->rows_dropped) dropped += n;
  EXPECT_EQ(m->rows_read, m->rows_train + m->rows_eval + dropped);

  // The other task, other features (HISP, FER: more drop reasons), other
  // shard count.
  Args b = a;
  b.task = "unemployment";
  b.features = "AGEP,SCHL,SEX,HISP,FER,st";
  b.eval_fraction = "0.5";
  b.shards = 2;
  PrepareCpp(b, dir.Join("cpp2"));
  PrepareSpark(dir, b, dir.Join("spark2"));
  ExpectIdenticalDirs(dir.Join("cpp2"), dir.Join("spark2"));
  m = data::ReadManifest(dir.Join("cpp2"));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->rows_dropped.count("outside task universe (ESR=6 not in labor force)"), 1u);
  EXPECT_EQ(m->rows_dropped.count("HISP out of range"), 1u);
  EXPECT_EQ(m->rows_dropped.count("FER not numeric"), 1u);
}

// The same file twice (here plain and gzipped) is refused by both, with the
// same message.
TEST(SparkParityTest, TheSameFileTwiceIsRefusedByBoth) {
  const std::string why = SparkUnavailable();
  if (!why.empty()) GTEST_SKIP() << why;
  testing::TempDir dir;
  data::SynthOptions o;
  o.rows = 800;
  o.seed = 3;
  ASSERT_TRUE(data::WriteSyntheticPums(o, dir.Join("a.csv")).ok());
  ASSERT_TRUE(data::WriteSyntheticPums(o, dir.Join("a.csv.gz")).ok());
  Args a;
  a.inputs = {dir.Join("a.csv"), dir.Join("a.csv.gz")};
  std::ostringstream out, cpp_err;
  ASSERT_EQ(client::RunDataPrepare(CommonFlags(a, dir.Join("cpp")), out, cpp_err), 2);
  EXPECT_THAT(cpp_err.str(), HasSubstr("the same data given twice"));
  const std::string schema = dir.Join("schema.json");
  std::ostringstream so, se;
  ASSERT_EQ(client::RunDataSchema({"-o", "json"}, so, se), 0);
  WriteAll(schema, so.str());
  std::vector<std::string> argv = {"/usr/bin/env", "PYSPARK_PYTHON=" + VenvPython(),
                                   "PYSPARK_DRIVER_PYTHON=" + VenvPython(), VenvPython(),
                                   SourceDir() + "/deploy/spark/prepare_pums.py", "--master", "local[2]",
                                   "--schema", schema};
  const std::vector<std::string> flags = CommonFlags(a, dir.Join("spark"));
  argv.insert(argv.end(), flags.begin(), flags.end());
  std::string spark_out, spark_err;
  EXPECT_EQ(RunCommand(argv, &spark_out, &spark_err, absl::Minutes(10)), 2) << spark_err;
  // The reason, as the C++ side words it (after its "dpctl: ... : " prefix).
  const std::string reason = cpp_err.str().substr(cpp_err.str().find("input 2"));
  EXPECT_THAT(spark_err, HasSubstr(std::string(absl::StripTrailingAsciiWhitespace(reason))));
  EXPECT_FALSE(fs::exists(dir.Join("spark/manifest.json")));
}

TEST(SparkParityTest, RealVermontFile) {
  const std::string path =
      SharedDir() + "/data/pums/acs2024_1yr_states/pums2024_person_50_VT.csv";
  if (!fs::exists(path)) GTEST_SKIP() << "real PUMS file not found: " << path;
  const std::string why = SparkUnavailable();
  if (!why.empty()) GTEST_SKIP() << why;
  testing::TempDir dir;
  Args a;
  a.inputs = {path};
  a.shards = 4;
  PrepareCpp(a, dir.Join("cpp"));
  PrepareSpark(dir, a, dir.Join("spark"));
  ExpectIdenticalDirs(dir.Join("cpp"), dir.Join("spark"));
  auto m = data::ReadManifest(dir.Join("cpp"));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->rows_read, 6938);  // README row count
}

// The CLI verbs' contract (no Spark needed).
TEST(DataPrepareCliTest, UsageErrorsNameTheFlagAndExitTwo) {
  testing::TempDir dir;
  auto run = [&](const std::vector<std::string>& args, std::string* err_text = nullptr) {
    std::ostringstream out, err;
    const int rc = client::RunDataPrepare(args, out, err);
    if (err_text != nullptr) *err_text = err.str();
    return rc;
  };
  std::string err;
  EXPECT_EQ(run({"--task", "employment", "--shards", "2", "--out", dir.Join("o")}, &err), 2);
  EXPECT_THAT(err, HasSubstr("--input"));
  data::SynthOptions o;
  o.rows = 300;
  ASSERT_TRUE(data::WriteSyntheticPums(o, dir.Join("s.csv")).ok());
  const std::string in = dir.Join("s.csv");
  EXPECT_EQ(run({"--input", in, "--task", "job", "--shards", "2", "--out", dir.Join("o")}, &err),
            2);
  EXPECT_THAT(err, HasSubstr("--task: unknown task 'job'"));
  EXPECT_EQ(run({"--input", in, "--task", "employment", "--shards", "0", "--out", dir.Join("o")},
                &err),
            2);
  EXPECT_THAT(err, HasSubstr("--shards: \"0\""));
  EXPECT_EQ(run({"--input", in, "--task", "employment", "--shards", "2", "--out", dir.Join("o"),
                 "--eval-fraction", "2"},
                &err),
            2);
  EXPECT_THAT(err, HasSubstr("--eval-fraction: \"2\" is not a number in [0, 1]"));
  EXPECT_EQ(run({"--input", in, "--task", "employment", "--shards", "2", "--out", dir.Join("o"),
                 "--features", "AGEP,COW"},
                &err),
            2);
  EXPECT_THAT(err, HasSubstr("COW"));
  EXPECT_EQ(run({"--input", dir.Join("none.csv"), "--task", "employment", "--shards", "2",
                 "--out", dir.Join("o")},
                &err),
            2);
  EXPECT_THAT(err, HasSubstr("none.csv"));
  EXPECT_EQ(run({"--input", in, "--bogus", "1"}, &err), 2);
  EXPECT_THAT(err, HasSubstr("unknown flag --bogus"));
  // The same file twice is refused, naming both.
  EXPECT_EQ(run({"--input", in, in, "--task", "employment", "--shards", "2", "--out", dir.Join("o")}, &err), 2);
  EXPECT_THAT(err, HasSubstr("the same data given twice"));
  // Success, text and JSON.
  std::ostringstream out, e;
  ASSERT_EQ(client::RunDataPrepare({"--input", in, "--task", "employment", "--shards", "2",
                                    "--out", dir.Join("o"), "-o", "json"},
                                   out, e),
            0)
      << e.str();
  const nlohmann::json j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["rows_read"], 300);
  EXPECT_EQ(j["shards"], 2);
  EXPECT_EQ(out.str(), ReadAll(dir.Join("o/manifest.json")));
  std::ostringstream schema, se;
  EXPECT_EQ(client::RunDataSchema({"-o", "json"}, schema, se), 0);
  EXPECT_EQ(nlohmann::json::parse(schema.str())["schema"], "dpfleet-pums-person");
  EXPECT_EQ(client::RunDataSchema({"-o", "yaml"}, schema, se), 2);
}

}  // namespace
}  // namespace dpfleet
