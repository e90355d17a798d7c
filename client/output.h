// dpctl's -o yaml and -o name: both are views of a verb's JSON output, so
// that every verb's YAML has exactly its JSON's keys and values.
//
// Never adds or drops a field: a released figure appears in YAML exactly
// when it appears in JSON (docs/PRIVACY.md's release table covers both).
#ifndef DPFLEET_CLIENT_OUTPUT_H_
#define DPFLEET_CLIENT_OUTPUT_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"

namespace dpfleet::client {

// One JSON document, or one per line (NDJSON), as YAML documents (keys in
// JSON's sorted order; "---" between documents).
absl::Status JsonToYaml(const std::string& json, std::ostream& out);

// The ids of the objects in a verb's JSON: "job_id" of a job, each job of
// {"jobs": [...]}, "worker_id" of each worker, "name" of a dataset or a
// token; one per line, nothing else.
absl::Status JsonToNames(const std::string& json, std::ostream& out);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_OUTPUT_H_
