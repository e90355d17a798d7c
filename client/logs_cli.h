// `dpctl logs JOB [-f] [--rank R] [--attempt A] [-o json]`: the log lines
// the workers shipped for a job's runs (GetJobLogs), oldest first; with
// follow, new lines as they arrive until the job ends. The verb is one
// function over a small options struct so that it does not depend on how
// dpctl parses its arguments.
//
// Only the job's owner and custodians get a job's log; for anyone else the
// coordinator answers NOT_FOUND, as for a missing job.
#ifndef DPFLEET_CLIENT_LOGS_CLI_H_
#define DPFLEET_CLIENT_LOGS_CLI_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "absl/time/time.h"
#include "client/coordinator_client.h"

namespace dpfleet::client {

struct LogsOptions {
  std::string job_id;
  bool follow = false;
  std::optional<int32_t> rank;
  std::optional<int32_t> attempt;
  bool json = false;  // one JSON object per line
  // How often a follower asks for new lines.
  absl::Duration poll_interval = absl::Milliseconds(500);
};

// Exit codes as cli.h says: 0, or with follow 0 only when the job
// SUCCEEDED (1 when it FAILED or was CANCELLED); errors by their code.
int RunLogs(CoordinatorClient& client, const LogsOptions& options, std::ostream& out, std::ostream& err);

// One attempt in `dpctl status`: "attempt 1  workers w-1,w-2  START -> END
// FAILED: reason" (END "running" while it runs).
std::string AttemptRow(const v1::JobAttempt& attempt);

// "2026-12-02T15:01:02.123Z  attempt 1  rank 0  INFO   message".
std::string FormatLogLine(const v1::JobLogLine& line);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_LOGS_CLI_H_
