// `dpctl data prepare` and `dpctl data schema`: the offline data verbs.
//
//   dpctl data prepare --input FILE... --task employment|unemployment
//                      [--features A,B,...] [--split-seed N] [--eval-fraction F]
//                      --shards S --out DIR [--threads T] [-o json]
//   dpctl data schema [-o json]
//
// `prepare` runs common/pums/prepare.h (the same code the coordinator runs) and
// writes S training shards, eval.bin and manifest.json into DIR; --input takes
// one or more files and may be repeated. `schema` prints the public PUMS
// schema; its JSON form is what deploy/spark/prepare_pums.py reads.
// Flags are `--flag value` or `--flag=value`. Exit codes: 0 ok, 2 usage or
// invalid input (the message names the flag, the value and why), 1 any other
// failure (e.g. the output cannot be written).
//
// A thin shell over common/: it must never implement data logic itself, and
// must stay free of gRPC and LibTorch so it runs anywhere.
#ifndef DPFLEET_CLIENT_DATA_CLI_H_
#define DPFLEET_CLIENT_DATA_CLI_H_

#include <ostream>
#include <string>
#include <vector>

namespace dpfleet::client {

// `args` is what follows `dpctl data prepare`. With -o json, `out` gets the
// manifest (one JSON object); otherwise a short summary.
int RunDataPrepare(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// `args` is what follows `dpctl data schema`. With -o json, `out` gets
// SchemaJson(); otherwise a table of the variables.
int RunDataSchema(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_DATA_CLI_H_
