#include "worker/export/model_export.h"

#include <ATen/ATen.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/serialize.h>

#include <cstring>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/pums/schema.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/train/guard_torch.h"

namespace dpfleet::exporter {
namespace {

using train::GuardTorch;

// The activation code the archive stores (train::Activation: 0 ReLU, 1 tanh).
constexpr int64_t kTanhCode = 1;

// One feature's encoding, as common/pums/dataset.cc builds it from the schema.
struct FeatureEncoding {
  const data::PumsVariable* var = nullptr;
  int64_t offset = 0;  // first encoded column
  int64_t width = 0;
};

absl::StatusOr<std::vector<FeatureEncoding>> PlanFeatures(const std::vector<std::string>& features, int64_t* dim) {
  std::vector<FeatureEncoding> plan;
  *dim = 0;
  for (const std::string& raw : features) {
    absl::StatusOr<std::string> name = data::CanonicalFeatureName(raw);
    if (!name.ok()) return absl::InvalidArgumentError(absl::StrCat("feature '", raw, "': ", name.status().message()));
    FeatureEncoding f;
    f.var = data::FindVariable(*name);
    f.offset = *dim;
    if (f.var->kind == data::VarKind::kNumeric) {
      f.width = f.var->blank_allowed() ? 2 : 1;
    } else {
      f.width = static_cast<int64_t>(f.var->codes.size()) + (f.var->blank_allowed() ? 1 : 0);
    }
    *dim += f.width;
    plan.push_back(f);
  }
  return plan;
}

// Code -> absolute encoded column for a categorical feature, indexed by
// code + 1 (index 0 is a blank field); -1 where the schema has no such code.
std::vector<int64_t> SlotTable(const FeatureEncoding& f) {
  const int max_code = f.var->codes.empty() ? 0 : f.var->codes.back();
  std::vector<int64_t> table(max_code + 2, -1);
  for (size_t i = 0; i < f.var->codes.size(); ++i) {
    if (f.var->codes[i] >= 0) table[f.var->codes[i] + 1] = f.offset + static_cast<int64_t>(i);
  }
  if (f.var->blank_allowed()) table[0] = f.offset + static_cast<int64_t>(f.var->codes.size());
  return table;
}

std::string ValidCodes(const FeatureEncoding& f) {
  std::string valid = f.var->kind == data::VarKind::kNumeric
                          ? absl::StrCat(f.var->min_value, "..", f.var->max_value)
                          : absl::StrCat("the schema's codes ", f.var->codes.front(), "..", f.var->codes.back());
  return f.var->blank_allowed() ? absl::StrCat(valid, " or -1 (blank)") : valid;
}

}  // namespace

absl::StatusOr<ExportFormat> ParseExportFormat(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "torchscript") return ExportFormat::kTorchScript;
  if (lower == "safetensors") return ExportFormat::kSafetensors;
  return absl::InvalidArgumentError(
      absl::StrCat("--format: \"", name, "\" is not a known format (expected torchscript or safetensors)"));
}

absl::StatusOr<ModelWeights> ReadModelArchive(const std::string& archive_bytes) {
  ModelWeights w;
  RETURN_IF_ERROR(GuardTorch("reading the model archive", [&]() -> absl::Status {
    torch::serialize::InputArchive archive;
    std::istringstream in(archive_bytes);
    archive.load_from(in);
    auto read = [&](const std::string& key) -> absl::StatusOr<at::Tensor> {
      at::Tensor t;
      if (!archive.try_read(key, t)) return absl::DataLossError(absl::StrCat("model archive lacks '", key, "'"));
      return t.cpu().contiguous();
    };
    ASSIGN_OR_RETURN(at::Tensor widths, read("widths"));
    ASSIGN_OR_RETURN(at::Tensor activation, read("activation"));
    ASSIGN_OR_RETURN(at::Tensor params, read("params"));
    if (widths.scalar_type() != at::kLong || widths.dim() != 1 || widths.numel() < 2) {
      return absl::DataLossError("model archive: 'widths' is not a list of at least two layer widths");
    }
    int64_t total = 0;
    for (int64_t i = 0; i < widths.numel(); ++i) {
      const int64_t v = widths[i].item<int64_t>();
      if (v <= 0) return absl::DataLossError(absl::StrCat("model archive: layer width ", v, " is not positive"));
      w.widths.push_back(v);
    }
    for (size_t l = 0; l + 1 < w.widths.size(); ++l) total += w.widths[l + 1] * w.widths[l] + w.widths[l + 1];
    if (params.scalar_type() != at::kFloat || params.numel() != total) {
      return absl::DataLossError(absl::StrCat("model archive: 'params' holds ", params.numel(),
                                              " values, the layer widths need ", total, " float32"));
    }
    w.tanh = activation.item<int64_t>() == kTanhCode;
    const float* p = params.data_ptr<float>();
    for (size_t l = 0; l + 1 < w.widths.size(); ++l) {
      const int64_t in = w.widths[l], out = w.widths[l + 1];
      w.weights.emplace_back(p, p + out * in);
      p += out * in;
      w.biases.emplace_back(p, p + out);
      p += out;
    }
    return absl::OkStatus();
  }));
  return w;
}

std::string SafetensorsBytes(const ModelWeights& weights,
                             const std::vector<std::pair<std::string, std::string>>& metadata) {
  nlohmann::ordered_json header;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  header["__metadata__"] = meta;
  std::string data;
  auto add = [&](const std::string& name, const std::vector<float>& values, std::vector<int64_t> shape) {
    const size_t begin = data.size();
    // The format is little-endian; so is every machine dpfleet builds for.
    data.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
    header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
  };
  for (size_t l = 0; l < weights.weights.size(); ++l) {
    const std::string layer = std::to_string(2 * l);  // nn.Sequential index: Linear, activation, ...
    add(layer + ".weight", weights.weights[l], {weights.widths[l + 1], weights.widths[l]});
    add(layer + ".bias", weights.biases[l], {weights.widths[l + 1]});
  }
  std::string json = header.dump();
  // Pad the header with spaces so the data starts 8-byte aligned.
  while ((8 + json.size()) % 8 != 0) json.push_back(' ');
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}

absl::StatusOr<std::string> TorchScriptSource(const ModelWeights& weights, const std::vector<std::string>& features) {
  int64_t dim = 0;
  ASSIGN_OR_RETURN(std::vector<FeatureEncoding> plan, PlanFeatures(features, &dim));
  if (dim != weights.widths.front()) {
    return absl::InvalidArgumentError(absl::StrCat("the features ", absl::StrJoin(features, ","), " encode to ", dim,
                                                   " columns, the model takes ", weights.widths.front()));
  }
  const size_t layers = weights.weights.size();
  std::string src = "def forward(self, x: Tensor) -> Tensor:\n";
  // Checks are asserts and dtypes are ScalarType numbers (6 float32, 7
  // float64, 4 int64, 11 bool): a module compiled in C++ has no Python to
  // resolve exception classes or torch.float32 with.
  absl::StrAppend(&src, "    assert x.dim() == 2 and x.size(1) == ", dim,
                  ", \"forward: expected the encoded matrix [n, ", dim, "]\"\n", "    h = x.to(6)\n");
  for (size_t l = 0; l < layers; ++l) {
    absl::StrAppend(&src, "    h = torch.addmm(self.b", l, ", h, self.w", l, ".t())\n");
    if (l + 1 < layers) absl::StrAppend(&src, "    h = torch.", weights.tanh ? "tanh" : "relu", "(h)\n");
  }
  absl::StrAppend(&src, "    return h.view(-1)\n\n");

  absl::StrAppend(&src, "def encode(self, codes: Tensor) -> Tensor:\n",
                  "    assert codes.dim() == 2 and codes.size(1) == ", plan.size(),
                  ", \"encode: expected integer codes [n, ", plan.size(), "] of ", absl::StrJoin(features, ","), "\"\n",
                  "    c = codes.to(4)\n", "    out = torch.zeros([c.size(0), ", dim, "], dtype=6)\n");
  for (size_t i = 0; i < plan.size(); ++i) {
    const FeatureEncoding& f = plan[i];
    const std::string bad =
        absl::StrCat(", \"encode: ", f.var->name, " (column ", i, ") has a code outside ", ValidCodes(f), "\"\n");
    absl::StrAppend(&src, "    v = c[:, ", i, "]\n");
    if (f.var->kind == data::VarKind::kNumeric) {
      absl::StrAppend(&src, "    blank = v == -1\n");
      if (!f.var->blank_allowed()) absl::StrAppend(&src, "    blank = torch.zeros_like(v, dtype=11)\n");
      absl::StrAppend(&src, "    assert bool((blank | ((v >= ", f.var->min_value, ") & (v <= ", f.var->max_value,
                      "))).all())", bad);
      // As dataset.cc: (v - min) / (max - min) in double, then float32; 0 when blank.
      absl::StrAppend(&src, "    out[:, ", f.offset, "] = torch.where(blank, torch.zeros_like(v), v - ",
                      f.var->min_value, ").to(7).div(", f.var->max_value - f.var->min_value, ".0).to(6)\n");
      if (f.var->blank_allowed()) absl::StrAppend(&src, "    out[:, ", f.offset + 1, "] = blank.to(6)\n");
    } else {
      const int64_t size = static_cast<int64_t>(SlotTable(f).size());
      absl::StrAppend(&src, "    assert bool(((v >= -1) & (v < ", size - 1, ")).all())", bad, "    s = self.slots", i,
                      "[v + 1]\n", "    assert bool((s >= 0).all())", bad, "    out.scatter_(1, s.view(-1, 1), 1.0)\n");
    }
  }
  absl::StrAppend(&src, "    return out\n");
  return src;
}

absl::Status WriteTorchScript(const ModelWeights& weights, const std::vector<std::string>& features,
                              const std::string& card_json, const std::string& path) {
  ASSIGN_OR_RETURN(const std::string source, TorchScriptSource(weights, features));
  int64_t dim = 0;
  ASSIGN_OR_RETURN(std::vector<FeatureEncoding> plan, PlanFeatures(features, &dim));
  return GuardTorch("building the TorchScript module", [&]() -> absl::Status {
    torch::jit::Module m("__torch__.dpfleet.Model");
    for (size_t l = 0; l < weights.weights.size(); ++l) {
      const int64_t in = weights.widths[l], out = weights.widths[l + 1];
      m.register_parameter(absl::StrCat("w", l), at::tensor(weights.weights[l], at::kFloat).view({out, in}).clone(),
                           false);
      m.register_parameter(absl::StrCat("b", l), at::tensor(weights.biases[l], at::kFloat), false);
    }
    for (size_t i = 0; i < plan.size(); ++i) {
      const std::vector<int64_t> table =
          plan[i].var->kind == data::VarKind::kNumeric ? std::vector<int64_t>{-1} : SlotTable(plan[i]);
      m.register_buffer(absl::StrCat("slots", i), at::tensor(table, at::kLong));
    }
    m.define(source);
    torch::jit::ExtraFilesMap extra{{"model_card.json", card_json}};
    m.save(path, extra);
    return absl::OkStatus();
  });
}

}  // namespace dpfleet::exporter
