#include "common/pums/shards.h"

#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::data {
namespace {

using ::dpfleet::testing::ReadAll;
using ::dpfleet::testing::WriteAll;

using ::testing::HasSubstr;

std::string HashOnce(absl::string_view data) {
  Sha256 h;
  h.Update(data);
  return DigestHex(h.Finish());
}

// ---------------------------------------------------------------------------
// SHA-256 (OpenSSL behind common/sha256.h): FIPS 180-4 example vectors (NIST
// "SHA256.pdf" examples and the one-million-'a' vector of FIPS 180-2
// Appendix B.3), whole and split across updates at every point.

const std::string& MillionA() {
  static const std::string s(1000000, 'a');
  return s;
}

std::vector<std::pair<std::string, std::string>> Fips180Vectors() {
  return {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      // 448 bits
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      // 896 bits
      {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlm"
       "nopqrsmnopqrstnopqrstu",
       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
      {MillionA(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
  };
}

TEST(ShardSha256Test, KnownVectors) {
  for (const auto& [msg, want] : Fips180Vectors()) {
    EXPECT_EQ(HashOnce(msg), want) << msg.size() << " bytes";
    EXPECT_EQ(Sha256Hex(msg), want) << msg.size() << " bytes";
  }
}

TEST(ShardSha256Test, KnownVectorsSplitAcrossUpdates) {
  for (const auto& [msg, want] : Fips180Vectors()) {
    if (msg.size() > 200) continue;
    const absl::string_view m(msg);
    // Two pieces at every split point, and three pieces at every pair of
    // points (the pieces straddle the 64-byte block boundaries both ways).
    for (size_t i = 0; i <= m.size(); ++i) {
      Sha256 h;
      h.Update(m.substr(0, i));
      h.Update(m.substr(i));
      ASSERT_EQ(DigestHex(h.Finish()), want) << m.size() << " bytes split at " << i;
      for (size_t j = i; j <= m.size(); ++j) {
        Sha256 g;
        g.Update(m.substr(0, i));
        g.Update(m.substr(i, j - i));
        g.Update(m.substr(j));
        ASSERT_EQ(DigestHex(g.Finish()), want) << m.size() << " bytes split at " << i << ", " << j;
      }
    }
  }
  // A million 'a' in updates of odd sizes, one byte at a time included.
  const std::string want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
  for (size_t step : {1u, 3u, 55u, 63u, 64u, 65u, 1000u, 65536u}) {
    Sha256 h;
    for (size_t i = 0; i < MillionA().size(); i += step) {
      h.Update(absl::string_view(MillionA()).substr(i, step));
    }
    EXPECT_EQ(DigestHex(h.Finish()), want) << "updates of " << step;
  }
}

TEST(ShardSha256Test, FinishResetsAndMovesKeepState) {
  Sha256 h;
  h.Update("abc");
  h.Finish();
  h.Update("abc");
  EXPECT_EQ(DigestHex(h.Finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // A moved hasher carries its partial message.
  Sha256 a;
  a.Update("ab");
  Sha256 b(std::move(a));
  b.Update("c");
  EXPECT_EQ(DigestHex(b.Finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 c;
  c.Update("zzz");
  c = std::move(b);
  c.Update("abc");
  EXPECT_EQ(DigestHex(c.Finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256::Implementation(), "SHA2-256");
}

TEST(ShardSha256Test, FileHashAndMissingFile) {
  testing::TempDir dir;
  WriteAll(dir.Join("f"), "abc");
  EXPECT_EQ(*Sha256FileHex(dir.Join("f")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256FileHex(dir.Join("missing")).status().code(), absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------
// Shard format.

struct Rows {
  int64_t dim;
  std::vector<float> x, y;
  std::vector<uint64_t> keys;
};

Rows MakeRows(int64_t n, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Rows r{dim, {}, {}, {}};
  for (int64_t i = 0; i < n * dim; ++i) r.x.push_back(static_cast<float>(rng() % 1000) / 999.0f);
  for (int64_t i = 0; i < n; ++i) {
    r.y.push_back(static_cast<float>(rng() % 2));
    r.keys.push_back(rng());
  }
  return r;
}

std::string WriteShard(const testing::TempDir& dir, const std::string& name, const Rows& r,
                       ShardHeader header, ShardInfo* info = nullptr) {
  header.dim = static_cast<uint64_t>(r.dim);
  const std::string path = dir.Join(name);
  auto w = ShardWriter::Create(path, header);
  EXPECT_TRUE(w.ok()) << w.status();
  // Several appends of different sizes, as the router does.
  const int64_t n = static_cast<int64_t>(r.y.size());
  int64_t at = 0;
  for (int64_t step = 1; at < n; step *= 3) {
    const int64_t take = std::min(step, n - at);
    EXPECT_TRUE((*w)->Append(r.x.data() + at * r.dim, r.y.data() + at, r.keys.data() + at, take)
                    .ok());
    at += take;
  }
  auto finished = (*w)->Finish();
  EXPECT_TRUE(finished.ok()) << finished.status();
  EXPECT_TRUE((*w)->Commit().ok());
  if (info != nullptr) *info = *finished;
  return path;
}

TEST(ShardFormatTest, RoundTripThroughMmap) {
  testing::TempDir dir;
  const Rows r = MakeRows(37, 5, 1);
  ShardHeader h;
  h.shard_index = 2;
  h.shard_count = 4;
  ShardInfo info;
  const std::string path = WriteShard(dir, "train-00002-of-00004.bin", r, h, &info);
  EXPECT_FALSE(std::ifstream(path + ".partial").good()) << "partial file left behind";
  auto f = ShardFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->rows(), 37);
  EXPECT_EQ((*f)->dim(), 5);
  EXPECT_EQ((*f)->header().shard_index, 2u);
  EXPECT_EQ((*f)->header().shard_count, 4u);
  EXPECT_EQ((*f)->header().split, ShardSplit::kTrain);
  EXPECT_EQ(std::vector<float>((*f)->features().begin(), (*f)->features().end()), r.x);
  EXPECT_EQ(std::vector<float>((*f)->labels().begin(), (*f)->labels().end()), r.y);
  EXPECT_EQ(std::vector<uint64_t>((*f)->keys().begin(), (*f)->keys().end()), r.keys);
  EXPECT_EQ((*f)->row(3)[4], r.x[3 * 5 + 4]);
  // Alignment promised by the format.
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*f)->features().data()) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*f)->keys().data()) % 8, 0u);
  // The ShardInfo matches the file.
  EXPECT_EQ(info.file, "train-00002-of-00004.bin");
  EXPECT_EQ(info.rows, 37);
  int positives = 0;
  for (float y : r.y) positives += y == 1.0f;
  EXPECT_EQ(info.positives, positives);
  EXPECT_EQ(info.bytes, static_cast<int64_t>(ReadAll(path).size()));
  EXPECT_EQ(info.sha256, *Sha256FileHex(path));
  EXPECT_EQ(info.sha256, Sha256Hex((*f)->bytes()));
}

TEST(ShardFormatTest, ByteLayoutIsTheDocumentedOne) {
  testing::TempDir dir;
  // 3 rows x 2 columns: 64 + 24 (x) + 12 (y) = 100, padded to 104, + 24 keys.
  Rows r{2, {1, 2, 3, 4, 5, 6}, {0, 1, 1}, {0x0102030405060708ULL, 2, 3}};
  ShardHeader h;
  h.split = ShardSplit::kEval;
  const std::string bytes = ReadAll(WriteShard(dir, "eval.bin", r, h));
  ASSERT_EQ(bytes.size(), 128u);
  EXPECT_EQ(ShardFileBytes(3, 2), 128u);
  EXPECT_EQ(bytes.substr(0, 8), "DPFSHARD");
  auto u32 = [&](size_t at) {
    uint32_t v;
    std::memcpy(&v, bytes.data() + at, 4);
    return v;
  };
  auto u64 = [&](size_t at) {
    uint64_t v;
    std::memcpy(&v, bytes.data() + at, 8);
    return v;
  };
  EXPECT_EQ(u32(8), 1u);    // version
  EXPECT_EQ(u32(12), 1u);   // dtype float32
  EXPECT_EQ(u64(16), 3u);   // rows
  EXPECT_EQ(u64(24), 2u);   // dim
  EXPECT_EQ(u32(32), 0u);   // index
  EXPECT_EQ(u32(36), 1u);   // count
  EXPECT_EQ(u32(40), 1u);   // eval
  EXPECT_EQ(bytes.substr(44, 20), std::string(20, '\0'));
  float x0;
  std::memcpy(&x0, bytes.data() + 64, 4);
  EXPECT_EQ(x0, 1.0f);
  float y1;
  std::memcpy(&y1, bytes.data() + 64 + 24 + 4, 4);
  EXPECT_EQ(y1, 1.0f);
  EXPECT_EQ(bytes.substr(100, 4), std::string(4, '\0'));  // padding
  EXPECT_EQ(u64(104), 0x0102030405060708ULL);
  // Little-endian on disk: the lowest byte comes first.
  EXPECT_EQ(static_cast<uint8_t>(bytes[104]), 0x08);
}

TEST(ShardFormatTest, EmptyShardIsJustAHeader) {
  testing::TempDir dir;
  const std::string path = WriteShard(dir, "e.bin", Rows{7, {}, {}, {}}, ShardHeader{});
  EXPECT_EQ(ReadAll(path).size(), 64u);
  auto f = ShardFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->rows(), 0);
  EXPECT_EQ((*f)->dim(), 7);
}

TEST(ShardFormatTest, CorruptAndTruncatedFilesAreRejectedPrecisely) {
  testing::TempDir dir;
  const std::string good = ReadAll(WriteShard(dir, "s.bin", MakeRows(10, 3, 2), ShardHeader{}));
  const std::string path = dir.Join("bad.bin");
  auto open_error = [&](const std::string& bytes) {
    WriteAll(path, bytes);
    auto f = ShardFile::Open(path);
    EXPECT_FALSE(f.ok());
    return f.ok() ? absl::OkStatus() : f.status();
  };
  absl::Status s = open_error(good.substr(0, good.size() - 1));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("bad.bin"));
  EXPECT_THAT(s.message(), HasSubstr("truncated"));
  s = open_error(good + "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("trailing bytes"));
  s = open_error(good.substr(0, 20));
  EXPECT_THAT(s.message(), HasSubstr("shorter than the 64-byte shard header"));
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  s = open_error(bad_magic);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("not a dpfleet shard"));
  std::string v2 = good;
  v2[8] = 2;
  s = open_error(v2);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("format version 2"));
  std::string huge_rows = good;
  huge_rows[23] = 0x7f;  // rows ~ 2^62: must not overflow into a "valid" size
  s = open_error(huge_rows);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("truncated"));
  EXPECT_EQ(ShardFile::Open(dir.Join("none.bin")).status().code(), absl::StatusCode::kNotFound);
}

TEST(ShardFormatTest, UncommittedWriterLeavesNothing) {
  testing::TempDir dir;
  {
    ShardHeader h;
    h.dim = 2;
    auto w = ShardWriter::Create(dir.Join("x.bin"), h);
    ASSERT_TRUE(w.ok());
    const float x[2] = {1, 2}, y[1] = {1};
    const uint64_t k[1] = {9};
    ASSERT_TRUE((*w)->Append(x, y, k, 1).ok());
    EXPECT_TRUE(std::ifstream(dir.Join("x.bin.partial")).good());
  }
  EXPECT_FALSE(std::ifstream(dir.Join("x.bin.partial")).good());
  EXPECT_FALSE(std::ifstream(dir.Join("x.bin")).good());
}

// ---------------------------------------------------------------------------
// Manifest text.

TEST(ShardManifestTest, CanonicalDoubleIsShortestRoundTrip) {
  EXPECT_EQ(CanonicalDouble(0.2), "0.2");
  EXPECT_EQ(CanonicalDouble(0.0), "0");
  EXPECT_EQ(CanonicalDouble(1.0), "1");
  EXPECT_EQ(CanonicalDouble(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(CanonicalDouble(1e-5), "1e-05");
  EXPECT_EQ(CanonicalDouble(2.0 / 3.0), "0.6666666666666666");
  EXPECT_EQ(CanonicalDouble(0.5712), "0.5712");
}

Manifest SampleManifest() {
  Manifest m;
  m.schema_version = 1;
  m.schema_sha256 = std::string(64, 'a');
  m.task = "employment";
  m.label = "a \"quoted\" rule\twith tab";
  m.features = {"AGEP", "SEX"};
  m.columns = {"AGEP", "SEX=1", "SEX=2"};
  m.dim = 3;
  m.split_seed = 18446744073709551615ULL;
  m.eval_fraction = 0.2;
  m.split_rule = "s";
  m.shard_rule = "r";
  m.inputs = {{"a.csv", 10}, {"b.csv", 5}};
  m.rows_read = 15;
  m.rows_dropped = {{"outside task universe (ESR blank)", 3}, {"AGEP out of range", 1}};
  m.rows_train = 9;
  m.rows_eval = 2;
  m.positives_train = 6;
  m.positives_eval = 1;
  m.positive_rate_train = 6.0 / 9;
  m.positive_rate_eval = 0.5;
  m.shards = 2;
  m.train_shards = {{"train-00000-of-00002.bin", 0, 4, 3, 100, std::string(64, 'b')},
                    {"train-00001-of-00002.bin", 1, 5, 3, 120, std::string(64, 'c')}};
  m.eval_shard = {"eval.bin", 0, 2, 1, 80, std::string(64, 'd')};
  return m;
}

TEST(ShardManifestTest, JsonRoundTripAndExactText) {
  const Manifest m = SampleManifest();
  const std::string text = ManifestToJson(m);
  auto parsed = ParseManifest(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(ManifestToJson(*parsed), text);
  EXPECT_EQ(parsed->split_seed, m.split_seed);
  EXPECT_EQ(parsed->rows_dropped, m.rows_dropped);
  EXPECT_EQ(parsed->train_shards[1].sha256, m.train_shards[1].sha256);
  // The canonical text, piece by piece (the Spark job writes the same).
  EXPECT_THAT(text, HasSubstr("{\n  \"format\": \"dpfleet-pums-shards\",\n  \"format_version\": 1,"));
  EXPECT_THAT(text, HasSubstr("\"label\": \"a \\\"quoted\\\" rule\\twith tab\""));
  EXPECT_THAT(text, HasSubstr("\"columns\": [\"AGEP\", \"SEX=1\", \"SEX=2\"],"));
  EXPECT_THAT(text, HasSubstr("\"split_seed\": 18446744073709551615,"));
  EXPECT_THAT(text, HasSubstr("\"eval_fraction\": 0.2,"));
  EXPECT_THAT(text, HasSubstr("\"rows_dropped\": {\n    \"AGEP out of range\": 1,\n"));
  EXPECT_THAT(text, HasSubstr("\"positive_rate_train\": 0.6666666666666666,"));
  EXPECT_THAT(text, HasSubstr("\"train_shards\": [\n    {\n      \"index\": 0,\n      \"file\": "));
  EXPECT_EQ(text.back(), '\n');
}

TEST(ShardManifestTest, ParseErrorsNameTheField) {
  const std::string text = ManifestToJson(SampleManifest());
  auto without = [&](const std::string& key) {
    nlohmann::json j = nlohmann::json::parse(text);
    j.erase(key);
    return ParseManifest(j.dump()).status();
  };
  EXPECT_THAT(without("rows_train").message(), HasSubstr("missing field 'rows_train'"));
  EXPECT_THAT(without("train_shards").message(), HasSubstr("'train_shards'"));
  nlohmann::json j = nlohmann::json::parse(text);
  j["dim"] = "three";
  EXPECT_THAT(ParseManifest(j.dump()).status().message(), HasSubstr("field 'dim' has the wrong type"));
  j = nlohmann::json::parse(text);
  j["train_shards"][0]["file"] = "../etc/passwd";
  EXPECT_THAT(ParseManifest(j.dump()).status().message(), HasSubstr("plain name"));
  j = nlohmann::json::parse(text);
  j["rows_train"] = 10;
  EXPECT_THAT(ParseManifest(j.dump()).status().message(), HasSubstr("disagree"));
  EXPECT_EQ(ParseManifest("not json").status().code(), absl::StatusCode::kInvalidArgument);
  // A list of the wrong element type is refused, not thrown (found by
  // tests/fuzz/manifest_fuzzer).
  j = nlohmann::json::parse(text);
  j["features"] = {"AGEP", 7};
  EXPECT_THAT(ParseManifest(j.dump()).status().message(), HasSubstr("field 'features' has the wrong type"));
  j = nlohmann::json::parse(text);
  j["columns"] = "AGEP";
  EXPECT_THAT(ParseManifest(j.dump()).status().message(), HasSubstr("field 'columns' has the wrong type"));
  testing::TempDir dir;
  EXPECT_EQ(ReadManifest(dir.path()).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace dpfleet::data
