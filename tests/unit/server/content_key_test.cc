// Content keys (server/core/content_key.h): a file is the SHA-256 of its
// bytes, its stamp changes when it is rewritten, and keys are told from the
// legacy path keys of migrated rows.
#include "server/core/content_key.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/sha256.h"
#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::testing::HasSubstr;

TEST(ContentKeyTest, AFileIsTheSha256OfItsBytes) {
  testing::TempDir dir;
  testing::WriteAll(dir.Join("a.csv"), "abc");
  auto h = HashFile(dir.Join("a.csv"));
  ASSERT_TRUE(h.ok()) << h.status();
  // FIPS 180-2's example: SHA-256("abc").
  EXPECT_EQ(h->key, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(IsContentKey(h->key));
  EXPECT_EQ(h->stamp, *StampOf(dir.Join("a.csv")));
  EXPECT_EQ(h->stamp.size, 3);
}

TEST(ContentKeyTest, TheStampMovesWhenTheFileIsRewrittenEvenWithItsOldMtime) {
  testing::TempDir dir;
  const std::string path = dir.Join("a.csv");
  testing::WriteAll(path, "abc");
  const FileStamp before = *StampOf(path);
  const auto mtime = std::filesystem::last_write_time(path);
  // Same size, mtime put back: only ctime tells the rewrite.
  testing::WriteAll(path, "abd");
  std::filesystem::last_write_time(path, mtime);
  const FileStamp after = *StampOf(path);
  EXPECT_EQ(after.size, before.size);
  EXPECT_EQ(after.mtime_ns, before.mtime_ns);
  EXPECT_NE(after, before) << "a key cached for the old bytes must not be reused";
  // A hard link is the same (device, inode): the same stamp.
  ASSERT_EQ(link(path.c_str(), dir.Join("hard.csv").c_str()), 0);
  EXPECT_EQ(*StampOf(dir.Join("hard.csv")), *StampOf(path));
}

TEST(ContentKeyTest, MissingFilesAndDirectoriesAreRefusedByName) {
  testing::TempDir dir;
  auto missing = HashFile(dir.Join("nope.csv"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nope.csv' does not exist"));
  auto directory = StampOf(dir.path());
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(directory.status().message(), HasSubstr("is not a regular file"));
}

TEST(ContentKeyTest, KeysAndLegacyKeysAreToldApart) {
  EXPECT_TRUE(IsContentKey("sha256:" + std::string(64, 'f')));
  EXPECT_FALSE(IsContentKey("sha256:" + std::string(63, 'f')));
  EXPECT_FALSE(IsContentKey("sha256:" + std::string(64, 'F'))) << "lower-case hex only";
  EXPECT_FALSE(IsContentKey("/data/a.csv"));
  EXPECT_EQ(LegacyPathKey("/data/./x/../a.csv"), "path:/data/a.csv");
  EXPECT_TRUE(IsLegacyKey(LegacyPathKey("/data/a.csv")));
  EXPECT_FALSE(IsLegacyKey("path:"));
  EXPECT_FALSE(IsLegacyKey("sha256:" + std::string(64, 'f')));
}

}  // namespace
}  // namespace dpfleet::server
