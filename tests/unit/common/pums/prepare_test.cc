#include "common/pums/prepare.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/pums/dataset.h"
#include "common/pums/schema.h"
#include "common/sha256.h"
#include "common/pums/shards.h"
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
namespace fs = std::filesystem;

std::string Synth(const testing::TempDir& dir, int64_t rows, uint64_t seed,
                  const std::string& name) {
  SynthOptions o;
  o.rows = rows;
  o.seed = seed;
  const std::string path = dir.Join(name);
  EXPECT_TRUE(WriteSyntheticPums(o, path).ok());
  return path;
}

PrepareOptions Options(std::vector<std::string> inputs, const std::string& out, int shards) {
  PrepareOptions o;
  o.inputs = std::move(inputs);
  o.out_dir = out;
  o.shards = shards;
  o.encode.split_seed = 11;
  o.encode.eval_fraction = 0.25;
  return o;
}

Manifest MustPrepare(const PrepareOptions& o) {
  auto m = PrepareShards(o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : Manifest{};
}

std::set<std::string> FilesIn(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

void ExpectSameRows(const EncodedSplit& a, const EncodedSplit& b) {
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_TRUE(a.x == b.x);
  EXPECT_EQ(a.y, b.y);
  EXPECT_EQ(a.keys, b.keys);
}

TEST(PrepareTest, ShardsHoldExactlyWhatLoadAndEncodeProduces) {
  testing::TempDir dir;
  const std::vector<std::string> inputs = {Synth(dir, 3000, 1, "a.csv"),
                                           Synth(dir, 2000, 2, "b.csv")};
  PrepareOptions o = Options(inputs, dir.Join("out"), 4);
  o.encode.read_chunk_bytes = 64 << 10;  // many blocks, so batches cross shards
  const Manifest m = MustPrepare(o);
  const EncodedDataset ds = *LoadAndEncode(inputs, o.encode);
  // Shard k holds the train rows with PartitionOf(key, 4) == k, in input order.
  for (int k = 0; k < 4; ++k) {
    auto f = ShardFile::Open(dir.Join("out/" + TrainShardFileName(k, 4)));
    ASSERT_TRUE(f.ok()) << f.status();
    EncodedSplit got;
    got.dim = (*f)->dim();
    got.rows = (*f)->rows();
    got.x.assign((*f)->features().begin(), (*f)->features().end());
    got.y.assign((*f)->labels().begin(), (*f)->labels().end());
    got.keys.assign((*f)->keys().begin(), (*f)->keys().end());
    ExpectSameRows(got, Partition(ds.train, k, 4));
  }
  auto eval = LoadEvalShard(dir.Join("out"));
  ASSERT_TRUE(eval.ok()) << eval.status();
  ExpectSameRows(*eval, ds.eval);
  // Manifest fields and counts.
  EXPECT_EQ(m.task, "employment");
  EXPECT_EQ(m.columns, ds.columns);
  EXPECT_EQ(m.features, ds.features);
  EXPECT_EQ(m.dim, static_cast<int64_t>(ds.columns.size()));
  EXPECT_EQ(m.split_seed, 11u);
  EXPECT_EQ(m.eval_fraction, 0.25);
  EXPECT_EQ(m.rows_read, 5000);
  ASSERT_EQ(m.inputs.size(), 2u);
  EXPECT_EQ(m.inputs[0].file, "a.csv");
  EXPECT_EQ(m.inputs[0].rows_read, 3000);
  EXPECT_EQ(m.inputs[1].rows_read, 2000);
  EXPECT_EQ(m.rows_dropped, ds.rows_dropped);
  int64_t dropped = 0;
  for (const auto& [reason, n] : m.rows_dropped) dropped += n;
  EXPECT_EQ(m.rows_read, m.rows_train + m.rows_eval + dropped);
  EXPECT_EQ(m.rows_train, ds.train.rows);
  EXPECT_EQ(m.rows_eval, ds.eval.rows);
  const double positives = std::accumulate(ds.train.y.begin(), ds.train.y.end(), 0.0);
  EXPECT_EQ(m.positives_train, static_cast<int64_t>(positives));
  EXPECT_DOUBLE_EQ(m.positive_rate_train, positives / ds.train.rows);
  EXPECT_EQ(m.schema_version, kSchemaVersion);
  EXPECT_EQ(m.schema_sha256, Sha256Hex(SchemaJson()));
  ASSERT_EQ(m.train_shards.size(), 4u);
  int64_t rows = 0;
  for (const ShardInfo& s : m.train_shards) {
    EXPECT_EQ(s.sha256, *Sha256FileHex(dir.Join("out/" + s.file)));
    EXPECT_EQ(s.bytes, static_cast<int64_t>(fs::file_size(dir.Join("out/" + s.file))));
    EXPECT_GT(s.rows, 0);
    rows += s.rows;
  }
  EXPECT_EQ(rows, m.rows_train);
  EXPECT_EQ(m.eval_shard.file, "eval.bin");
  // The file on disk is the returned manifest, and nothing else is there.
  EXPECT_EQ(ReadAll(dir.Join("out/manifest.json")), ManifestToJson(m));
  EXPECT_EQ(FilesIn(dir.Join("out")),
            (std::set<std::string>{"manifest.json", "eval.bin", "train-00000-of-00004.bin",
                                   "train-00001-of-00004.bin", "train-00002-of-00004.bin",
                                   "train-00003-of-00004.bin"}));
}

TEST(PrepareTest, ProgressRisesBlockByBlockToTheRowsKept) {
  testing::TempDir dir;
  PrepareOptions o = Options({Synth(dir, 5000, 3, "p.csv")}, dir.Join("out"), 2);
  o.encode.read_chunk_bytes = 32 << 10;
  std::vector<int64_t> seen;
  o.progress = [&](int64_t kept) { seen.push_back(kept); };
  const Manifest m = MustPrepare(o);
  ASSERT_GT(seen.size(), 3u) << "one call per encoded block";
  for (std::size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i], seen[i - 1]);
  EXPECT_EQ(seen.back(), m.rows_train + m.rows_eval);
}

// A cancel stops the preparation at the next block, with nothing published.
TEST(PrepareTest, CancelStopsAtTheNextBlockAndLeavesNoFiles) {
  testing::TempDir dir;
  PrepareOptions o = Options({Synth(dir, 5000, 3, "p.csv")}, dir.Join("out"), 2);
  o.encode.read_chunk_bytes = 32 << 10;
  std::atomic<bool> cancel{false};
  int blocks = 0;
  o.cancel = &cancel;
  o.progress = [&](int64_t) {
    if (++blocks == 2) cancel = true;
  };
  absl::StatusOr<Manifest> m = PrepareShards(o);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kCancelled) << m.status();
  EXPECT_EQ(blocks, 2) << "no block is encoded into the shards after the cancel";
  EXPECT_TRUE(!fs::exists(dir.Join("out")) || FilesIn(dir.Join("out")).empty());
}

TEST(PrepareTest, OutputIsByteIdenticalWhateverThreadsAndBlockSize) {
  testing::TempDir dir;
  const std::vector<std::string> inputs = {Synth(dir, 4000, 3, "a.csv")};
  PrepareOptions a = Options(inputs, dir.Join("a"), 3);
  a.encode.threads = 1;
  PrepareOptions b = Options(inputs, dir.Join("b"), 3);
  b.encode.threads = 4;
  b.encode.read_chunk_bytes = 10000;
  MustPrepare(a);
  MustPrepare(b);
  for (const std::string& name : FilesIn(dir.Join("a"))) {
    EXPECT_EQ(ReadAll(dir.Join("a/" + name)), ReadAll(dir.Join("b/" + name))) << name;
  }
  // Running again into the same directory gives the same bytes too.
  const std::string before = ReadAll(dir.Join("a/manifest.json"));
  MustPrepare(a);
  EXPECT_EQ(ReadAll(dir.Join("a/manifest.json")), before);
}

TEST(PrepareTest, RanksLoadDisjointShardSubsetsThatCoverEverything) {
  testing::TempDir dir;
  const std::vector<std::string> inputs = {Synth(dir, 3000, 4, "a.csv")};
  const Manifest m = MustPrepare(Options(inputs, dir.Join("out"), 5));
  auto all = LoadTrainShards(dir.Join("out"));
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->rows, m.rows_train);
  std::multiset<uint64_t> seen;
  int64_t rows = 0;
  for (int rank = 0; rank < 2; ++rank) {
    ShardLoadOptions lo;
    lo.rank = rank;
    lo.world_size = 2;
    auto part = LoadTrainShards(dir.Join("out"), lo);
    ASSERT_TRUE(part.ok()) << part.status();
    // Rank 0 has shards 0, 2, 4; rank 1 has 1, 3.
    int64_t want = 0;
    for (const ShardInfo& s : m.train_shards) want += s.index % 2 == rank ? s.rows : 0;
    EXPECT_EQ(part->rows, want);
    EXPECT_EQ(part->x.size(), static_cast<size_t>(part->rows * m.dim));
    for (uint64_t k : part->keys) {
      seen.insert(k);
      EXPECT_EQ(PartitionOf(k, 5) % 2, rank);
    }
    rows += part->rows;
  }
  EXPECT_EQ(rows, m.rows_train);
  EXPECT_EQ(seen, std::multiset<uint64_t>(all->keys.begin(), all->keys.end()));
  // More ranks than shards: the extra ranks get nothing, but a valid split.
  ShardLoadOptions lo;
  lo.rank = 6;
  lo.world_size = 8;
  auto none = LoadTrainShards(dir.Join("out"), lo);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->rows, 0);
  EXPECT_EQ(none->dim, m.dim);
  lo.rank = 8;
  EXPECT_EQ(LoadTrainShards(dir.Join("out"), lo).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PrepareTest, CorruptTruncatedOrMissingShardsAreDetected) {
  testing::TempDir dir;
  const std::vector<std::string> inputs = {Synth(dir, 2000, 5, "a.csv")};
  const Manifest m = MustPrepare(Options(inputs, dir.Join("out"), 2));
  const std::string shard = dir.Join("out/" + m.train_shards[1].file);
  const std::string good = ReadAll(shard);
  // One flipped feature byte: same size, so only the checksum can tell.
  std::string flipped = good;
  flipped[kShardHeaderBytes + 5] ^= 0x40;
  WriteAll(shard, flipped);
  ShardLoadOptions rank1;
  rank1.rank = 1;
  rank1.world_size = 2;
  absl::Status s = LoadTrainShards(dir.Join("out"), rank1).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("train-00001-of-00002.bin"));
  EXPECT_THAT(s.message(), HasSubstr("SHA-256"));
  EXPECT_THAT(s.message(), HasSubstr(m.train_shards[1].sha256));
  // Rank 0 does not read that shard and is unaffected.
  rank1.rank = 0;
  EXPECT_TRUE(LoadTrainShards(dir.Join("out"), rank1).ok());
  // Without verification the flipped byte goes unnoticed (by design).
  ShardLoadOptions fast;
  fast.verify_checksums = false;
  EXPECT_TRUE(LoadTrainShards(dir.Join("out"), fast).ok());
  // Truncated.
  WriteAll(shard, good.substr(0, good.size() - 8));
  s = LoadTrainShards(dir.Join("out"), fast).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("truncated"));
  // Another shard's file under this name.
  WriteAll(shard, ReadAll(dir.Join("out/" + m.train_shards[0].file)));
  s = LoadTrainShards(dir.Join("out"), fast).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("the manifest lists it as train shard 1 of 2"));
  // Missing.
  fs::remove(shard);
  EXPECT_EQ(LoadTrainShards(dir.Join("out"), fast).status().code(), absl::StatusCode::kNotFound);
  // Eval.
  WriteAll(dir.Join("out/eval.bin"), "short");
  s = LoadEvalShard(dir.Join("out")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("eval.bin"));
}

TEST(PrepareTest, BadRowsAreCountedByReasonInTheManifest) {
  testing::TempDir dir;
  const std::string header =
      "SERIALNO,SPORDER,STATE,AGEP,SEX,MAR,SCHL,RAC1P,DIS,CIT,NATIVITY,MIL,DREM,ESR";
  std::string text = header + "\n";
  for (int p = 1; p <= 6; ++p) {
    text += absl::StrCat("2024HU0000001,", p, ",50,45,2,1,21,1,2,1,1,4,2,1\n");
  }
  text += "2024HU0000002,1,50,abc,2,1,21,1,2,1,1,4,2,1\n";   // AGEP not numeric
  text += "2024HU0000002,2,50,45,2,1,99,1,2,1,1,4,2,1\n";    // SCHL out of range
  text += "2024HU0000002,3,50,10,2,5,7,1,2,1,1,,2,\n";        // under 16
  text += "2024HU0000002,4,50,45\n";                          // field count
  text += ",5,50,45,2,1,21,1,2,1,1,4,2,1\n";                  // SERIALNO missing
  text += "\n";                                                // not a record
  WriteAll(dir.Join("bad.csv"), text);
  const Manifest m = MustPrepare(Options({dir.Join("bad.csv")}, dir.Join("out"), 2));
  EXPECT_EQ(m.rows_read, 11);
  const std::map<std::string, int64_t> want = {{"AGEP not numeric", 1},
                                               {"SCHL out of range", 1},
                                               {"outside task universe (ESR blank)", 1},
                                               {"bad field count", 1},
                                               {"SERIALNO missing", 1}};
  EXPECT_EQ(m.rows_dropped, want);
  EXPECT_EQ(m.rows_train + m.rows_eval, 6);
  EXPECT_EQ(m.positives_train + m.positives_eval, 6);
}

TEST(PrepareTest, OptionErrorsNameTheOptionAndLeaveNoFiles) {
  testing::TempDir dir;
  const std::string input = Synth(dir, 500, 6, "a.csv");
  auto error = [&](PrepareOptions o) {
    auto m = PrepareShards(o);
    EXPECT_FALSE(m.ok());
    return m.ok() ? absl::OkStatus() : m.status();
  };
  PrepareOptions o = Options({input}, dir.Join("out"), 0);
  EXPECT_THAT(error(o).message(), HasSubstr("--shards: 0 is outside [1, 1024]"));
  o.shards = 2;
  o.encode.eval_fraction = 1.5;
  EXPECT_THAT(error(o).message(), HasSubstr("--eval-fraction: 1.5"));
  o.encode.eval_fraction = 0.2;
  o.encode.features = {"AGEP", "WKHP"};
  absl::Status s = error(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("WKHP"));
  o.encode.features = {"NOPE"};
  EXPECT_EQ(error(o).code(), absl::StatusCode::kNotFound);
  o.encode.features = {};
  o.inputs = {input, dir.Join("missing.csv")};
  s = error(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("missing.csv"));
  // No usable rows (the unemployment task on a file of children only).
  WriteAll(dir.Join("kids.csv"),
           "SERIALNO,SPORDER,STATE,AGEP,SEX,MAR,SCHL,RAC1P,DIS,CIT,NATIVITY,MIL,DREM,ESR\n"
           "2024HU0000001,1,50,10,2,5,7,1,2,1,1,,2,\n");
  o.inputs = {dir.Join("kids.csv")};
  s = error(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("no usable rows"));
  // Nothing was published, and no partial files were left.
  if (fs::exists(dir.Join("out"))) {
    EXPECT_EQ(FilesIn(dir.Join("out")), std::set<std::string>{});
  }
}

TEST(PrepareTest, ReplacingWithAnotherShardCountRemovesStaleShards) {
  testing::TempDir dir;
  const std::vector<std::string> inputs = {Synth(dir, 1500, 7, "a.csv")};
  MustPrepare(Options(inputs, dir.Join("out"), 4));
  WriteAll(dir.Join("out/notes.txt"), "mine");  // not ours: kept
  const Manifest m = MustPrepare(Options(inputs, dir.Join("out"), 2));
  EXPECT_EQ(FilesIn(dir.Join("out")),
            (std::set<std::string>{"manifest.json", "eval.bin", "notes.txt",
                                   "train-00000-of-00002.bin", "train-00001-of-00002.bin"}));
  EXPECT_TRUE(LoadTrainShards(dir.Join("out")).ok());
  EXPECT_EQ(m.shards, 2);
}

TEST(PrepareTest, SchemaJsonDescribesEveryVariable) {
  const std::string text = SchemaJson();
  const nlohmann::json j = nlohmann::json::parse(text);
  EXPECT_EQ(j["schema"], "dpfleet-pums-person");
  EXPECT_EQ(j["schema_version"], kSchemaVersion);
  EXPECT_EQ(j["label_variable"], "ESR");
  EXPECT_EQ(j["default_features"].get<std::vector<std::string>>(), DefaultFeatures());
  ASSERT_EQ(j["variables"].size(), PumsVariables().size());
  for (size_t i = 0; i < PumsVariables().size(); ++i) {
    const PumsVariable& v = PumsVariables()[i];
    const nlohmann::json& e = j["variables"][i];
    EXPECT_EQ(e["name"], v.name);
    if (v.kind == VarKind::kCategorical) {
      EXPECT_EQ(e["codes"].get<std::vector<int>>(), v.codes);
    }
    if (v.kind == VarKind::kNumeric) {
      EXPECT_EQ(e["max_value"], v.max_value);
    }
    EXPECT_EQ(e["blank_meaning"], v.blank_meaning);
  }
  EXPECT_EQ(j["variables"][6]["aliases"], nlohmann::json::array({"STATE"}));
  EXPECT_EQ(SchemaJson(), text);  // deterministic
}

// Real data: every Vermont person with ESR present ends up in a shard.
TEST(PrepareRealDataTest, VermontKeepsEveryRowWithEsr) {
  const std::string path = ::dpfleet::testing::SharedStateFile("pums2024_person_50_VT.csv");
  if (path.empty()) GTEST_SKIP() << "real PUMS files not found (../shared/data/pums)";
  const ::dpfleet::testing::EsrCounts counts = ::dpfleet::testing::CountEsr(path);
  const int64_t rows = counts.rows, with_esr = counts.with_esr, employed = counts.employed;
  testing::TempDir dir;
  const Manifest m = MustPrepare(Options({path}, dir.Join("out"), 3));
  EXPECT_EQ(m.rows_read, rows);
  EXPECT_EQ(m.rows_train + m.rows_eval, with_esr);
  EXPECT_EQ(m.positives_train + m.positives_eval, employed);
  EXPECT_EQ(m.rows_dropped,
            (std::map<std::string, int64_t>{{"outside task universe (ESR blank)", rows - with_esr}}));
  auto train = LoadTrainShards(dir.Join("out"));
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->rows, m.rows_train);
}

}  // namespace
}  // namespace dpfleet::data
