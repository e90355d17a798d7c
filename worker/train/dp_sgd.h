// DpSgdTrainer: one rank of data-parallel DP-SGD (DESIGN.md "DP-SGD, exactly").
//
// Per step, with N records in total, expected batch B, q = B/N, clip C, noise
// multiplier sigma and W ranks, every rank:
//   1. keeps each of its local rows independently with probability q
//      (Poisson sampling; nonce = step), so the union over ranks is a
//      Poisson sample of all N records;
//   2. computes the sum of clipped per-example gradients (clipped_grad.h);
//   3. adds its noise share N(0, sigma^2 C^2 / W) per coordinate from its own
//      stream, so the all-reduced noise is exactly N(0, sigma^2 C^2);
//      the sampling and noise streams are keyed from getrandom(2) when the
//      trainer is created (one key per purpose: fresh for every rank and
//      every attempt) and again whenever a checkpoint is loaded, so no
//      (key, step) stream is ever used twice and none can be regenerated
//      from the spec;
//   4. all-reduces ONE flat buffer (even when its local batch is empty, so
//      ranks stay in lockstep);
//   5. divides by B and applies the optimizer. All ranks apply the same
//      update to the same parameters.
//
// Must never: divide the private gradient by the actual batch size (that
// size is itself private); skip the all-reduce for an empty batch; let
// anything but the clipped, noised sum leave the rank; report loss/accuracy
// measured on training batches; key sampling or noise from the job seed or
// anything else in TrainConfig (only test code, through
// testing::DpSgdTrainerTestPeer, can install reproducible keys).
//
// dp = false is the non-private baseline on the same data path (same Poisson
// batches, same single all-reduce): no clipping, no noise, and the gradient
// is the mean over the ACTUAL global batch (ordinary mini-batch SGD; the
// global count travels as one extra element of the all-reduced buffer).
//
// Not thread-safe: one thread drives a trainer.
#ifndef DPFLEET_WORKER_TRAIN_DP_SGD_H_
#define DPFLEET_WORKER_TRAIN_DP_SGD_H_

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/comm/communicator.h"
#include "worker/train/clipped_grad.h"
#include "worker/train/metrics.h"
#include "worker/train/model.h"
#include "worker/train/optimizer.h"
#include "worker/train/rng.h"

namespace dpfleet::testing {
class DpSgdTrainerTestPeer;
}  // namespace dpfleet::testing

namespace dpfleet::train {

struct TrainConfig {
  int64_t dataset_size = 0;     // N: global number of training records (all ranks)
  int64_t batch_size = 0;       // B: expected (public) batch size; q = B / N
  int64_t steps_per_epoch = 0;  // 0 = max(1, round(N / B))
  OptimizerType optimizer = OptimizerType::kSgd;
  double learning_rate = 0.1, momentum = 0.0, beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  bool dp = true;                 // false = ordinary mini-batch SGD on the same data path
  double max_grad_norm = 1.0;     // C
  double noise_multiplier = 1.0;  // sigma (0 is accepted: clipping only, NOT private)
  // training.seed: the model's initialisation only (public randomness, the
  // same on every rank). Sampling and noise never depend on it.
  uint64_t seed = 1;
  absl::Duration collective_timeout = absl::Seconds(60);
  // Where the engine computes (device.h: a CUDA device must have been
  // resolved first). The model, optimizer state and all-reduced buffer live
  // there; sampling and noise are drawn on the CPU from the same streams on
  // every device, so a GPU rank adds bit-for-bit the noise a CPU rank would.
  c10::Device device = c10::Device(c10::kCPU);
};

class DpSgdTrainer {
 public:
  // comm is not owned and must outlive the trainer; comm->world_size() = W,
  // comm->rank() = r. input_dim = encoded feature width.
  static absl::StatusOr<std::unique_ptr<DpSgdTrainer>> Create(const ModelConfig& model_config,
                                                              const TrainConfig& config, int64_t input_dim,
                                                              comm::Communicator* comm);
  // The steps of one epoch under `config`: config.steps_per_epoch, or
  // max(1, round(N / B)) when that is 0.
  static int64_t StepsPerEpoch(const TrainConfig& config);

  DpSgdTrainer(const DpSgdTrainer&) = delete;
  DpSgdTrainer& operator=(const DpSgdTrainer&) = delete;

  // One step on this rank's local records: x_local [n, d] float32,
  // y_local [n] float32 (0/1), both on config().device (a GPU rank keeps
  // its partition resident there); n may be 0. On error the parameters, the
  // optimizer state and steps_done() are unchanged.
  absl::Status Step(const torch::Tensor& x_local, const torch::Tensor& y_local);
  // steps_per_epoch() steps; stops at the first error.
  absl::Status TrainEpoch(const torch::Tensor& x_local, const torch::Tensor& y_local);

  // Metrics of the current model on an eval split (see metrics.h). Invalid
  // input gives rows == 0; TryEvaluate says why.
  EvalMetrics Evaluate(const torch::Tensor& x_eval, const torch::Tensor& y_eval) const;
  absl::StatusOr<EvalMetrics> TryEvaluate(const torch::Tensor& x_eval, const torch::Tensor& y_eval) const;

  int64_t steps_done() const { return steps_done_; }
  double sample_rate() const { return sample_rate_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  // Host copies of [W0, b0, W1, b1, ...] (identical across ranks).
  std::vector<torch::Tensor> parameters() const;
  const Model& model() const { return model_; }
  const TrainConfig& config() const { return config_; }

  // Training state (model parameters, optimizer state, step counter — which
  // is also the sampler/noise stream position) for checkpoint/resume. Save
  // writes atomically (temp file + rename). Load requires the same model
  // architecture and optimizer type. A successful load draws fresh
  // sampling and noise keys: the restored step counter restarts the stream
  // nonces, which must never meet a key they were used with before.
  absl::Status Save(const std::string& path) const;
  absl::Status Load(const std::string& path);
  // The same state as bytes (what Save writes), e.g. to hand to the
  // coordinator for resuming a failed attempt elsewhere.
  absl::StatusOr<std::string> SaveToBytes() const;
  absl::Status LoadFromBytes(const std::string& bytes);

 private:
  // Installs reproducible keys; test code only (tests/testing).
  friend class ::dpfleet::testing::DpSgdTrainerTestPeer;

  DpSgdTrainer(Model model, const TrainConfig& config, Optimizer optimizer, comm::Communicator* comm,
               ChaChaKey sample_key, ChaChaKey noise_key);

  // The part of Step that runs locally before the all-reduce.
  void PrepareLocalContribution(const torch::Tensor& x_local, const torch::Tensor& y_local);

  Model model_;
  TrainConfig config_;
  Optimizer optimizer_;
  comm::Communicator* comm_;
  GradientEngine engine_;
  ChaChaKey sample_key_;
  ChaChaKey noise_key_;
  double sample_rate_;
  int64_t steps_per_epoch_;
  double noise_stddev_;  // sigma * C / sqrt(W): this rank's share
  int64_t steps_done_ = 0;

  // Reused buffers. comm_buffer_ is what gets all-reduced: the flat gradient
  // (grad_ is a view of its first P elements), plus in non-private mode one
  // trailing element holding the local batch size.
  torch::Tensor comm_buffer_;
  torch::Tensor grad_;
  torch::Tensor x_batch_;
  torch::Tensor y_batch_;
  // Off the CPU: the noise is drawn into noise_host_ (pinned for CUDA) while
  // the device computes the clipped sum, then copied (blocking) to
  // noise_device_ and added.
  torch::Tensor noise_host_;
  torch::Tensor noise_device_;
};

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_DP_SGD_H_
