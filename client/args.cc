#include "client/args.h"

#include <CLI/CLI.hpp>
#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace dpfleet::client {
namespace {

bool IsFlag(const std::string& a) { return a.size() > 1 && a[0] == '-'; }

// CLI11 spells "-o=json" as "-o" with the value "=json"; dpctl always took
// "-o=json", so the short form is split before CLI11 sees it.
std::vector<std::string> SplitShortEquals(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (const std::string& a : args) {
    if (a.size() > 3 && a[0] == '-' && a[1] != '-' && a[2] == '=') {
      out.push_back(a.substr(0, 2));
      out.push_back(a.substr(3));
    } else {
      out.push_back(a);
    }
  }
  return out;
}

// CLI11's messages name the option by all its names ("-o,--output"); ours
// name it as the user typed it.
std::string Reason(const CLI::Error& e) {
  std::string m = e.what();
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) != nullptr) {
    const std::string name = m.substr(0, m.find(':'));
    if (absl::StrContains(m, "At Most 1") || absl::StrContains(m, "at most 1")) {
      return absl::StrCat("flag ", name, " given more than once");
    }
    if (absl::StrContains(m, "override")) return absl::StrCat("flag ", name, " takes no value");
    if (absl::StrContains(m, "required") || absl::StrContains(m, "missing")) {
      return absl::StrCat("flag ", name, " needs a value");
    }
  }
  return m;
}

}  // namespace

void DeclareFlags(CLI::App* app, const ArgSpec& spec, const std::map<std::string, std::string>& help) {
  auto text = [&](const std::string& flag) {
    auto it = help.find(flag);
    return it == help.end() ? std::string() : it->second;
  };
  for (const std::string& flag : spec.values) {
    app->add_option(flag)
        ->description(text(flag))
        ->type_name("VALUE")
        ->multi_option_policy(CLI::MultiOptionPolicy::Throw);
  }
  for (const std::string& flag : spec.lists) {
    app->add_option(flag)
        ->description(text(flag))
        ->type_name("VALUE")
        ->expected(1, CLI::detail::expected_max_vector_size)
        ->allow_extra_args(true)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  }
  for (const std::string& flag : spec.switches) app->add_flag(flag)->description(text(flag))->disable_flag_override();
}

namespace {

// What CLI11 would accept but dpctl always refused: a value flag whose
// value is missing (CLI11 takes the next argument whatever it is, so
// "--task --follow" would set the task to "--follow") and a switch given a
// value (CLI11 reads "--follow=no" as false).
absl::Status CheckValuesPresent(const std::vector<std::string>& args, const ArgSpec& spec) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    const std::string name = a.substr(0, a.find('='));
    const bool inline_value = name.size() != a.size();
    if (spec.switches.count(name) && inline_value) {
      return absl::InvalidArgumentError(absl::StrCat("flag ", name, " takes no value"));
    }
    if (inline_value) continue;
    if (spec.values.count(name) && (i + 1 >= args.size() || absl::StartsWith(args[i + 1], "--"))) {
      return absl::InvalidArgumentError(absl::StrCat("flag ", name, " needs a value"));
    }
    if (spec.lists.count(name) && (i + 1 >= args.size() || IsFlag(args[i + 1]))) {
      return absl::InvalidArgumentError(absl::StrCat("flag ", name, " needs at least one value"));
    }
    if (spec.values.count(name)) ++i;  // its value may start with a dash ("--seed -1")
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& args, const ArgSpec& spec) {
  if (absl::Status s = CheckValuesPresent(SplitShortEquals(args), spec); !s.ok()) return s;
  CLI::App app;
  app.set_help_flag();  // --help is the verb table's (client/commands.h), not a flag of the verb
  app.allow_extras();
  app.positionals_at_end(false);
  DeclareFlags(&app, spec, {});
  std::vector<std::string> reversed = SplitShortEquals(args);
  std::reverse(reversed.begin(), reversed.end());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(Reason(e));
  }
  Args out;
  for (const std::string& extra : app.remaining()) {
    if (IsFlag(extra) && extra != "--") {
      const std::string name = extra.substr(0, extra.find('='));
      // A value flag CLI11 stopped at ("--task --follow"): it had no value.
      if (spec.values.count(name) || spec.lists.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat("flag ", name, " needs a value"));
      }
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", name));
    }
    if (!spec.positionals) return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", extra, "\""));
    if (extra != "--") out.positional.push_back(extra);
  }
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->count() == 0) continue;
    const std::string name = opt->get_name(false, true);
    std::string flag = name.substr(0, name.find(','));
    if (spec.switches.count(flag)) {
      out.switches.insert(flag);
    } else if (spec.lists.count(flag)) {
      std::vector<std::string>& list = out.lists[flag];
      list.insert(list.end(), opt->results().begin(), opt->results().end());
    } else if (!opt->results().empty()) {
      out.values[flag] = opt->results().front();
    }
  }
  return out;
}

const char* OutputFormatName(OutputFormat f) {
  switch (f) {
    case OutputFormat::kJson:
      return "json";
    case OutputFormat::kYaml:
      return "yaml";
    case OutputFormat::kWide:
      return "wide";
    case OutputFormat::kName:
      return "name";
    default:
      return "text";
  }
}

absl::StatusOr<OutputFormat> OutputFormatRequested(const Args& args, const std::set<OutputFormat>& allowed) {
  auto it = args.values.find("-o");
  if (it == args.values.end() || it->second == "text") return OutputFormat::kText;
  std::vector<std::string> names;
  for (OutputFormat f : allowed) {
    names.push_back(OutputFormatName(f));
    if (it->second == OutputFormatName(f)) return f;
  }
  names.push_back("text");
  return absl::InvalidArgumentError(
      absl::StrCat("-o: \"", it->second, "\" is not an output format (expected ", absl::StrJoin(names, ", "), ")"));
}

absl::StatusOr<bool> JsonOutputRequested(const Args& args) {
  auto it = args.values.find("-o");
  if (it == args.values.end() || it->second == "text") return false;
  if (it->second == "json") return true;
  return absl::InvalidArgumentError(
      absl::StrCat("-o: \"", it->second, "\" is not an output format (expected json or text)"));
}

}  // namespace dpfleet::client
