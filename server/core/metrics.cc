#include "server/core/metrics.h"

#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dpfleet::server {
namespace {

void Header(std::string* out, const std::string& name, const std::string& help, const char* type) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

// {a="x",b="y"} with an optional extra pair last (a histogram's le).
std::string LabelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     const std::string& extra_name = "", const std::string& extra_value = "") {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    absl::StrAppend(&out, out.empty() ? "" : ",", names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (!extra_name.empty()) absl::StrAppend(&out, out.empty() ? "" : ",", extra_name, "=\"", extra_value, "\"");
  return out.empty() ? "" : absl::StrCat("{", out, "}");
}

// Label values padded or cut to the family's names, so a caller's mistake
// cannot make an ill-formed series.
std::vector<std::string> Fit(const std::vector<std::string>& values, std::size_t n) {
  std::vector<std::string> v(values.begin(), values.begin() + std::min(values.size(), n));
  v.resize(n);
  return v;
}

}  // namespace

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string PromValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  const std::string short_form = absl::StrFormat("%.15g", v);
  return std::strtod(short_form.c_str(), nullptr) == v ? short_form : absl::StrFormat("%.17g", v);
}

CounterFamily::CounterFamily(std::string name, std::string help, std::vector<std::string> labels)
    : name_(std::move(name)), help_(std::move(help)), labels_(std::move(labels)) {}

void CounterFamily::Inc(const std::vector<std::string>& values, double by) {
  if (!(by >= 0)) return;  // a counter never goes down
  absl::MutexLock lock(&mu_);
  values_[Fit(values, labels_.size())] += by;
}

double CounterFamily::Value(const std::vector<std::string>& values) const {
  absl::MutexLock lock(&mu_);
  auto it = values_.find(Fit(values, labels_.size()));
  return it == values_.end() ? 0 : it->second;
}

void CounterFamily::Render(std::string* out) const {
  Header(out, name_, help_, "counter");
  absl::MutexLock lock(&mu_);
  // A family without labels shows its 0 before the first event.
  if (labels_.empty() && values_.empty()) absl::StrAppend(out, name_, " 0\n");
  for (const auto& [values, v] : values_)
    absl::StrAppend(out, name_, LabelSet(labels_, values), " ", PromValue(v), "\n");
}

HistogramFamily::HistogramFamily(std::string name, std::string help, std::vector<std::string> labels,
                                 std::vector<double> bounds)
    : name_(std::move(name)), help_(std::move(help)), labels_(std::move(labels)), bounds_(std::move(bounds)) {}

void HistogramFamily::Observe(const std::vector<std::string>& values, double v) {
  if (std::isnan(v)) return;
  std::size_t bucket = 0;
  while (bucket < bounds_.size() && v > bounds_[bucket]) ++bucket;
  absl::MutexLock lock(&mu_);
  Series& s = series_[Fit(values, labels_.size())];
  if (s.buckets.empty()) s.buckets.assign(bounds_.size() + 1, 0);
  s.buckets[bucket]++;
  s.sum += v;
  s.count++;
}

int64_t HistogramFamily::Count(const std::vector<std::string>& values) const {
  absl::MutexLock lock(&mu_);
  auto it = series_.find(Fit(values, labels_.size()));
  return it == series_.end() ? 0 : it->second.count;
}

void HistogramFamily::Render(std::string* out) const {
  Header(out, name_, help_, "histogram");
  absl::MutexLock lock(&mu_);
  auto render = [&](const std::vector<std::string>& values, const Series* s) {
    int64_t cumulative = 0;
    for (std::size_t b = 0; b <= bounds_.size(); ++b) {
      if (s != nullptr) cumulative += s->buckets[b];
      const std::string le = b < bounds_.size() ? PromValue(bounds_[b]) : "+Inf";
      absl::StrAppend(out, name_, "_bucket", LabelSet(labels_, values, "le", le), " ", cumulative, "\n");
    }
    absl::StrAppend(out, name_, "_sum", LabelSet(labels_, values), " ", PromValue(s ? s->sum : 0), "\n");
    absl::StrAppend(out, name_, "_count", LabelSet(labels_, values), " ", s ? s->count : 0, "\n");
  };
  if (labels_.empty() && series_.empty()) render({}, nullptr);
  for (const auto& [values, s] : series_) render(values, &s);
}

namespace {

// Seconds, 1 ms to ~2 min: RPCs, steps and epochs all fall inside.
std::vector<double> DurationBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

}  // namespace

ServerMetrics::ServerMetrics()
    : jobs_submitted("dpfleet_jobs_submitted_total", "Jobs accepted by SubmitJob, by privacy mode.", {"mode"}),
      epochs("dpfleet_epochs_total", "Epochs recorded (a retried report of the same epoch counts once)."),
      jobs_finished("dpfleet_jobs_finished_total", "Jobs that reached an end state, by state.", {"state"}),
      rpc_requests("dpfleet_rpc_requests_total", "gRPC calls handled, by method and status code.", {"method", "code"}),
      rpc_duration("dpfleet_rpc_duration_seconds", "gRPC handling time (a stream: its lifetime), by method.",
                   {"method"}, DurationBuckets()),
      http_requests("dpfleet_http_requests_total", "HTTP requests, by route and status code.", {"route", "code"}),
      step_seconds("dpfleet_step_seconds", "Wall time of one training step (an epoch's training time over its steps).",
                   {}, DurationBuckets()),
      epoch_seconds("dpfleet_epoch_seconds", "Training wall time of one epoch, as rank 0 reports it.", {},
                    DurationBuckets()) {}

std::string ServerMetrics::Render() const {
  std::string out;
  jobs_submitted.Render(&out);
  epochs.Render(&out);
  jobs_finished.Render(&out);
  rpc_requests.Render(&out);
  rpc_duration.Render(&out);
  http_requests.Render(&out);
  step_seconds.Render(&out);
  epoch_seconds.Render(&out);
  return out;
}

}  // namespace dpfleet::server
