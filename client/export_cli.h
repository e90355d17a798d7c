// `dpctl export JOB --format torchscript|safetensors -o FILE`: a SUCCEEDED
// job's model in a form Python loads, with its model card.
//
// dpctl fetches the job record and the trained-model archive (GetJob and
// GetModel: the same access as `dpctl model` — the job's owner or a
// custodian; another analyst's job answers like a missing one), builds the
// model card from what that record already releases (the job's ε, δ,
// accountant, σ, q, steps, N; the features' encoding from the public
// schema), and hands archive and card to dpfleet-export, the LibTorch tool
// that writes the file (worker/export/model_export.h): dpctl itself never
// links LibTorch. The card never carries data paths or file content keys
// (custodian-only, docs/SECURITY.md); a non-private job's card says
// "private": false with "epsilon": null, never 0.
#ifndef DPFLEET_CLIENT_EXPORT_CLI_H_
#define DPFLEET_CLIENT_EXPORT_CLI_H_

#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "client/coordinator_client.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {

struct ExportOptions {
  std::string job_id;
  std::string format;  // torchscript | safetensors
  std::string out_path;
  // The dpfleet-export binary; empty = $DPFLEET_EXPORT_TOOL, else the one
  // beside the running dpctl.
  std::string tool;
  bool json = false;  // print the result as JSON (--json)
};

// The model card of a job (see the header comment). InvalidArgument when the
// record's spec does not parse.
absl::StatusOr<nlohmann::ordered_json> ModelCard(const v1::Job& job, const std::string& dpfleet_version);

// Runs the verb; returns the exit code (client/cli.h).
int RunExport(CoordinatorClient& client, const ExportOptions& options, std::ostream& out, std::ostream& err);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_EXPORT_CLI_H_
