// The coordinator's own Prometheus metrics: counters and histograms that
// the core and the RPC layer update as things happen, rendered in the text
// exposition format next to the gauges /metrics computes from the job
// table (server/http).
//
// Names follow Prometheus conventions: base units (seconds), `_total` on
// counters, `_seconds` on durations; a histogram renders cumulative
// `_bucket{le=...}` series, `_sum` and `_count`. Labels carry method names,
// status codes and states, never a job id, a token or a person-level value:
// their number of series is bounded by the API, not by the data.
//
// Thread-safe; an update takes one short mutex of its family.
#ifndef DPFLEET_SERVER_CORE_METRICS_H_
#define DPFLEET_SERVER_CORE_METRICS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace dpfleet::server {

class CounterFamily {
 public:
  CounterFamily(std::string name, std::string help, std::vector<std::string> labels = {});
  // `values` line up with the family's label names.
  void Inc(const std::vector<std::string>& values = {}, double by = 1);
  double Value(const std::vector<std::string>& values = {}) const;
  void Render(std::string* out) const;

 private:
  const std::string name_, help_;
  const std::vector<std::string> labels_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, double> values_ ABSL_GUARDED_BY(mu_);
};

class HistogramFamily {
 public:
  // `bounds`: the buckets' upper bounds, increasing (+Inf is implied).
  HistogramFamily(std::string name, std::string help, std::vector<std::string> labels, std::vector<double> bounds);
  void Observe(const std::vector<std::string>& values, double v);
  void Observe(double v) { Observe({}, v); }
  int64_t Count(const std::vector<std::string>& values = {}) const;
  void Render(std::string* out) const;

 private:
  struct Series {
    std::vector<int64_t> buckets;  // per bucket, not cumulative; last is +Inf
    double sum = 0;
    int64_t count = 0;
  };
  const std::string name_, help_;
  const std::vector<std::string> labels_;
  const std::vector<double> bounds_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, Series> series_ ABSL_GUARDED_BY(mu_);
};

// Every counter and histogram the coordinator keeps.
struct ServerMetrics {
  ServerMetrics();
  // Accepted submissions, by privacy mode (dp | none).
  CounterFamily jobs_submitted;
  // Epochs recorded (one per job, attempt and epoch; a retried report of
  // the same epoch does not count again).
  CounterFamily epochs;
  // Jobs that reached an end state, by state.
  CounterFamily jobs_finished;
  // gRPC calls handled, by full method name and status code name.
  CounterFamily rpc_requests;
  // gRPC handling time (for streams: the stream's lifetime), by method.
  HistogramFamily rpc_duration;
  // HTTP requests, by route pattern and status code.
  CounterFamily http_requests;
  // One training step's wall time as the workers report it (an epoch's
  // training seconds over its steps), and one epoch's.
  HistogramFamily step_seconds;
  HistogramFamily epoch_seconds;

  std::string Render() const;
};

// "a\"b" for a label value: backslash, quote and newline escaped.
std::string EscapeLabelValue(const std::string& v);
// A sample value in the exposition format (+Inf, -Inf, NaN; the shortest
// decimal that reads back as the same double).
std::string PromValue(double v);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_METRICS_H_
