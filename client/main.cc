// dpctl: submit, watch, cancel and inspect dpfleet jobs; offline privacy
// calculator and synthetic data.
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "client/cli.h"

int main(int argc, char** argv) {
  dpfleet::client::CliEnv env;
  if (const char* s = std::getenv("DPFLEET_SERVER")) env.default_server = s;
  env.interactive = isatty(STDOUT_FILENO) == 1;
  std::vector<std::string> args(argv + 1, argv + argc);
  return dpfleet::client::RunDpctl(args, env, std::cout, std::cerr);
}
