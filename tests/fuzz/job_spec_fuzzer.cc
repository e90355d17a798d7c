// Fuzz target: the job-spec parser, which reads YAML an analyst submits to
// the coordinator. Whatever the bytes, ParseJobSpec returns a spec or an
// error; it never crashes, and a spec it accepts survives its own canonical
// form (JobSpecToYaml) unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/spec/job_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<dpfleet::JobSpec> spec = dpfleet::ParseJobSpec(yaml);
  if (!spec.ok()) return 0;
  const std::string canonical = dpfleet::JobSpecToYaml(*spec);
  absl::StatusOr<dpfleet::JobSpec> again = dpfleet::ParseJobSpec(canonical);
  // An accepted spec whose canonical YAML is refused or reads differently
  // would make the coordinator and its workers disagree about the job.
  if (!again.ok() || dpfleet::JobSpecToYaml(*again) != canonical) std::abort();
  return 0;
}
