#include "server/core/types.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace dpfleet::server {

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued:
      return "QUEUED";
    case JobState::kRunning:
      return "RUNNING";
    case JobState::kSucceeded:
      return "SUCCEEDED";
    case JobState::kFailed:
      return "FAILED";
    case JobState::kCancelled:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

absl::StatusOr<JobState> ParseJobState(const std::string& name) {
  for (JobState s :
       {JobState::kQueued, JobState::kRunning, JobState::kSucceeded, JobState::kFailed, JobState::kCancelled}) {
    if (name == JobStateName(s)) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown job state '", name, "'"));
}

const char* WorkerStateName(WorkerState s) {
  switch (s) {
    case WorkerState::kIdle:
      return "IDLE";
    case WorkerState::kBusy:
      return "BUSY";
    case WorkerState::kLost:
      return "LOST";
  }
  return "UNKNOWN";
}

namespace {

// An absent metric is JSON null, never 0.
nlohmann::json OrNull(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

std::optional<double> OptionalDouble(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return j.at(key).get<double>();
}

}  // namespace

nlohmann::json ToJson(const EpochRecord& e) {
  return {{"epoch", e.epoch},
          {"eval_loss", OrNull(e.eval_loss)},
          {"eval_accuracy", OrNull(e.eval_accuracy)},
          {"eval_auc", OrNull(e.eval_auc)},
          {"eval_balanced_accuracy", OrNull(e.eval_balanced_accuracy)},
          {"majority_rate", OrNull(e.majority_rate)},
          {"epsilon", e.epsilon},
          {"steps", e.steps},
          {"train_seconds", e.train_seconds}};
}

nlohmann::json ToJson(const AttemptRecord& a) {
  return {{"attempt", a.attempt},
          {"worker_ids", a.worker_ids},
          {"started_ms", a.started_ms},
          {"ended_ms", a.ended_ms},
          {"outcome", JobStateName(a.outcome)},
          {"reason", a.reason},
          {"public_reason", a.public_reason}};
}

namespace {

nlohmann::json ToJson(const AuditOrder& a) {
  nlohmann::json out = {{"target", a.target},
                        {"membership", a.membership},
                        {"inversion", a.inversion},
                        {"shadow_models", a.shadow_models},
                        {"max_challenge", a.max_challenge},
                        {"baseline", a.baseline},
                        {"inversion_features", a.inversion_features},
                        {"one_run", a.one_run},
                        {"canaries", a.canaries},
                        {"delta", a.delta}};
  if (a.reported_epsilon) out["reported_epsilon"] = *a.reported_epsilon;
  return out;
}

AuditOrder AuditOrderFromJson(const nlohmann::json& j) {
  AuditOrder a;
  a.target = j.at("target").get<std::string>();
  a.membership = j.at("membership").get<bool>();
  a.inversion = j.at("inversion").get<bool>();
  a.shadow_models = j.at("shadow_models").get<int32_t>();
  a.max_challenge = j.at("max_challenge").get<int64_t>();
  a.baseline = j.at("baseline").get<bool>();
  a.inversion_features = j.at("inversion_features").get<std::vector<std::string>>();
  // Orders stored before the one-run audit existed ran none.
  a.one_run = j.value("one_run", false);
  a.canaries = j.value("canaries", int64_t{1000});
  a.delta = j.at("delta").get<double>();
  a.reported_epsilon = OptionalDouble(j, "reported_epsilon");
  return a;
}

}  // namespace

absl::Status ParseAuditAttacks(absl::string_view attacks, AuditOrder* order) {
  if (attacks.empty() || attacks == "all") {
    order->membership = order->inversion = order->one_run = true;
    return absl::OkStatus();
  }
  order->membership = order->inversion = order->one_run = false;
  for (absl::string_view raw : absl::StrSplit(attacks, ',')) {
    const absl::string_view name = absl::StripAsciiWhitespace(raw);
    if (name == "membership") {
      order->membership = true;
    } else if (name == "inversion") {
      order->inversion = true;
    } else if (name == "one-run") {
      order->one_run = true;
    } else if (name == "all") {
      order->membership = order->inversion = order->one_run = true;
    } else if (name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("attacks: an empty attack name in '", attacks, "'"));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("attacks: '", name, "' (in '", attacks, "') is not one of membership, inversion, one-run, all"));
    }
  }
  return absl::OkStatus();
}

nlohmann::json ToJson(const JobRecord& j) {
  nlohmann::json history = nlohmann::json::array();
  for (const auto& e : j.history) history.push_back(ToJson(e));
  nlohmann::json attempts = nlohmann::json::array();
  for (const auto& a : j.attempts) attempts.push_back(ToJson(a));
  nlohmann::json out = {{"job_id", j.job_id},
                        {"name", j.name},
                        {"state", JobStateName(j.state)},
                        {"spec_yaml", j.spec_yaml},
                        {"data_paths", j.data_paths},
                        {"dataset", j.dataset},
                        {"shard_dir", j.shard_dir},
                        {"input_files", j.input_files},
                        {"epochs", j.epochs},
                        {"epochs_done", j.epochs_done},
                        {"dp", j.dp},
                        {"mode", JobModeName(j)},
                        {"epsilon", j.epsilon},
                        {"delta", j.delta},
                        {"noise_multiplier", j.noise_multiplier},
                        {"accountant", j.accountant},
                        {"sample_rate", j.sample_rate},
                        {"steps_per_epoch", j.steps_per_epoch},
                        {"train_rows", j.train_rows},
                        {"eval_noise_multiplier", j.eval_noise_multiplier},
                        {"eval_every", j.eval_every},
                        {"world_size", j.world_size},
                        {"history", history},
                        {"reason", j.reason},
                        {"public_reason", j.public_reason},
                        {"attempts", attempts},
                        {"created_ms", j.created_ms},
                        {"started_ms", j.started_ms},
                        {"finished_ms", j.finished_ms},
                        {"attempt", j.attempt},
                        {"worker_ids", j.worker_ids},
                        {"owner", j.owner},
                        {"worker_identities", j.worker_identities}};
  if (j.audit) out["audit"] = ToJson(*j.audit);
  return out;
}

absl::StatusOr<JobRecord> JobFromJson(const nlohmann::json& j) {
  try {
    JobRecord r;
    r.job_id = j.at("job_id").get<std::string>();
    r.name = j.at("name").get<std::string>();
    auto state = ParseJobState(j.at("state").get<std::string>());
    if (!state.ok()) return state.status();
    r.state = *state;
    r.spec_yaml = j.at("spec_yaml").get<std::string>();
    r.data_paths = j.at("data_paths").get<std::vector<std::string>>();
    r.dataset = j.value("dataset", "");
    r.shard_dir = j.value("shard_dir", "");
    // Absent in records written before the ledger followed file content
    // (JobManager::Recover fills them for jobs that still run).
    r.input_files = j.value("input_files", std::vector<std::string>{});
    r.epochs = j.at("epochs").get<int32_t>();
    r.epochs_done = j.at("epochs_done").get<int32_t>();
    r.dp = j.at("dp").get<bool>();
    r.epsilon = j.at("epsilon").get<double>();
    r.delta = j.at("delta").get<double>();
    r.noise_multiplier = j.at("noise_multiplier").get<double>();
    r.accountant = j.at("accountant").get<std::string>();
    r.sample_rate = j.at("sample_rate").get<double>();
    r.steps_per_epoch = j.at("steps_per_epoch").get<int64_t>();
    r.train_rows = j.at("train_rows").get<int64_t>();
    // Records written before eval releases existed have neither.
    r.eval_noise_multiplier = j.value("eval_noise_multiplier", 0.0);
    r.eval_every = j.value("eval_every", 0);
    r.world_size = j.at("world_size").get<int32_t>();
    for (const auto& e : j.at("history")) {
      EpochRecord er;
      er.epoch = e.at("epoch").get<int32_t>();
      er.eval_loss = OptionalDouble(e, "eval_loss");
      er.eval_accuracy = OptionalDouble(e, "eval_accuracy");
      er.eval_auc = OptionalDouble(e, "eval_auc");
      er.eval_balanced_accuracy = OptionalDouble(e, "eval_balanced_accuracy");
      er.majority_rate = OptionalDouble(e, "majority_rate");
      er.epsilon = e.at("epsilon").get<double>();
      er.steps = e.at("steps").get<int64_t>();
      er.train_seconds = e.at("train_seconds").get<double>();
      r.history.push_back(er);
    }
    r.reason = j.at("reason").get<std::string>();
    // Absent in records written before attempt histories; the pending
    // reason is recomputed by the scheduler, never read back.
    r.public_reason = j.value("public_reason", "");
    if (j.contains("attempts")) {
      for (const auto& a : j.at("attempts")) {
        AttemptRecord ar;
        ar.attempt = a.at("attempt").get<int32_t>();
        ar.worker_ids = a.at("worker_ids").get<std::vector<std::string>>();
        ar.started_ms = a.at("started_ms").get<int64_t>();
        ar.ended_ms = a.at("ended_ms").get<int64_t>();
        auto outcome = ParseJobState(a.at("outcome").get<std::string>());
        if (!outcome.ok()) return outcome.status();
        ar.outcome = *outcome;
        ar.reason = a.at("reason").get<std::string>();
        ar.public_reason = a.at("public_reason").get<std::string>();
        r.attempts.push_back(std::move(ar));
      }
    }
    r.created_ms = j.at("created_ms").get<int64_t>();
    r.started_ms = j.at("started_ms").get<int64_t>();
    r.finished_ms = j.at("finished_ms").get<int64_t>();
    r.attempt = j.at("attempt").get<int32_t>();
    r.worker_ids = j.at("worker_ids").get<std::vector<std::string>>();
    // Absent in records written before owners and worker identities.
    r.owner = j.value("owner", "");
    r.worker_identities = j.value("worker_identities", std::vector<std::string>{});
    // Only audit runs have one.
    if (j.contains("audit")) r.audit = AuditOrderFromJson(j.at("audit"));
    return r;
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat("stored job record is malformed: ", e.what()));
  }
}

}  // namespace dpfleet::server
