// FileIdentifier (server/core/file_identifier.h): each version of a file is
// hashed once — hard links, repeats and a restarted coordinator come from
// the cache —, a rewrite is hashed again, and the real PUMS files get the
// keys their published checksums say.
#include "server/core/file_identifier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_split.h"
#include "tests/testing/files.h"
#include "tests/testing/pums_files.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::testing::ElementsAre;

class FileIdentifierTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = *Store::Open(state_.path()); }
  testing::TempDir state_, data_;
  ManualClock clock_;
  std::unique_ptr<Store> store_;
};

TEST_F(FileIdentifierTest, EachVersionOfAFileIsHashedOnce) {
  const std::string a = data_.Join("a.csv");
  testing::WriteAll(a, "SERIALNO,SPORDER\n1,1\n");
  std::filesystem::create_hard_link(a, data_.Join("hard.csv"));
  std::filesystem::copy_file(a, data_.Join("copy.csv"));
  FileIdentifier ids(store_.get(), &clock_);
  const std::string key = *ids.Identify(a);
  EXPECT_EQ(*ids.Identify(a), key);
  EXPECT_EQ(*ids.Identify(data_.Join("hard.csv")), key) << "same inode: from the cache";
  EXPECT_EQ(ids.stats().files_hashed, 1);
  EXPECT_EQ(*ids.Identify(data_.Join("copy.csv")), key) << "another inode, the same bytes";
  EXPECT_EQ(ids.stats().files_hashed, 2);
  EXPECT_EQ(ids.stats().bytes_hashed, 2 * static_cast<int64_t>(std::filesystem::file_size(a)));

  // A coordinator started again reads the durable cache, not the file.
  FileIdentifier restarted(store_.get(), &clock_);
  EXPECT_EQ(*restarted.Identify(data_.Join("hard.csv")), key);
  EXPECT_EQ(restarted.stats().files_hashed, 0);

  // Rewritten: hashed again, and the path now names the new content.
  testing::WriteAll(a, "SERIALNO,SPORDER\n2,1\n");
  const std::string rewritten = *restarted.Identify(a);
  EXPECT_NE(rewritten, key);
  EXPECT_EQ(restarted.stats().files_hashed, 1);
  EXPECT_EQ(*restarted.Identify(data_.Join("hard.csv")), rewritten) << "the link shares the new bytes";
  EXPECT_EQ(restarted.stats().files_hashed, 1);
  auto paths = *store_->FilePaths();
  EXPECT_THAT(paths[key], ElementsAre(data_.Join("copy.csv")));
  EXPECT_THAT(paths[rewritten], ElementsAre(a, data_.Join("hard.csv")));
  EXPECT_EQ(ids.Identify(data_.Join("gone.csv")).status().code(), absl::StatusCode::kNotFound);
}

// The seven real 2024 state files: keys equal to the checksums published
// next to them, and how long identifying them takes the first time (it
// happens once per file version, when a dataset is added or a job first
// reads it; printed, not asserted).
TEST_F(FileIdentifierTest, RealPumsFilesMatchTheirPublishedChecksums) {
  if (testing::SharedStateFile("pums2024_person_50_VT.csv").empty()) {
    GTEST_SKIP() << "the shared PUMS data is absent";
  }
  const std::string dir = std::filesystem::path(testing::SharedStateFile("pums2024_person_50_VT.csv")).parent_path();
  std::ifstream sums(std::filesystem::path(dir).parent_path() / "SHA256SUMS.txt");
  ASSERT_TRUE(sums.good());
  FileIdentifier ids(store_.get(), &clock_);
  std::string line;
  int checked = 0;
  while (std::getline(sums, line)) {
    std::vector<std::string> parts = absl::StrSplit(line, "  ");
    if (parts.size() != 2 || parts[1].rfind("acs2024_1yr_states/", 0) != 0) continue;
    const std::string path = std::filesystem::path(dir).parent_path() / parts[1];
    EXPECT_EQ(*ids.Identify(path), "sha256:" + parts[0]) << parts[1];
    ++checked;
  }
  EXPECT_EQ(checked, 7);
  const FileIdentifier::Stats s = ids.stats();
  EXPECT_EQ(s.files_hashed, 7);
  std::printf("identified 7 PUMS state files: %.1f MB in %.3f s (%.0f MB/s)\n", s.bytes_hashed / 1e6, s.seconds,
              s.bytes_hashed / 1e6 / s.seconds);
}

}  // namespace
}  // namespace dpfleet::server
