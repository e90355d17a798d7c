#include "tests/testing/server/fake_data_resolver.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status.h"

namespace dpfleet::testing {

absl::StatusOr<server::DataFacts> FakeDataResolver::Resolve(const JobSpec& spec) {
  server::DataFacts facts{{}, train_rows, 1000, 40};
  for (const std::string& path : spec.data_paths) {
    ASSIGN_OR_RETURN(std::string key, FileKey("data.path", path));
    facts.input_files.push_back(std::move(key));
  }
  RETURN_IF_ERROR(server::CheckDistinctInputs("data.path", spec.data_paths, facts.input_files));
  return facts;
}

absl::StatusOr<std::string> FakeDataResolver::FileKey(const std::string& field, const std::string& path) {
  if (path.rfind("/data/", 0) == 0) return "sha256:" + Sha256Hex(path);
  std::error_code ec;
  const std::string real = std::filesystem::canonical(path, ec).string();
  if (ec || files == nullptr) return absl::InvalidArgumentError(absl::StrCat(field, ": '", path, "' does not exist"));
  return files->Identify(real);
}

}  // namespace dpfleet::testing
