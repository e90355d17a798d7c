// Model export: turns the trained-model archive a worker uploads (the
// LibTorch archive DpSgdTrainer::SaveToBytes writes: widths, activation, the
// flat parameter buffer, optimizer state) into files other tools load:
//
//   - TorchScript: a scripted module whose forward(x) maps the encoded
//     feature matrix [n, dim] (float32) to the logits [n], exactly as
//     train::Model::Logits, and whose encode(codes) maps the raw PUMS integer
//     codes [n, F] (int64, one column per feature in the job's order, -1 for
//     a blank field) to that matrix, exactly as common/pums/dataset.cc
//     encodes. The model card rides inside as the extra file
//     "model_card.json".
//   - safetensors: the layer weights named as torch.nn.Sequential names them
//     ("0.weight", "0.bias", "2.weight", ...; activations sit at the odd
//     indices), the model card as the "model_card" entry of __metadata__.
//
// The encoding is rebuilt from the public schema and the feature names only:
// nothing here may read the training data. Optimizer state never leaves in
// an export.
#ifndef DPFLEET_WORKER_EXPORT_MODEL_EXPORT_H_
#define DPFLEET_WORKER_EXPORT_MODEL_EXPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dpfleet::exporter {

enum class ExportFormat { kTorchScript, kSafetensors };

// "torchscript" | "safetensors"; InvalidArgument naming the value otherwise.
absl::StatusOr<ExportFormat> ParseExportFormat(absl::string_view name);

// The weights of a trained model, on the host.
struct ModelWeights {
  std::vector<int64_t> widths;  // [input_dim, h1, ..., 1]
  bool tanh = false;            // hidden activation: tanh, else ReLU
  // Per layer l: W [widths[l+1], widths[l]] row-major, then b [widths[l+1]].
  std::vector<std::vector<float>> weights, biases;
};

// Reads the model out of a trained-model archive. DataLoss naming what is
// missing or inconsistent when the bytes are not such an archive.
absl::StatusOr<ModelWeights> ReadModelArchive(const std::string& archive);

// The safetensors file (8-byte little-endian header length, JSON header,
// raw little-endian float32 data) with `metadata` as __metadata__.
std::string SafetensorsBytes(const ModelWeights& weights,
                             const std::vector<std::pair<std::string, std::string>>& metadata);

// The TorchScript source of the module's methods for `weights` and the
// job's `features` (PUMS names, in encoding order). InvalidArgument when a
// feature is unknown or the encoded width differs from the model's input.
absl::StatusOr<std::string> TorchScriptSource(const ModelWeights& weights, const std::vector<std::string>& features);

// Builds the scripted module and saves it to `path` with `card_json` as the
// extra file "model_card.json".
absl::Status WriteTorchScript(const ModelWeights& weights, const std::vector<std::string>& features,
                              const std::string& card_json, const std::string& path);

}  // namespace dpfleet::exporter

#endif  // DPFLEET_WORKER_EXPORT_MODEL_EXPORT_H_
