// dpfleet-export: the LibTorch half of `dpctl export` (dpctl itself never
// links LibTorch). Reads a trained-model archive and a model card, writes
// the TorchScript or safetensors file (worker/export/model_export.h).
//
//   dpfleet-export --archive FILE --card FILE --format torchscript|safetensors --out FILE
//
// Exit codes: 0 written, 2 bad arguments or input, 1 any other failure.
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include "common/files.h"
#include "nlohmann/json.hpp"
#include "worker/export/model_export.h"

namespace {

bool ReadAll(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  *out = std::move(s).str();
  return true;
}

int Fail(const std::string& message, int code) {
  std::cerr << "dpfleet-export: " << message << "\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dpfleet::exporter;
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a != "--archive" && a != "--card" && a != "--format" && a != "--out") return Fail("unknown flag " + a, 2);
    if (i + 1 >= argc) return Fail(a + " needs a value", 2);
    flags[a] = argv[++i];
  }
  for (const char* f : {"--archive", "--card", "--format", "--out"}) {
    if (!flags.count(f)) return Fail(std::string("missing required flag ") + f, 2);
  }
  absl::StatusOr<ExportFormat> format = ParseExportFormat(flags["--format"]);
  if (!format.ok()) return Fail(std::string(format.status().message()), 2);
  std::string archive, card;
  if (!ReadAll(flags["--archive"], &archive)) return Fail("cannot read --archive " + flags["--archive"], 2);
  if (!ReadAll(flags["--card"], &card)) return Fail("cannot read --card " + flags["--card"], 2);
  nlohmann::json card_json = nlohmann::json::parse(card, nullptr, /*allow_exceptions=*/false);
  if (card_json.is_discarded() || !card_json.contains("features") || !card_json["features"].is_array()) {
    return Fail("--card: not a model card with a \"features\" list", 2);
  }
  std::vector<std::string> features;
  for (const auto& f : card_json["features"]) {
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string()) {
      return Fail("--card: every entry of \"features\" needs a \"name\"", 2);
    }
    features.push_back(f["name"].get<std::string>());
  }
  absl::StatusOr<ModelWeights> weights = ReadModelArchive(archive);
  if (!weights.ok()) return Fail(std::string(weights.status().message()), 2);
  absl::Status s;
  if (*format == ExportFormat::kTorchScript) {
    s = WriteTorchScript(*weights, features, card, flags["--out"]);
  } else {
    s = dpfleet::WriteFileAtomically(flags["--out"], SafetensorsBytes(*weights, {{"model_card", card}}));
  }
  if (!s.ok()) return Fail(std::string(s.message()), s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1);
  return 0;
}
