// Fleet planning: the time and money a job costs on each fleet shape of a
// price list — the "best money for value" question. Pure arithmetic over a
// small performance model whose inputs are measured (dpfleet-train-bench,
// dpfleet-allreduce-bench) or stated in the price list; the output says
// which. Never touches data.
//
// Model, per optimizer step with W ranks and global expected batch B:
//   t_step(W) = (B / W) / r  +  a + S * 2(W-1)/W / bw     (second term only for W > 1)
// r = examples/s of one rank, S = gradient bytes (4 * parameters),
// a = all-reduce latency, bw = all-reduce bus bandwidth. Job time =
// epochs * round(N / B) * t_step; cost = instances * price/hour * time
// (per-second billing).
#ifndef DPFLEET_COMMON_PLAN_PLAN_H_
#define DPFLEET_COMMON_PLAN_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/gpu/cuda_arch.h"

namespace dpfleet::plan {

struct Shape {
  std::string name;
  int gpus = 1;                 // ranks per instance
  double price_per_hour = 0;    // for one instance
  std::string gpu;              // the GPU model, e.g. "Tesla M60" (optional)
  // Its CUDA compute capability, e.g. "5.2" (optional): shapes whose GPUs
  // the pinned LibTorch build has no kernels for are marked unsupported.
  std::string compute_capability;
};

struct PriceList {
  std::string currency = "USD";
  std::string source;           // where the prices come from
  std::vector<Shape> shapes;
  std::vector<int> instance_counts = {1};
  // Performance of one rank on these shapes; 0 = not given.
  double examples_per_second_per_rank = 0;
  double allreduce_latency_us = 0;
  double allreduce_busbw_gbps = 0;
};

// Parses the YAML price list; errors name the field.
absl::StatusOr<PriceList> ParsePriceList(const std::string& yaml);
// The built-in list: AWS on-demand G3 instances.
PriceList DefaultPriceList();

struct JobShape {
  int64_t dataset_size = 0;  // N
  int64_t batch_size = 0;    // B
  int32_t epochs = 0;
  int64_t parameters = 0;    // model parameters (all-reduced per step)
};

struct Performance {
  double examples_per_second_per_rank = 0;
  double allreduce_latency_us = 0;
  double allreduce_busbw_gbps = 0;
};

struct PlanRow {
  std::string shape;
  int instances = 0;
  int ranks = 0;
  double price_per_hour = 0;  // whole fleet
  double step_seconds = 0;
  double job_seconds = 0;
  double cost = 0;
  bool cheapest = false;  // among supported rows (all rows when none is)
  bool fastest = false;
  bool supported = true;  // the pinned LibTorch build runs on its GPUs
  std::string unsupported_reason;
};

// One row per (shape, instance count), cheapest first. A shape with a
// compute capability is checked against `archs` (default: the pinned
// LibTorch build's, gpu::kPinnedTorchCudaArchFlags).
absl::StatusOr<std::vector<PlanRow>> Plan(const JobShape& job, const PriceList& prices, const Performance& perf,
                                          const gpu::CudaArchList& archs =
                                              gpu::ParseCudaArchFlags(gpu::kPinnedTorchCudaArchFlags));

// Parameters of an MLP with the given input width and hidden widths (one logit out).
int64_t MlpParameters(int64_t input_dim, const std::vector<int64_t>& hidden);

}  // namespace dpfleet::plan

#endif  // DPFLEET_COMMON_PLAN_PLAN_H_
