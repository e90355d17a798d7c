#include "client/audit_cli.h"

#include <google/protobuf/util/json_util.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/cli.h"

namespace dpfleet::client {
namespace {

std::string Percent(double share) { return absl::StrFormat("%.2f%%", 100.0 * share); }

void MembershipRows(const v1::ModelAuditResult& m, std::string* out) {
  for (const v1::MembershipAttackResult& a : m.membership()) {
    absl::StrAppendFormat(out, "%-22s %-16s %7.4f %9s %9s %9.3f %9d\n", m.model(), a.attack(), a.auc(),
                          Percent(a.tpr_at_fpr_0_1pct()), Percent(a.tpr_at_fpr_1pct()), a.epsilon_lower_bound(),
                          a.members() + a.non_members());
  }
}

void InversionRows(const v1::ModelAuditResult& m, std::string* out) {
  for (const v1::InversionAttackResult& a : m.inversion()) {
    absl::StrAppendFormat(out, "%-22s %-8s %9s %10s %9d\n", m.model(), a.feature(), Percent(a.accuracy()),
                          Percent(a.base_rate()), a.records());
  }
}

void OneRunRow(const v1::ModelAuditResult& m, std::string* out) {
  if (!m.has_one_run()) return;
  const v1::OneRunAuditResult& r = m.one_run();
  absl::StrAppendFormat(out, "%-22s %9d %9d %9d %9d %9.3f\n", m.model(), r.canaries(), r.included(), r.guesses(),
                        r.correct(), r.epsilon_lower_bound());
}

std::string ReportedEpsilonText(const v1::AuditReport& r) {
  if (!r.has_reported_epsilon()) return "none (the job is not private)";
  return absl::StrFormat("%.4g (delta %.3g)", r.reported_epsilon(), r.delta());
}

// The final word on a run: its report, or why there is none.
int PrintAudit(const v1::GetAuditResponse& audit, bool json, std::ostream& out, std::ostream& err) {
  const v1::Job& run = audit.run();
  if (json) {
    out << AuditJson(audit).dump(2) << "\n";
  } else if (audit.has_report()) {
    out << "audit " << run.job_id() << " of " << run.audit_of() << "\n" << AuditReportText(audit.report());
  } else {
    out << "audit " << run.job_id() << " of " << run.audit_of() << ": " << StateName(run.state())
        << (run.reason().empty() ? "" : ": " + run.reason()) << "\n";
  }
  if (run.state() != v1::SUCCEEDED) {
    if (json) err << "dpctl audit: run " << run.job_id() << " is " << StateName(run.state()) << "\n";
    return kExitJobFailed;
  }
  return kExitOk;
}

}  // namespace

std::string AuditReportText(const v1::AuditReport& r) {
  std::string out = absl::StrFormat("reported epsilon: %s\n", ReportedEpsilonText(r));
  absl::StrAppendFormat(&out, "%d shadow models per model; lower bounds at %.0f%% joint confidence; %.1f s\n\n",
                        r.shadow_models(), 100.0 * r.confidence(), r.seconds());
  const bool membership = r.target().membership_size() > 0 || r.baseline().membership_size() > 0;
  if (membership) {
    absl::StrAppendFormat(&out, "%-22s %-16s %7s %9s %9s %9s %9s\n", "MODEL", "ATTACK", "AUC", "TPR@0.1%", "TPR@1%",
                          "EPS_LB", "POINTS");
    MembershipRows(r.target(), &out);
    if (r.has_baseline()) MembershipRows(r.baseline(), &out);
    out += "\n";
  }
  const bool inversion = r.target().inversion_size() > 0 || r.baseline().inversion_size() > 0;
  if (inversion) {
    absl::StrAppendFormat(&out, "%-22s %-8s %9s %10s %9s\n", "MODEL", "FEATURE", "ACCURACY", "BASE_RATE", "RECORDS");
    InversionRows(r.target(), &out);
    if (r.has_baseline()) InversionRows(r.baseline(), &out);
    out += "\n";
  }
  const bool one_run = r.target().has_one_run() || r.baseline().has_one_run();
  if (one_run) {
    out += "one-run audit (canaries inserted into one training run of the spec):\n";
    absl::StrAppendFormat(&out, "%-22s %9s %9s %9s %9s %9s\n", "MODEL", "CANARIES", "INCLUDED", "GUESSES", "CORRECT",
                          "EPS_LB");
    OneRunRow(r.target(), &out);
    if (r.has_baseline()) OneRunRow(r.baseline(), &out);
    out += "\n";
  }
  if (membership || one_run) {
    absl::StrAppendFormat(&out, "empirical epsilon lower bound: %.3f for the job's %s",
                          r.target().epsilon_lower_bound(), one_run ? "model and training (one-run audit)" : "model");
    if (r.has_reported_epsilon()) absl::StrAppendFormat(&out, " (reported %.4g)", r.reported_epsilon());
    if (r.has_baseline()) {
      absl::StrAppendFormat(&out, ", %.3f for the non-private baseline", r.baseline().epsilon_lower_bound());
    }
    out += "\n";
  }
  return out;
}

nlohmann::json AuditJson(const v1::GetAuditResponse& audit) {
  nlohmann::json j = {{"audit_id", audit.run().job_id()},
                      {"audit_of", audit.run().audit_of()},
                      {"run", nlohmann::json::parse(JobToJson(audit.run(), -1))},
                      {"report", nullptr}};
  if (audit.has_report()) {
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    options.always_print_primitive_fields = true;
    std::string text;
    (void)google::protobuf::util::MessageToJsonString(audit.report(), &text, options);
    nlohmann::json report = nlohmann::json::parse(text);
    // Counts as numbers (proto3's JSON writes 64-bit integers as strings).
    auto numbers = [](nlohmann::json& row, const std::vector<const char*>& keys) {
      for (const char* k : keys) {
        if (row.contains(k) && row[k].is_string()) row[k] = std::stoll(row[k].get<std::string>());
      }
    };
    for (const char* model : {"target", "baseline"}) {
      if (!report.contains(model) || !report[model].is_object()) continue;
      for (auto [list, keys] :
           {std::pair<const char*, std::vector<const char*>>{"membership", {"members", "non_members"}},
            {"inversion", {"records"}}}) {
        for (auto& row : report[model][list]) numbers(row, keys);
      }
      const v1::ModelAuditResult& result =
          std::string(model) == "target" ? audit.report().target() : audit.report().baseline();
      if (result.has_one_run()) {
        numbers(report[model]["one_run"], {"canaries", "included", "guesses", "correct", "steps"});
      } else {
        report[model]["one_run"] = nullptr;
      }
    }
    // Absent is "not private", never a 0 that reads as perfect privacy.
    if (!audit.report().has_reported_epsilon()) report["reported_epsilon"] = nullptr;
    if (!audit.report().has_baseline()) report["baseline"] = nullptr;
    j["report"] = std::move(report);
  }
  return j;
}

int RunAuditVerb(CoordinatorClient& client, const AuditCliOptions& o, std::ostream& out, std::ostream& err) {
  std::string audit_id = o.audit_id;
  if (audit_id.empty()) {
    v1::AuditJobRequest req;
    req.set_job_id(o.job_id);
    req.set_attacks(o.attacks);
    req.set_shadow_models(o.shadow_models);
    req.set_max_challenge(o.max_challenge);
    req.set_canaries(o.canaries);
    req.set_baseline(o.baseline);
    for (const std::string& f : o.inversion_features) req.add_inversion_features(f);
    absl::StatusOr<v1::Job> run = client.AuditJob(req);
    if (!run.ok()) return ReportError(run.status(), err);
    audit_id = run->job_id();
    if (!o.json) out << "audit " << audit_id << " of " << o.job_id << " started\n" << std::flush;
    // The run trains shadow models: it has no epochs, only states.
    absl::StatusOr<v1::Job> final_run = client.Watch(audit_id, [&](const v1::JobEvent& e) {
      if (!o.json && e.type() == v1::JobEvent::STATE) {
        out << "state " << StateName(e.state()) << (e.reason().empty() ? "" : ": " + e.reason()) << "\n" << std::flush;
      }
      return true;
    });
    if (!final_run.ok()) return ReportError(final_run.status(), err);
  }
  absl::StatusOr<v1::GetAuditResponse> audit = client.GetAudit(audit_id);
  if (!audit.ok()) return ReportError(audit.status(), err);
  return PrintAudit(*audit, o.json, out, err);
}

}  // namespace dpfleet::client
