#include "client/report_cli.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli.h"
#include "common/files.h"

namespace dpfleet::client {
namespace {

constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

std::optional<double> FinalAccuracy(const v1::Job& job) {
  for (int i = job.history_size() - 1; i >= 0; --i) {
    if (job.history(i).has_eval_accuracy()) return job.history(i).eval_accuracy();
  }
  return std::nullopt;
}

bool IsPrivate(const v1::Job& job) { return job.mode() != "none" && job.has_epsilon(); }

std::string Label(const v1::Job& job) {
  return job.name().empty() ? job.job_id() : absl::StrCat(job.job_id(), " (", job.name(), ")");
}

bool OnPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::string dir;
  for (const char c : std::string(path) + ":") {
    if (c != ':') {
      dir += c;
      continue;
    }
    std::error_code ec;
    if (!dir.empty() && std::filesystem::exists(std::filesystem::path(dir) / program, ec)) return true;
    dir.clear();
  }
  return false;
}

}  // namespace

std::map<std::string, Plot> ReportPlots(const std::vector<v1::Job>& jobs) {
  std::map<std::string, Plot> plots;
  for (const v1::Job& job : jobs) {
    PlotSeries loss{"eval loss", {}, kColors[0]}, acc{"eval accuracy", {}, kColors[2]}, eps{"epsilon", {}, kColors[1]};
    for (const v1::EpochMetrics& m : job.history()) {
      if (m.has_eval_loss()) loss.points.emplace_back(m.epoch(), m.eval_loss());
      if (m.has_eval_accuracy()) acc.points.emplace_back(m.epoch(), m.eval_accuracy());
      if (m.has_epsilon()) eps.points.emplace_back(m.epoch(), m.epsilon());
    }
    const std::string who = Label(job);
    plots[job.job_id() + "-loss.svg"] = Plot{absl::StrCat("Eval loss: ", who), "epoch", "BCE loss", {loss}};
    plots[job.job_id() + "-accuracy.svg"] = Plot{absl::StrCat("Eval accuracy: ", who), "epoch", "accuracy", {acc}};
    if (IsPrivate(job)) {
      plots[job.job_id() + "-epsilon.svg"] = Plot{absl::StrCat("Privacy spent: ", who), "epoch", "epsilon", {eps}};
    }
  }
  if (jobs.size() >= 2) {
    Plot pu{"Privacy-utility: final eval accuracy vs epsilon", "epsilon", "eval accuracy"};
    pu.log_x = true;
    PlotSeries dp{"DP-SGD jobs", {}, kColors[0]};
    int baseline = 0;
    for (const v1::Job& job : jobs) {
      const std::optional<double> a = FinalAccuracy(job);
      if (!a.has_value()) continue;
      if (IsPrivate(job) && job.epsilon() > 0) {
        dp.points.emplace_back(job.epsilon(), *a);
      } else if (job.mode() == "none") {
        pu.baselines.push_back({absl::StrCat("non-private ", job.job_id()), *a, baseline++ ? "#555555" : "#7f7f7f"});
      }
    }
    std::sort(dp.points.begin(), dp.points.end());
    pu.series.push_back(dp);
    plots["privacy_utility.svg"] = pu;
  }
  return plots;
}

std::string ReportIndexHtml(const std::vector<v1::Job>& jobs, const std::vector<std::string>& images) {
  std::string html =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>dpfleet report</title>\n"
      "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
      "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{display:block;margin:1em 0}</style>"
      "</head><body>\n<h1>dpfleet report</h1>\n<table id=\"jobs\">\n"
      "<tr><th>job</th><th>name</th><th>state</th><th>epochs</th><th>epsilon</th><th>delta</th>"
      "<th>final eval accuracy</th></tr>\n";
  for (const v1::Job& job : jobs) {
    const std::optional<double> a = FinalAccuracy(job);
    absl::StrAppend(&html, "<tr data-job=\"", XmlEscape(job.job_id()), "\"><td>", XmlEscape(job.job_id()), "</td><td>",
                    XmlEscape(job.name()), "</td><td>", StateName(job.state()), "</td><td>", job.epochs_done(), "/",
                    job.epochs(), "</td><td>", IsPrivate(job) ? absl::StrFormat("%.4g", job.epsilon()) : "not private",
                    "</td><td>", IsPrivate(job) ? absl::StrFormat("%.3g", job.delta()) : "-", "</td><td>",
                    a ? absl::StrFormat("%.4f", *a) : "-", "</td></tr>\n");
  }
  html += "</table>\n<p>Eval metrics are the jobs' DP eval releases; epsilon is the ledger's.</p>\n";
  for (const std::string& img : images) {
    absl::StrAppend(&html, "<img src=\"", XmlEscape(img), "\" alt=\"", XmlEscape(img), "\">\n");
  }
  html += "</body></html>\n";
  return html;
}

int RunReport(CoordinatorClient& client, const ReportOptions& options, std::ostream& out, std::ostream& err) {
  if (options.job_ids.empty() || options.out_dir.empty()) {
    err << "dpctl report: expected JOB [JOB...] -o DIR\n";
    return kExitUsage;
  }
  std::vector<v1::Job> jobs;
  for (const std::string& id : options.job_ids) {
    absl::StatusOr<v1::Job> job = client.Get(id);
    if (!job.ok()) return ReportError(job.status(), err);
    jobs.push_back(*std::move(job));
  }
  std::error_code ec;
  std::filesystem::create_directories(options.out_dir, ec);
  if (ec) {
    err << "dpctl report: -o: cannot create directory '" << options.out_dir << "': " << ec.message() << "\n";
    return kExitUsage;
  }
  const bool png = options.png && OnPath("rsvg-convert");
  std::vector<std::string> images;
  // The privacy-utility figure first, then each job's.
  std::map<std::string, Plot> plots = ReportPlots(jobs);
  std::vector<std::string> names;
  if (plots.count("privacy_utility.svg")) names.push_back("privacy_utility.svg");
  for (const auto& [name, plot] : plots) {
    if (name != "privacy_utility.svg") names.push_back(name);
  }
  for (const std::string& name : names) {
    const std::string path = (std::filesystem::path(options.out_dir) / name).string();
    if (absl::Status s = WriteFileAtomically(path, RenderSvg(plots.at(name))); !s.ok()) {
      err << "dpctl report: cannot write '" << path << "': " << s.message() << "\n";
      return kExitFailure;
    }
    images.push_back(name);
    if (png) {
      const std::string png_path = path.substr(0, path.size() - 4) + ".png";
      const std::string cmd = absl::StrCat("rsvg-convert -o '", png_path, "' '", path, "'");
      if (path.find('\'') != std::string::npos || std::system(cmd.c_str()) != 0) {
        err << "dpctl report: rsvg-convert could not rasterise " << path << " (the SVG stays)\n";
      }
    }
  }
  const std::string index = (std::filesystem::path(options.out_dir) / "index.html").string();
  if (absl::Status s = WriteFileAtomically(index, ReportIndexHtml(jobs, images)); !s.ok()) {
    err << "dpctl report: cannot write '" << index << "': " << s.message() << "\n";
    return kExitFailure;
  }
  out << "wrote " << images.size() << " plots" << (png ? " (SVG and PNG)" : " (SVG; no rsvg-convert for PNG)")
      << " and index.html to " << options.out_dir << "\n";
  return kExitOk;
}

}  // namespace dpfleet::client
