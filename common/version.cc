#include "common/version.h"

#include "absl/strings/str_cat.h"

namespace dpfleet {

std::string VersionLine(absl::string_view program) {
  const BuildInfo& b = GetBuildInfo();
  return absl::StrCat(program, " ", b.version, " (git ", b.git, ", ", b.build_type, " build, protocol ",
                      kProtocolVersion, ")");
}

}  // namespace dpfleet
