#include "common/plan/plan.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace dpfleet::plan {
namespace {

// "8.6" -> 8, 6.
bool ParseCapability(const std::string& text, int* major, int* minor) {
  const size_t dot = text.find('.');
  return dot != std::string::npos && dot > 0 && dot + 2 == text.size() && absl::SimpleAtoi(text.substr(0, dot), major) &&
         absl::SimpleAtoi(text.substr(dot + 1), minor);
}

}  // namespace

PriceList DefaultPriceList() {
  PriceList p;
  p.currency = "USD";
  p.source = "AWS EC2 On-Demand, Linux, us-east-1 (G3 family: NVIDIA Tesla M60 GPUs)";
  p.shapes = {{"g3s.xlarge", 1, 0.75, "Tesla M60", "5.2"},
              {"g3.4xlarge", 1, 1.14, "Tesla M60", "5.2"},
              {"g3.8xlarge", 2, 2.28, "Tesla M60", "5.2"},
              {"g3.16xlarge", 4, 4.56, "Tesla M60", "5.2"}};
  p.instance_counts = {1, 2, 4};
  return p;
}

absl::StatusOr<PriceList> ParsePriceList(const std::string& yaml) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("price list is not valid YAML: ", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("price list: must be a mapping with 'shapes'");
  PriceList p;
  p.instance_counts = {1};
  try {
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (key == "currency") {
        p.currency = v.as<std::string>();
      } else if (key == "source") {
        p.source = v.as<std::string>();
      } else if (key == "instance_counts") {
        p.instance_counts = v.as<std::vector<int>>();
      } else if (key == "examples_per_second_per_rank") {
        p.examples_per_second_per_rank = v.as<double>();
      } else if (key == "allreduce_latency_us") {
        p.allreduce_latency_us = v.as<double>();
      } else if (key == "allreduce_busbw_gbps") {
        p.allreduce_busbw_gbps = v.as<double>();
      } else if (key == "shapes") {
        if (!v.IsSequence()) return absl::InvalidArgumentError("shapes: must be a list");
        for (std::size_t i = 0; i < v.size(); ++i) {
          Shape s;
          const std::string where = absl::StrCat("shapes[", i, "]");
          if (!v[i]["name"] || !v[i]["price_per_hour"]) {
            return absl::InvalidArgumentError(absl::StrCat(where, ": needs name and price_per_hour"));
          }
          s.name = v[i]["name"].as<std::string>();
          s.price_per_hour = v[i]["price_per_hour"].as<double>();
          s.gpus = v[i]["gpus"] ? v[i]["gpus"].as<int>() : 1;
          if (v[i]["gpu"]) s.gpu = v[i]["gpu"].as<std::string>();
          if (v[i]["compute_capability"]) {
            s.compute_capability = v[i]["compute_capability"].as<std::string>();
            int major = 0, minor = 0;
            if (!ParseCapability(s.compute_capability, &major, &minor)) {
              return absl::InvalidArgumentError(absl::StrCat(where, ".compute_capability: '", s.compute_capability,
                                                             "' must be MAJOR.MINOR, e.g. 8.6"));
            }
          }
          for (const auto& field : v[i]) {
            const std::string k = field.first.as<std::string>();
            if (k != "name" && k != "gpus" && k != "price_per_hour" && k != "gpu" && k != "compute_capability") {
              return absl::InvalidArgumentError(absl::StrCat(where, ": '", k, "' is not a known field"));
            }
          }
          if (!(s.price_per_hour > 0)) {
            return absl::InvalidArgumentError(
                absl::StrCat(where, ".price_per_hour: '", s.price_per_hour, "' must be positive"));
          }
          if (s.gpus < 1) return absl::InvalidArgumentError(absl::StrCat(where, ".gpus: '", s.gpus, "' must be >= 1"));
          p.shapes.push_back(s);
        }
      } else {
        return absl::InvalidArgumentError(absl::StrCat("price list: '", key, "' is not a known field"));
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("price list: wrong type: ", e.what()));
  }
  if (p.shapes.empty()) return absl::InvalidArgumentError("price list: 'shapes' is empty");
  for (int c : p.instance_counts) {
    if (c < 1) return absl::InvalidArgumentError(absl::StrCat("instance_counts: '", c, "' must be >= 1"));
  }
  return p;
}

int64_t MlpParameters(int64_t input_dim, const std::vector<int64_t>& hidden) {
  int64_t params = 0;
  int64_t in = input_dim;
  for (int64_t h : hidden) {
    params += (in + 1) * h;
    in = h;
  }
  return params + in + 1;
}

absl::StatusOr<std::vector<PlanRow>> Plan(const JobShape& job, const PriceList& prices, const Performance& perf,
                                          const gpu::CudaArchList& archs) {
  if (job.dataset_size < 1 || job.batch_size < 1 || job.batch_size > job.dataset_size) {
    return absl::InvalidArgumentError("job: needs 1 <= batch size <= dataset size");
  }
  if (job.epochs < 1) return absl::InvalidArgumentError("job: epochs must be >= 1");
  if (!(perf.examples_per_second_per_rank > 0)) {
    return absl::InvalidArgumentError(
        "examples_per_second_per_rank: not given; measure it (dpfleet-train-bench) or set it in the price list");
  }
  const int64_t steps = job.epochs * std::max<int64_t>(1, std::llround(double(job.dataset_size) / job.batch_size));
  const double bytes = 4.0 * job.parameters;
  std::vector<PlanRow> rows;
  for (const Shape& s : prices.shapes) {
    for (int count : prices.instance_counts) {
      PlanRow r;
      r.shape = s.name;
      r.instances = count;
      r.ranks = s.gpus * count;
      r.price_per_hour = s.price_per_hour * count;
      int major = 0, minor = 0;
      if (!s.compute_capability.empty() && ParseCapability(s.compute_capability, &major, &minor)) {
        if (absl::Status ok = gpu::CheckCudaCapability(major, minor, archs); !ok.ok()) {
          r.supported = false;
          r.unsupported_reason = absl::StrCat(s.gpu.empty() ? "its GPU" : s.gpu, " (compute capability ",
                                              s.compute_capability, ") has no kernels in this LibTorch build (",
                                              gpu::ArchListString(archs), ")");
        }
      }
      const int w = r.ranks;
      double comm = 0;
      if (w > 1) {
        if (!(perf.allreduce_busbw_gbps > 0)) {
          return absl::InvalidArgumentError(
              "allreduce_busbw_gbps: not given; measure it (dpfleet-allreduce-bench) or set it in the price list");
        }
        comm = perf.allreduce_latency_us * 1e-6 + bytes * 2.0 * (w - 1) / w / (perf.allreduce_busbw_gbps * 1e9);
      }
      r.step_seconds = double(job.batch_size) / w / perf.examples_per_second_per_rank + comm;
      r.job_seconds = r.step_seconds * steps;
      r.cost = r.price_per_hour * r.job_seconds / 3600.0;
      rows.push_back(r);
    }
  }
  // Best value and fastest among the shapes the build can run, when any can.
  const bool any_supported = std::any_of(rows.begin(), rows.end(), [](const PlanRow& r) { return r.supported; });
  auto eligible = [&](const PlanRow& r) { return r.supported || !any_supported; };
  auto cheapest = std::min_element(rows.begin(), rows.end(), [&](const PlanRow& a, const PlanRow& b) {
    return std::make_pair(!eligible(a), a.cost) < std::make_pair(!eligible(b), b.cost);
  });
  auto fastest = std::min_element(rows.begin(), rows.end(), [&](const PlanRow& a, const PlanRow& b) {
    return std::make_pair(!eligible(a), a.job_seconds) < std::make_pair(!eligible(b), b.job_seconds);
  });
  cheapest->cheapest = true;
  fastest->fastest = true;
  std::stable_sort(rows.begin(), rows.end(), [](const PlanRow& a, const PlanRow& b) { return a.cost < b.cost; });
  return rows;
}

}  // namespace dpfleet::plan
