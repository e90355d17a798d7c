#include "tests/testing/server/faulty_store.h"

#include "absl/strings/str_cat.h"
#include "tests/testing/server/fault_vfs.h"

namespace dpfleet::testing {

void FaultyStore::Arm(Fault fault, int64_t n) {
  absl::MutexLock lock(&mu_);
  fault_ = fault;
  nth_ = n;
  since_arm_ = 0;
}

int64_t FaultyStore::writes() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}

int64_t FaultyStore::faults() const {
  absl::MutexLock lock(&mu_);
  return faults_;
}

std::vector<std::string> FaultyStore::log() const {
  absl::MutexLock lock(&mu_);
  return log_;
}

void FaultyStore::Pause() {
  absl::MutexLock lock(&mu_);
  paused_ = true;
}

void FaultyStore::Resume() {
  absl::MutexLock lock(&mu_);
  paused_ = false;
}

void FaultyStore::AwaitPaused(int n) {
  absl::MutexLock lock(&mu_);
  auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return held_ >= n; };
  mu_.Await(absl::Condition(&enough));
}

FaultyStore::Verdict FaultyStore::Next(const std::string& what) {
  absl::MutexLock lock(&mu_);
  if (paused_) {
    ++held_;
    auto resumed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !paused_; };
    mu_.Await(absl::Condition(&resumed));
    --held_;
  }
  ++writes_;
  log_.push_back(what);
  ++since_arm_;
  Verdict v = Verdict::kPass;
  switch (fault_) {
    case Fault::kNone:
      break;
    case Fault::kEveryWrite:
      v = Verdict::kRefuse;
      break;
    case Fault::kNthWrite:
      if (since_arm_ == nth_) v = Verdict::kRefuse;
      break;
    case Fault::kNthFsync:
      if (since_arm_ == nth_) v = Verdict::kFailFsync;
      break;
  }
  if (v != Verdict::kPass) ++faults_;
  return v;
}

template <typename T, typename Fn>
T FaultyStore::Write(const std::string& what, Fn write) {
  switch (Next(what)) {
    case Verdict::kPass:
      return write();
    case Verdict::kRefuse:
      return absl::UnavailableError(absl::StrCat("state store: ", what, ": disk I/O error (injected)"));
    case Verdict::kFailFsync: {
      FaultVfs::Get().FailSyncs(true);
      T result = write();
      FaultVfs::Get().FailSyncs(false);
      return result;
    }
  }
  return write();
}

absl::StatusOr<std::string> FaultyStore::NextJobId() {
  return Write<absl::StatusOr<std::string>>("reserve a job id", [&] { return inner_->NextJobId(); });
}

absl::Status FaultyStore::PutJob(const server::JobRecord& job) {
  return Write<absl::Status>("store job " + job.job_id, [&] { return inner_->PutJob(job); });
}

absl::Status FaultyStore::CommitJob(const server::JobCommit& commit) {
  return Write<absl::Status>("store job " + commit.job.job_id, [&] { return inner_->CommitJob(commit); });
}

absl::StatusOr<bool> FaultyStore::Charge(const server::LedgerEntry& entry) {
  return Write<absl::StatusOr<bool>>(
      absl::StrCat(entry.mechanism == server::Mechanism::kEval ? "charge the eval release of epoch " : "charge epoch ",
                   entry.epoch, " of job ", entry.job_id),
      [&] { return inner_->Charge(entry); });
}

absl::Status FaultyStore::PutDataset(const std::string& name, const std::string& record_json) {
  return Write<absl::Status>("store dataset " + name, [&] { return inner_->PutDataset(name, record_json); });
}

absl::Status FaultyStore::DeleteDataset(const std::string& name) {
  return Write<absl::Status>("delete dataset " + name, [&] { return inner_->DeleteDataset(name); });
}

absl::Status FaultyStore::PutModel(const std::string& job_id, const std::string& data) {
  return Write<absl::Status>("store the model of " + job_id, [&] { return inner_->PutModel(job_id, data); });
}

absl::StatusOr<server::LogAppendResult> FaultyStore::AppendJobLogs(const std::string& job_id,
                                                                   const std::vector<server::LogLine>& lines,
                                                                   const server::LogLimits& limits,
                                                                   int64_t worker_dropped) {
  return Write<absl::StatusOr<server::LogAppendResult>>(
      absl::StrCat("store ", lines.size(), " log line(s) of ", job_id),
      [&] { return inner_->AppendJobLogs(job_id, lines, limits, worker_dropped); });
}

absl::Status FaultyStore::PutBudgets(const std::vector<server::BudgetRecord>& budgets) {
  return Write<absl::Status>(absl::StrCat("store the budgets of ", budgets.size(), " file(s)"),
                             [&] { return inner_->PutBudgets(budgets); });
}

absl::Status FaultyStore::PutContentKey(const server::FileStamp& stamp, const std::string& key) {
  return Write<absl::Status>("store the content key " + key, [&] { return inner_->PutContentKey(stamp, key); });
}

absl::Status FaultyStore::PutFilePath(const std::string& path, const std::string& key, int64_t seen_ms) {
  return Write<absl::Status>("store the file at " + path, [&] { return inner_->PutFilePath(path, key, seen_ms); });
}

absl::StatusOr<server::TokenRecord> FaultyStore::PutToken(server::TokenRecord token) {
  return Write<absl::StatusOr<server::TokenRecord>>("store token " + token.name,
                                                    [&] { return inner_->PutToken(token); });
}

absl::StatusOr<int> FaultyStore::RevokeTokens(const std::string& name, int64_t now_ms) {
  return Write<absl::StatusOr<int>>("revoke the tokens of " + name, [&] { return inner_->RevokeTokens(name, now_ms); });
}

absl::Status FaultyStore::AppendAudit(const server::AuditRecord& record) {
  return Write<absl::Status>("append the audit entry of " + record.action, [&] { return inner_->AppendAudit(record); });
}

absl::StatusOr<uint64_t> FaultyStore::SplitKey() {
  return Write<absl::StatusOr<uint64_t>>("store the split key", [&] { return inner_->SplitKey(); });
}

}  // namespace dpfleet::testing
