#include "common/spec/job_spec.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/pums/dataset.h"
#include "common/pums/schema.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace dpfleet {
namespace {

// A spec travels as a proto3 string and is stored inside a JSON record, and
// both insist on UTF-8: other bytes would be refused far from here with no
// useful message (or make the JSON writer throw). nlohmann's own check says
// where the first bad byte is. YAML allows no control characters in a
// stream but tab and line ends (yaml-cpp is lenient, and emits what it
// accepted in a form it then reads differently).
absl::Status CheckText(absl::string_view yaml) {
  try {
    nlohmann::json(std::string(yaml)).dump();
  } catch (const nlohmann::json::type_error& e) {
    std::string why = e.what();
    if (const auto bracket = why.find("] "); bracket != std::string::npos) why = why.substr(bracket + 2);
    return absl::InvalidArgumentError(absl::StrCat("spec is not UTF-8 text: ", why));
  }
  for (std::size_t i = 0; i < yaml.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(yaml[i]);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec: byte ", i, " is a control character (", static_cast<int>(c), "), which YAML does not allow"));
    }
  }
  return absl::OkStatus();
}

absl::Status FieldError(absl::string_view field, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": '", value, "' ", why));
}

absl::Status CheckPrintable(absl::string_view field, absl::string_view value) {
  for (std::size_t i = 0; i < value.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": has a control character (byte ", static_cast<int>(c), ") at position ", i));
    }
  }
  return absl::OkStatus();
}

std::string Scalar(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << n;
  return e.c_str();
}

// Reads one field of a YAML map, refusing wrong types with the field's path.
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string path) : node_(node), path_(std::move(path)) {}

  absl::Status CheckIsMap() const {
    if (!node_.IsMap()) {
      return FieldError(path_.empty() ? "spec" : path_, Scalar(node_), "must be a mapping");
    }
    return absl::OkStatus();
  }

  std::string Path(absl::string_view key) const {
    return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
  }

  bool Has(const std::string& key) const { return node_[key].IsDefined() && !node_[key].IsNull(); }
  YAML::Node Get(const std::string& key) const { return node_[key]; }

  absl::Status CheckKnown(const std::set<std::string>& known) const {
    for (const auto& kv : node_) {
      std::string key = kv.first.as<std::string>();
      if (!known.count(key)) {
        return FieldError(Path(key), Scalar(kv.second),
                          absl::StrCat("is not a known field; known fields here: ",
                                       absl::StrJoin(known, ", ")));
      }
    }
    return absl::OkStatus();
  }

  absl::Status String(const std::string& key, std::string* out) const {
    if (!Has(key)) return absl::OkStatus();
    const YAML::Node n = node_[key];
    if (!n.IsScalar()) return FieldError(Path(key), Scalar(n), "must be a string");
    *out = n.Scalar();
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Number(const std::string& key, T* out) const {
    if (!Has(key)) return absl::OkStatus();
    const YAML::Node n = node_[key];
    if (!n.IsScalar()) return FieldError(Path(key), Scalar(n), "must be a number");
    try {
      if constexpr (std::is_integral_v<T>) {
        // Reject 1.5 for integer fields instead of truncating it.
        const double d = n.as<double>();
        if (std::floor(d) != d) return FieldError(Path(key), n.Scalar(), "must be an integer");
      }
      *out = n.as<T>();
    } catch (const YAML::Exception&) {
      return FieldError(Path(key), n.Scalar(),
                        std::is_integral_v<T> ? "must be an integer" : "must be a number");
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status OptionalNumber(const std::string& key, std::optional<T>* out) const {
    if (!Has(key)) return absl::OkStatus();
    T v{};
    RETURN_IF_ERROR(Number(key, &v));
    *out = v;
    return absl::OkStatus();
  }

  absl::Status Bool(const std::string& key, bool* out) const {
    if (!Has(key)) return absl::OkStatus();
    const YAML::Node n = node_[key];
    try {
      *out = n.as<bool>();
    } catch (const YAML::Exception&) {
      return FieldError(Path(key), Scalar(n), "must be true or false");
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status List(const std::string& key, std::vector<T>* out) const {
    if (!Has(key)) return absl::OkStatus();
    const YAML::Node n = node_[key];
    if (!n.IsSequence()) return FieldError(Path(key), Scalar(n), "must be a list");
    out->clear();
    for (std::size_t i = 0; i < n.size(); ++i) {
      try {
        if constexpr (std::is_integral_v<T>) {
          const double d = n[i].as<double>();
          if (std::floor(d) != d) throw YAML::Exception(YAML::Mark(), "not integral");
        }
        out->push_back(n[i].as<T>());
      } catch (const YAML::Exception&) {
        return FieldError(absl::StrCat(Path(key), "[", i, "]"), Scalar(n[i]),
                          std::is_integral_v<T> ? "must be an integer" : "must be a string");
      }
    }
    return absl::OkStatus();
  }

 private:
  YAML::Node node_;
  std::string path_;
};

absl::Status OneOf(absl::string_view field, const std::string& value,
                   const std::vector<std::string>& allowed) {
  for (const auto& a : allowed) {
    if (value == a) return absl::OkStatus();
  }
  return FieldError(field, value, absl::StrCat("is not one of: ", absl::StrJoin(allowed, ", ")));
}

// privacy.eval: `none`, or {noise_multiplier, bins, every}.
absl::Status ParseEval(const YAML::Node& node, EvalSpec* eval) {
  if (node.IsScalar()) {
    if (node.Scalar() != "none") {
      return FieldError("privacy.eval", node.Scalar(),
                        "must be none or a mapping {noise_multiplier, bins, every}");
    }
    eval->enabled = false;
    return absl::OkStatus();
  }
  MapReader e(node, "privacy.eval");
  RETURN_IF_ERROR(e.CheckIsMap());
  RETURN_IF_ERROR(e.CheckKnown({"noise_multiplier", "bins", "every"}));
  RETURN_IF_ERROR(e.Number("noise_multiplier", &eval->noise_multiplier));
  RETURN_IF_ERROR(e.Number("bins", &eval->bins));
  RETURN_IF_ERROR(e.Number("every", &eval->every));
  return absl::OkStatus();
}

absl::Status ParseInto(const YAML::Node& root, JobSpec* spec) {
  MapReader top(root, "");
  RETURN_IF_ERROR(top.CheckIsMap());
  RETURN_IF_ERROR(top.CheckKnown(
      {"name", "data", "dataset", "task", "features", "model", "training", "privacy", "resources"}));
  RETURN_IF_ERROR(top.String("name", &spec->name));
  RETURN_IF_ERROR(top.String("task", &spec->task));
  RETURN_IF_ERROR(top.List("features", &spec->features));

  RETURN_IF_ERROR(top.String("dataset", &spec->dataset));
  if (top.Has("data") && top.Has("dataset")) {
    return FieldError("dataset", spec->dataset, "cannot be combined with data.path; give one of them");
  }
  if (!top.Has("data") && spec->dataset.empty()) {
    return FieldError("data", "", "is required: give data: {path: FILE} or dataset: NAME");
  }
  if (top.Has("data")) {
    MapReader data(top.Get("data"), "data");
    RETURN_IF_ERROR(data.CheckIsMap());
    RETURN_IF_ERROR(data.CheckKnown({"path"}));
    if (!data.Has("path")) return FieldError("data.path", "", "is required");
    if (data.Get("path").IsSequence()) {
      RETURN_IF_ERROR(data.List("path", &spec->data_paths));
    } else {
      std::string p;
      RETURN_IF_ERROR(data.String("path", &p));
      spec->data_paths = {p};
    }
  }
  if (top.Has("model")) {
    MapReader m(top.Get("model"), "model");
    RETURN_IF_ERROR(m.CheckIsMap());
    RETURN_IF_ERROR(m.CheckKnown({"type", "hidden", "activation"}));
    RETURN_IF_ERROR(m.String("type", &spec->model.type));
    RETURN_IF_ERROR(m.List("hidden", &spec->model.hidden));
    RETURN_IF_ERROR(m.String("activation", &spec->model.activation));
    if (spec->model.type == "logistic" && !m.Has("hidden")) spec->model.hidden.clear();
  }
  if (top.Has("training")) {
    MapReader t(top.Get("training"), "training");
    RETURN_IF_ERROR(t.CheckIsMap());
    RETURN_IF_ERROR(t.CheckKnown({"epochs", "batch_size", "optimizer", "learning_rate",
                                  "momentum", "seed", "eval_fraction"}));
    RETURN_IF_ERROR(t.Number("epochs", &spec->training.epochs));
    RETURN_IF_ERROR(t.Number("batch_size", &spec->training.batch_size));
    RETURN_IF_ERROR(t.String("optimizer", &spec->training.optimizer));
    RETURN_IF_ERROR(t.Number("learning_rate", &spec->training.learning_rate));
    RETURN_IF_ERROR(t.Number("momentum", &spec->training.momentum));
    int64_t seed = static_cast<int64_t>(spec->training.seed);
    RETURN_IF_ERROR(t.Number("seed", &seed));
    if (seed < 0) return FieldError("training.seed", std::to_string(seed), "must be >= 0");
    spec->training.seed = static_cast<uint64_t>(seed);
    RETURN_IF_ERROR(t.OptionalNumber("eval_fraction", &spec->training.eval_fraction));
  }
  if (top.Has("privacy")) {
    MapReader p(top.Get("privacy"), "privacy");
    RETURN_IF_ERROR(p.CheckIsMap());
    RETURN_IF_ERROR(p.CheckKnown({"mode", "max_grad_norm", "noise_multiplier", "target_epsilon",
                                  "delta", "accountant", "eval", "noise_split", "secure_rng"}));
    RETURN_IF_ERROR(p.String("mode", &spec->privacy.mode));
    RETURN_IF_ERROR(p.Number("max_grad_norm", &spec->privacy.max_grad_norm));
    RETURN_IF_ERROR(p.OptionalNumber("noise_multiplier", &spec->privacy.noise_multiplier));
    RETURN_IF_ERROR(p.OptionalNumber("target_epsilon", &spec->privacy.target_epsilon));
    RETURN_IF_ERROR(p.Number("delta", &spec->privacy.delta));
    RETURN_IF_ERROR(p.String("accountant", &spec->privacy.accountant));
    RETURN_IF_ERROR(p.String("noise_split", &spec->privacy.noise_split));
    // secure_rng is what every DP job now does: `true` is accepted and
    // changes nothing; `false` asked for seed-derived noise, which no longer
    // exists, so it is refused rather than silently ignored.
    bool secure_rng = true;
    RETURN_IF_ERROR(p.Bool("secure_rng", &secure_rng));
    if (!secure_rng) {
      return FieldError("privacy.secure_rng", "false",
                        "is no longer possible: sampling and noise always come from the OS CSPRNG "
                        "(remove the field)");
    }
    if (p.Has("eval")) RETURN_IF_ERROR(ParseEval(p.Get("eval"), &spec->privacy.eval));
  }
  if (top.Has("resources")) {
    MapReader r(top.Get("resources"), "resources");
    RETURN_IF_ERROR(r.CheckIsMap());
    RETURN_IF_ERROR(r.CheckKnown({"workers", "device", "max_attempts"}));
    RETURN_IF_ERROR(r.Number("workers", &spec->resources.workers));
    RETURN_IF_ERROR(r.Number("max_attempts", &spec->resources.max_attempts));
    RETURN_IF_ERROR(r.String("device", &spec->resources.device));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateJobSpec(const JobSpec& spec) {
  if (spec.name.empty()) return FieldError("name", "", "is required");
  if (spec.name.size() > 128) return FieldError("name", spec.name, "is longer than 128 characters");
  // Free-form strings end up in terminals, logs, file systems and metric
  // labels; an escape ("\a" in double quotes) can put a control character
  // in one that the text itself does not have.
  RETURN_IF_ERROR(CheckPrintable("name", spec.name));
  RETURN_IF_ERROR(CheckPrintable("dataset", spec.dataset));
  for (std::size_t i = 0; i < spec.data_paths.size(); ++i) {
    RETURN_IF_ERROR(CheckPrintable(absl::StrCat("data.path[", i, "]"), spec.data_paths[i]));
  }
  if (spec.data_paths.empty() && spec.dataset.empty()) return FieldError("data.path", "", "is required");
  for (std::size_t i = 0; i < spec.data_paths.size(); ++i) {
    if (spec.data_paths[i].empty()) {
      return FieldError(absl::StrCat("data.path[", i, "]"), "", "must not be empty");
    }
  }
  if (!data::ParseTask(spec.task).ok()) {
    return FieldError("task", spec.task, "is not one of: employment, unemployment");
  }
  std::set<std::string> seen;
  for (std::size_t i = 0; i < spec.features.size(); ++i) {
    const std::string& f = spec.features[i];
    absl::Status s = data::ValidateFeatureName(f);
    if (!s.ok()) return FieldError(absl::StrCat("features[", i, "]"), f, s.message());
    if (!seen.insert(f).second) {
      return FieldError(absl::StrCat("features[", i, "]"), f, "is listed twice");
    }
  }
  RETURN_IF_ERROR(OneOf("model.type", spec.model.type, {"mlp", "logistic"}));
  RETURN_IF_ERROR(OneOf("model.activation", spec.model.activation, {"relu", "tanh"}));
  if (spec.model.type == "mlp" && spec.model.hidden.empty()) {
    return FieldError("model.hidden", "[]", "must list at least one layer width for an mlp");
  }
  if (spec.model.type == "logistic" && !spec.model.hidden.empty()) {
    return FieldError("model.hidden", std::to_string(spec.model.hidden.size()) + " layers",
                      "must be empty for a logistic model");
  }
  for (std::size_t i = 0; i < spec.model.hidden.size(); ++i) {
    const int64_t w = spec.model.hidden[i];
    if (w < 1 || w > 65536) {
      return FieldError(absl::StrCat("model.hidden[", i, "]"), std::to_string(w),
                        "must be between 1 and 65536");
    }
  }
  const TrainingSpec& t = spec.training;
  if (t.epochs < 1 || t.epochs > 100000) {
    return FieldError("training.epochs", std::to_string(t.epochs), "must be between 1 and 100000");
  }
  if (t.batch_size < 1) {
    return FieldError("training.batch_size", std::to_string(t.batch_size), "must be positive");
  }
  RETURN_IF_ERROR(OneOf("training.optimizer", t.optimizer, {"sgd", "adam"}));
  if (!(t.learning_rate > 0) || !std::isfinite(t.learning_rate)) {
    return FieldError("training.learning_rate", absl::StrCat(t.learning_rate), "must be positive");
  }
  if (!(t.momentum >= 0 && t.momentum < 1)) {
    return FieldError("training.momentum", absl::StrCat(t.momentum), "must be in [0, 1)");
  }
  if (t.eval_fraction) {
    if (!spec.dataset.empty()) {
      return FieldError("training.eval_fraction", absl::StrCat(*t.eval_fraction),
                        absl::StrCat("cannot be set for dataset '", spec.dataset,
                                     "': its held-out split was fixed by the data custodian when it "
                                     "was prepared"));
    }
    if (!(*t.eval_fraction >= kMinEvalFraction && *t.eval_fraction <= kMaxEvalFraction)) {
      return FieldError("training.eval_fraction", absl::StrCat(*t.eval_fraction),
                        absl::StrCat("must be in [", kMinEvalFraction, ", ", kMaxEvalFraction,
                                     "]: the held-out set may be neither tiny nor most of the data"));
    }
  }
  const PrivacySpec& p = spec.privacy;
  RETURN_IF_ERROR(OneOf("privacy.mode", p.mode, {"dp", "none"}));
  RETURN_IF_ERROR(OneOf("privacy.accountant", p.accountant, {"rdp", "pld"}));
  RETURN_IF_ERROR(OneOf("privacy.noise_split", p.noise_split, {"per_rank", "full"}));
  if (spec.dp()) {
    if (!(p.max_grad_norm > 0) || !std::isfinite(p.max_grad_norm)) {
      return FieldError("privacy.max_grad_norm", absl::StrCat(p.max_grad_norm),
                        "must be positive");
    }
    if (p.noise_multiplier && p.target_epsilon) {
      return FieldError("privacy.target_epsilon", absl::StrCat(*p.target_epsilon),
                        "cannot be combined with privacy.noise_multiplier; give one of them");
    }
    if (p.noise_multiplier && !(*p.noise_multiplier > 0 && std::isfinite(*p.noise_multiplier))) {
      return FieldError("privacy.noise_multiplier", absl::StrCat(*p.noise_multiplier),
                        "must be positive");
    }
    if (p.target_epsilon && !(*p.target_epsilon > 0 && std::isfinite(*p.target_epsilon))) {
      return FieldError("privacy.target_epsilon", absl::StrCat(*p.target_epsilon),
                        "must be positive");
    }
    if (!(p.delta > 0 && p.delta < 1)) {
      return FieldError("privacy.delta", absl::StrCat(p.delta), "must be in (0, 1)");
    }
    const EvalSpec& e = p.eval;
    if (e.enabled) {
      if (!(e.noise_multiplier > 0) || !std::isfinite(e.noise_multiplier)) {
        return FieldError("privacy.eval.noise_multiplier", absl::StrCat(e.noise_multiplier),
                          "must be positive (privacy.eval: none releases no metrics)");
      }
      if (e.bins < 2 || e.bins > 1000 || e.bins % 2 != 0) {
        return FieldError("privacy.eval.bins", std::to_string(e.bins),
                          "must be an even number between 2 and 1000 (so that 0.5 is a bin edge)");
      }
      if (e.every < 1 || e.every > t.epochs) {
        return FieldError("privacy.eval.every", std::to_string(e.every),
                          absl::StrCat("must be between 1 and training.epochs (", t.epochs, ")"));
      }
    }
  } else if (p.eval.enabled && (p.eval.noise_multiplier != kDefaultEvalNoiseMultiplier ||
                                 p.eval.bins != kDefaultEvalBins || p.eval.every != 1)) {
    return FieldError("privacy.eval", absl::StrCat("{noise_multiplier: ", p.eval.noise_multiplier, "}"),
                      "applies to privacy.mode dp only: a non-private job reports exact metrics "
                      "(or none with privacy.eval: none)");
  }
  if (spec.resources.workers < 1 || spec.resources.workers > 4096) {
    return FieldError("resources.workers", std::to_string(spec.resources.workers),
                      "must be between 1 and 4096");
  }
  RETURN_IF_ERROR(OneOf("resources.device", spec.resources.device, {"cpu", "cuda"}));
  if (spec.resources.max_attempts < 1 || spec.resources.max_attempts > 100) {
    return FieldError("resources.max_attempts", std::to_string(spec.resources.max_attempts),
                      "must be between 1 and 100");
  }
  return absl::OkStatus();
}

double AccountedNoiseMultiplier(const JobSpec& spec, double sigma) {
  return spec.privacy.noise_split == "full" ? sigma * std::sqrt(static_cast<double>(spec.resources.workers)) : sigma;
}

bool EvalSpec::ReleasedAfter(int32_t epoch, int32_t epochs) const {
  if (!enabled || every < 1 || epoch < 1 || epoch > epochs) return false;
  return epoch % every == 0 || epoch == epochs;
}

int32_t EvalSpec::Releases(int32_t epochs) const {
  if (!enabled || every < 1 || epochs < 1) return 0;
  return epochs / every + (epochs % every != 0 ? 1 : 0);
}

absl::StatusOr<data::EncodeOptions> EncodeOptionsFor(const JobSpec& spec, uint64_t split_key) {
  data::EncodeOptions options;
  ASSIGN_OR_RETURN(options.task, data::ParseTask(spec.task));
  options.features = spec.features;
  options.split_seed = split_key;
  options.eval_fraction = spec.training.eval_fraction.value_or(kDefaultEvalFraction);
  return options;
}

absl::StatusOr<JobSpec> ParseJobSpec(absl::string_view yaml) {
  RETURN_IF_ERROR(CheckText(yaml));
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec is not valid YAML: line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1, ": ", e.msg));
  }
  if (!root.IsDefined() || root.IsNull()) return absl::InvalidArgumentError("spec is empty");
  JobSpec spec;
  try {
    RETURN_IF_ERROR(ParseInto(root, &spec));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec: ", e.what()));
  }
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  return spec;
}

std::string JobSpecToYaml(const JobSpec& spec) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "name" << YAML::Value << spec.name;
  if (!spec.dataset.empty()) {
    e << YAML::Key << "dataset" << YAML::Value << spec.dataset;
  } else {
    e << YAML::Key << "data" << YAML::Value << YAML::BeginMap << YAML::Key << "path" << YAML::Value;
    if (spec.data_paths.size() == 1) {
      e << spec.data_paths[0];
    } else {
      e << YAML::Flow << spec.data_paths;
    }
    e << YAML::EndMap;
  }
  e << YAML::Key << "task" << YAML::Value << spec.task;
  if (!spec.features.empty()) e << YAML::Key << "features" << YAML::Value << YAML::Flow << spec.features;
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "type" << YAML::Value << spec.model.type;
  e << YAML::Key << "hidden" << YAML::Value << YAML::Flow << spec.model.hidden;
  e << YAML::Key << "activation" << YAML::Value << spec.model.activation << YAML::EndMap;
  const TrainingSpec& t = spec.training;
  e << YAML::Key << "training" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "epochs" << YAML::Value << t.epochs;
  e << YAML::Key << "batch_size" << YAML::Value << t.batch_size;
  e << YAML::Key << "optimizer" << YAML::Value << t.optimizer;
  e << YAML::Key << "learning_rate" << YAML::Value << t.learning_rate;
  e << YAML::Key << "momentum" << YAML::Value << t.momentum;
  e << YAML::Key << "seed" << YAML::Value << t.seed;
  if (t.eval_fraction) e << YAML::Key << "eval_fraction" << YAML::Value << *t.eval_fraction;
  e << YAML::EndMap;
  const PrivacySpec& p = spec.privacy;
  e << YAML::Key << "privacy" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "mode" << YAML::Value << p.mode;
  e << YAML::Key << "max_grad_norm" << YAML::Value << p.max_grad_norm;
  if (p.noise_multiplier) e << YAML::Key << "noise_multiplier" << YAML::Value << *p.noise_multiplier;
  if (p.target_epsilon) e << YAML::Key << "target_epsilon" << YAML::Value << *p.target_epsilon;
  e << YAML::Key << "delta" << YAML::Value << p.delta;
  e << YAML::Key << "accountant" << YAML::Value << p.accountant;
  if (p.noise_split != "per_rank") e << YAML::Key << "noise_split" << YAML::Value << p.noise_split;
  if (!p.eval.enabled) {
    e << YAML::Key << "eval" << YAML::Value << "none";
  } else if (spec.dp()) {
    e << YAML::Key << "eval" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "noise_multiplier" << YAML::Value << p.eval.noise_multiplier;
    e << YAML::Key << "bins" << YAML::Value << p.eval.bins;
    e << YAML::Key << "every" << YAML::Value << p.eval.every << YAML::EndMap;
  }
  e << YAML::EndMap;
  e << YAML::Key << "resources" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "workers" << YAML::Value << spec.resources.workers;
  e << YAML::Key << "device" << YAML::Value << spec.resources.device;
  e << YAML::Key << "max_attempts" << YAML::Value << spec.resources.max_attempts << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace dpfleet
