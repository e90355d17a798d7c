#include "common/gpu/cuda_arch.h"

#include <cctype>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace dpfleet::gpu {
namespace {

// "sm_90a" -> (9, 0, 'a'); "compute_120" -> (12, 0, 0). The last digit is
// the minor version, the ones before it the major.
bool SplitArch(absl::string_view arch, absl::string_view prefix, int* major, int* minor, char* suffix) {
  if (!absl::ConsumePrefix(&arch, prefix)) return false;
  *suffix = 0;
  if (!arch.empty() && std::isalpha(static_cast<unsigned char>(arch.back()))) {
    *suffix = arch.back();
    arch.remove_suffix(1);
  }
  int value = 0;
  if (arch.size() < 2 || !absl::SimpleAtoi(arch, &value)) return false;
  *major = value / 10;
  *minor = value % 10;
  return true;
}

}  // namespace

CudaArchList ParseCudaArchFlags(absl::string_view build_config) {
  CudaArchList out;
  const size_t at = build_config.find("NVCC architecture flags:");
  if (at == absl::string_view::npos) return out;
  absl::string_view line = build_config.substr(at);
  line = line.substr(0, line.find('\n'));
  for (absl::string_view item : absl::StrSplit(line, absl::ByAnyChar("; "))) {
    if (!absl::ConsumePrefix(&item, "arch=")) continue;
    const size_t code = item.find("code=");
    if (code == absl::string_view::npos) continue;
    absl::string_view codes = item.substr(code + 5);
    absl::ConsumePrefix(&codes, "[");
    absl::ConsumeSuffix(&codes, "]");
    for (absl::string_view c : absl::StrSplit(codes, ',')) {
      if (absl::StartsWith(c, "sm_")) out.sass.emplace_back(c);
      if (absl::StartsWith(c, "compute_")) out.ptx.emplace_back(c);
    }
  }
  return out;
}

std::string ArchListString(const CudaArchList& archs) {
  std::string s = absl::StrJoin(archs.sass, ", ");
  if (!archs.ptx.empty()) absl::StrAppend(&s, s.empty() ? "" : ", ", "PTX ", absl::StrJoin(archs.ptx, ", "));
  return s;
}

absl::Status CheckCudaCapability(int major, int minor, const CudaArchList& archs) {
  if (archs.sass.empty() && archs.ptx.empty()) return absl::OkStatus();
  int m = 0, n = 0;
  char suffix = 0;
  for (const std::string& a : archs.sass) {
    if (!SplitArch(a, "sm_", &m, &n, &suffix)) continue;
    if (m == major && (suffix == 'a' ? n == minor : n <= minor)) return absl::OkStatus();
  }
  for (const std::string& a : archs.ptx) {
    if (SplitArch(a, "compute_", &m, &n, &suffix) && (m < major || (m == major && n <= minor))) {
      return absl::OkStatus();
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("compute capability ", major, ".", minor, " is not supported by this LibTorch build, which has ",
                   "kernels for ", ArchListString(archs), " only (docs/OPERATIONS.md: which LibTorch build each ",
                   "GPU generation needs)"));
}

}  // namespace dpfleet::gpu
