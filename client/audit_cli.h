// `dpctl audit JOB`: the service attacks a SUCCEEDED job's model on a
// worker (membership inference and model inversion, worker/audit/audit.h)
// and dpctl prints the report: per model (the job's, and the non-private
// baseline of its spec) and attack the AUC, the TPR at FPR 0.1 % and 1 %,
// the empirical ε lower bound next to the job's reported ε, then the
// inversion rows (accuracy against the base rate), then the one-run audit
// rows (canaries, guesses, correct, bound). `dpctl audit show ID`
// prints a stored report. Custodian tokens only: the report is computed
// with membership labels (docs/PRIVACY.md).
#ifndef DPFLEET_CLIENT_AUDIT_CLI_H_
#define DPFLEET_CLIENT_AUDIT_CLI_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "client/coordinator_client.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {

struct AuditCliOptions {
  std::string job_id;         // audit this job (empty with `audit_id`)
  std::string audit_id;       // print this stored audit instead
  std::string attacks;        // membership,inversion,one-run or all ("": all)
  int32_t shadow_models = 0;  // 0: the service's default
  int64_t max_challenge = 0;
  int64_t canaries = 0;  // one-run audit; 0: the service's default
  bool baseline = true;
  std::vector<std::string> inversion_features;
  bool json = false;
  bool interactive = false;  // print state changes while following
};

// The report as dpctl's table (see the header comment).
std::string AuditReportText(const v1::AuditReport& report);
// {"audit_id", "run" (as `dpctl status -o json`), "report" (null until the
// run SUCCEEDED; "reported_epsilon" null for a non-private job)}.
nlohmann::json AuditJson(const v1::GetAuditResponse& audit);

// Runs the verb; returns the exit code (client/cli.h): kExitJobFailed when
// the audit run did not succeed.
int RunAuditVerb(CoordinatorClient& client, const AuditCliOptions& options, std::ostream& out, std::ostream& err);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_AUDIT_CLI_H_
