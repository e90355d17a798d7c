// FaultVfs: a SQLite VFS for tests that passes every call to the platform's
// VFS and fails on request — every fsync (xSync answers SQLITE_IOERR_FSYNC)
// or every write (xWrite answers SQLITE_IOERR_WRITE) — from the moment a
// fault is armed until it is cleared. This is how the tests make SQLite
// itself meet a failed fsync at commit: the transaction's pages are in the
// WAL file, the fsync that would make them durable fails, and SQLite's own
// error path runs (it never publishes the commit in the WAL index).
//
// Registered once per process under Name(); a SqliteStore opened with that
// VFS (SqliteStoreOptions::vfs) sees the faults, one opened without does
// not, and both share the same files and locks. Thread-safe.
//
// A sync that does not fail returns at once without reaching the disk:
// these tests stop and reopen stores inside one process, never the
// machine, so the page cache is as good as the disk, and a scenario of a
// hundred commits runs in a second. (The crash test with real processes,
// tests/integration/crash_consistency_test.cc, uses the platform's VFS.)
#ifndef DPFLEET_TESTS_TESTING_SERVER_FAULT_VFS_H_
#define DPFLEET_TESTS_TESTING_SERVER_FAULT_VFS_H_

#include <atomic>
#include <cstdint>

namespace dpfleet::testing {

class FaultVfs {
 public:
  // The process's one instance, registered with SQLite on first use.
  static FaultVfs& Get();

  const char* Name() const { return "dpfleet-fault"; }
  void FailSyncs(bool on) { fail_syncs_ = on; }
  void FailWrites(bool on) { fail_writes_ = on; }
  void Clear() {
    fail_syncs_ = false;
    fail_writes_ = false;
  }
  // Faults answered so far (so a test can tell that SQLite met one).
  int64_t failed_syncs() const { return failed_syncs_; }
  int64_t failed_writes() const { return failed_writes_; }

  // For the VFS callbacks.
  bool TakeSyncFault() {
    if (!fail_syncs_) return false;
    ++failed_syncs_;
    return true;
  }
  bool TakeWriteFault() {
    if (!fail_writes_) return false;
    ++failed_writes_;
    return true;
  }

 private:
  FaultVfs();
  std::atomic<bool> fail_syncs_{false};
  std::atomic<bool> fail_writes_{false};
  std::atomic<int64_t> failed_syncs_{0};
  std::atomic<int64_t> failed_writes_{0};
};

}  // namespace dpfleet::testing

#endif  // DPFLEET_TESTS_TESTING_SERVER_FAULT_VFS_H_
