#include "server/rpc/convert.h"

#include <google/protobuf/util/json_util.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace dpfleet::server {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

v1::JobState ToProto(JobState s) {
  switch (s) {
    case JobState::kQueued:
      return v1::QUEUED;
    case JobState::kRunning:
      return v1::RUNNING;
    case JobState::kSucceeded:
      return v1::SUCCEEDED;
    case JobState::kFailed:
      return v1::FAILED;
    case JobState::kCancelled:
      return v1::CANCELLED;
  }
  return v1::JOB_STATE_UNSPECIFIED;
}

void ToProto(const EpochRecord& e, bool dp, v1::EpochMetrics* out) {
  out->set_epoch(e.epoch);
  if (e.eval_loss) out->set_eval_loss(*e.eval_loss);
  if (e.eval_accuracy) out->set_eval_accuracy(*e.eval_accuracy);
  if (dp) out->set_epsilon(e.epsilon);
  if (e.eval_auc) out->set_eval_auc(*e.eval_auc);
  if (e.eval_balanced_accuracy) out->set_eval_balanced_accuracy(*e.eval_balanced_accuracy);
  out->set_steps(e.steps);
  out->set_train_seconds(e.train_seconds);
  if (e.majority_rate) out->set_majority_rate(*e.majority_rate);
}

EpochRecord FromProto(const v1::EpochMetrics& m) {
  EpochRecord e;
  e.epoch = m.epoch();
  if (m.has_eval_loss()) e.eval_loss = m.eval_loss();
  if (m.has_eval_accuracy()) e.eval_accuracy = m.eval_accuracy();
  e.epsilon = m.epsilon();
  if (m.has_eval_auc()) e.eval_auc = m.eval_auc();
  if (m.has_eval_balanced_accuracy()) e.eval_balanced_accuracy = m.eval_balanced_accuracy();
  e.steps = m.steps();
  e.train_seconds = m.train_seconds();
  if (m.has_majority_rate()) e.majority_rate = m.majority_rate();
  return e;
}

void ToProto(const JobRecord& r, v1::Job* out) {
  out->set_job_id(r.job_id);
  out->set_name(r.name);
  out->set_state(ToProto(r.state));
  out->set_spec_yaml(r.spec_yaml);
  out->set_epochs(r.epochs);
  out->set_epochs_done(r.epochs_done);
  if (const std::optional<double> eps = ReportedEpsilon(r)) out->set_epsilon(*eps);
  out->set_mode(JobModeName(r));
  out->set_delta(r.delta);
  out->set_noise_multiplier(r.noise_multiplier);
  for (const EpochRecord& e : r.history) ToProto(e, r.dp, out->add_history());
  for (const std::string& f : r.input_files) out->add_input_files(f);
  out->set_reason(r.reason);
  out->set_created_unix_ms(r.created_ms);
  out->set_started_unix_ms(r.started_ms);
  out->set_finished_unix_ms(r.finished_ms);
  out->set_attempt(r.attempt);
  for (const std::string& w : r.worker_ids) out->add_worker_ids(w);
  out->set_world_size(r.world_size);
  out->set_accountant(r.accountant);
  out->set_sample_rate(r.sample_rate);
  out->set_steps_per_epoch(r.steps_per_epoch);
  out->set_train_rows(r.train_rows);
  out->set_owner(r.owner);
  out->set_kind(JobKindName(r));
  if (r.audit) out->set_audit_of(r.audit->target);
  out->set_eval_noise_multiplier(r.eval_noise_multiplier);
  out->set_eval_every(r.eval_every);
  out->set_pending_reason(r.pending_reason);
  for (const AttemptRecord& a : r.attempts) {
    v1::JobAttempt* p = out->add_attempts();
    p->set_attempt(a.attempt);
    for (const std::string& w : a.worker_ids) p->add_worker_ids(w);
    p->set_started_unix_ms(a.started_ms);
    p->set_ended_unix_ms(a.ended_ms);
    p->set_outcome(ToProto(a.outcome));
    p->set_reason(a.reason);
  }
}

void ToProto(const WorkerRecord& w, v1::WorkerInfo* out) {
  out->set_worker_id(w.worker_id);
  out->set_hostname(w.hostname);
  out->set_device(w.device);
  switch (w.state) {
    case WorkerState::kIdle:
      out->set_state(v1::IDLE);
      break;
    case WorkerState::kBusy:
      out->set_state(v1::BUSY);
      break;
    case WorkerState::kLost:
      out->set_state(v1::LOST);
      break;
  }
  out->set_job_id(w.job_id);
  out->set_attempt(w.attempt);
  out->set_rank(w.rank);
  out->set_registered_unix_ms(w.registered_ms);
  out->set_last_heartbeat_unix_ms(w.last_heartbeat_ms);
  out->set_pid(w.pid);
  out->set_identity(w.identity);
}

void ToProto(const BudgetView& b, v1::DatasetBudget* out) {
  out->set_file(b.file);
  for (const std::string& n : b.names) out->add_names(n);
  out->set_has_budget(b.has_budget);
  out->set_epsilon_budget(b.epsilon_budget);
  out->set_delta(b.delta);
  out->set_epsilon_spent(b.spent);
  out->set_epsilon_committed(b.committed);
  out->set_epsilon_remaining(b.remaining);
  out->set_jobs(b.jobs);
}

void ToProto(const AuditOrder& a, v1::AuditOrder* out) {
  out->set_target_job_id(a.target);
  v1::AuditOptions* o = out->mutable_options();
  o->set_membership(a.membership);
  o->set_inversion(a.inversion);
  o->set_shadow_models(a.shadow_models);
  o->set_max_challenge(a.max_challenge);
  o->set_baseline(a.baseline);
  for (const std::string& f : a.inversion_features) o->add_inversion_features(f);
  o->set_one_run(a.one_run);
  o->set_canaries(a.canaries);
  if (a.reported_epsilon) out->set_reported_epsilon(*a.reported_epsilon);
  out->set_delta(a.delta);
}

std::string AuditReportJson(const v1::AuditReport& report) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  // Only fails for messages with unresolvable Any fields; AuditReport has none.
  (void)google::protobuf::util::MessageToJsonString(report, &json, options);
  return json;
}

absl::Status AuditReportFromJson(const std::string& json, v1::AuditReport* out) {
  const auto s = google::protobuf::util::JsonStringToMessage(json, out);
  if (!s.ok()) return absl::DataLossError(absl::StrCat("the stored audit report does not parse: ", s.ToString()));
  return absl::OkStatus();
}

}  // namespace dpfleet::server
