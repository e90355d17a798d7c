#include "client/cli.h"

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/admin_cli.h"
#include "client/args.h"
#include "client/audit_cli.h"
#include "client/certs.h"
#include "client/commands.h"
#include "client/config_cli.h"
#include "client/connection.h"
#include "client/coordinator_client.h"
#include "client/data_cli.h"
#include "client/export_cli.h"
#include "client/logs_cli.h"
#include "client/output.h"
#include "client/privacy_cli.h"
#include "client/privacy_format.h"
#include "client/report_cli.h"
#include "common/files.h"
#include "common/plan/plan.h"
#include "common/pums/dataset.h"
#include "common/pums/schema.h"
#include "common/pums/synth.h"
#include "common/spec/job_spec.h"
#include "common/version.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {

int ExitCodeFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnknown:
      return kExitJobFailed;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
      return kExitUnavailable;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return kExitDenied;
    default:
      return kExitUsage;
  }
}

int ReportError(const absl::Status& s, std::ostream& err) {
  err << "dpctl: " << absl::StatusCodeToString(s.code()) << ": " << s.message() << "\n";
  return ExitCodeFor(s.code());
}

namespace {

// Parses one verb's arguments (client/args.h); on a refused argument prints
// "WHO: reason" and returns false.
bool ParseVerbArgs(const std::vector<std::string>& args, const ArgSpec& spec, const std::string& who, Args* p,
                   std::ostream& err) {
  absl::StatusOr<Args> parsed = ParseArgs(args, spec);
  if (!parsed.ok()) {
    err << who << ": " << parsed.status().message() << "\n";
    return false;
  }
  *p = *std::move(parsed);
  return true;
}

bool JsonOutput(const Args& p, std::ostream& err, bool* json) {
  absl::StatusOr<bool> requested = JsonOutputRequested(p);
  if (!requested.ok()) {
    err << "dpctl: " << requested.status().message() << "\n";
    return false;
  }
  *json = *requested;
  return true;
}

std::string EpochRow(const v1::EpochMetrics& m, int32_t epochs) {
  const std::string eps = Pad(EpsilonText(EpochEpsilon(m)), 8);
  if (!m.has_eval_accuracy()) {
    return absl::StrFormat("epoch %3d/%-3d  (no eval release)  eps %s  (%.1fs)", m.epoch(), epochs, eps,
                           m.train_seconds());
  }
  return absl::StrFormat("epoch %3d/%-3d  loss %.4f  acc %.4f (majority %.4f)  auc %.4f  eps %s  (%.1fs)", m.epoch(),
                         epochs, m.eval_loss(), m.eval_accuracy(), m.majority_rate(), m.eval_auc(), eps,
                         m.train_seconds());
}

std::string ProgressBar(int32_t done, int32_t total, std::optional<double> eps, const char* state) {
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(static_cast<double>(done) / total * width) : 0;
  return absl::StrFormat("\r[%s%s] %d/%d epochs  eps %s  %s\x1b[K", std::string(filled, '#'),
                         std::string(width - filled, '.'), done, total, EpsilonText(eps), state);
}

nlohmann::json EventJson(const v1::JobEvent& e) {
  nlohmann::json j = {{"job_id", e.job_id()}, {"state", StateName(e.state())}};
  switch (e.type()) {
    case v1::JobEvent::SNAPSHOT:
      j["event"] = "snapshot";
      j["job"] = nlohmann::json::parse(JobToJson(e.job(), -1));
      break;
    case v1::JobEvent::EPOCH:
      j["event"] = "epoch";
      j["epoch"] = EpochJson(e.epoch());
      break;
    default:
      j["event"] = "state";
      j["reason"] = e.reason();
  }
  return j;
}

// Follows a job to its end. Returns the exit code from its final state.
int Follow(CoordinatorClient& client, const std::string& job_id, bool json, bool interactive, std::ostream& out,
           std::ostream& err) {
  int32_t epochs = 0;
  std::optional<double> eps;
  int32_t done = 0;
  std::string state = "QUEUED";
  auto on_event = [&](const v1::JobEvent& e) {
    if (json) {
      out << EventJson(e).dump() << "\n" << std::flush;
      return true;
    }
    state = StateName(e.state());
    if (e.type() == v1::JobEvent::SNAPSHOT) {
      epochs = e.job().epochs();
      eps = JobEpsilon(e.job());
      done = e.job().epochs_done();
      out << "job " << e.job().job_id() << " (" << e.job().name() << "): " << state << "\n";
      for (const v1::EpochMetrics& m : e.job().history()) out << EpochRow(m, epochs) << "\n";
    } else if (e.type() == v1::JobEvent::EPOCH) {
      if (interactive) out << "\r\x1b[K";
      out << EpochRow(e.epoch(), epochs) << "\n";
      eps = EpochEpsilon(e.epoch());
      done = e.epoch().epoch();
    } else {
      if (interactive) out << "\r\x1b[K";
      out << "state " << state << (e.reason().empty() ? "" : ": " + e.reason()) << "\n";
    }
    if (interactive && !IsTerminal(e.state())) out << ProgressBar(done, epochs, eps, state.c_str());
    out << std::flush;
    return true;
  };
  absl::StatusOr<v1::Job> final_job = client.Watch(job_id, on_event);
  if (!final_job.ok()) return ReportError(final_job.status(), err);
  if (json) {
    out << JobToJson(*final_job, -1) << "\n";
  } else {
    if (interactive) out << "\r\x1b[K";
    out << absl::StrFormat("job %s %s after %d/%d epochs; eps %s%s%s\n", final_job->job_id(),
                           StateName(final_job->state()), final_job->epochs_done(), final_job->epochs(),
                           EpsilonText(JobEpsilon(*final_job)),
                           IsPrivate(*final_job) ? absl::StrFormat(" (delta %.3g)", final_job->delta()) : "",
                           final_job->reason().empty() ? "" : ": " + final_job->reason());
  }
  return final_job->state() == v1::SUCCEEDED ? kExitOk : kExitJobFailed;
}

std::string UnixMsText(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

// `list`'s filters as the request the coordinator applies.
absl::StatusOr<v1::ListJobsRequest> ListFilter(const Args& p) {
  v1::ListJobsRequest req;
  if (auto it = p.values.find("--state"); it != p.values.end()) {
    v1::JobState state;
    if (!v1::JobState_Parse(absl::AsciiStrToUpper(it->second), &state) || state == v1::JOB_STATE_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--state: '", it->second, "' is not a job state (expected QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED)"));
    }
    req.set_state(state);
  }
  if (auto it = p.values.find("--owner"); it != p.values.end()) req.set_owner(it->second);
  if (auto it = p.values.find("--dataset"); it != p.values.end()) req.set_dataset(it->second);
  if (auto it = p.values.find("--limit"); it != p.values.end()) {
    int32_t limit = 0;
    if (!absl::SimpleAtoi(it->second, &limit)) {
      return absl::InvalidArgumentError(absl::StrCat("--limit: '", it->second, "' is not an integer"));
    }
    if (limit < 1) return absl::InvalidArgumentError(absl::StrCat("--limit: '", it->second, "' must be at least 1"));
    req.set_limit(limit);
  }
  return req;
}

int CompletionVerb(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (args.size() != 1) {
    err << "dpctl completion: expected bash or zsh\n";
    return kExitUsage;
  }
  absl::StatusOr<std::string> script = CompletionScript(args[0]);
  if (!script.ok()) {
    err << "dpctl " << script.status().message() << "\n";
    return kExitUsage;
  }
  out << *script;
  return kExitOk;
}

int DataVerb(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (!args.empty() && args[0] == "prepare") return RunDataPrepare({args.begin() + 1, args.end()}, out, err);
  if (!args.empty() && args[0] == "schema") return RunDataSchema({args.begin() + 1, args.end()}, out, err);
  if (args.empty() || args[0] != "synth") {
    err << "dpctl data: expected synth | prepare | schema\n";
    return kExitUsage;
  }
  Args p;
  ArgSpec spec;
  spec.values = {"--rows", "--seed", "-o", "--state"};
  spec.positionals = false;
  if (!ParseVerbArgs({args.begin() + 1, args.end()}, spec, "dpctl data synth", &p, err)) return kExitUsage;
  data::SynthOptions options;
  if (!p.values.count("--rows") || !absl::SimpleAtoi(p.values["--rows"], &options.rows) || options.rows < 0) {
    err << "dpctl data synth: --rows '" << p.values["--rows"] << "' must be a non-negative integer\n";
    return kExitUsage;
  }
  if (p.values.count("--seed") && !absl::SimpleAtoi(p.values["--seed"], &options.seed)) {
    err << "dpctl data synth: --seed '" << p.values["--seed"] << "' must be a non-negative integer\n";
    return kExitUsage;
  }
  if (p.values.count("--state") && !absl::SimpleAtoi(p.values["--state"], &options.state_fips)) {
    err << "dpctl data synth: --state '" << p.values["--state"] << "' must be a FIPS code\n";
    return kExitUsage;
  }
  if (!p.values.count("-o") || p.values["-o"].empty()) {
    err << "dpctl data synth: -o FILE is required\n";
    return kExitUsage;
  }
  absl::Status s = data::WriteSyntheticPums(options, p.values["-o"]);
  if (!s.ok()) return ReportError(s, err);
  out << "wrote " << options.rows << " synthetic PUMS person rows to " << p.values["-o"] << "\n";
  return kExitOk;
}

int BudgetVerb(CoordinatorClient& client, const Args& p, bool json, std::ostream& out, std::ostream& err) {
  if (!p.positional.empty() && p.positional[0] == "set") {
    if (p.positional.size() != 2 || !p.values.count("--epsilon") || !p.values.count("--delta")) {
      err << "dpctl budget set: expected DATASET --epsilon E --delta D\n";
      return kExitUsage;
    }
    double eps = 0, delta = 0;
    if (!absl::SimpleAtod(p.values.at("--epsilon"), &eps)) {
      err << "dpctl budget set: --epsilon '" << p.values.at("--epsilon") << "' is not a number\n";
      return kExitUsage;
    }
    if (!absl::SimpleAtod(p.values.at("--delta"), &delta)) {
      err << "dpctl budget set: --delta '" << p.values.at("--delta") << "' is not a number\n";
      return kExitUsage;
    }
    absl::StatusOr<std::vector<v1::DatasetBudget>> set = client.SetBudget(p.positional[1], eps, delta);
    if (!set.ok()) return ReportError(set.status(), err);
    if (json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const v1::DatasetBudget& b : *set) arr.push_back(BudgetJson(b));
      out << nlohmann::json{{"files", arr}}.dump(2) << "\n";
    } else {
      out << absl::StrFormat("budget epsilon %.6g at delta %.3g on %d file(s) of %s:\n", eps, delta, set->size(),
                             p.positional[1])
          << BudgetTable(*set);
    }
    return kExitOk;
  }
  if (p.positional.size() > 1 || p.values.count("--epsilon") || p.values.count("--delta")) {
    err << "dpctl budget: expected [DATASET] or set DATASET --epsilon E --delta D\n";
    return kExitUsage;
  }
  absl::StatusOr<std::vector<v1::DatasetBudget>> budgets = client.Budgets(p.positional.empty() ? "" : p.positional[0]);
  if (!budgets.ok()) return ReportError(budgets.status(), err);
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const v1::DatasetBudget& b : *budgets) arr.push_back(BudgetJson(b));
    out << nlohmann::json{{"files", arr}}.dump(2) << "\n";
    return kExitOk;
  }
  out << BudgetTable(*budgets);
  return kExitOk;
}

nlohmann::json DatasetJson(const v1::Dataset& d) {
  nlohmann::json j = {{"name", d.name()},
                      {"paths", std::vector<std::string>(d.paths().begin(), d.paths().end())},
                      {"task", d.task()},
                      {"state", d.state()},
                      {"reason", d.reason()},
                      {"dir", d.dir()},
                      {"rows_train", d.rows_train()},
                      {"rows_eval", d.rows_eval()},
                      {"rows_prepared", d.rows_prepared()}};
  j["manifest"] =
      d.manifest_json().empty() ? nlohmann::json(nullptr) : nlohmann::json::parse(d.manifest_json(), nullptr, false);
  return j;
}

int DatasetsVerb(CoordinatorClient& client, const Args& p, bool json, std::ostream& out, std::ostream& err) {
  const std::string sub = p.positional.empty() ? "list" : p.positional[0];
  if (sub == "add") {
    if (p.positional.size() != 2 || !p.lists.count("--path")) {
      err << "dpctl datasets add: expected NAME --path FILE [FILE...]\n";
      return kExitUsage;
    }
    v1::AddDatasetRequest req;
    req.set_name(p.positional[1]);
    for (const std::string& path : p.lists.at("--path")) req.add_paths(path);
    if (p.values.count("--task")) req.set_task(p.values.at("--task"));
    if (p.values.count("--features")) {
      for (absl::string_view f : absl::StrSplit(p.values.at("--features"), ',', absl::SkipEmpty())) {
        req.add_features(std::string(f));
      }
    }
    int64_t n = 0;
    double f = 0;
    if (p.values.count("--shards")) {
      if (!absl::SimpleAtoi(p.values.at("--shards"), &n) || n < 1) {
        err << "dpctl datasets add: --shards '" << p.values.at("--shards") << "' must be a positive integer\n";
        return kExitUsage;
      }
      req.set_shards(static_cast<int32_t>(n));
    }
    if (p.values.count("--split-seed")) {
      if (!absl::SimpleAtoi(p.values.at("--split-seed"), &n) || n < 0) {
        err << "dpctl datasets add: --split-seed '" << p.values.at("--split-seed") << "' must be >= 0\n";
        return kExitUsage;
      }
      req.set_split_seed(static_cast<uint64_t>(n));
    }
    if (p.values.count("--eval-fraction")) {
      if (!absl::SimpleAtod(p.values.at("--eval-fraction"), &f)) {
        err << "dpctl datasets add: --eval-fraction '" << p.values.at("--eval-fraction") << "' is not a number\n";
        return kExitUsage;
      }
      req.set_eval_fraction(f);
    }
    absl::StatusOr<v1::Dataset> d = client.AddDataset(req);
    if (!d.ok()) return ReportError(d.status(), err);
    if (json) {
      out << DatasetJson(*d).dump(2) << "\n";
    } else {
      out << "dataset " << d->name() << ": " << d->state() << " (shards in " << d->dir() << ")\n";
    }
    return kExitOk;
  }
  if (sub == "show") {
    if (p.positional.size() != 2) {
      err << "dpctl datasets show: expected NAME\n";
      return kExitUsage;
    }
    absl::StatusOr<v1::Dataset> d = client.GetDataset(p.positional[1]);
    if (!d.ok()) return ReportError(d.status(), err);
    if (json) {
      out << DatasetJson(*d).dump(2) << "\n";
    } else {
      out << absl::StrFormat("dataset  %s\nstate    %s%s\ntask     %s\nrows     %d train, %d eval\ndir      %s\n",
                             d->name(), d->state(), d->reason().empty() ? "" : ": " + d->reason(), d->task(),
                             d->rows_train(), d->rows_eval(), d->dir());
      if (!d->manifest_json().empty()) out << d->manifest_json();
    }
    return kExitOk;
  }
  if (sub == "rm" || sub == "remove") {
    if (p.positional.size() != 2) {
      err << "dpctl datasets rm: expected NAME\n";
      return kExitUsage;
    }
    absl::StatusOr<v1::Dataset> d = client.RemoveDataset(p.positional[1]);
    if (!d.ok()) return ReportError(d.status(), err);
    if (json) {
      out << DatasetJson(*d).dump(2) << "\n";
    } else {
      out << "removed dataset " << d->name() << " (" << d->state() << "); its shards in " << d->dir()
          << " are deleted, the raw files and the privacy ledger are kept\n";
    }
    return kExitOk;
  }
  if (sub != "list" || p.positional.size() > 1) {
    err << "dpctl datasets: expected add | list | show | rm\n";
    return kExitUsage;
  }
  absl::StatusOr<std::vector<v1::Dataset>> all = client.ListDatasets();
  if (!all.ok()) return ReportError(all.status(), err);
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const v1::Dataset& d : *all) arr.push_back(DatasetJson(d));
    out << nlohmann::json{{"datasets", arr}}.dump(2) << "\n";
    return kExitOk;
  }
  out << absl::StrFormat("%-20s %-10s %-13s %10s %10s %10s\n", "DATASET", "STATE", "TASK", "PREPARED", "TRAIN", "EVAL");
  for (const v1::Dataset& d : *all) {
    out << absl::StrFormat("%-20s %-10s %-13s %10d %10d %10d\n", d.name(), d.state(), d.task(), d.rows_prepared(),
                           d.rows_train(), d.rows_eval());
  }
  return kExitOk;
}

int PlanVerb(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Args p;
  ArgSpec flags;
  flags.values = {"--dataset-size",         "--prices", "--examples-per-second", "--allreduce-busbw-gbps",
                  "--allreduce-latency-us", "-o"};
  if (!ParseVerbArgs(args, flags, "dpctl plan", &p, err)) return kExitUsage;
  bool json = false;
  if (!JsonOutput(p, err, &json)) return kExitUsage;
  if (p.positional.size() != 1 || !p.values.count("--dataset-size")) {
    err << "dpctl plan: expected SPEC.yaml --dataset-size N\n";
    return kExitUsage;
  }
  std::ifstream f(p.positional[0]);
  if (!f) {
    err << "dpctl plan: cannot read spec file '" << p.positional[0] << "'\n";
    return kExitUsage;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  absl::StatusOr<JobSpec> spec = ParseJobSpec(ss.str());
  if (!spec.ok()) return ReportError(spec.status(), err);
  plan::PriceList prices = plan::DefaultPriceList();
  if (p.values.count("--prices")) {
    std::ifstream pf(p.values["--prices"]);
    if (!pf) {
      err << "dpctl plan: cannot read --prices '" << p.values["--prices"] << "'\n";
      return kExitUsage;
    }
    std::stringstream ps;
    ps << pf.rdbuf();
    absl::StatusOr<plan::PriceList> parsed = plan::ParsePriceList(ps.str());
    if (!parsed.ok()) return ReportError(parsed.status(), err);
    prices = *parsed;
  }
  plan::Performance perf{prices.examples_per_second_per_rank, prices.allreduce_latency_us, prices.allreduce_busbw_gbps};
  auto number = [&](const char* flag, double* v) {
    if (!p.values.count(flag)) return true;
    if (absl::SimpleAtod(p.values[flag], v) && *v >= 0) return true;
    err << "dpctl plan: " << flag << " '" << p.values[flag] << "' must be a non-negative number\n";
    return false;
  };
  plan::JobShape job;
  if (!absl::SimpleAtoi(p.values["--dataset-size"], &job.dataset_size) || job.dataset_size < 1) {
    err << "dpctl plan: --dataset-size '" << p.values["--dataset-size"] << "' must be a positive integer\n";
    return kExitUsage;
  }
  if (!number("--examples-per-second", &perf.examples_per_second_per_rank) ||
      !number("--allreduce-busbw-gbps", &perf.allreduce_busbw_gbps) ||
      !number("--allreduce-latency-us", &perf.allreduce_latency_us)) {
    return kExitUsage;
  }
  job.batch_size = spec->training.batch_size;
  job.epochs = spec->training.epochs;
  absl::StatusOr<std::vector<std::string>> columns =
      data::EncodedColumns(spec->features.empty() ? data::DefaultFeatures() : spec->features);
  if (!columns.ok()) return ReportError(columns.status(), err);
  job.parameters = plan::MlpParameters(static_cast<int64_t>(columns->size()), spec->model.hidden);
  absl::StatusOr<std::vector<plan::PlanRow>> rows = plan::Plan(job, prices, perf);
  if (!rows.ok()) return ReportError(rows.status(), err);
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const plan::PlanRow& r : *rows) {
      arr.push_back({{"shape", r.shape},
                     {"instances", r.instances},
                     {"ranks", r.ranks},
                     {"price_per_hour", r.price_per_hour},
                     {"step_seconds", r.step_seconds},
                     {"job_seconds", r.job_seconds},
                     {"cost", r.cost},
                     {"cheapest", r.cheapest},
                     {"fastest", r.fastest},
                     {"supported", r.supported}});
      if (!r.supported) arr.back()["unsupported_reason"] = r.unsupported_reason;
    }
    out << nlohmann::json{{"currency", prices.currency},
                          {"source", prices.source},
                          {"parameters", job.parameters},
                          {"rows", arr}}
               .dump(2)
        << "\n";
    return kExitOk;
  }
  out << absl::StrFormat("# %s: N=%d, B=%d, %d epochs, %d parameters; prices: %s\n", spec->name, job.dataset_size,
                         job.batch_size, job.epochs, job.parameters, prices.source);
  out << absl::StrFormat("%-14s %9s %6s %10s %10s %12s %10s\n", "SHAPE", "INSTANCES", "RANKS", "PRICE/H", "MS/STEP",
                         "JOB TIME", "COST");
  for (const plan::PlanRow& r : *rows) {
    out << absl::StrFormat("%-14s %9d %6d %10.2f %10.3f %11.1fs %10.4f%s%s%s\n", r.shape, r.instances, r.ranks,
                           r.price_per_hour, r.step_seconds * 1e3, r.job_seconds, r.cost,
                           r.cheapest ? "  <- best value" : "", r.fastest ? "  <- fastest" : "",
                           r.supported ? "" : "  UNSUPPORTED");
  }
  std::set<std::string> reasons;
  for (const plan::PlanRow& r : *rows) {
    if (!r.supported && reasons.insert(r.shape).second) {
      out << "# UNSUPPORTED " << r.shape << ": " << r.unsupported_reason << "\n";
    }
  }
  return kExitOk;
}

}  // namespace

int RunDpctl(const std::vector<std::string>& all_args, const CliEnv& env, std::ostream& out, std::ostream& err) {
  // Connection flags may come before the verb (and after it, below).
  ConnectionSettings flags;
  std::string context;
  std::vector<std::string> args;
  for (std::size_t i = 0; i < all_args.size(); ++i) {
    const std::string& a = all_args[i];
    bool matched = false;
    for (auto [name, field] : {std::pair<const char*, std::string*>{"--server", &flags.server},
                               {"--token", &flags.token},
                               {"--ca", &flags.ca},
                               {"--context", &context}}) {
      const std::string prefix = std::string(name) + "=";
      if (!args.empty() || (a != name && a.rfind(prefix, 0) != 0)) continue;
      matched = true;
      if (a == name) {
        if (i + 1 >= all_args.size()) {
          err << "dpctl: " << name << " needs a value\n";
          return kExitUsage;
        }
        *field = all_args[++i];
      } else {
        *field = a.substr(prefix.size());
      }
    }
    if (!matched) args.push_back(a);
  }
  if (!args.empty() && args[0] == "--version") {
    out << VersionLine("dpctl") << "\n";
    return kExitOk;
  }
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::size_t depth = 0;
    const std::vector<std::string> asked(args.empty() ? args.begin() : args.begin() + 1, args.end());
    const VerbDef* about = FindVerb(asked, &depth);
    (args.empty() ? err : out) << HelpText(about != nullptr ? about->path : std::vector<std::string>{});
    return args.empty() ? kExitUsage : kExitOk;
  }
  std::size_t depth = 0;
  const VerbDef* def = FindVerb(args, &depth);
  const std::string verb = args[0];
  if (def == nullptr) {
    err << "dpctl: unknown verb '" << verb << "' (dpctl --help lists the verbs)\n";
    return kExitUsage;
  }
  // --help anywhere after the verb (before a bare "--") asks for the verb's help.
  for (std::size_t i = depth; i < args.size() && args[i] != "--"; ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      out << HelpText(def->path);
      return kExitOk;
    }
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (verb == "privacy") return RunPrivacyCommand(rest, out, err);
  if (verb == "data") return DataVerb(rest, out, err);
  if (verb == "plan") return PlanVerb(rest, out, err);
  if (verb == "completion") return CompletionVerb(rest, out, err);
  if (verb == "config") return RunConfigCommand(rest, env.config_path, env.config_required, out, err);
  if (def->path == std::vector<std::string>{"admin", "certs"}) {
    return RunAdminCerts({args.begin() + 2, args.end()}, out, err);
  }

  Args p;
  if (!ParseVerbArgs({args.begin() + static_cast<std::ptrdiff_t>(depth), args.end()}, def->spec,
                     "dpctl " + absl::StrJoin(def->path, " "), &p, err)) {
    return kExitUsage;
  }
  // The handlers below read the sub-verbs as the first positionals.
  p.positional.insert(p.positional.begin(), def->path.begin() + 1, def->path.end());
  if (p.values.count("--server")) flags.server = p.values["--server"];
  if (p.values.count("--token")) flags.token = p.values["--token"];
  if (p.values.count("--ca")) flags.ca = p.values["--ca"];
  if (p.values.count("--context")) context = p.values["--context"];
  OutputFormat format = OutputFormat::kText;
  // export and report: -o names the output file or directory.
  if (verb != "ledger" && verb != "export" && verb != "report" &&
      !(verb == "admin" && p.positional.size() >= 2 && p.positional[1] == "create")) {
    absl::StatusOr<OutputFormat> requested = OutputFormatRequested(p, def->outputs);
    if (!requested.ok()) {
      err << "dpctl " << absl::StrJoin(def->path, " ") << ": " << requested.status().message() << "\n";
      return kExitUsage;
    }
    format = *requested;
  }
  if (format == OutputFormat::kName && p.switches.count("--follow")) {
    err << "dpctl submit: -o name prints only the job id; it cannot follow the job (drop --follow or -o name)\n";
    return kExitUsage;
  }
  if (format == OutputFormat::kYaml || format == OutputFormat::kName) {
    // Both are views of the JSON form: run the verb for JSON, then convert.
    std::vector<std::string> as_json;
    for (const std::string& a : all_args) as_json.push_back(a);
    for (std::size_t i = 0; i + 1 < as_json.size(); ++i) {
      if (as_json[i] == "-o") as_json[i + 1] = "json";
      if (as_json[i] == "-o=yaml" || as_json[i] == "-o=name") as_json[i] = "-o=json";
    }
    for (std::string& a : as_json) {
      if (a == "-o=yaml" || a == "-o=name") a = "-o=json";
    }
    std::ostringstream json_out;
    const int rc = RunDpctl(as_json, env, json_out, err);
    if (rc != kExitOk && json_out.str().empty()) return rc;
    absl::Status converted =
        format == OutputFormat::kYaml ? JsonToYaml(json_out.str(), out) : JsonToNames(json_out.str(), out);
    if (!converted.ok()) return ReportError(converted, err);
    return rc;
  }
  const bool json = format == OutputFormat::kJson;
  const bool wide = format == OutputFormat::kWide;
  absl::StatusOr<ConnectionSettings> settings = ResolveConnection(
      flags, ConnectionSettings{env.default_server, env.ca, env.token}, env.config_path, env.config_required, context);
  absl::StatusOr<ClientOptions> options = settings.ok() ? ToClientOptions(*settings) : settings.status();
  if (!options.ok()) {
    err << "dpctl: " << options.status().message() << "\n";
    return kExitUsage;
  }
  CoordinatorClient client(*options);
  if (verb == "admin") return AdminVerb(client, p, out, err);
  if (verb == "ledger") return LedgerVerb(client, p, out, err);
  if (verb == "export") {
    // -o names the output file here, not the output format.
    if (p.positional.size() != 1 || !p.values.count("--format")) {
      err << "dpctl export: expected JOB --format torchscript|safetensors -o FILE\n";
      return kExitUsage;
    }
    ExportOptions o{p.positional[0], p.values["--format"], p.values["-o"], "", p.switches.count("--json") > 0};
    return RunExport(client, o, out, err);
  }
  if (verb == "audit") {
    AuditCliOptions o;
    o.json = json;
    o.interactive = env.interactive;
    const bool show = p.positional.size() == 2 && p.positional[0] == "show";
    if (show) {
      o.audit_id = p.positional[1];
    } else if (p.positional.size() == 1) {
      o.job_id = p.positional[0];
    } else {
      err << "dpctl audit: expected JOB, or show AUDIT_ID (dpctl audit --help)\n";
      return kExitUsage;
    }
    if (auto it = p.values.find("--attack"); it != p.values.end()) o.attacks = it->second;
    if (auto it = p.values.find("--features"); it != p.values.end()) {
      o.inversion_features = absl::StrSplit(it->second, ',', absl::SkipEmpty());
    }
    o.baseline = !p.switches.count("--no-baseline");
    if (auto it = p.values.find("--max-challenge");
        it != p.values.end() && (!absl::SimpleAtoi(it->second, &o.max_challenge) || o.max_challenge < 1)) {
      err << "dpctl audit: --max-challenge: '" << it->second << "' is not a positive integer\n";
      return kExitUsage;
    }
    if (auto it = p.values.find("--canaries");
        it != p.values.end() && (!absl::SimpleAtoi(it->second, &o.canaries) || o.canaries < 2)) {
      err << "dpctl audit: --canaries: '" << it->second << "' is not an integer >= 2\n";
      return kExitUsage;
    }
    if (auto it = p.values.find("--shadow-models");
        it != p.values.end() && (!absl::SimpleAtoi(it->second, &o.shadow_models) || o.shadow_models < 1)) {
      err << "dpctl audit: --shadow-models: '" << it->second << "' is not a positive integer\n";
      return kExitUsage;
    }
    return RunAuditVerb(client, o, out, err);
  }
  if (verb == "report") {
    // -o names the output directory here.
    ReportOptions o{p.positional, p.values["-o"]};
    return RunReport(client, o, out, err);
  }
  auto need_args = [&](std::size_t n, const char* what) {
    if (p.positional.size() != n) {
      err << "dpctl " << verb << ": expected " << what << " (dpctl " << verb << " --help)\n";
      return false;
    }
    return true;
  };

  if (verb == "submit") {
    if (!need_args(1, "SPEC.yaml")) return kExitUsage;
    std::ifstream f(p.positional[0]);
    if (!f) {
      err << "dpctl submit: cannot read spec file '" << p.positional[0] << "'\n";
      return kExitUsage;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    absl::StatusOr<v1::Job> job = client.Submit(ss.str());
    if (!job.ok()) return ReportError(job.status(), err);
    if (!p.switches.count("--follow")) {
      if (json) {
        out << JobToJson(*job) << "\n";
      } else {
        out << "submitted " << job->job_id() << " (" << job->name() << "): " << StateName(job->state())
            << absl::StrFormat("; sigma %.4g, q %.6g, %d steps/epoch", job->noise_multiplier(), job->sample_rate(),
                               job->steps_per_epoch())
            << "\n";
      }
      return kExitOk;
    }
    if (!json) out << "submitted " << job->job_id() << "\n";
    return Follow(client, job->job_id(), json, env.interactive, out, err);
  }
  if (verb == "watch") {
    if (!need_args(1, "JOB")) return kExitUsage;
    return Follow(client, p.positional[0], json, env.interactive, out, err);
  }
  if (verb == "logs") {
    if (!need_args(1, "JOB")) return kExitUsage;
    LogsOptions lo;
    lo.job_id = p.positional[0];
    lo.follow = p.switches.count("-f") || p.switches.count("--follow");
    lo.json = json;
    for (const char* flag : {"--rank", "--attempt"}) {
      if (!p.values.count(flag)) continue;
      int32_t v = 0;
      if (!absl::SimpleAtoi(p.values[flag], &v) || v < 0) {
        err << "dpctl logs: " << flag << " '" << p.values[flag] << "' must be a whole number >= 0\n";
        return kExitUsage;
      }
      (std::string(flag) == "--rank" ? lo.rank : lo.attempt) = v;
    }
    return RunLogs(client, lo, out, err);
  }
  if (verb == "status") {
    if (!need_args(1, "JOB")) return kExitUsage;
    absl::StatusOr<v1::Job> job = client.Get(p.positional[0]);
    if (!job.ok()) return ReportError(job.status(), err);
    if (json) {
      out << JobToJson(*job) << "\n";
      return kExitOk;
    }
    out << absl::StrFormat(
        "job      %s (%s)\nstate    %s%s\nepochs   %d/%d\nepsilon  %s%s\n"
        "sigma    %.4g   q %.6g   %d steps/epoch   %d worker(s)\n",
        job->job_id(), job->name(), StateName(job->state()), job->reason().empty() ? "" : ": " + job->reason(),
        job->epochs_done(), job->epochs(), EpsilonText(JobEpsilon(*job)),
        IsPrivate(*job) ? absl::StrFormat(" (delta %.3g, %s)", job->delta(), job->accountant()) : "",
        job->noise_multiplier(), job->sample_rate(), job->steps_per_epoch(), job->world_size());
    if (!job->pending_reason().empty()) out << "pending  " << job->pending_reason() << "\n";
    for (const v1::JobAttempt& a : job->attempts()) out << AttemptRow(a) << "\n";
    for (const v1::EpochMetrics& m : job->history()) out << EpochRow(m, job->epochs()) << "\n";
    return kExitOk;
  }
  if (verb == "list") {
    if (!need_args(0, "no arguments")) return kExitUsage;
    absl::StatusOr<v1::ListJobsRequest> filter = ListFilter(p);
    if (!filter.ok()) {
      err << "dpctl list: " << filter.status().message() << "\n";
      return kExitUsage;
    }
    absl::StatusOr<std::vector<v1::Job>> jobs = client.List(*filter);
    if (!jobs.ok()) return ReportError(jobs.status(), err);
    if (json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const v1::Job& j : *jobs) arr.push_back(nlohmann::json::parse(JobToJson(j, -1)));
      out << nlohmann::json{{"jobs", arr}}.dump(2) << "\n";
      return kExitOk;
    }
    if (wide) {
      out << absl::StrFormat("%-12s %-24s %-10s %8s %16s %-16s %7s %7s %-20s %s\n", "JOB", "NAME", "STATE", "EPOCHS",
                             "EPSILON", "OWNER", "ATTEMPT", "WORKERS", "CREATED", "REASON");
      for (const v1::Job& j : *jobs) {
        out << absl::StrFormat("%-12s %-24s %-10s %4d/%-3d %s %-16s %7d %7d %-20s %s\n", j.job_id(), j.name(),
                               StateName(j.state()), j.epochs_done(), j.epochs(), Pad(EpsilonText(JobEpsilon(j)), 16),
                               j.owner().empty() ? "-" : j.owner(), j.attempt(), j.world_size(),
                               UnixMsText(j.created_unix_ms()), j.reason());
      }
      return kExitOk;
    }
    out << absl::StrFormat("%-12s %-24s %-10s %8s %16s  %s\n", "JOB", "NAME", "STATE", "EPOCHS", "EPSILON", "PENDING");
    for (const v1::Job& j : *jobs) {
      out << absl::StrFormat("%-12s %-24s %-10s %4d/%-3d %s  %s\n", j.job_id(), j.name(), StateName(j.state()),
                             j.epochs_done(), j.epochs(), Pad(EpsilonText(JobEpsilon(j)), 16),
                             j.pending_reason().empty() ? "-" : j.pending_reason());
    }
    return kExitOk;
  }
  if (verb == "model") {
    if (!need_args(1, "JOB --out FILE") || !p.values.count("--out")) {
      if (p.positional.size() == 1) err << "dpctl model: --out FILE is required\n";
      return kExitUsage;
    }
    absl::StatusOr<std::string> model = client.GetModel(p.positional[0]);
    if (!model.ok()) return ReportError(model.status(), err);
    const std::string path = p.values.at("--out");
    if (absl::Status s = WriteFileAtomically(path, *model); !s.ok()) {
      err << "dpctl model: cannot write '" << path << "': " << s.message() << "\n";
      return kExitUsage;
    }
    if (json) {
      out << nlohmann::json{{"job_id", p.positional[0]}, {"path", path}, {"bytes", model->size()}}.dump() << "\n";
    } else {
      out << "wrote the model of " << p.positional[0] << " (" << model->size() << " bytes) to " << path << "\n";
    }
    return kExitOk;
  }
  if (verb == "cancel") {
    if (!need_args(1, "JOB")) return kExitUsage;
    absl::StatusOr<v1::Job> job = client.Cancel(p.positional[0]);
    if (!job.ok()) return ReportError(job.status(), err);
    if (json) {
      out << JobToJson(*job) << "\n";
      return kExitOk;
    }
    out << "job " << job->job_id() << " " << StateName(job->state()) << "\n";
    return kExitOk;
  }
  if (verb == "workers") {
    if (!need_args(0, "no arguments")) return kExitUsage;
    absl::StatusOr<std::vector<v1::WorkerInfo>> workers = client.Workers();
    if (!workers.ok()) return ReportError(workers.status(), err);
    if (json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const v1::WorkerInfo& w : *workers) {
        const char* st = w.state() == v1::IDLE ? "IDLE" : w.state() == v1::BUSY ? "BUSY" : "LOST";
        arr.push_back({{"worker_id", w.worker_id()},
                       {"identity", w.identity()},
                       {"hostname", w.hostname()},
                       {"device", w.device()},
                       {"state", st},
                       {"job_id", w.job_id()},
                       {"rank", w.rank()},
                       {"pid", w.pid()},
                       {"last_heartbeat_unix_ms", w.last_heartbeat_unix_ms()}});
      }
      out << nlohmann::json{{"workers", arr}}.dump(2) << "\n";
      return kExitOk;
    }
    if (wide) {
      out << absl::StrFormat("%-16s %-12s %-16s %-8s %-6s %-12s %-4s %-8s %s\n", "WORKER", "IDENTITY", "HOST", "DEVICE",
                             "STATE", "JOB", "RANK", "PID", "LAST HEARTBEAT");
      for (const v1::WorkerInfo& w : *workers) {
        const char* st = w.state() == v1::IDLE ? "IDLE" : w.state() == v1::BUSY ? "BUSY" : "LOST";
        out << absl::StrFormat("%-16s %-12s %-16s %-8s %-6s %-12s %-4s %-8d %s\n", w.worker_id(),
                               w.identity().empty() ? "-" : w.identity(), w.hostname(), w.device(), st,
                               w.job_id().empty() ? "-" : w.job_id(),
                               w.job_id().empty() ? "-" : std::to_string(w.rank()), w.pid(),
                               UnixMsText(w.last_heartbeat_unix_ms()));
      }
      return kExitOk;
    }
    out << absl::StrFormat("%-16s %-12s %-16s %-8s %-6s %-12s %s\n", "WORKER", "IDENTITY", "HOST", "DEVICE", "STATE",
                           "JOB", "RANK");
    for (const v1::WorkerInfo& w : *workers) {
      const char* st = w.state() == v1::IDLE ? "IDLE" : w.state() == v1::BUSY ? "BUSY" : "LOST";
      out << absl::StrFormat("%-16s %-12s %-16s %-8s %-6s %-12s %s\n", w.worker_id(),
                             w.identity().empty() ? "-" : w.identity(), w.hostname(), w.device(), st,
                             w.job_id().empty() ? "-" : w.job_id(),
                             w.job_id().empty() ? "-" : std::to_string(w.rank()));
    }
    return kExitOk;
  }
  if (verb == "version") {
    if (!need_args(0, "no arguments")) return kExitUsage;
    const BuildInfo& mine = GetBuildInfo();
    absl::StatusOr<v1::VersionInfo> server_version = client.Version();
    if (json) {
      nlohmann::json j = {{"client",
                           {{"version", mine.version},
                            {"git", mine.git},
                            {"build_type", mine.build_type},
                            {"protocol_version", kProtocolVersion}}}};
      if (server_version.ok()) {
        j["server"] = {{"version", server_version->version()},
                       {"git", server_version->git()},
                       {"build_type", server_version->build_type()},
                       {"protocol_version", server_version->protocol_version()}};
      }
      out << j.dump(2) << "\n";
    } else {
      out << VersionLine("dpctl") << "\n";
      if (server_version.ok()) {
        out << "dpfleet-server " << server_version->version() << " (git " << server_version->git() << ", "
            << server_version->build_type() << " build, protocol " << server_version->protocol_version() << ") at "
            << options->target << "\n";
      }
    }
    if (!server_version.ok()) return ReportError(server_version.status(), err);
    return kExitOk;
  }
  if (verb == "budget") return BudgetVerb(client, p, json, out, err);
  if (verb == "datasets") return DatasetsVerb(client, p, json, out, err);
  err << "dpctl: unknown verb '" << verb << "' (dpctl --help lists the verbs)\n";
  return kExitUsage;
}

}  // namespace dpfleet::client
