// dpctl's verb table: every verb and sub-verb with its flags, positionals
// and output formats, in one place. client/cli.cc dispatches on it, CLI11
// builds each verb's --help from it, and `dpctl completion bash|zsh`
// generates its scripts from it, so help, parsing and completion cannot
// drift apart.
//
// Never talks to the coordinator; plain data and text.
#ifndef DPFLEET_CLIENT_COMMANDS_H_
#define DPFLEET_CLIENT_COMMANDS_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/args.h"

namespace dpfleet::client {

struct VerbDef {
  std::vector<std::string> path;   // {"datasets", "add"}
  std::string positionals;         // usage of its bare arguments ("NAME"); empty: none
  std::string summary;             // one line
  ArgSpec spec;                    // its own flags (the connection flags are added for remote verbs)
  std::set<OutputFormat> outputs;  // what -o may say beyond text; empty with -o in spec: a file or json/text
  bool remote = true;              // talks to the coordinator
};

// Every verb, in help order. A path that is a prefix of others ("admin",
// "datasets") is a group; a group is also a verb when it appears here itself.
const std::vector<VerbDef>& Verbs();

// The verb whose path is the longest prefix of `args`; `depth` is its
// length. nullptr when args[0] is no verb.
const VerbDef* FindVerb(const std::vector<std::string>& args, std::size_t* depth);

// Whether `path` is a group (a prefix of another verb's path).
bool IsGroup(const std::vector<std::string>& path);

// --help of a verb or group (the root for an empty path), rendered by CLI11.
std::string HelpText(const std::vector<std::string>& path);

// The completion script for "bash" or "zsh"; InvalidArgument otherwise.
absl::StatusOr<std::string> CompletionScript(const std::string& shell);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_COMMANDS_H_
