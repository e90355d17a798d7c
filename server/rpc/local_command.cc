#include "server/rpc/local_command.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace dpfleet::server {

std::optional<std::map<std::string, std::string>> ParseLocalFlags(const std::vector<std::string>& args,
                                                                  const LocalFlagSpec& spec, std::ostream& err) {
  std::map<std::string, std::string> values;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> value;
    if (const auto eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    if (flag.rfind("--", 0) == 0) std::replace(flag.begin() + 2, flag.end(), '_', '-');
    if (spec.boolean.count(flag)) {
      if (value) {
        err << spec.command << ": " << flag << " takes no value\n" << spec.usage;
        return std::nullopt;
      }
      value = "true";
    } else if (spec.valued.count(flag)) {
      if (!value) {
        if (i + 1 >= args.size()) {
          err << spec.command << ": " << flag << " needs a value\n" << spec.usage;
          return std::nullopt;
        }
        value = args[++i];
      }
    } else {
      err << spec.command << ": unknown " << (flag.rfind("-", 0) == 0 ? "flag " : "argument ") << flag << "\n"
          << spec.usage;
      return std::nullopt;
    }
    if (!values.emplace(flag, *value).second) {
      err << spec.command << ": " << flag << " given more than once\n";
      return std::nullopt;
    }
  }
  for (const std::string& required : spec.required) {
    if (values[required].empty()) {
      err << spec.command << ": " << required << " is required\n" << spec.usage;
      return std::nullopt;
    }
  }
  return values;
}

std::string LocalUserName() {
  const struct passwd* user = getpwuid(getuid());
  return absl::StrCat(user != nullptr ? user->pw_name : "uid", " (uid ", getuid(), ")");
}

}  // namespace dpfleet::server
