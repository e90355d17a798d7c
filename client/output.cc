#include "client/output.h"

#include <yaml-cpp/yaml.h>

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {
namespace {

absl::StatusOr<std::vector<nlohmann::json>> Documents(const std::string& text) {
  nlohmann::json whole = nlohmann::json::parse(text, nullptr, false);
  if (!whole.is_discarded()) return std::vector<nlohmann::json>{whole};
  std::vector<nlohmann::json> docs;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    nlohmann::json doc = nlohmann::json::parse(line, nullptr, false);
    if (doc.is_discarded()) return absl::InternalError(absl::StrCat("not JSON: ", line));
    docs.push_back(std::move(doc));
  }
  return docs;
}

void Emit(const nlohmann::json& j, YAML::Emitter& y) {
  if (j.is_object()) {
    y << YAML::BeginMap;
    for (auto it = j.begin(); it != j.end(); ++it) {
      y << YAML::Key << it.key() << YAML::Value;
      Emit(it.value(), y);
    }
    y << YAML::EndMap;
  } else if (j.is_array()) {
    y << YAML::BeginSeq;
    for (const nlohmann::json& e : j) Emit(e, y);
    y << YAML::EndSeq;
  } else if (j.is_null()) {
    y << YAML::Null;
  } else if (j.is_string()) {
    y << YAML::DoubleQuoted << j.get<std::string>();
  } else {
    y << j.dump();  // numbers and booleans keep their JSON spelling
  }
}

void Names(const nlohmann::json& j, std::ostream& out) {
  if (j.is_array()) {
    for (const nlohmann::json& e : j) Names(e, out);
    return;
  }
  if (!j.is_object()) return;
  for (const char* key : {"worker_id", "job_id", "name"}) {
    if (j.contains(key) && j.at(key).is_string()) {
      out << j.at(key).get<std::string>() << "\n";
      return;
    }
  }
  for (const char* list : {"jobs", "workers", "datasets", "tokens", "contexts"}) {
    if (j.contains(list)) Names(j.at(list), out);
  }
}

}  // namespace

absl::Status JsonToYaml(const std::string& json, std::ostream& out) {
  absl::StatusOr<std::vector<nlohmann::json>> docs = Documents(json);
  if (!docs.ok()) return docs.status();
  for (std::size_t i = 0; i < docs->size(); ++i) {
    YAML::Emitter y;
    Emit((*docs)[i], y);
    if (i > 0) out << "---\n";
    out << y.c_str() << "\n";
  }
  return absl::OkStatus();
}

absl::Status JsonToNames(const std::string& json, std::ostream& out) {
  absl::StatusOr<std::vector<nlohmann::json>> docs = Documents(json);
  if (!docs.ok()) return docs.status();
  // NDJSON (a followed job): its last document is the job.
  if (docs->size() > 1) docs->erase(docs->begin(), docs->end() - 1);
  for (const nlohmann::json& d : *docs) Names(d, out);
  return absl::OkStatus();
}

}  // namespace dpfleet::client
