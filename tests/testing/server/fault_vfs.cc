#include "tests/testing/server/fault_vfs.h"

#include <sqlite3.h>

#include <cstdlib>

namespace dpfleet::testing {
namespace {

// The platform's VFS, which does all the work.
sqlite3_vfs* Real() { return sqlite3_vfs_find(nullptr); }

// An open file: SQLite's handle, followed in the same allocation by the
// platform VFS's own file object.
struct FaultFile {
  sqlite3_file base;
  sqlite3_file* real;
};

sqlite3_file* RealFile(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f)->real; }
const sqlite3_io_methods* RealMethods(sqlite3_file* f) { return RealFile(f)->pMethods; }

int Close(sqlite3_file* f) { return RealMethods(f)->xClose(RealFile(f)); }
int Read(sqlite3_file* f, void* buf, int n, sqlite3_int64 offset) {
  return RealMethods(f)->xRead(RealFile(f), buf, n, offset);
}
int Write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 offset) {
  if (FaultVfs::Get().TakeWriteFault()) return SQLITE_IOERR_WRITE;
  return RealMethods(f)->xWrite(RealFile(f), buf, n, offset);
}
int Truncate(sqlite3_file* f, sqlite3_int64 size) { return RealMethods(f)->xTruncate(RealFile(f), size); }
int Sync(sqlite3_file*, int) {
  // See the header: nothing here outlives the process's page cache.
  return FaultVfs::Get().TakeSyncFault() ? SQLITE_IOERR_FSYNC : SQLITE_OK;
}
int FileSize(sqlite3_file* f, sqlite3_int64* size) { return RealMethods(f)->xFileSize(RealFile(f), size); }
int Lock(sqlite3_file* f, int level) { return RealMethods(f)->xLock(RealFile(f), level); }
int Unlock(sqlite3_file* f, int level) { return RealMethods(f)->xUnlock(RealFile(f), level); }
int CheckReservedLock(sqlite3_file* f, int* out) { return RealMethods(f)->xCheckReservedLock(RealFile(f), out); }
int FileControl(sqlite3_file* f, int op, void* arg) { return RealMethods(f)->xFileControl(RealFile(f), op, arg); }
int SectorSize(sqlite3_file* f) { return RealMethods(f)->xSectorSize(RealFile(f)); }
int DeviceCharacteristics(sqlite3_file* f) { return RealMethods(f)->xDeviceCharacteristics(RealFile(f)); }
// WAL mode needs the shared-memory methods (version 2) of the platform.
int ShmMap(sqlite3_file* f, int page, int page_size, int extend, void volatile** out) {
  return RealMethods(f)->xShmMap(RealFile(f), page, page_size, extend, out);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return RealMethods(f)->xShmLock(RealFile(f), offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) { RealMethods(f)->xShmBarrier(RealFile(f)); }
int ShmUnmap(sqlite3_file* f, int delete_flag) { return RealMethods(f)->xShmUnmap(RealFile(f), delete_flag); }
int Fetch(sqlite3_file* f, sqlite3_int64 offset, int n, void** out) {
  return RealMethods(f)->xFetch(RealFile(f), offset, n, out);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 offset, void* p) { return RealMethods(f)->xUnfetch(RealFile(f), offset, p); }

const sqlite3_io_methods kMethods = {
    3,
    Close,
    Read,
    Write,
    Truncate,
    Sync,
    FileSize,
    Lock,
    Unlock,
    CheckReservedLock,
    FileControl,
    SectorSize,
    DeviceCharacteristics,
    ShmMap,
    ShmLock,
    ShmBarrier,
    ShmUnmap,
    Fetch,
    Unfetch,
};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  FaultFile* f = reinterpret_cast<FaultFile*>(file);
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  f->real->pMethods = nullptr;
  const int rc = Real()->xOpen(Real(), name, f->real, flags, out_flags);
  // SQLite closes whatever has methods, even after a failed open.
  f->base.pMethods = f->real->pMethods != nullptr ? &kMethods : nullptr;
  return rc;
}

// Everything else is the platform's, called with the platform's VFS.
int Delete(sqlite3_vfs*, const char* name, int sync_dir) { return Real()->xDelete(Real(), name, sync_dir); }
int Access(sqlite3_vfs*, const char* name, int flags, int* out) { return Real()->xAccess(Real(), name, flags, out); }
int FullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return Real()->xFullPathname(Real(), name, n, out);
}
void* DlOpen(sqlite3_vfs*, const char* name) { return Real()->xDlOpen(Real(), name); }
void DlError(sqlite3_vfs*, int n, char* out) { Real()->xDlError(Real(), n, out); }
void (*DlSym(sqlite3_vfs*, void* handle, const char* symbol))(void) { return Real()->xDlSym(Real(), handle, symbol); }
void DlClose(sqlite3_vfs*, void* handle) { Real()->xDlClose(Real(), handle); }
int Randomness(sqlite3_vfs*, int n, char* out) { return Real()->xRandomness(Real(), n, out); }
int Sleep(sqlite3_vfs*, int us) { return Real()->xSleep(Real(), us); }
int CurrentTime(sqlite3_vfs*, double* out) { return Real()->xCurrentTime(Real(), out); }
int GetLastError(sqlite3_vfs*, int n, char* out) { return Real()->xGetLastError(Real(), n, out); }
int CurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* out) { return Real()->xCurrentTimeInt64(Real(), out); }

}  // namespace

FaultVfs::FaultVfs() {
  static sqlite3_vfs vfs;
  sqlite3_vfs* real = Real();
  vfs.iVersion = 2;
  vfs.szOsFile = static_cast<int>(sizeof(FaultFile)) + real->szOsFile;
  vfs.mxPathname = real->mxPathname;
  vfs.zName = "dpfleet-fault";
  vfs.xOpen = Open;
  vfs.xDelete = Delete;
  vfs.xAccess = Access;
  vfs.xFullPathname = FullPathname;
  vfs.xDlOpen = DlOpen;
  vfs.xDlError = DlError;
  vfs.xDlSym = DlSym;
  vfs.xDlClose = DlClose;
  vfs.xRandomness = Randomness;
  vfs.xSleep = Sleep;
  vfs.xCurrentTime = CurrentTime;
  vfs.xGetLastError = GetLastError;
  vfs.xCurrentTimeInt64 = CurrentTimeInt64;
  if (sqlite3_vfs_register(&vfs, /*makeDflt=*/0) != SQLITE_OK) std::abort();
}

FaultVfs& FaultVfs::Get() {
  static FaultVfs* vfs = new FaultVfs();
  return *vfs;
}

}  // namespace dpfleet::testing
