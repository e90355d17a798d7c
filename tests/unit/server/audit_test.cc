// The audit trail (server/rpc/audit.h) over a store that refuses writes on
// request: an entry the store refused is kept and written, in order and
// ahead of newer ones, once the store works; the failure is counted; and
// entries beyond the bound are dropped with a note in the next one written.
#include "server/rpc/audit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "server/core/sqlite_store.h"
#include "tests/testing/server/fault_vfs.h"
#include "tests/testing/server/faulty_store.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::server {
namespace {

using ::dpfleet::testing::FaultyStore;
using ::testing::HasSubstr;

class AuditTrailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Through FaultVfs (whose fsyncs return at once): thousands of entries
    // are written here.
    SqliteStoreOptions options;
    options.vfs = dpfleet::testing::FaultVfs::Get().Name();
    store_ = *SqliteStore::Open(dir_.path(), options);
    faulty_ = std::make_unique<FaultyStore>(store_.get());
    audit_ = std::make_unique<AuditTrail>(faulty_.get(), &clock_);
  }
  void Record(const std::string& target) {
    clock_.AdvanceMs(1);
    audit_->Record(Identity::User("alice", Role::kAnalyst), "SubmitJob", target, absl::OkStatus());
  }
  // The trail on disk, as "target" in id order.
  std::vector<std::string> OnDisk() {
    std::vector<std::string> out;
    for (const AuditRecord& r : *store_->ListAudit(0, 100'000)) out.push_back(r.target);
    return out;
  }

  testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<FaultyStore> faulty_;
  std::unique_ptr<AuditTrail> audit_;
};

TEST_F(AuditTrailTest, AnEntryTheStoreRefusedIsWrittenInOrderOnceItWorks) {
  Record("job-1");
  faulty_->Arm(FaultyStore::Fault::kEveryWrite);
  Record("job-2");
  Record("job-3");
  EXPECT_EQ(OnDisk(), std::vector<std::string>{"job-1"});
  EXPECT_EQ(audit_->pending(), 2u);
  const BackgroundErrors::Snapshot errors = audit_->background_errors();
  EXPECT_GE(errors.count, 2);
  EXPECT_THAT(errors.last, HasSubstr("writing the audit entry of SubmitJob"));
  EXPECT_THAT(errors.last, HasSubstr("UNAVAILABLE"));
  audit_->Flush();
  EXPECT_EQ(audit_->pending(), 2u) << "still refused: still held";
  faulty_->Disarm();
  Record("job-4");
  EXPECT_EQ(OnDisk(), (std::vector<std::string>{"job-1", "job-2", "job-3", "job-4"}));
  EXPECT_EQ(audit_->pending(), 0u);
  const std::vector<AuditRecord> rows = *store_->ListAudit(0, 10);
  EXPECT_LT(rows[1].time_ms, rows[3].time_ms) << "an entry keeps the time of the call it records";
}

TEST_F(AuditTrailTest, FlushWritesWhatIsHeldWithoutANewEntry) {
  faulty_->Arm(FaultyStore::Fault::kNthWrite, 1);
  Record("job-1");
  EXPECT_TRUE(OnDisk().empty());
  audit_->Flush();
  EXPECT_EQ(OnDisk(), std::vector<std::string>{"job-1"});
}

TEST_F(AuditTrailTest, BeyondTheBoundTheOldestGoAndTheNextEntrySaysHowMany) {
  faulty_->Arm(FaultyStore::Fault::kEveryWrite);
  for (std::size_t i = 0; i < AuditTrail::kMaxPending + 3; ++i) Record("job-" + std::to_string(i));
  EXPECT_EQ(audit_->pending(), AuditTrail::kMaxPending);
  faulty_->Disarm();
  audit_->Flush();
  const std::vector<AuditRecord> rows = *store_->ListAudit(0, 100'000);
  ASSERT_EQ(rows.size(), AuditTrail::kMaxPending);
  EXPECT_EQ(rows[0].target, "job-3") << "the three oldest went";
  EXPECT_THAT(rows[0].detail, HasSubstr("+3 audit entries lost while the state store refused them"));
  EXPECT_THAT(rows[1].detail, ::testing::Not(HasSubstr("lost")));
}

}  // namespace
}  // namespace dpfleet::server
