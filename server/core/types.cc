#include "server/core/types.h"

#include "absl/strings/str_cat.h"

namespace dpfleet::server {

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued: return "QUEUED";
    case JobState::kRunning: return "RUNNING";
    case JobState::kSucceeded: return "SUCCEEDED";
    case JobState::kFailed: return "FAILED";
    case JobState::kCancelled: return "CANCELLED";
  }
  return "UNKNOWN";
}

absl::StatusOr<JobState> ParseJobState(const std::string& name) {
  for (JobState s : {JobState::kQueued, JobState::kRunning, JobState::kSucceeded,
                     JobState::kFailed, JobState::kCancelled}) {
    if (name == JobStateName(s)) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown job state '", name, "'"));
}

const char* WorkerStateName(WorkerState s) {
  switch (s) {
    case WorkerState::kIdle: return "IDLE";
    case WorkerState::kBusy: return "BUSY";
    case WorkerState::kLost: return "LOST";
  }
  return "UNKNOWN";
}

nlohmann::json ToJson(const EpochRecord& e) {
  return {{"epoch", e.epoch},
          {"eval_loss", e.eval_loss},
          {"eval_accuracy", e.eval_accuracy},
          {"eval_auc", e.eval_auc},
          {"eval_balanced_accuracy", e.eval_balanced_accuracy},
          {"majority_rate", e.majority_rate},
          {"epsilon", e.epsilon},
          {"steps", e.steps},
          {"train_seconds", e.train_seconds}};
}

nlohmann::json ToJson(const JobRecord& j) {
  nlohmann::json history = nlohmann::json::array();
  for (const auto& e : j.history) history.push_back(ToJson(e));
  return {{"job_id", j.job_id},
          {"name", j.name},
          {"state", JobStateName(j.state)},
          {"spec_yaml", j.spec_yaml},
          {"data_paths", j.data_paths},
          {"dataset", j.dataset},
          {"shard_dir", j.shard_dir},
          {"epochs", j.epochs},
          {"epochs_done", j.epochs_done},
          {"dp", j.dp},
          {"epsilon", j.epsilon},
          {"delta", j.delta},
          {"noise_multiplier", j.noise_multiplier},
          {"accountant", j.accountant},
          {"sample_rate", j.sample_rate},
          {"steps_per_epoch", j.steps_per_epoch},
          {"train_rows", j.train_rows},
          {"world_size", j.world_size},
          {"history", history},
          {"reason", j.reason},
          {"created_ms", j.created_ms},
          {"started_ms", j.started_ms},
          {"finished_ms", j.finished_ms},
          {"attempt", j.attempt},
          {"worker_ids", j.worker_ids},
          {"owner", j.owner},
          {"worker_identities", j.worker_identities}};
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
    r.world_size = j.at("world_size").get<int32_t>();
    for (const auto& e : j.at("history")) {
      EpochRecord er;
      er.epoch = e.at("epoch").get<int32_t>();
      er.eval_loss = e.at("eval_loss").get<double>();
      er.eval_accuracy = e.at("eval_accuracy").get<double>();
      er.eval_auc = e.at("eval_auc").get<double>();
      er.eval_balanced_accuracy = e.at("eval_balanced_accuracy").get<double>();
      er.majority_rate = e.at("majority_rate").get<double>();
      er.epsilon = e.at("epsilon").get<double>();
      er.steps = e.at("steps").get<int64_t>();
      er.train_seconds = e.at("train_seconds").get<double>();
      r.history.push_back(er);
    }
    r.reason = j.at("reason").get<std::string>();
    r.created_ms = j.at("created_ms").get<int64_t>();
    r.started_ms = j.at("started_ms").get<int64_t>();
    r.finished_ms = j.at("finished_ms").get<int64_t>();
    r.attempt = j.at("attempt").get<int32_t>();
    r.worker_ids = j.at("worker_ids").get<std::vector<std::string>>();
    // Absent in records written before owners and worker identities.
    r.owner = j.value("owner", "");
    r.worker_identities = j.value("worker_identities", std::vector<std::string>{});
    return r;
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat("stored job record is malformed: ", e.what()));
  }
}

}  // namespace dpfleet::server
