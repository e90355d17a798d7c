// FakeDataResolver: a DataResolver for coordinator tests that never runs the
// data pipeline. N is `train_rows`. A path under /data/ (the specs'
// placeholders) is named by a key made from the path itself; a path that
// exists is named by its content through `files` (the real FileIdentifier,
// with no data roots, so hard links are allowed); anything else is refused
// naming the path. The same content twice in one spec is refused as the
// real resolver refuses it.
#ifndef DPFLEET_TESTS_TESTING_SERVER_FAKE_DATA_RESOLVER_H_
#define DPFLEET_TESTS_TESTING_SERVER_FAKE_DATA_RESOLVER_H_

#include <cstdint>
#include <string>

#include "server/core/data_resolver.h"
#include "server/core/file_identifier.h"

namespace dpfleet::testing {

class FakeDataResolver : public server::DataResolver {
 public:
  absl::StatusOr<server::DataFacts> Resolve(const JobSpec& spec) override;
  absl::StatusOr<std::string> FileKey(const std::string& field, const std::string& path) override;

  int64_t train_rows = 10000;
  server::FileIdentifier* files = nullptr;  // not owned; without it only placeholders resolve
};

}  // namespace dpfleet::testing

#endif  // DPFLEET_TESTS_TESTING_SERVER_FAKE_DATA_RESOLVER_H_
