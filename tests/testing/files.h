// Test helpers: whole-file reads and writes (binary-safe).
#ifndef DPFLEET_TESTS_TESTING_FILES_H_
#define DPFLEET_TESTS_TESTING_FILES_H_

#include <string>

namespace dpfleet::testing {

// The file's bytes; empty when it cannot be read.
std::string ReadAll(const std::string& path);
// Replaces the file's contents with `bytes`.
void WriteAll(const std::string& path, const std::string& bytes);

}  // namespace dpfleet::testing

#endif  // DPFLEET_TESTS_TESTING_FILES_H_
