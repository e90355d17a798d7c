#include "common/cli_flags.h"

namespace dpfleet {

DashedFlags::DashedFlags(int argc, char** argv) {
  bool rest = false;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") rest = true;
    if (i > 0 && !rest && a.size() > 2 && a.compare(0, 2, "--") == 0) {
      const std::size_t end = std::min(a.find('='), a.size());
      for (std::size_t k = 2; k < end; ++k) {
        if (a[k] == '-') a[k] = '_';
      }
    }
    args_.push_back(a);
  }
  for (std::string& a : args_) ptrs_.push_back(a.data());
  ptrs_.push_back(nullptr);
}

}  // namespace dpfleet
