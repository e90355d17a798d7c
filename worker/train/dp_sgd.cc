#include "worker/train/dp_sgd.h"

#include <ATen/ATen.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cmath>
#include <exception>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status.h"
#include "worker/train/guard_torch.h"

namespace dpfleet::train {
namespace {

constexpr int64_t kCheckpointFormat = 1;

absl::Status ValidateConfig(const TrainConfig& c, comm::Communicator* comm) {
  if (comm == nullptr) return absl::InvalidArgumentError("communicator is null");
  if (comm->world_size() < 1 || comm->rank() < 0 || comm->rank() >= comm->world_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad communicator: rank ", comm->rank(), " of world ", comm->world_size()));
  }
  if (c.dataset_size <= 0)
    return absl::InvalidArgumentError(absl::StrCat("dataset_size must be > 0, got ", c.dataset_size));
  if (c.batch_size <= 0 || c.batch_size > c.dataset_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size must be in [1, dataset_size=", c.dataset_size, "], got ", c.batch_size));
  }
  if (c.steps_per_epoch < 0) {
    return absl::InvalidArgumentError(absl::StrCat("steps_per_epoch must be >= 0, got ", c.steps_per_epoch));
  }
  if (c.dp) {
    if (!(c.max_grad_norm > 0) || !std::isfinite(c.max_grad_norm)) {
      return absl::InvalidArgumentError(absl::StrCat("max_grad_norm must be > 0, got ", c.max_grad_norm));
    }
    if (!(c.noise_multiplier >= 0) || !std::isfinite(c.noise_multiplier)) {
      return absl::InvalidArgumentError(absl::StrCat("noise_multiplier must be >= 0, got ", c.noise_multiplier));
    }
  }
  if (c.collective_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("collective_timeout must be > 0");
  }
  return absl::OkStatus();
}

at::Tensor LongVector(const std::vector<int64_t>& v) { return at::tensor(v, at::TensorOptions().dtype(at::kLong)); }

}  // namespace

int64_t DpSgdTrainer::StepsPerEpoch(const TrainConfig& config) {
  if (config.steps_per_epoch > 0) return config.steps_per_epoch;
  return std::max<int64_t>(
      1, std::llround(static_cast<double>(config.dataset_size) / static_cast<double>(config.batch_size)));
}

absl::StatusOr<std::unique_ptr<DpSgdTrainer>> DpSgdTrainer::Create(const ModelConfig& model_config,
                                                                   const TrainConfig& config, int64_t input_dim,
                                                                   comm::Communicator* comm) {
  RETURN_IF_ERROR(ValidateConfig(config, comm));
  std::unique_ptr<DpSgdTrainer> trainer;
  RETURN_IF_ERROR(GuardTorch("creating trainer", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Model model, Model::Create(model_config, input_dim, config.seed, config.device));
    OptimizerConfig oc;
    oc.type = config.optimizer;
    oc.learning_rate = config.learning_rate;
    oc.momentum = config.momentum;
    oc.beta1 = config.beta1;
    oc.beta2 = config.beta2;
    oc.eps = config.adam_eps;
    ASSIGN_OR_RETURN(Optimizer optimizer, Optimizer::Create(oc, model.num_parameters(), config.device));
    // Keyed by the OS CSPRNG, always: a key derived from the spec would let
    // its submitter regenerate the noise and subtract it.
    ASSIGN_OR_RETURN(const ChaChaKey sample_key, SecureRandomKey());
    ASSIGN_OR_RETURN(const ChaChaKey noise_key, SecureRandomKey());
    trainer.reset(new DpSgdTrainer(std::move(model), config, std::move(optimizer), comm, sample_key, noise_key));
    return absl::OkStatus();
  }));
  return trainer;
}

DpSgdTrainer::DpSgdTrainer(Model model, const TrainConfig& config, Optimizer optimizer, comm::Communicator* comm,
                           ChaChaKey sample_key, ChaChaKey noise_key)
    : model_(std::move(model)),
      config_(config),
      optimizer_(std::move(optimizer)),
      comm_(comm),
      engine_(&model_),
      sample_key_(sample_key),
      noise_key_(noise_key) {
  const double n = static_cast<double>(config_.dataset_size);
  const double b = static_cast<double>(config_.batch_size);
  sample_rate_ = b / n;
  steps_per_epoch_ = StepsPerEpoch(config_);
  noise_stddev_ = config_.dp ? config_.noise_multiplier * config_.max_grad_norm /
                                   std::sqrt(static_cast<double>(comm_->world_size()))
                             : 0.0;
  const int64_t p = model_.num_parameters();
  auto fopts = at::TensorOptions().dtype(at::kFloat).device(config_.device);
  comm_buffer_ = at::zeros({p + (config_.dp ? 0 : 1)}, fopts);
  grad_ = comm_buffer_.narrow(0, 0, p);
  x_batch_ = at::empty({0, model_.input_dim()}, fopts);
  y_batch_ = at::empty({0}, fopts);
  if (!config_.device.is_cpu() && noise_stddev_ > 0) {
    noise_host_ = at::empty({p}, at::TensorOptions().dtype(at::kFloat).pinned_memory(config_.device.is_cuda()));
    noise_device_ = at::empty({p}, fopts);
  }
}

std::vector<torch::Tensor> DpSgdTrainer::parameters() const {
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& t : model_.Parameters()) out.push_back(t.cpu());
  return out;
}

void DpSgdTrainer::PrepareLocalContribution(const torch::Tensor& x_local, const torch::Tensor& y_local) {
  c10::InferenceMode guard;
  const uint64_t step = static_cast<uint64_t>(steps_done_);
  // 1. Poisson sample of the local rows (stream nonce = step number).
  ChaCha20Stream sampler(sample_key_, step);
  at::Tensor rows = PoissonSample(sampler, x_local.size(0), sample_rate_);
  if (!config_.device.is_cpu()) rows = rows.to(config_.device);
  // Out tensors are resized explicitly (ATen warns when it has to).
  x_batch_.resize_({rows.size(0), x_local.size(1)});
  y_batch_.resize_({rows.size(0)});
  at::index_select_out(x_batch_, x_local, 0, rows);
  at::index_select_out(y_batch_, y_local, 0, rows);
  if (config_.dp) {
    // 2. Sum of clipped per-example gradients.
    engine_.ClippedSum(x_batch_, y_batch_, config_.max_grad_norm, grad_);
    // 3. This rank's noise share, from its own stream.
    if (noise_stddev_ > 0) {
      ChaCha20Stream noise_stream(noise_key_, step);
      if (config_.device.is_cpu()) {
        // Added in place (no noise buffer, no second pass over P floats).
        AddNormal(noise_stream, noise_stddev_, grad_);
      } else {
        // The device is still computing the clipped sum (its kernels were
        // only queued): draw the noise on the host meanwhile.
        NormalScratch scratch;
        FillNormal(noise_stream, noise_stddev_, noise_host_, scratch);
        // A blocking copy: it returns once the queued work and the copy are
        // done, so noise_host_ is free for the next step on every path.
        noise_device_.copy_(noise_host_);
        grad_.add_(noise_device_);
      }
    }
  } else {
    engine_.Sum(x_batch_, y_batch_, grad_);
    comm_buffer_[comm_buffer_.size(0) - 1].fill_(static_cast<double>(rows.size(0)));
  }
}

absl::Status DpSgdTrainer::Step(const torch::Tensor& x_local, const torch::Tensor& y_local) {
  RETURN_IF_ERROR(model_.CheckBatch(x_local, &y_local));
  RETURN_IF_ERROR(GuardTorch("local gradient", [&]() -> absl::Status {
    PrepareLocalContribution(x_local, y_local);
    return absl::OkStatus();
  }));
  // 4. One all-reduce of one flat buffer, also for an empty local batch.
  RETURN_IF_ERROR(Annotate(comm_->AllReduceSum(comm_buffer_, config_.collective_timeout),
                           absl::StrCat("gradient all-reduce at step ", steps_done_)));
  return GuardTorch("optimizer step", [&]() -> absl::Status {
    c10::InferenceMode guard;
    if (config_.dp) {
      // 5. Divide by the public expected batch size B — never the actual one.
      grad_.mul_(1.0 / static_cast<double>(config_.batch_size));
    } else {
      const double count = comm_buffer_[comm_buffer_.size(0) - 1].item<double>();
      grad_.mul_(count > 0 ? 1.0 / count : 0.0);
    }
    // Post-processing of a released value, so checking it costs no privacy.
    // A non-finite gradient would poison the model on every rank alike.
    if (!std::isfinite(grad_.sum().item<double>())) {
      return absl::DataLossError(absl::StrCat("non-finite gradient at step ", steps_done_));
    }
    optimizer_.Step(model_.mutable_flat(), grad_);
    ++steps_done_;
    return absl::OkStatus();
  });
}

absl::Status DpSgdTrainer::TrainEpoch(const torch::Tensor& x_local, const torch::Tensor& y_local) {
  for (int64_t i = 0; i < steps_per_epoch_; ++i) RETURN_IF_ERROR(Step(x_local, y_local));
  return absl::OkStatus();
}

absl::StatusOr<EvalMetrics> DpSgdTrainer::TryEvaluate(const torch::Tensor& x_eval, const torch::Tensor& y_eval) const {
  RETURN_IF_ERROR(model_.CheckBatch(x_eval, &y_eval));
  EvalMetrics metrics;
  RETURN_IF_ERROR(GuardTorch("evaluate", [&]() -> absl::Status {
    metrics = ComputeMetrics(model_.Logits(x_eval).cpu(), y_eval.cpu());
    return absl::OkStatus();
  }));
  return metrics;
}

EvalMetrics DpSgdTrainer::Evaluate(const torch::Tensor& x_eval, const torch::Tensor& y_eval) const {
  absl::StatusOr<EvalMetrics> m = TryEvaluate(x_eval, y_eval);
  return m.ok() ? *m : EvalMetrics{};
}

absl::StatusOr<std::string> DpSgdTrainer::SaveToBytes() const {
  std::string bytes;
  RETURN_IF_ERROR(GuardTorch("saving the training state", [&]() -> absl::Status {
    torch::serialize::OutputArchive archive;
    archive.write("format", at::scalar_tensor(kCheckpointFormat, at::kLong));
    archive.write("widths", LongVector(model_.widths()));
    archive.write("activation", at::scalar_tensor(static_cast<int64_t>(model_.activation()), at::kLong));
    archive.write("optimizer", at::scalar_tensor(static_cast<int64_t>(config_.optimizer), at::kLong));
    archive.write("steps_done", at::scalar_tensor(steps_done_, at::kLong));
    archive.write("params", model_.flat().cpu().clone());
    for (const auto& [name, tensor] : optimizer_.StateDict()) archive.write("optim_" + name, tensor);
    std::ostringstream out;
    archive.save_to(out);
    bytes = std::move(out).str();
    return absl::OkStatus();
  }));
  return bytes;
}

absl::Status DpSgdTrainer::Save(const std::string& path) const {
  ASSIGN_OR_RETURN(const std::string bytes, SaveToBytes());
  return WriteFileAtomically(path, bytes);
}

absl::Status DpSgdTrainer::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("loading ", path, ": cannot open the file"));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return Annotate(LoadFromBytes(std::move(bytes).str()), absl::StrCat("loading ", path));
}

absl::Status DpSgdTrainer::LoadFromBytes(const std::string& bytes) {
  return GuardTorch("loading the training state", [&]() -> absl::Status {
    torch::serialize::InputArchive archive;
    std::istringstream in(bytes);
    archive.load_from(in);
    auto read = [&](const std::string& key) -> absl::StatusOr<at::Tensor> {
      at::Tensor t;
      if (!archive.try_read(key, t)) return absl::DataLossError(absl::StrCat("checkpoint lacks '", key, "'"));
      return t;
    };
    ASSIGN_OR_RETURN(at::Tensor format, read("format"));
    if (format.item<int64_t>() != kCheckpointFormat) {
      return absl::FailedPreconditionError(absl::StrCat("unsupported checkpoint format ", format.item<int64_t>()));
    }
    ASSIGN_OR_RETURN(at::Tensor widths, read("widths"));
    ASSIGN_OR_RETURN(at::Tensor activation, read("activation"));
    ASSIGN_OR_RETURN(at::Tensor optimizer, read("optimizer"));
    if (!at::equal(widths, LongVector(model_.widths())) ||
        (model_.num_layers() > 1 && activation.item<int64_t>() != static_cast<int64_t>(model_.activation()))) {
      return absl::FailedPreconditionError("checkpoint was written for a different model architecture");
    }
    if (optimizer.item<int64_t>() != static_cast<int64_t>(config_.optimizer)) {
      return absl::FailedPreconditionError("checkpoint was written with a different optimizer");
    }
    ASSIGN_OR_RETURN(at::Tensor steps, read("steps_done"));
    ASSIGN_OR_RETURN(at::Tensor params, read("params"));
    if (params.numel() != model_.num_parameters() || params.scalar_type() != at::kFloat) {
      return absl::DataLossError("checkpoint parameters have the wrong size or type");
    }
    std::map<std::string, torch::Tensor> state;
    for (const char* name : {"steps", "momentum_buffer", "exp_avg", "exp_avg_sq"}) {
      at::Tensor t;
      if (archive.try_read(std::string("optim_") + name, t)) state[name] = t;
    }
    // steps_done_ goes back to the checkpoint's step, and those nonces may
    // already have been used with the current keys: the loaded state gets
    // new ones.
    ASSIGN_OR_RETURN(const ChaChaKey sample_key, SecureRandomKey());
    ASSIGN_OR_RETURN(const ChaChaKey noise_key, SecureRandomKey());
    // Validate everything before mutating anything: a failed Load leaves the
    // trainer as it was.
    RETURN_IF_ERROR(optimizer_.LoadStateDict(state));
    {
      c10::InferenceMode guard;
      model_.mutable_flat().copy_(params.view({-1}));
    }
    steps_done_ = steps.item<int64_t>();
    sample_key_ = sample_key;
    noise_key_ = noise_key;
    return absl::OkStatus();
  });
}

}  // namespace dpfleet::train
