#include "tests/testing/pums_files.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "absl/strings/str_split.h"

namespace dpfleet::testing {

std::string SharedStateFile(const std::string& file) {
  std::string shared;
  if (const char* env = std::getenv("DPFLEET_SHARED_DIR")) {
    shared = env;
  } else {
    const std::string source = __FILE__;  // <root>/tests/testing/pums_files.cc
    const size_t at = source.rfind("/tests/testing/");
    if (at == std::string::npos) return "";
    shared = source.substr(0, at) + "/../shared";
  }
  const std::string path = shared + "/data/pums/acs2024_1yr_states/" + file;
  return std::ifstream(path).good() ? path : "";
}

EsrCounts CountEsr(const std::string& path) {
  EsrCounts c;
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return c;
  const std::vector<std::string> header = absl::StrSplit(line, ',');
  const size_t esr = std::find(header.begin(), header.end(), "ESR") - header.begin();
  if (esr >= header.size()) return c;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const std::vector<std::string> f = absl::StrSplit(line, ',');
    ++c.rows;
    if (!f[esr].empty()) {
      ++c.with_esr;
      c.employed += f[esr] == "1" || f[esr] == "2" || f[esr] == "4" || f[esr] == "5";
    }
  }
  return c;
}

}  // namespace dpfleet::testing
