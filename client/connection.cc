#include "client/connection.h"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/status.h"

namespace dpfleet::client {
namespace {

std::string Slurp(const std::string& path, bool* ok) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  *ok = static_cast<bool>(f);
  return ss.str();
}

// Relative paths in the config file are relative to the file.
std::string NextTo(const std::string& config_path, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  return (std::filesystem::path(config_path).parent_path() / path).string();
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& where, const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": token_file '", path, "' cannot be read"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": token_file '", path, "' is readable by others (mode ",
                                                   absl::StrFormat("%04o", st.st_mode & 0777),
                                                   "); chmod 600 it"));
  }
  bool ok = false;
  std::string token(absl::StripAsciiWhitespace(Slurp(path, &ok)));
  if (!ok || token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": token_file '", path, "' is empty or unreadable"));
  }
  return token;
}

}  // namespace

std::string DefaultConfigPath() {
  std::string dir;
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != '\0') {
    dir = absl::StrCat(xdg, "/dpfleet/");
  } else {
    const char* home = std::getenv("HOME");
    dir = absl::StrCat(home ? home : "", "/.config/dpfleet/");
  }
  std::error_code ec;
  if (!std::filesystem::exists(dir + "config.yaml", ec) && std::filesystem::exists(dir + "dpctl.yaml", ec)) {
    return dir + "dpctl.yaml";
  }
  return dir + "config.yaml";
}

namespace {

// One context's keys (or the file's top-level ones, where `extra` are the
// other top-level keys the file may have).
absl::Status ReadContext(const std::string& where, const std::string& config_path, const YAML::Node& node,
                         const std::set<std::string>& extra, ContextSettings* out) {
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (extra.count(key)) continue;
    if (!kv.second.IsScalar()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, " must be a string"));
    }
    const std::string value = kv.second.as<std::string>();
    if (key == "server") {
      out->server = value;
    } else if (key == "ca") {
      out->ca = NextTo(config_path, value);
    } else if (key == "token_file") {
      out->token_file = NextTo(config_path, value);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": ", key, " is not a known setting (server, ca, token_file", extra.empty() ? "" : ", contexts, current-context",
          ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ConfigFile> LoadConfig(const std::string& config_path) {
  ConfigFile file;
  std::error_code ec;
  if (config_path.empty() || !std::filesystem::exists(config_path, ec)) return file;
  const std::string where = absl::StrCat("config ", config_path);
  YAML::Node root;
  try {
    root = YAML::LoadFile(config_path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", e.what()));
  }
  if (root.IsNull()) return file;
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(where, ": not a mapping"));
  RETURN_IF_ERROR(ReadContext(where, config_path, root, {"contexts", "current-context"}, &file.top));
  if (const YAML::Node current = root["current-context"]) {
    if (!current.IsScalar()) return absl::InvalidArgumentError(absl::StrCat(where, ": current-context must be a string"));
    file.current_context = current.as<std::string>();
  }
  if (const YAML::Node contexts = root["contexts"]) {
    if (!contexts.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": contexts must map names to {server, ca, token_file}"));
    }
    for (const auto& kv : contexts) {
      const std::string name = kv.first.as<std::string>();
      if (!kv.second.IsMap() && !kv.second.IsNull()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": contexts.", name, " must be a mapping"));
      }
      RETURN_IF_ERROR(ReadContext(absl::StrCat(where, ": contexts.", name), config_path, kv.second, {},
                                  &file.contexts[name]));
    }
  }
  if (!file.current_context.empty() && !file.contexts.count(file.current_context)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": current-context '", file.current_context,
                                                   "' is not one of its contexts"));
  }
  return file;
}

absl::Status SetCurrentContext(const std::string& path, const std::string& name) {
  ASSIGN_OR_RETURN(ConfigFile file, LoadConfig(path));
  if (!file.contexts.count(name)) {
    std::vector<std::string> known;
    for (const auto& [n, c] : file.contexts) known.push_back(n);
    return absl::InvalidArgumentError(absl::StrCat("use-context: '", name, "' is not a context in ", path, " (",
                                                   known.empty() ? "it has none" : "known: " + absl::StrJoin(known, ", "),
                                                   ")"));
  }
  YAML::Node root = YAML::LoadFile(path);
  root["current-context"] = name;
  YAML::Emitter y;
  y << root;
  struct stat st;
  const mode_t mode = stat(path.c_str(), &st) == 0 ? (st.st_mode & 0777) : 0600;
  RETURN_IF_ERROR(WriteFileAtomically(path, absl::StrCat(y.c_str(), "\n")));
  chmod(path.c_str(), mode);
  return absl::OkStatus();
}

absl::StatusOr<ConnectionSettings> ResolveConnection(const ConnectionSettings& flags, const ConnectionSettings& env,
                                                     const std::string& config_path, bool config_required,
                                                     const std::string& context) {
  ConnectionSettings out = flags;
  if (out.server.empty()) out.server = env.server;
  if (out.ca.empty()) out.ca = env.ca;
  if (out.token.empty()) out.token = env.token;
  std::error_code ec;
  const bool have_config = !config_path.empty() && std::filesystem::exists(config_path, ec);
  if (!have_config && config_required) {
    return absl::InvalidArgumentError(absl::StrCat("$DPFLEET_CONFIG: '", config_path, "' does not exist"));
  }
  if (!have_config && !context.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--context: '", context, "' needs a config file; ", config_path, " does not exist"));
  }
  if (have_config && (out.server.empty() || out.ca.empty() || out.token.empty() || !context.empty())) {
    ASSIGN_OR_RETURN(ConfigFile file, LoadConfig(config_path));
    const std::string name = context.empty() ? file.current_context : context;
    ContextSettings chosen;
    if (!name.empty()) {
      auto it = file.contexts.find(name);
      if (it == file.contexts.end()) {
        std::vector<std::string> known;
        for (const auto& [n, c] : file.contexts) known.push_back(n);
        return absl::InvalidArgumentError(absl::StrCat("--context: '", name, "' is not a context in ", config_path,
                                                       " (", known.empty() ? "it has none" : "known: " + absl::StrJoin(known, ", "), ")"));
      }
      chosen = it->second;
    }
    if (chosen.server.empty()) chosen.server = file.top.server;
    if (chosen.ca.empty()) chosen.ca = file.top.ca;
    if (chosen.token_file.empty()) chosen.token_file = file.top.token_file;
    if (out.server.empty()) out.server = chosen.server;
    if (out.ca.empty()) out.ca = chosen.ca;
    if (out.token.empty() && !chosen.token_file.empty()) {
      ASSIGN_OR_RETURN(out.token, ReadTokenFile(absl::StrCat("config ", config_path), chosen.token_file));
    }
  }
  if (out.server.empty()) out.server = "127.0.0.1:7070";
  return out;
}

absl::StatusOr<ClientOptions> ToClientOptions(const ConnectionSettings& settings) {
  ClientOptions options;
  options.target = settings.server;
  options.token = settings.token;
  if (!settings.ca.empty()) {
    bool ok = false;
    options.ca_pem = Slurp(settings.ca, &ok);
    if (!ok || options.ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--ca: '", settings.ca, "' is not a readable PEM certificate"));
    }
  }
  return options;
}

}  // namespace dpfleet::client
