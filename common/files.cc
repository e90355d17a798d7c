#include "common/files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dpfleet {

absl::Status WriteFileAtomically(const std::string& path, const std::string& bytes) {
  const std::string partial = path + ".partial";
  std::FILE* f = std::fopen(partial.c_str(), "wb");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot create '", partial, "': ", std::strerror(errno)));
  }
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  if (std::fclose(f) != 0 || !ok) {
    std::remove(partial.c_str());
    return absl::InternalError(absl::StrCat("write to '", partial, "' failed"));
  }
  if (std::rename(partial.c_str(), path.c_str()) != 0) {
    std::remove(partial.c_str());
    return absl::InternalError(absl::StrCat("cannot rename '", partial, "' to '", path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace dpfleet
