// Test helper: a fresh temporary directory removed at scope exit.
#ifndef DPFLEET_TESTS_TESTING_TEMP_DIR_H_
#define DPFLEET_TESTS_TESTING_TEMP_DIR_H_

#include <string>

namespace dpfleet::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace dpfleet::testing

#endif  // DPFLEET_TESTS_TESTING_TEMP_DIR_H_
