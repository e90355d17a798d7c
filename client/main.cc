// dpctl: submit, watch, cancel and inspect dpfleet jobs; administer tokens,
// certificates and the audit trail; offline privacy calculator and
// synthetic data.
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "client/cli.h"
#include "client/connection.h"

int main(int argc, char** argv) {
  dpfleet::client::CliEnv env;
  if (const char* s = std::getenv("DPFLEET_SERVER")) env.default_server = s;
  if (const char* s = std::getenv("DPFLEET_TOKEN")) env.token = s;
  if (const char* s = std::getenv("DPFLEET_CA")) env.ca = s;
  if (const char* s = std::getenv("DPFLEET_CONFIG"); s != nullptr && *s != '\0') {
    env.config_path = s;
    env.config_required = true;
  } else {
    env.config_path = dpfleet::client::DefaultConfigPath();
  }
  env.interactive = isatty(STDOUT_FILENO) == 1;
  std::vector<std::string> args(argv + 1, argv + argc);
  return dpfleet::client::RunDpctl(args, env, std::cout, std::cerr);
}
