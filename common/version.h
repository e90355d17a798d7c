// What build a binary is: the release version from CMake's project(), the
// commit it was built from (git describe, "unknown" outside a checkout) and
// the build type. Every binary's --version and the coordinator's GetVersion
// RPC and dpfleet_build_info metric report the same fields.
//
// kProtocolVersion is the version of the coordinator–worker protocol
// (proto/dpfleet/v1/worker.proto and the meaning of its fields). A worker
// whose protocol version differs from the coordinator's is refused at
// registration: an old worker could otherwise train under rules the
// coordinator no longer accounts for.
#ifndef DPFLEET_COMMON_VERSION_H_
#define DPFLEET_COMMON_VERSION_H_

#include <string>

#include "absl/strings/string_view.h"

namespace dpfleet {

inline constexpr int kProtocolVersion = 1;

struct BuildInfo {
  std::string version;     // e.g. 0.1.0
  std::string git;         // git describe --always --dirty --tags, or "unknown"
  std::string build_type;  // CMAKE_BUILD_TYPE
};

// Defined in the build-generated source (cmake/BuildInfo.cmake).
const BuildInfo& GetBuildInfo();

// "PROGRAM VERSION (git GIT, BUILD_TYPE build, protocol N)", the first line
// of every --version.
std::string VersionLine(absl::string_view program);

}  // namespace dpfleet

#endif  // DPFLEET_COMMON_VERSION_H_
