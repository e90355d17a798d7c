#include "client/logs_cli.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/cli.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {
namespace {

const char* LevelName(v1::LogLevel level) {
  switch (level) {
    case v1::LOG_DEBUG:
      return "DEBUG";
    case v1::LOG_INFO:
      return "INFO";
    case v1::LOG_WARN:
      return "WARN";
    case v1::LOG_ERROR:
      return "ERROR";
    default:
      break;
  }
  return "?";
}

std::string Time(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

}  // namespace

std::string AttemptRow(const v1::JobAttempt& a) {
  return absl::StrFormat("attempt  %d  workers %s  %s -> %s  %s%s", a.attempt(), absl::StrJoin(a.worker_ids(), ","),
                         Time(a.started_unix_ms()), a.ended_unix_ms() == 0 ? "running" : Time(a.ended_unix_ms()),
                         StateName(a.outcome()), a.reason().empty() ? "" : ": " + a.reason());
}

std::string FormatLogLine(const v1::JobLogLine& line) {
  return absl::StrFormat("%s  attempt %d  rank %d  %-5s  %s", Time(line.time_unix_ms()), line.attempt(), line.rank(),
                         LevelName(line.level()), line.message());
}

int RunLogs(CoordinatorClient& client, const LogsOptions& options, std::ostream& out, std::ostream& err) {
  v1::GetJobLogsRequest req;
  req.set_job_id(options.job_id);
  if (options.rank) req.set_rank(*options.rank);
  if (options.attempt) req.set_attempt(*options.attempt);
  int64_t dropped_said = 0;
  bool saw_end = false;
  while (true) {
    absl::StatusOr<v1::GetJobLogsResponse> page = client.GetJobLogs(req);
    if (!page.ok()) return ReportError(page.status(), err);
    for (const v1::JobLogLine& l : page->lines()) {
      if (options.json) {
        out << nlohmann::json{{"seq", l.seq()},
                              {"attempt", l.attempt()},
                              {"rank", l.rank()},
                              {"level", LevelName(l.level())},
                              {"time_unix_ms", l.time_unix_ms()},
                              {"message", l.message()}}
                   .dump()
            << "\n";
      } else {
        out << FormatLogLine(l) << "\n";
      }
      req.set_after_seq(std::max(req.after_seq(), l.seq()));
    }
    out.flush();
    if (page->dropped_lines() > dropped_said) {
      err << "dpctl logs: " << page->dropped_lines() - dropped_said
          << " older line(s) of this job were dropped (the coordinator keeps a bounded log per job)\n";
      dropped_said = page->dropped_lines();
    }
    // A short page holds every matching line up to the log's end as it was
    // read; a full one is followed at once by the next.
    const bool full_page = page->lines_size() >= 1000;
    if (!full_page) req.set_after_seq(std::max(req.after_seq(), page->last_seq()));
    if (full_page) continue;
    const bool ended = IsTerminal(page->job_state());
    if (!options.follow) return kExitOk;
    if (ended) {
      // The state was read before the lines: one more page after the end
      // catches lines other ranks shipped while it ended.
      if (saw_end) return page->job_state() == v1::SUCCEEDED ? kExitOk : kExitJobFailed;
      saw_end = true;
    }
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(options.poll_interval));
  }
}

}  // namespace dpfleet::client
