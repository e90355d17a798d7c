#include "client/data_cli.h"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cli.h"
#include "common/prepare.h"
#include "common/pums_schema.h"

namespace dpfleet::client {
namespace {

constexpr char kPrepareUsage[] =
    "usage: dpctl data prepare --input FILE... --task employment|unemployment\n"
    "                          [--features A,B,...] [--split-seed N] [--eval-fraction F]\n"
    "                          --shards S --out DIR [--threads T] [-o json]\n"
    "  --input takes one or more files (.csv or .csv.gz) and may be repeated.\n"
    "  Defaults: the schema's default features, --split-seed 0, --eval-fraction 0.2.\n";

constexpr char kSchemaUsage[] = "usage: dpctl data schema [-o json]\n";

// Parsed flags: every flag takes values; only --input takes several.
struct Flags {
  std::map<std::string, std::string> values;
  std::vector<std::string> inputs;
};

// Returns an error message, or nullopt when the arguments parse.
std::optional<std::string> ParseFlags(const std::vector<std::string>& args,
                                      const std::set<std::string>& known, Flags* flags) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::optional<std::string> value;
    if (name == "-o" || absl::StartsWith(name, "-o=")) {
      if (name.size() > 2) value = name.substr(3);
      name = "-o";
    } else if (absl::StartsWith(name, "--") && name.size() > 2) {
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
    } else {
      return absl::StrCat("unexpected argument \"", name, "\"");
    }
    if (known.count(name) == 0) return absl::StrCat("unknown flag ", name);
    if (name == "--input") {
      // --input a.csv b.csv ... : every following argument up to the next flag.
      if (value.has_value()) {
        flags->inputs.push_back(*value);
        continue;
      }
      size_t n = 0;
      while (i + 1 < args.size() && !absl::StartsWith(args[i + 1], "-")) {
        flags->inputs.push_back(args[++i]);
        ++n;
      }
      if (n == 0) return std::string("flag --input needs at least one FILE");
      continue;
    }
    if (!value.has_value()) {
      if (i + 1 >= args.size()) return absl::StrCat("flag ", name, " needs a value");
      value = args[++i];
    }
    if (flags->values.count(name) != 0) return absl::StrCat("flag ", name, " given more than once");
    flags->values[name] = *value;
  }
  return std::nullopt;
}

std::optional<std::string> CheckOutputFormat(const Flags& flags) {
  auto it = flags.values.find("-o");
  if (it != flags.values.end() && it->second != "json") {
    return absl::StrCat("-o: \"", it->second, "\" is not a known format (only json)");
  }
  return std::nullopt;
}

// Codes that mean "the caller gave something wrong" (exit 2).
bool IsInputError(const absl::Status& s) {
  return s.code() == absl::StatusCode::kInvalidArgument ||
         s.code() == absl::StatusCode::kNotFound ||
         s.code() == absl::StatusCode::kOutOfRange ||
         s.code() == absl::StatusCode::kFailedPrecondition;
}

}  // namespace

int RunDataPrepare(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  constexpr char kWho[] = "dpctl data prepare: ";
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h" || args[0] == "help")) {
    out << kPrepareUsage;
    return kExitOk;
  }
  Flags flags;
  std::optional<std::string> bad =
      ParseFlags(args,
                 {"--input", "--task", "--features", "--split-seed", "--eval-fraction",
                  "--shards", "--out", "--threads", "-o"},
                 &flags);
  if (!bad) bad = CheckOutputFormat(flags);
  auto usage = [&](const std::string& message) {
    err << kWho << message << "\n" << kPrepareUsage;
    return kExitUsage;
  };
  if (bad) return usage(*bad);
  const auto& v = flags.values;
  data::PrepareOptions options;
  options.inputs = flags.inputs;
  if (options.inputs.empty()) return usage("missing required flag --input FILE...");
  for (const char* required : {"--task", "--shards", "--out"}) {
    if (v.count(required) == 0) return usage(absl::StrCat("missing required flag ", required));
  }
  {
    absl::StatusOr<data::Task> task = data::ParseTask(v.at("--task"));
    if (!task.ok()) return usage(absl::StrCat("--task: ", task.status().message()));
    options.encode.task = *task;
  }
  if (v.count("--features")) {
    for (absl::string_view f : absl::StrSplit(v.at("--features"), ',')) {
      f = absl::StripAsciiWhitespace(f);
      if (f.empty()) {
        return usage(absl::StrCat("--features: \"", v.at("--features"),
                                  "\" has an empty name (expected A,B,...)"));
      }
      options.encode.features.emplace_back(f);
    }
  }
  if (v.count("--split-seed") &&
      !absl::SimpleAtoi(v.at("--split-seed"), &options.encode.split_seed)) {
    return usage(absl::StrCat("--split-seed: \"", v.at("--split-seed"),
                              "\" is not a non-negative 64-bit integer"));
  }
  if (v.count("--eval-fraction")) {
    double f;
    if (!absl::SimpleAtod(v.at("--eval-fraction"), &f) || !(f >= 0.0 && f <= 1.0)) {
      return usage(absl::StrCat("--eval-fraction: \"", v.at("--eval-fraction"),
                                "\" is not a number in [0, 1]"));
    }
    options.encode.eval_fraction = f;
  }
  if (!absl::SimpleAtoi(v.at("--shards"), &options.shards) || options.shards < 1 ||
      options.shards > data::kMaxShards) {
    return usage(absl::StrCat("--shards: \"", v.at("--shards"), "\" is not an integer in [1, ",
                              data::kMaxShards, "]"));
  }
  options.out_dir = v.at("--out");
  if (options.out_dir.empty()) return usage("--out: the directory name is empty");
  if (v.count("--threads") &&
      (!absl::SimpleAtoi(v.at("--threads"), &options.encode.threads) ||
       options.encode.threads < 1)) {
    return usage(absl::StrCat("--threads: \"", v.at("--threads"), "\" is not a positive integer"));
  }

  absl::StatusOr<data::Manifest> m = data::PrepareShards(options);
  if (!m.ok()) {
    err << kWho << m.status().message() << "\n";
    return IsInputError(m.status()) ? kExitUsage : kExitFailure;
  }
  if (v.count("-o")) {
    out << data::ManifestToJson(*m);
    return kExitOk;
  }
  int64_t dropped = 0;
  for (const auto& [reason, n] : m->rows_dropped) dropped += n;
  out << absl::StrFormat(
      "prepared %s: %d rows read, %d train (positive rate %.4f), %d eval, %d dropped\n",
      options.out_dir, m->rows_read, m->rows_train, m->positive_rate_train, m->rows_eval,
      dropped);
  for (const auto& [reason, n] : m->rows_dropped) {
    out << absl::StrFormat("  dropped %-48s %d\n", reason, n);
  }
  out << absl::StrFormat("  %d features -> dim %d; %d train shards + %s; task %s\n",
                         m->features.size(), m->dim, m->shards, data::kEvalShardFile, m->task);
  return kExitOk;
}

int RunDataSchema(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Flags flags;
  std::optional<std::string> bad = ParseFlags(args, {"-o"}, &flags);
  if (!bad) bad = CheckOutputFormat(flags);
  if (bad) {
    err << "dpctl data schema: " << *bad << "\n" << kSchemaUsage;
    return kExitUsage;
  }
  if (flags.values.count("-o")) {
    out << data::SchemaJson();
    return kExitOk;
  }
  out << absl::StrFormat("PUMS schema version %d (label %s; default features %s)\n",
                         data::kSchemaVersion, data::kLabelVariable,
                         absl::StrJoin(data::DefaultFeatures(), ","));
  for (const data::PumsVariable& var : data::PumsVariables()) {
    std::string values;
    if (var.kind == data::VarKind::kNumeric) {
      values = absl::StrCat(var.min_value, "..", var.max_value);
    } else if (var.kind == data::VarKind::kCategorical) {
      values = absl::StrCat("codes ", var.codes.front(), "..", var.codes.back(), " (",
                            var.codes.size(), ")");
    } else {
      values = "text";
    }
    out << absl::StrFormat("  %-9s %-22s %-9s %s\n", var.name, values,
                           var.blank_allowed() ? "blank ok" : "",
                           var.feature_use == data::FeatureUse::kAllowed
                               ? ""
                               : data::FeatureUseReason(var.feature_use));
  }
  return kExitOk;
}

}  // namespace dpfleet::client
