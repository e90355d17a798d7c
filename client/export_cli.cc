#include "client/export_cli.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli.h"
#include "common/files.h"
#include "common/pums/dataset.h"
#include "common/pums/schema.h"
#include "common/spec/job_spec.h"
#include "common/status.h"
#include "common/version.h"

extern char** environ;

namespace dpfleet::client {
namespace {

// The features a job trained on: its spec's, or the registered dataset's.
absl::StatusOr<std::vector<std::string>> JobFeatures(CoordinatorClient* client, const JobSpec& spec) {
  if (!spec.dataset.empty() && client != nullptr) {
    absl::StatusOr<v1::Dataset> ds = client->GetDataset(spec.dataset);
    if (!ds.ok()) return ds.status();
    nlohmann::json m = nlohmann::json::parse(ds->manifest_json(), nullptr, false);
    if (m.is_discarded() || !m.contains("features") || !m["features"].is_array()) {
      return absl::DataLossError(absl::StrCat("dataset '", spec.dataset, "' has no feature list in its manifest"));
    }
    return m["features"].get<std::vector<std::string>>();
  }
  return spec.features.empty() ? data::DefaultFeatures() : spec.features;
}

nlohmann::ordered_json FeatureCard(const std::string& name) {
  nlohmann::ordered_json f;
  const data::PumsVariable* var = data::FindVariable(name);
  f["name"] = var->name;
  f["description"] = var->description;
  std::vector<std::string> columns;
  if (var->kind == data::VarKind::kNumeric) {
    f["kind"] = "numeric";
    f["min"] = var->min_value;
    f["max"] = var->max_value;
    f["encoding"] = absl::StrCat("(code - ", var->min_value, ") / ", var->max_value - var->min_value,
                                 var->blank_allowed() ? "; blank: 0 and the indicator column 1" : "");
  } else {
    f["kind"] = "categorical";
    f["codes"] = var->codes;
    f["encoding"] = var->blank_allowed() ? "one-hot over the codes, then a blank column" : "one-hot over the codes";
  }
  f["blank"] = var->blank_allowed() ? nlohmann::ordered_json(var->blank_meaning) : nlohmann::ordered_json(nullptr);
  return f;
}

absl::StatusOr<std::string> FindTool(const ExportOptions& options) {
  if (!options.tool.empty()) return options.tool;
  if (const char* env = std::getenv("DPFLEET_EXPORT_TOOL"); env != nullptr && *env != '\0') return std::string(env);
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path beside = self.parent_path() / "dpfleet-export";
    if (std::filesystem::exists(beside, ec)) return beside.string();
  }
  return absl::FailedPreconditionError(
      "dpfleet-export (the LibTorch half of dpctl export, in the worker package) is not beside dpctl; "
      "set $DPFLEET_EXPORT_TOOL to its path");
}

// Runs `argv` and waits; its stderr goes to ours.
absl::Status RunTool(const std::vector<std::string>& argv) {
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = 0;
  if (int rc = posix_spawn(&pid, cargv[0], nullptr, nullptr, cargv.data(), environ); rc != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot run ", argv[0], ": ", std::strerror(rc)));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError(absl::StrCat("waiting for ", argv[0], ": ", std::strerror(errno)));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
    return absl::InvalidArgumentError(absl::StrCat(argv[0], " refused the model (see its message above)"));
  }
  return absl::InternalError(absl::StrCat(argv[0], " failed (status ", status, ")"));
}

absl::StatusOr<nlohmann::ordered_json> Card(CoordinatorClient* client, const v1::Job& job, const std::string& version) {
  absl::StatusOr<JobSpec> spec = ParseJobSpec(job.spec_yaml());
  if (!spec.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("job ", job.job_id(), ": its spec does not parse: ", spec.status().message()));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> features, JobFeatures(client, *spec));
  ASSIGN_OR_RETURN(std::vector<std::string> columns, data::EncodedColumns(features));
  nlohmann::ordered_json card;
  card["card_version"] = 1;
  card["job_id"] = job.job_id();
  card["name"] = job.name();
  card["task"] = spec->task;
  card["output"] = "one logit per row; sigmoid(logit) = P(label 1)";
  nlohmann::ordered_json fs = nlohmann::ordered_json::array();
  for (const std::string& f : features) {
    ASSIGN_OR_RETURN(std::string canonical, data::CanonicalFeatureName(f));
    fs.push_back(FeatureCard(canonical));
  }
  card["features"] = fs;
  card["codes_input"] = "encode(codes): int64 [n, len(features)], raw PUMS codes in feature order, -1 = blank";
  card["columns"] = columns;
  std::vector<int64_t> widths = {static_cast<int64_t>(columns.size())};
  if (spec->model.type != "logistic") widths.insert(widths.end(), spec->model.hidden.begin(), spec->model.hidden.end());
  widths.push_back(1);
  card["model"] = {{"type", spec->model.type},
                   {"activation", spec->model.type == "logistic" ? "none" : spec->model.activation},
                   {"widths", widths}};
  const bool is_private = job.mode() != "none";
  const int64_t steps = job.history_size() > 0 ? job.history(job.history_size() - 1).steps() : 0;
  nlohmann::ordered_json privacy;
  privacy["private"] = is_private;
  privacy["epsilon"] = is_private && job.has_epsilon() ? nlohmann::ordered_json(job.epsilon()) : nullptr;
  privacy["delta"] = is_private ? nlohmann::ordered_json(job.delta()) : nullptr;
  privacy["accountant"] = is_private ? nlohmann::ordered_json(job.accountant()) : nullptr;
  privacy["noise_multiplier"] = job.noise_multiplier();
  privacy["sample_rate"] = job.sample_rate();
  privacy["steps"] = steps;
  privacy["train_rows"] = job.train_rows();
  privacy["epochs"] = job.epochs_done();
  card["privacy"] = privacy;
  // The dataset's registered name only: its paths and content keys are
  // custodian-only (docs/SECURITY.md).
  card["dataset"] = spec->dataset.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(spec->dataset);
  card["dpfleet_version"] = version;
  return card;
}

}  // namespace

absl::StatusOr<nlohmann::ordered_json> ModelCard(const v1::Job& job, const std::string& dpfleet_version) {
  return Card(nullptr, job, dpfleet_version);
}

int RunExport(CoordinatorClient& client, const ExportOptions& options, std::ostream& out, std::ostream& err) {
  if (options.format != "torchscript" && options.format != "safetensors") {
    err << "dpctl export: --format: \"" << options.format
        << "\" is not a known format (expected torchscript or safetensors)\n";
    return kExitUsage;
  }
  if (options.out_path.empty()) {
    err << "dpctl export: -o FILE is required\n";
    return kExitUsage;
  }
  absl::StatusOr<std::string> tool = FindTool(options);
  if (!tool.ok()) return ReportError(tool.status(), err);
  absl::StatusOr<v1::Job> job = client.Get(options.job_id);
  if (!job.ok()) return ReportError(job.status(), err);
  absl::StatusOr<std::string> archive = client.GetModel(options.job_id);
  if (!archive.ok()) return ReportError(archive.status(), err);
  absl::StatusOr<nlohmann::ordered_json> card = Card(&client, *job, GetBuildInfo().version);
  if (!card.ok()) return ReportError(card.status(), err);

  std::string dir_template = (std::filesystem::temp_directory_path() / "dpctl-export-XXXXXX").string();
  if (mkdtemp(dir_template.data()) == nullptr) {
    return ReportError(absl::InternalError(absl::StrCat("cannot create a temporary directory: ", std::strerror(errno))),
                       err);
  }
  const std::filesystem::path dir(dir_template);
  auto cleanup = [&] {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  };
  const std::string archive_path = (dir / "model.pt").string(), card_path = (dir / "card.json").string();
  const std::string card_text = card->dump(2);
  absl::Status s = WriteFileAtomically(archive_path, *archive);
  if (s.ok()) s = WriteFileAtomically(card_path, card_text);
  const std::string partial = options.out_path + ".partial";
  if (s.ok()) {
    s = RunTool({*tool, "--archive", archive_path, "--card", card_path, "--format", options.format, "--out", partial});
  }
  if (s.ok()) {
    std::error_code ec;
    std::filesystem::rename(partial, options.out_path, ec);
    if (ec) s = absl::InvalidArgumentError(absl::StrCat("cannot write '", options.out_path, "': ", ec.message()));
  }
  cleanup();
  if (!s.ok()) {
    std::error_code ec;
    std::filesystem::remove(partial, ec);
    return ReportError(s, err);
  }
  if (options.json) {
    out << nlohmann::ordered_json{{"job_id", options.job_id},
                                  {"format", options.format},
                                  {"path", options.out_path},
                                  {"card", *card}}
               .dump()
        << "\n";
  } else {
    out << "exported the model of " << options.job_id << " as " << options.format << " to " << options.out_path << "\n";
  }
  return kExitOk;
}

}  // namespace dpfleet::client
