// `dpctl report JOB [JOB...] -o DIR`: pictures of jobs.
//
// For every job: JOB-loss.svg, JOB-accuracy.svg (eval loss and accuracy per
// epoch, one vertex per epoch with an eval release) and JOB-epsilon.svg (ε
// through each epoch; a non-private job has none: it has no finite ε). For
// two or more jobs also privacy_utility.svg: final eval accuracy against
// final ε of the private jobs, each non-private job a horizontal baseline.
// Each SVG gets a PNG beside it when rsvg-convert is on PATH, and
// index.html embeds them all with a table of the jobs.
//
// Only what GetJob already releases to the caller goes in (the DP eval
// metrics and the ledger's ε): a report is post-processing of released
// values and spends no budget.
#ifndef DPFLEET_CLIENT_REPORT_CLI_H_
#define DPFLEET_CLIENT_REPORT_CLI_H_

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "client/coordinator_client.h"
#include "client/svg.h"

namespace dpfleet::client {

struct ReportOptions {
  std::vector<std::string> job_ids;
  std::string out_dir;
  bool png = true;  // rasterise with rsvg-convert when it is installed
};

// The plots of `jobs` by file name (no I/O).
std::map<std::string, Plot> ReportPlots(const std::vector<v1::Job>& jobs);
// The index page for `jobs` embedding `images` (file names, in order).
std::string ReportIndexHtml(const std::vector<v1::Job>& jobs, const std::vector<std::string>& images);

// Runs the verb; returns the exit code (client/cli.h).
int RunReport(CoordinatorClient& client, const ReportOptions& options, std::ostream& out, std::ostream& err);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_REPORT_CLI_H_
