// Tests for worker/export/model_export.h: the exported files reproduce the
// worker's own encoding and predictions, loaded by real PyTorch in Python
// (tests/python/check_export.py).
#include "worker/export/model_export.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/pums/csv.h"
#include "common/pums/dataset.h"
#include "common/pums/schema.h"
#include "common/pums/synth.h"
#include "nlohmann/json.hpp"
#include "tests/testing/temp_dir.h"
#include "worker/comm/communicator.h"
#include "worker/train/dp_sgd.h"
#include "worker/train/split_tensors.h"

namespace dpfleet::exporter {
namespace {

using train::DpSgdTrainer;

// The Python interpreter of ./dpfleet setup's venv, else python3.
std::string Python() {
  const char* src = std::getenv("DPFLEET_SOURCE_DIR");
  if (src != nullptr) {
    const std::string venv = absl::StrCat(src, "/.venv/bin/python");
    if (std::ifstream(venv).good()) return venv;
  }
  return "python3";
}

std::string SourceDir() {
  const char* src = std::getenv("DPFLEET_SOURCE_DIR");
  return src != nullptr ? src : ".";
}

// Raw integer codes of `features` per record key, read straight from the
// CSV (blank = -1).
std::map<uint64_t, std::vector<int64_t>> CodesByKey(const std::string& csv, const std::vector<std::string>& features) {
  std::ifstream in(csv);
  std::string line, scratch;
  std::getline(in, line);
  std::vector<absl::string_view> fields;
  data::SplitCsvLine(line, &fields, &scratch);
  std::map<std::string, int> column;
  for (size_t i = 0; i < fields.size(); ++i) {
    const data::PumsVariable* var = data::FindVariable(fields[i]);
    if (var != nullptr) column[var->name] = static_cast<int>(i);
  }
  std::map<uint64_t, std::vector<int64_t>> out;
  while (std::getline(in, line)) {
    data::SplitCsvLine(line, &fields, &scratch);
    int64_t sporder = 0;
    if (!absl::SimpleAtoi(fields[column["SPORDER"]], &sporder)) continue;
    std::vector<int64_t> codes;
    for (const std::string& f : features) {
      int64_t v = -1;
      const absl::string_view text = fields[column[f]];
      if (!text.empty() && !absl::SimpleAtoi(text, &v)) v = -2;  // not a code: the encode dropped the row
      codes.push_back(v);
    }
    out[data::RecordKey(fields[column["SERIALNO"]], sporder)] = codes;
  }
  return out;
}

template <typename T>
void WriteRows(const std::string& path, const T* values, int64_t rows, int64_t cols) {
  std::ofstream out(path);
  out.precision(9);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out << (c ? " " : "") << values[r * cols + c];
    out << "\n";
  }
}

TEST(ModelExportTest, PythonReproducesTheWorkersEncodingAndLogits) {
  testing::TempDir dir;
  const std::string csv = dir.Join("pums.csv");
  data::SynthOptions synth;
  synth.rows = 3000;
  synth.seed = 11;
  ASSERT_TRUE(data::WriteSyntheticPums(synth, csv).ok());
  data::EncodeOptions encode;
  absl::StatusOr<data::EncodedDataset> ds = data::LoadAndEncode({csv}, encode);
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_GT(ds->eval.rows, 100);

  // A real DP-SGD epoch, so that the weights are trained ones, then the
  // very archive a worker uploads.
  comm::LocalCommunicator comm;
  train::TrainConfig tc;
  tc.dataset_size = ds->train.rows;
  tc.batch_size = 128;
  tc.learning_rate = 0.5;
  tc.noise_multiplier = 1.0;
  train::ModelConfig mc;
  mc.hidden = {16, 8};
  mc.activation = train::Activation::kTanh;
  auto trainer = DpSgdTrainer::Create(mc, tc, ds->train.dim, &comm);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  at::Tensor x = train::FeatureTensor(ds->train);
  at::Tensor y = train::LabelTensor(ds->train);
  ASSERT_TRUE((*trainer)->TrainEpoch(x, y).ok());
  absl::StatusOr<std::string> archive = (*trainer)->SaveToBytes();
  ASSERT_TRUE(archive.ok());

  const int64_t rows = ds->eval.rows, dim = ds->eval.dim;
  at::Tensor x_eval = train::FeatureTensor(ds->eval);
  at::Tensor logits = (*trainer)->model().Logits(x_eval).contiguous();

  // The raw codes of the same eval rows, from the CSV.
  const std::map<uint64_t, std::vector<int64_t>> by_key = CodesByKey(csv, ds->features);
  std::vector<int64_t> codes;
  for (uint64_t key : ds->eval.keys) {
    ASSERT_TRUE(by_key.count(key));
    codes.insert(codes.end(), by_key.at(key).begin(), by_key.at(key).end());
  }
  const int64_t nf = static_cast<int64_t>(ds->features.size());
  WriteRows(dir.Join("codes.txt"), codes.data(), rows, nf);
  WriteRows(dir.Join("encoded.txt"), ds->eval.x.data(), rows, dim);
  WriteRows(dir.Join("logits.txt"), logits.data_ptr<float>(), rows, 1);

  absl::StatusOr<ModelWeights> weights = ReadModelArchive(*archive);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->widths, (std::vector<int64_t>{dim, 16, 8, 1}));
  EXPECT_TRUE(weights->tanh);
  nlohmann::json features = nlohmann::json::array();
  for (const std::string& f : ds->features) features.push_back({{"name", f}});
  const std::string card =
      nlohmann::json{{"job_id", "job-export-test"},
                     {"features", features},
                     {"model", {{"type", "mlp"}, {"activation", "tanh"}, {"widths", weights->widths}}}}
          .dump();
  absl::Status written = WriteTorchScript(*weights, ds->features, card, dir.Join("model.pt"));
  ASSERT_TRUE(written.ok()) << written;
  ASSERT_TRUE(
      WriteFileAtomically(dir.Join("model.safetensors"), SafetensorsBytes(*weights, {{"model_card", card}})).ok());

  const std::string cmd = absl::StrCat(Python(), " ", SourceDir(), "/tests/python/check_export.py ", dir.path());
  const int rc = std::system(cmd.c_str());
  ASSERT_NE(rc, -1);
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
    GTEST_SKIP() << "Python torch/safetensors/numpy not importable by " << Python()
                 << ": run ./dpfleet setup (CI does)";
  }
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << cmd << " exited with " << rc;
}

ModelWeights TinyModel() {
  ModelWeights w;
  w.widths = {3, 2, 1};
  w.weights = {{1, 2, 3, 4, 5, 6}, {7, 8}};
  w.biases = {{0.5f, -0.5f}, {0.25f}};
  return w;
}

TEST(ModelExportTest, SafetensorsLayoutIsTheDocumentedOne) {
  const std::string bytes = SafetensorsBytes(TinyModel(), {{"model_card", "{}"}});
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(h["__metadata__"]["model_card"], "{}");
  EXPECT_EQ(h["0.weight"]["dtype"], "F32");
  EXPECT_EQ(h["0.weight"]["shape"], (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(h["2.weight"]["shape"], (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(h["2.bias"]["data_offsets"], (std::vector<int64_t>{40, 44}));
  EXPECT_EQ(bytes.size(), 8 + n + 44);
  float last = 0;
  std::memcpy(&last, bytes.data() + bytes.size() - 4, 4);
  EXPECT_EQ(last, 0.25f);
}

TEST(ModelExportTest, RefusesWhatIsNotAModelArchive) {
  EXPECT_FALSE(ReadModelArchive("not a zip").ok());
  absl::StatusOr<std::string> src = TorchScriptSource(TinyModel(), {"AGEP"});
  ASSERT_FALSE(src.ok());
  EXPECT_EQ(src.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(src.status().message().find("the model takes 3"), std::string::npos) << src.status();
  EXPECT_EQ(TorchScriptSource(TinyModel(), {"NOPE"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseExportFormat("onnx").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ParseExportFormat("TorchScript").ok());
}

}  // namespace
}  // namespace dpfleet::exporter
