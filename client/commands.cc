#include "client/commands.h"

#include <CLI/CLI.hpp>
#include <map>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/version.h"

namespace dpfleet::client {
namespace {

using F = OutputFormat;

const std::set<std::string> kConnectionFlags = {"--server", "--token", "--ca", "--context"};

const std::map<std::string, std::string>& FlagHelp() {
  static const auto* help = new std::map<std::string, std::string>{
      {"--server", "coordinator HOST:PORT (else $DPFLEET_SERVER, the context, 127.0.0.1:7070)"},
      {"--token", "bearer token (else $DPFLEET_TOKEN, the context's token_file)"},
      {"--ca", "the fleet CA's PEM (else $DPFLEET_CA, the context's ca)"},
      {"--context", "named context of the config file (else its current-context)"},
      {"--follow", "follow the job to its end; exit 0 only if it SUCCEEDED"},
      {"--out", "output file or directory"},
      {"--rank", "only this rank's lines"},
      {"--attempt", "only this attempt's lines"},
      {"-f", "keep following new lines until the job ends"},
      {"--format", "torchscript | safetensors"},
      {"--json", "print the model card as JSON"},
      {"--epsilon", "total epsilon budget of each file"},
      {"--delta", "delta"},
      {"--role", "custodian | analyst | viewer"},
      {"--after", "entries after this id"},
      {"--limit", "at most this many"},
      {"--path", "raw PUMS files (.csv, .csv.gz)"},
      {"--task", "employment | unemployment"},
      {"--features", "comma-separated PUMS variables (audit: the ones to invert; default DIS,MAR)"},
      {"--attack", "audit: comma-separated membership, inversion, one-run; or all (default all)"},
      {"--canaries", "audit: canaries of the one-run audit, from the eval split (default 1000)"},
      {"--shadow-models", "audit: shadow models per audited model (default 8)"},
      {"--max-challenge", "audit: challenge points per side, members and non-members (default 2000)"},
      {"--no-baseline", "audit: no non-private baseline model"},
      {"--shards", "number of training shards"},
      {"--split-seed", "seed of the train/eval split (public)"},
      {"--eval-fraction", "fraction of records held out for eval"},
      {"--state", "state filter (list: QUEUED|RUNNING|SUCCEEDED|FAILED|CANCELLED; synth: FIPS code)"},
      {"--owner", "only jobs submitted by this token name"},
      {"--dataset", "only jobs reading this dataset (name or path)"},
      {"--rows", "number of rows"},
      {"--seed", "seed"},
      {"--input", "input files"},
      {"--threads", "worker threads"},
      {"--server-name", "DNS names or IPs of the coordinator"},
      {"--workers", "number of worker certificates"},
      {"--days", "validity of the leaf certificates in days"},
      {"--dataset-size", "number of training records N"},
      {"--prices", "price list YAML"},
      {"--examples-per-second", "measured examples/s per rank"},
      {"--allreduce-busbw-gbps", "all-reduce bus bandwidth"},
      {"--allreduce-latency-us", "all-reduce latency"},
      {"--sample-rate", "Poisson sampling rate q"},
      {"--noise-multiplier", "noise multiplier sigma"},
      {"--target-epsilon", "target epsilon"},
      {"--steps", "number of steps"},
      {"--epochs", "number of epochs"},
      {"--batch-size", "expected batch size B"},
      {"--accountant", "rdp | pld"},
  };
  return *help;
}

ArgSpec Spec(std::set<std::string> values, std::set<std::string> switches = {}, std::set<std::string> lists = {},
             bool positionals = true) {
  ArgSpec s;
  s.values = std::move(values);
  s.switches = std::move(switches);
  s.lists = std::move(lists);
  s.positionals = positionals;
  return s;
}

std::vector<VerbDef> MakeVerbs() {
  const std::set<F> all = {F::kJson, F::kYaml, F::kWide, F::kName};
  const std::set<F> data = {F::kJson, F::kYaml};
  const std::set<F> named = {F::kJson, F::kYaml, F::kName};
  const std::set<std::string> privacy = {"--delta",  "--accountant",   "-o",          "--sample-rate", "--steps",
                                         "--epochs", "--dataset-size", "--batch-size"};
  std::set<std::string> eps = privacy, sigma = privacy;
  eps.insert("--noise-multiplier");
  sigma.insert("--target-epsilon");
  std::vector<VerbDef> v = {
      {{"submit"}, "SPEC.yaml", "submit a job (and follow it to the end)", Spec({"-o"}, {"--follow"}), named},
      {{"watch"},
       "JOB",
       "stream a job's epochs until it ends (-o json: one object per event)",
       Spec({"-o"}),
       {F::kJson}},
      {{"status"}, "JOB", "show a job", Spec({"-o"}), all},
      {{"list"},
       "",
       "list jobs, filtered on the coordinator",
       Spec({"-o", "--state", "--owner", "--dataset", "--limit"}),
       all},
      {{"logs"},
       "JOB",
       "the workers' log lines of a job's runs (-f: until it ends; -o json: one object per line)",
       Spec({"-o", "--rank", "--attempt"}, {"-f", "--follow"}),
       {F::kJson}},
      {{"cancel"}, "JOB", "cancel a job", Spec({"-o"}), named},
      {{"model"}, "JOB", "download a SUCCEEDED job's trained model", Spec({"-o", "--out"}), data},
      {{"export"},
       "JOB",
       "the model for Python with its card (-o FILE; --json: print the card)",
       Spec({"-o", "--format"}, {"--json"}),
       {}},
      {{"report"},
       "JOB [JOB...]",
       "SVG/PNG plots and index.html (-o DIR; several jobs: the privacy-utility curve)",
       Spec({"-o"}),
       {}},
      {{"audit"},
       "JOB",
       "privacy attacks on a SUCCEEDED job's model, run by the service (custodian; -o json)",
       Spec({"-o", "--attack", "--shadow-models", "--max-challenge", "--canaries", "--features"}, {"--no-baseline"}),
       data},
      {{"audit", "show"}, "AUDIT_ID", "a stored audit run and its report (custodian)", Spec({"-o"}), data},
      {{"workers"}, "", "list workers", Spec({"-o"}), all},
      {{"version"}, "", "dpctl's and the coordinator's versions (--version: dpctl's only)", Spec({"-o"}), data},
      {{"datasets"}, "", "registered datasets (datasets list)", Spec({"-o"}), all},
      {{"datasets", "add"},
       "NAME",
       "register PUMS files; the coordinator prepares shards",
       Spec({"-o", "--task", "--features", "--shards", "--split-seed", "--eval-fraction"}, {}, {"--path"}),
       named},
      {{"datasets", "list"}, "", "registered datasets", Spec({"-o"}), all},
      {{"datasets", "show"}, "NAME", "a dataset and its manifest", Spec({"-o"}), named},
      {{"datasets", "rm"},
       "NAME",
       "forget a dataset, delete its shards (ledger and raw files stay)",
       Spec({"-o"}),
       named},
      {{"budget"}, "[DATASET]", "privacy spent / committed / remaining per input file", Spec({"-o"}), data},
      {{"budget", "set"},
       "DATASET",
       "give each file of a dataset, path or file key a total budget",
       Spec({"-o", "--epsilon", "--delta"}),
       data},
      {{"ledger"}, "DATASET", "every privacy charge on each of its files (custodian; -o json|csv)", Spec({"-o"}), {}},
      {{"admin"}, "", "custodian verbs: tokens, audit trail, certificates", Spec({}), {}},
      {{"admin", "token"}, "", "bearer tokens", Spec({}), {}},
      {{"admin", "token", "create"},
       "NAME",
       "create a token; printed once on stdout",
       Spec({"-o", "--role"}),
       {F::kJson}},
      {{"admin", "token", "list"}, "", "tokens and their roles", Spec({"-o"}), named},
      {{"admin", "token", "revoke"}, "NAME", "revoke a name's tokens", Spec({}), {}},
      {{"admin", "audit"}, "", "state-changing calls and refusals", Spec({"-o", "--after", "--limit"}), data},
      {{"admin", "certs"},
       "",
       "a fleet CA, the coordinator's and the workers' certificates (offline)",
       Spec({"--out", "--workers", "--days"}, {}, {"--server-name"}, false),
       {},
       false},
      {{"data"}, "", "offline data verbs", Spec({}), {}, false},
      {{"data", "synth"},
       "",
       "write a synthetic PUMS person CSV (-o FILE)",
       Spec({"--rows", "--seed", "-o", "--state"}, {}, {}, false),
       {},
       false},
      {{"data", "prepare"},
       "",
       "clean, encode, split and shard PUMS files",
       Spec({"--task", "--features", "--split-seed", "--eval-fraction", "--shards", "--out", "--threads", "-o"}, {},
            {"--input"}, false),
       {F::kJson},
       false},
      {{"data", "schema"}, "", "the PUMS schema the pipeline uses", Spec({"-o"}, {}, {}, false), {F::kJson}, false},
      {{"privacy"}, "", "offline privacy calculator", Spec({}), {}, false},
      {{"privacy", "epsilon"}, "", "epsilon of a schedule", Spec(eps, {}, {}, false), {F::kJson}, false},
      {{"privacy", "sigma"},
       "",
       "noise multiplier for a target epsilon",
       Spec(sigma, {}, {}, false),
       {F::kJson},
       false},
      {{"plan"},
       "SPEC.yaml",
       "time and cost of a job on each fleet shape (offline)",
       Spec({"--dataset-size", "--prices", "--examples-per-second", "--allreduce-busbw-gbps", "--allreduce-latency-us",
             "-o"}),
       {F::kJson},
       false},
      {{"completion"}, "bash|zsh", "print a shell completion script", Spec({}), {}, false},
      {{"config"}, "", "named contexts of the config file", Spec({}), {}, false},
      {{"config", "get-contexts"}, "", "the contexts; * marks the current one", Spec({"-o"}), named, false},
      {{"config", "current-context"}, "", "the current context's name", Spec({}), {}, false},
      {{"config", "use-context"}, "NAME", "make NAME the current context (rewrites the file)", Spec({}), {}, false},
  };
  for (VerbDef& d : v) {
    if (d.remote) d.spec.values.insert(kConnectionFlags.begin(), kConnectionFlags.end());
  }
  return v;
}

std::string OutputHelp(const VerbDef& d) {
  if (d.outputs.empty()) return d.path[0] == "data" ? "output file" : "output format: json | csv | text";
  std::vector<std::string> names;
  for (OutputFormat f : d.outputs) names.push_back(OutputFormatName(f));
  return absl::StrCat("output format: ", absl::StrJoin(names, " | "), " (default text)");
}

constexpr char kFooter[] =
    "The server is --server, else $DPFLEET_SERVER, else the config file's context, else 127.0.0.1:7070;\n"
    "the CA --ca, $DPFLEET_CA or the context's `ca`; the token --token, $DPFLEET_TOKEN or `token_file`.\n"
    "The config file is $DPFLEET_CONFIG, else ~/.config/dpfleet/config.yaml (or the older dpctl.yaml).\n"
    "Exit codes: 0 ok; 1 job failed/cancelled or conflicts with state; 2 usage or invalid input;\n"
    "3 coordinator unreachable or busy (retry); 4 unauthenticated or permission denied.\n";

// The whole tree as CLI11 apps; `node` gets the app of `path`.
std::unique_ptr<CLI::App> BuildApp(const std::vector<std::string>& path, CLI::App** node) {
  auto root = std::make_unique<CLI::App>("dpctl: submit, watch and inspect dpfleet jobs", "dpctl");
  root->get_formatter()->label("Usage", "usage");
  root->footer(kFooter);
  root->add_flag("--version", "print dpctl's version and exit");
  for (const std::string& flag : kConnectionFlags) {
    root->add_option(flag)->description(FlagHelp().at(flag))->type_name("VALUE");
  }
  *node = root.get();
  for (const VerbDef& d : Verbs()) {
    CLI::App* app = root.get();
    for (const std::string& word : d.path) {
      CLI::App* sub = nullptr;
      try {
        sub = app->get_subcommand(word);
      } catch (const CLI::OptionNotFound&) {
        sub = app->add_subcommand(word);
      }
      app = sub;
    }
    app->description(d.summary);
    ArgSpec flags = d.spec;
    flags.values.erase("-o");
    DeclareFlags(app, flags, FlagHelp());
    if (d.spec.values.count("-o")) app->add_option("-o")->description(OutputHelp(d))->type_name("FORMAT");
    if (!d.positionals.empty()) {
      CLI::Option* pos = app->add_option(d.positionals)->description("");
      if (d.positionals[0] != '[') pos->required();
    }
    if (d.path == path) *node = app;
  }
  return root;
}

std::string Words(const std::set<std::string>& words) { return absl::StrJoin(words, " "); }

}  // namespace

const std::vector<VerbDef>& Verbs() {
  static const auto* verbs = new std::vector<VerbDef>(MakeVerbs());
  return *verbs;
}

const VerbDef* FindVerb(const std::vector<std::string>& args, std::size_t* depth) {
  const VerbDef* best = nullptr;
  for (const VerbDef& d : Verbs()) {
    if (d.path.size() > args.size()) continue;
    if (!std::equal(d.path.begin(), d.path.end(), args.begin())) continue;
    if (best == nullptr || d.path.size() > best->path.size()) best = &d;
  }
  if (best != nullptr) *depth = best->path.size();
  return best;
}

bool IsGroup(const std::vector<std::string>& path) {
  for (const VerbDef& d : Verbs()) {
    if (d.path.size() > path.size() && std::equal(path.begin(), path.end(), d.path.begin())) return true;
  }
  return false;
}

std::string HelpText(const std::vector<std::string>& path) {
  CLI::App* node = nullptr;
  std::unique_ptr<CLI::App> root = BuildApp(path, &node);
  // CLI11 names a subcommand alone in its usage line; ours starts at dpctl.
  std::string prev;
  if (!path.empty()) prev = "dpctl";
  for (std::size_t i = 0; i + 1 < path.size(); ++i) absl::StrAppend(&prev, " ", path[i]);
  return node->help(prev);
}

absl::StatusOr<std::string> CompletionScript(const std::string& shell) {
  if (shell != "bash" && shell != "zsh") {
    return absl::InvalidArgumentError(
        absl::StrCat("completion: \"", shell, "\" is not a shell (expected bash or zsh)"));
  }
  // Per node (the verb path joined by spaces): its sub-verbs, its flags and
  // what -o takes there.
  std::map<std::string, std::set<std::string>> children, flags, outputs;
  children[""];
  flags[""] = {"--version", "--help"};
  flags[""].insert(kConnectionFlags.begin(), kConnectionFlags.end());
  for (const VerbDef& d : Verbs()) {
    const std::string key = absl::StrJoin(d.path, " ");
    const std::string parent = absl::StrJoin(d.path.begin(), d.path.end() - 1, " ");
    children[parent].insert(d.path.back());
    children[key];
    std::set<std::string>& f = flags[key];
    f.insert("--help");
    f.insert(d.spec.values.begin(), d.spec.values.end());
    f.insert(d.spec.lists.begin(), d.spec.lists.end());
    f.insert(d.spec.switches.begin(), d.spec.switches.end());
    for (OutputFormat o : d.outputs) outputs[key].insert(OutputFormatName(o));
    if (!d.outputs.empty()) outputs[key].insert("text");
    if (d.path[0] == "completion") children[key] = {"bash", "zsh"};
  }
  for (const std::string& group : {"admin", "admin token", "data", "privacy", "config"}) flags[group].insert("--help");
  auto cases = [](const std::map<std::string, std::set<std::string>>& table) {
    std::string out;
    for (const auto& [key, words] : table) {
      if (!words.empty()) absl::StrAppend(&out, "    \"", key, "\") echo \"", Words(words), "\" ;;\n");
    }
    return out;
  };
  std::string nodes;
  for (const auto& [key, words] : children) absl::StrAppend(&nodes, " \"", key, "\"");
  std::string script = absl::StrCat(
      shell == "zsh" ? "#compdef dpctl\n# dpctl completion for zsh (through bashcompinit)\n"
                       "autoload -U +X bashcompinit && bashcompinit\n"
                     : "# dpctl completion for bash: source <(dpctl completion bash)\n",
      "# generated by ", VersionLine("dpctl"), " from its verb table\n", "_dpctl_children() {\n  case \"$1\" in\n",
      cases(children), "  esac\n}\n", "_dpctl_flags() {\n  case \"$1\" in\n", cases(flags), "  esac\n}\n",
      "_dpctl_outputs() {\n  case \"$1\" in\n", cases(outputs), "  esac\n}\n",
      "_dpctl_is_node() {\n  local n\n  for n in", nodes,
      "; do [[ \"$n\" == \"$1\" ]] && return 0; done\n"
      "  return 1\n}\n",
      R"sh(_dpctl() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" path="" i w next
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${COMP_WORDS[i]}"
    [[ "$w" == -* ]] && continue
    next="${path:+$path }$w"
    _dpctl_is_node "$next" && path="$next"
  done
  if [[ "$prev" == "-o" ]]; then
    local formats
    formats="$(_dpctl_outputs "$path")"
    if [[ -n "$formats" ]]; then
      COMPREPLY=($(compgen -W "$formats" -- "$cur"))
    else
      COMPREPLY=($(compgen -f -- "$cur"))
    fi
    return 0
  fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$(_dpctl_flags "$path")" -- "$cur"))
    return 0
  fi
  local subs
  subs="$(_dpctl_children "$path")"
  if [[ -n "$subs" ]]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
  return 0
}
complete -F _dpctl dpctl
)sh");
  return script;
}

}  // namespace dpfleet::client
