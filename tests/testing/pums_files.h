// Test helpers for the real PUMS files under ../shared/data/pums: where
// they are, and an independent count of what the employment task keeps.
#ifndef DPFLEET_TESTS_TESTING_PUMS_FILES_H_
#define DPFLEET_TESTS_TESTING_PUMS_FILES_H_

#include <cstdint>
#include <string>

namespace dpfleet::testing {

// Path of acs2024_1yr_states/<file>, or "" when the shared data is absent
// (tests then skip). Uses $DPFLEET_SHARED_DIR (ctest sets it), else the
// shared folder next to the checkout this helper was compiled from.
std::string SharedStateFile(const std::string& file);

// Counted with a plain comma split, independently of the project's reader.
struct EsrCounts {
  int64_t rows = 0;      // data rows
  int64_t with_esr = 0;  // ESR not blank: the employment task's universe
  int64_t employed = 0;  // ESR in {1, 2, 4, 5}
};
EsrCounts CountEsr(const std::string& path);

}  // namespace dpfleet::testing

#endif  // DPFLEET_TESTS_TESTING_PUMS_FILES_H_
