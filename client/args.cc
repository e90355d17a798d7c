#include "client/args.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace dpfleet::client {
namespace {

// "-o" and every "--x" are flags; so is any other "-x" (an unknown flag, not
// a positional). A lone "-" is a positional.
bool IsFlag(const std::string& a) { return a.size() > 1 && a[0] == '-'; }
bool IsLongFlag(const std::string& a) { return a.size() > 2 && absl::StartsWith(a, "--"); }

}  // namespace

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& args, const ArgSpec& spec) {
  Args out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    if (!IsFlag(name)) {
      if (!spec.positionals) return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", name, "\""));
      out.positional.push_back(name);
      continue;
    }
    bool inline_value = false;
    std::string value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    if (spec.switches.count(name)) {
      if (inline_value) return absl::InvalidArgumentError(absl::StrCat("flag ", name, " takes no value"));
      out.switches.insert(name);
    } else if (spec.values.count(name)) {
      if (!inline_value) {
        if (i + 1 >= args.size() || IsLongFlag(args[i + 1])) {
          return absl::InvalidArgumentError(absl::StrCat("flag ", name, " needs a value"));
        }
        value = args[++i];
      }
      if (!out.values.emplace(name, value).second) {
        return absl::InvalidArgumentError(absl::StrCat("flag ", name, " given more than once"));
      }
    } else if (spec.lists.count(name)) {
      std::vector<std::string>& list = out.lists[name];
      const std::size_t before = list.size();
      if (inline_value) list.push_back(value);
      while (i + 1 < args.size() && !IsFlag(args[i + 1])) list.push_back(args[++i]);
      if (list.size() == before) {
        return absl::InvalidArgumentError(absl::StrCat("flag ", name, " needs at least one value"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", name));
    }
  }
  return out;
}

absl::StatusOr<bool> JsonOutputRequested(const Args& args) {
  auto it = args.values.find("-o");
  if (it == args.values.end() || it->second == "text") return false;
  if (it->second == "json") return true;
  return absl::InvalidArgumentError(
      absl::StrCat("-o: \"", it->second, "\" is not an output format (expected json or text)"));
}

}  // namespace dpfleet::client
