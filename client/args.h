// Command-line arguments of one dpctl verb, parsed by CLI11: every verb
// spells flags the same way and refuses the same mistakes.
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
//
// The parsing itself is CLI11's (client/commands.h builds the help and the
// completion scripts from the same ArgSpec); this unit only turns what CLI11
// collected into plain maps and its exceptions into absl::Status.
#ifndef DPFLEET_CLIENT_ARGS_H_
#define DPFLEET_CLIENT_ARGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace CLI {
class App;
}  // namespace CLI

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

// Declares `spec`'s flags on a CLI11 app (for parsing, help and completion).
// `help` gives each flag's one-line description; flags without one get none.
void DeclareFlags(CLI::App* app, const ArgSpec& spec, const std::map<std::string, std::string>& help);

// What -o asks for. kText is the default table or sentence.
enum class OutputFormat { kText, kJson, kYaml, kWide, kName };

// The -o flag among `allowed` (text is always allowed): InvalidArgument
// naming the value and the formats the verb has.
absl::StatusOr<OutputFormat> OutputFormatRequested(const Args& args, const std::set<OutputFormat>& allowed);
// The spelling of a format ("json", ...).
const char* OutputFormatName(OutputFormat f);

// The -o flag: absent or "text" -> false, "json" -> true, anything else is
// InvalidArgument naming the value.
absl::StatusOr<bool> JsonOutputRequested(const Args& args);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_ARGS_H_
