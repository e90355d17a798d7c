#include "client/connection.h"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg != nullptr && *xdg != '\0') {
    return absl::StrCat(xdg, "/dpfleet/dpctl.yaml");
  }
  const char* home = std::getenv("HOME");
  return absl::StrCat(home ? home : "", "/.config/dpfleet/dpctl.yaml");
}

absl::StatusOr<ConnectionSettings> ResolveConnection(const ConnectionSettings& flags, const ConnectionSettings& env,
                                                     const std::string& config_path, bool config_required) {
  ConnectionSettings out = flags;
  if (out.server.empty()) out.server = env.server;
  if (out.ca.empty()) out.ca = env.ca;
  if (out.token.empty()) out.token = env.token;
  std::error_code ec;
  const bool have_config = !config_path.empty() && std::filesystem::exists(config_path, ec);
  if (!have_config && config_required) {
    return absl::InvalidArgumentError(absl::StrCat("$DPFLEET_CONFIG: '", config_path, "' does not exist"));
  }
  if (have_config && (out.server.empty() || out.ca.empty() || out.token.empty())) {
    YAML::Node root;
    try {
      root = YAML::LoadFile(config_path);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("config ", config_path, ": ", e.what()));
    }
    if (!root.IsMap() && !root.IsNull()) {
      return absl::InvalidArgumentError(absl::StrCat("config ", config_path, ": not a mapping"));
    }
    std::string server, ca, token_file;
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      if (!kv.second.IsScalar()) {
        return absl::InvalidArgumentError(absl::StrCat("config ", config_path, ": ", key, " must be a string"));
      }
      if (key == "server") {
        server = kv.second.as<std::string>();
      } else if (key == "ca") {
        ca = NextTo(config_path, kv.second.as<std::string>());
      } else if (key == "token_file") {
        token_file = NextTo(config_path, kv.second.as<std::string>());
      } else {
        return absl::InvalidArgumentError(absl::StrCat("config ", config_path, ": ", key,
                                                       " is not a known setting (server, ca, token_file)"));
      }
    }
    if (out.server.empty()) out.server = server;
    if (out.ca.empty()) out.ca = ca;
    if (out.token.empty() && !token_file.empty()) {
      ASSIGN_OR_RETURN(out.token, ReadTokenFile(absl::StrCat("config ", config_path), token_file));
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
