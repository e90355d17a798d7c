// Lets the daemons accept the documented dashed flag spelling
// (--state-dir, --work-dir) as well as Abseil's underscore one.
#ifndef DPFLEET_COMMON_CLI_FLAGS_H_
#define DPFLEET_COMMON_CLI_FLAGS_H_

#include <string>
#include <vector>

namespace dpfleet {

// Rewrites "--a-b[=v]" to "--a_b[=v]" (flag names only; values untouched,
// nothing after a bare "--"). The returned strings back the char* vector.
class DashedFlags {
 public:
  DashedFlags(int argc, char** argv);
  int argc() const { return static_cast<int>(ptrs_.size()) - 1; }
  char** argv() { return ptrs_.data(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> ptrs_;
};

}  // namespace dpfleet

#endif  // DPFLEET_COMMON_CLI_FLAGS_H_
