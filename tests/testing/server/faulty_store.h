// FaultyStore: a Store for tests that passes every call to a real store and
// makes writes fail on request, so the coordinator can be driven through
// each of its writes failing in turn. Reads always pass.
//
//   kNone        every write passes
//   kEveryWrite  every write is refused before it reaches the store
//   kNthWrite    the Nth write after Arm is refused; the others pass
//   kNthFsync    the Nth write after Arm goes to SQLite, whose fsync at
//                commit fails (FaultVfs): the real store's own error path.
//                The inner store must be a SqliteStore opened with FaultVfs.
//
// A refused write answers Unavailable naming the write, as a real I/O
// error would. Meant for one test thread at a time (kNthFsync arms the
// process-wide VFS around the one write).
//
// Pause() holds every later write at its start until Resume(), like a disk
// that takes its time; AwaitPaused(n) returns once n writes are held, so a
// test can act while a write is in flight without sleeping.
#ifndef DPFLEET_TESTS_TESTING_SERVER_FAULTY_STORE_H_
#define DPFLEET_TESTS_TESTING_SERVER_FAULTY_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/core/store.h"

namespace dpfleet::testing {

class FaultyStore final : public server::Store {
 public:
  enum class Fault { kNone, kEveryWrite, kNthWrite, kNthFsync };

  // `inner` is not owned.
  explicit FaultyStore(server::Store* inner) : inner_(inner) {}

  // Arms a fault; `n` counts from 1 for the Nth-write faults.
  void Arm(Fault fault, int64_t n = 0);
  void Disarm() { Arm(Fault::kNone); }
  // Writes seen since construction, and the faults answered so far.
  int64_t writes() const;
  int64_t faults() const;
  // What each write since construction was ("store job job-000001"), in order.
  std::vector<std::string> log() const;

  void Pause();
  void Resume();
  void AwaitPaused(int n);

  std::vector<std::string> MigrationNotes() const override { return inner_->MigrationNotes(); }
  absl::Status Ping() override { return inner_->Ping(); }

  absl::StatusOr<std::string> NextJobId() override;
  absl::Status PutJob(const server::JobRecord& job) override;
  absl::Status CommitJob(const server::JobCommit& commit) override;
  absl::StatusOr<std::vector<server::JobRecord>> LoadJobs() override { return inner_->LoadJobs(); }

  absl::StatusOr<bool> Charge(const server::LedgerEntry& entry) override;
  absl::StatusOr<std::vector<server::LedgerEntry>> LedgerForJob(const std::string& job_id) override {
    return inner_->LedgerForJob(job_id);
  }
  absl::StatusOr<std::vector<server::LedgerEntry>> LedgerForFile(const std::string& file) override {
    return inner_->LedgerForFile(file);
  }
  absl::StatusOr<std::vector<std::string>> LedgerFiles() override { return inner_->LedgerFiles(); }

  absl::StatusOr<std::optional<std::string>> CachedContentKey(const server::FileStamp& stamp) override {
    return inner_->CachedContentKey(stamp);
  }
  absl::Status PutContentKey(const server::FileStamp& stamp, const std::string& key) override;
  absl::Status PutFilePath(const std::string& path, const std::string& key, int64_t seen_ms) override;
  absl::StatusOr<std::map<std::string, std::vector<std::string>>> FilePaths() override { return inner_->FilePaths(); }
  absl::StatusOr<std::optional<std::string>> FileAtPath(const std::string& path) override {
    return inner_->FileAtPath(path);
  }
  absl::StatusOr<bool> KnowsFile(const std::string& key) override { return inner_->KnowsFile(key); }

  absl::Status PutDataset(const std::string& name, const std::string& record_json) override;
  absl::StatusOr<std::vector<std::string>> LoadDatasets() override { return inner_->LoadDatasets(); }
  absl::Status DeleteDataset(const std::string& name) override;

  absl::Status PutModel(const std::string& job_id, const std::string& data) override;
  absl::StatusOr<BlobChunk> ReadCheckpoint(const std::string& job_id, int32_t epoch, int64_t offset,
                                           int64_t max_bytes) override {
    return inner_->ReadCheckpoint(job_id, epoch, offset, max_bytes);
  }
  absl::StatusOr<BlobChunk> ReadModel(const std::string& job_id, int64_t offset, int64_t max_bytes) override {
    return inner_->ReadModel(job_id, offset, max_bytes);
  }
  absl::StatusOr<std::optional<std::string>> ReadAuditReport(const std::string& job_id) override {
    return inner_->ReadAuditReport(job_id);
  }

  absl::Status PutBudgets(const std::vector<server::BudgetRecord>& budgets) override;
  absl::StatusOr<std::vector<server::BudgetRecord>> LoadBudgets() override { return inner_->LoadBudgets(); }

  absl::StatusOr<server::TokenRecord> PutToken(server::TokenRecord token) override;
  absl::StatusOr<std::optional<server::TokenRecord>> FindToken(const std::string& sha256) override {
    return inner_->FindToken(sha256);
  }
  absl::StatusOr<std::vector<server::TokenRecord>> ListTokens() override { return inner_->ListTokens(); }
  absl::StatusOr<int> RevokeTokens(const std::string& name, int64_t now_ms) override;

  absl::Status AppendAudit(const server::AuditRecord& record) override;
  absl::StatusOr<std::vector<server::AuditRecord>> ListAudit(int64_t after_id, int64_t limit) override {
    return inner_->ListAudit(after_id, limit);
  }

  absl::StatusOr<server::LogAppendResult> AppendJobLogs(const std::string& job_id,
                                                        const std::vector<server::LogLine>& lines,
                                                        const server::LogLimits& limits,
                                                        int64_t worker_dropped) override;
  absl::StatusOr<server::LogPage> ReadJobLogs(const std::string& job_id, const server::LogQuery& query) override {
    return inner_->ReadJobLogs(job_id, query);
  }

  // A write the first time (the key is drawn and stored), so it counts as one.
  absl::StatusOr<uint64_t> SplitKey() override;

 private:
  enum class Verdict { kPass, kRefuse, kFailFsync };
  // Counts a write and says what happens to it.
  Verdict Next(const std::string& what);
  // Runs `write` (a call on inner_) as the armed fault says.
  template <typename T, typename Fn>
  T Write(const std::string& what, Fn write);

  server::Store* const inner_;
  mutable absl::Mutex mu_;
  Fault fault_ ABSL_GUARDED_BY(mu_) = Fault::kNone;
  int64_t nth_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t since_arm_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t faults_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  int held_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace dpfleet::testing

#endif  // DPFLEET_TESTS_TESTING_SERVER_FAULTY_STORE_H_
