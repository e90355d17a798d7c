// Command-line arguments of one dpctl verb: one parser for every verb, so
// that every verb spells flags the same way and refuses the same mistakes.
//
//   --name VALUE | --name=VALUE | -o VALUE | -o=VALUE   (value flags)
//   --name V1 V2 ...   (list flags: every argument up to the next flag; may repeat)
//   --name             (switches)
//   anything else      (positionals, where the verb takes them)
//
// Refused, each with a message naming the argument: an unknown flag, a value
// flag without a value (the next argument being another --flag), a value flag
// given twice, a list flag with no value, a switch given a value, and a
// positional where the verb takes none. A value may itself start with a
// single dash ("--seed -1").
#ifndef DPFLEET_CLIENT_ARGS_H_
#define DPFLEET_CLIENT_ARGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dpfleet::client {

struct ArgSpec {
  std::set<std::string> values;    // flags with one value, spelled with their dashes ("--task", "-o")
  std::set<std::string> lists;     // flags with one or more values
  std::set<std::string> switches;  // flags without a value
  bool positionals = true;         // whether bare arguments are accepted
};

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;
  std::map<std::string, std::vector<std::string>> lists;
  std::set<std::string> switches;

  bool has(const std::string& flag) const {
    return values.count(flag) != 0 || lists.count(flag) != 0 || switches.count(flag) != 0;
  }
};

// InvalidArgument with the reason (no "dpctl" prefix) on a refused argument.
absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& args, const ArgSpec& spec);

// The -o flag: absent or "text" -> false, "json" -> true, anything else is
// InvalidArgument naming the value.
absl::StatusOr<bool> JsonOutputRequested(const Args& args);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_ARGS_H_
