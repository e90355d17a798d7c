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
#include "client/args.h"
#include "client/cli.h"
#include "common/pums/prepare.h"
#include "common/pums/schema.h"

namespace dpfleet::client {
namespace {

constexpr char kPrepareUsage[] =
    "usage: dpctl data prepare --input FILE... --task employment|unemployment\n"
    "                          [--features A,B,...] [--split-seed N] [--eval-fraction F]\n"
    "                          --shards S --out DIR [--threads T] [-o json]\n"
    "  --input takes one or more files (.csv or .csv.gz) and may be repeated.\n"
    "  Defaults: the schema's default features, --split-seed 0, --eval-fraction 0.2.\n";

constexpr char kSchemaUsage[] = "usage: dpctl data schema [-o json]\n";

// Parses the flags (no positionals) and checks -o; an error message or the
// flags.
absl::StatusOr<Args> ParseDataFlags(const std::vector<std::string>& args, std::set<std::string> values,
                                    std::set<std::string> lists) {
  ArgSpec spec;
  spec.values = std::move(values);
  spec.lists = std::move(lists);
  spec.positionals = false;
  absl::StatusOr<Args> parsed = ParseArgs(args, spec);
  if (!parsed.ok()) return parsed;
  if (absl::StatusOr<bool> json = JsonOutputRequested(*parsed); !json.ok()) return json.status();
  return parsed;
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
  absl::StatusOr<Args> flags = ParseDataFlags(
      args, {"--task", "--features", "--split-seed", "--eval-fraction", "--shards", "--out", "--threads", "-o"},
      {"--input"});
  auto usage = [&](absl::string_view message) {
    err << kWho << message << "\n" << kPrepareUsage;
    return kExitUsage;
  };
  if (!flags.ok()) return usage(flags.status().message());
  const auto& v = flags->values;
  data::PrepareOptions options;
  if (auto it = flags->lists.find("--input"); it != flags->lists.end()) options.inputs = it->second;
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
  if (*JsonOutputRequested(*flags)) {
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
  absl::StatusOr<Args> flags = ParseDataFlags(args, {"-o"}, {});
  if (!flags.ok()) {
    err << "dpctl data schema: " << flags.status().message() << "\n" << kSchemaUsage;
    return kExitUsage;
  }
  if (*JsonOutputRequested(*flags)) {
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
