#include "client/config_cli.h"

#include <filesystem>

#include "absl/strings/str_format.h"
#include "client/args.h"
#include "client/cli.h"
#include "client/commands.h"
#include "client/connection.h"
#include "client/output.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {

int RunConfigCommand(const std::vector<std::string>& args, const std::string& config_path, bool config_required,
                     std::ostream& out, std::ostream& err) {
  std::size_t depth = 0;
  std::vector<std::string> path = {"config"};
  path.insert(path.end(), args.begin(), args.end());
  const VerbDef* def = FindVerb(path, &depth);
  if (def == nullptr || def->path.size() < 2) {
    err << "dpctl config: expected get-contexts | current-context | use-context NAME\n";
    return kExitUsage;
  }
  const std::string who = "dpctl config " + def->path[1];
  absl::StatusOr<Args> p = ParseArgs({path.begin() + static_cast<std::ptrdiff_t>(depth), path.end()}, def->spec);
  if (!p.ok()) {
    err << who << ": " << p.status().message() << "\n";
    return kExitUsage;
  }
  std::error_code ec;
  if (config_required && !std::filesystem::exists(config_path, ec)) {
    err << "dpctl: $DPFLEET_CONFIG: '" << config_path << "' does not exist\n";
    return kExitUsage;
  }
  absl::StatusOr<ConfigFile> file = LoadConfig(config_path);
  if (!file.ok()) {
    err << "dpctl: " << file.status().message() << "\n";
    return kExitUsage;
  }
  if (def->path[1] == "use-context") {
    if (p->positional.size() != 1) {
      err << who << ": expected NAME\n";
      return kExitUsage;
    }
    if (absl::Status s = SetCurrentContext(config_path, p->positional[0]); !s.ok()) {
      err << "dpctl config " << s.message() << "\n";
      return kExitUsage;
    }
    out << "current context is now " << p->positional[0] << " (" << config_path << ")\n";
    return kExitOk;
  }
  if (!p->positional.empty()) {
    err << who << ": takes no arguments\n";
    return kExitUsage;
  }
  if (def->path[1] == "current-context") {
    if (file->current_context.empty()) {
      err << "dpctl config current-context: " << config_path << " sets no current-context\n";
      return kExitUsage;
    }
    out << file->current_context << "\n";
    return kExitOk;
  }
  absl::StatusOr<OutputFormat> format = OutputFormatRequested(*p, def->outputs);
  if (!format.ok()) {
    err << who << ": " << format.status().message() << "\n";
    return kExitUsage;
  }
  if (*format == OutputFormat::kText) {
    out << absl::StrFormat("%-8s %-20s %-28s %-28s %s\n", "CURRENT", "NAME", "SERVER", "CA", "TOKEN FILE");
    for (const auto& [name, c] : file->contexts) {
      out << absl::StrFormat("%-8s %-20s %-28s %-28s %s\n", name == file->current_context ? "*" : "", name,
                             c.server.empty() ? "-" : c.server, c.ca.empty() ? "-" : c.ca,
                             c.token_file.empty() ? "-" : c.token_file);
    }
    return kExitOk;
  }
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& [name, c] : file->contexts) {
    arr.push_back({{"name", name},
                   {"current", name == file->current_context},
                   {"server", c.server},
                   {"ca", c.ca},
                   {"token_file", c.token_file}});
  }
  const std::string json = nlohmann::json{{"contexts", arr}, {"current_context", file->current_context}}.dump(2);
  absl::Status s = absl::OkStatus();
  if (*format == OutputFormat::kJson) out << json << "\n";
  if (*format == OutputFormat::kYaml) s = JsonToYaml(json, out);
  if (*format == OutputFormat::kName) s = JsonToNames(json, out);
  return s.ok() ? kExitOk : ReportError(s, err);
}

}  // namespace dpfleet::client
