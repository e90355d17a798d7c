// `dpctl privacy`: the offline privacy calculator (no coordinator needed).
//
//   dpctl privacy epsilon --sample-rate Q --noise-multiplier S --steps T
//                         --delta D [--accountant rdp|pld] [-o json]
//   dpctl privacy sigma   --target-epsilon E --delta D --sample-rate Q
//                         --steps T [--accountant rdp|pld] [-o json]
//
// Both verbs also take --epochs E --dataset-size N --batch-size B instead of
// --sample-rate/--steps (q = B/N, steps = E * max(1, round(N/B))). Flags are
// `--flag value` or `--flag=value`. Exit codes: 0 ok, 2 usage error (unknown
// or missing flag, bad value: the message names the flag and the value),
// 1 any other failure.
//
// Only a thin shell over common/privacy/accountant.h: it must never compute privacy
// itself, and must stay free of gRPC and LibTorch so it runs anywhere.
#ifndef DPFLEET_CLIENT_PRIVACY_CLI_H_
#define DPFLEET_CLIENT_PRIVACY_CLI_H_

#include <ostream>
#include <string>
#include <vector>

namespace dpfleet::client {

// `args` is what follows `dpctl privacy`, e.g. {"epsilon", "--delta", "1e-5",
// ...}. Results go to `out` (with -o json: exactly one JSON object and a
// newline), diagnostics to `err`. Returns the process exit code.
int RunPrivacyCommand(const std::vector<std::string>& args, std::ostream& out,
                      std::ostream& err);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_PRIVACY_CLI_H_
