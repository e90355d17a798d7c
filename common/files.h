// Small file helpers shared by the pipeline, the engine and the tools.
#ifndef DPFLEET_COMMON_FILES_H_
#define DPFLEET_COMMON_FILES_H_

#include <string>

#include "absl/status/status.h"

namespace dpfleet {

// Writes `bytes` to `path` through `path`.partial and a rename, so readers
// see the old file or the whole new one, never a part. NotFound when the
// partial file cannot be created, Internal when writing or renaming fails
// (the partial file is removed).
absl::Status WriteFileAtomically(const std::string& path, const std::string& bytes);

}  // namespace dpfleet

#endif  // DPFLEET_COMMON_FILES_H_
