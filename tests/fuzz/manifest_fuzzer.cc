// Fuzz target: the manifest reader. A worker reads manifest.json from a
// directory it may not own, or streamed from the coordinator; whatever the
// bytes, ParseManifest returns a manifest or an error, never a crash, and a
// manifest it accepts reads back the same from its own canonical text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/pums/shards.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<dpfleet::data::Manifest> m = dpfleet::data::ParseManifest(json);
  if (!m.ok()) return 0;
  const std::string canonical = dpfleet::data::ManifestToJson(*m);
  absl::StatusOr<dpfleet::data::Manifest> again = dpfleet::data::ParseManifest(canonical);
  if (!again.ok() || dpfleet::data::ManifestToJson(*again) != canonical) std::abort();
  return 0;
}
