#include "worker/agent/run.h"

#include <ATen/Parallel.h>
#include <grpcpp/grpcpp.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/pums/dataset.h"
#include "common/pums/schema.h"
#include "common/pums/shards.h"
#include "common/spec/job_spec.h"
#include "common/status.h"
#include "worker/agent/coordinator_store.h"
#include "worker/comm/communicator.h"
#include "worker/comm/gloo_communicator.h"
#ifdef DPFLEET_WITH_NCCL
#include "worker/comm/cuda/nccl_communicator.h"
#endif
#include "worker/audit/audit.h"
#include "worker/train/device.h"
#include "worker/train/dp_eval.h"
#include "worker/train/dp_sgd.h"
#include "worker/train/split_tensors.h"

namespace dpfleet::worker {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// Calls `rpc` until it succeeds, fails for a reason other than the
// coordinator being unreachable, or patience runs out.
template <typename Fn>
absl::Status CallWithRetry(const RunContext& ctx, const char* what, Fn rpc) {
  const absl::Time give_up = absl::Now() + ctx.coordinator_patience;
  absl::Duration backoff = absl::Milliseconds(100);
  while (true) {
    grpc::ClientContext call;
    call.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    grpc::Status s = rpc(&call);
    if (s.ok()) return absl::OkStatus();
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE && s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      return Annotate(FromGrpc(s), what);
    }
    if (absl::Now() > give_up || (ctx.cancel && ctx.cancel->load())) {
      return Annotate(FromGrpc(s), absl::StrCat(what, ": coordinator unreachable"));
    }
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(backoff));
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

// Reads a blob the coordinator serves in chunks. fetch(offset, &chunk, &total)
// asks for the chunk at `offset`; each chunk goes to sink in order. A size
// that changes between chunks, or an empty chunk before the end, is DataLoss.
template <typename Fetch, typename Sink>
absl::Status FetchInChunks(const std::string& what, Fetch fetch, Sink sink) {
  int64_t offset = 0, total = -1;
  while (total < 0 || offset < total) {
    std::string chunk;
    int64_t size = 0;
    RETURN_IF_ERROR(fetch(offset, &chunk, &size));
    if (total >= 0 && size != total) return absl::DataLossError(absl::StrCat(what, " changed while it was fetched"));
    if (chunk.empty() && size != offset)
      return absl::DataLossError(absl::StrCat("empty chunk of ", what, " at ", offset));
    total = size;
    offset += static_cast<int64_t>(chunk.size());
    sink(chunk);
  }
  return absl::OkStatus();
}

// Copies one dataset file from the coordinator.
absl::Status FetchFile(const v1::Assignment& a, const RunContext& ctx, const std::string& file,
                       const std::string& dest) {
  std::ofstream out(dest + ".partial", std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", dest));
  RETURN_IF_ERROR(FetchInChunks(
      file,
      [&](int64_t offset, std::string* chunk, int64_t* total) -> absl::Status {
        v1::FetchShardRequest req;
        req.set_job_id(a.job_id());
        req.set_attempt(a.attempt());
        req.set_rank(a.rank());
        req.set_file(file);
        req.set_offset(offset);
        req.set_max_bytes(1 << 20);
        v1::FetchShardResponse resp;
        RETURN_IF_ERROR(CallWithRetry(ctx, "fetching dataset shards",
                                      [&](grpc::ClientContext* c) { return ctx.stub->FetchShard(c, req, &resp); }));
        *chunk = std::move(*resp.mutable_data());
        *total = resp.total_bytes();
        return absl::OkStatus();
      },
      [&](const std::string& chunk) { out.write(chunk.data(), static_cast<std::streamsize>(chunk.size())); }));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", dest));
  std::filesystem::rename(dest + ".partial", dest);
  return absl::OkStatus();
}

// Streams manifest.json, this rank's train shards and (rank 0) eval.bin.
absl::StatusOr<std::string> FetchShards(const v1::Assignment& a, const RunContext& ctx) {
  const std::string base = ctx.work_dir.empty() ? std::filesystem::temp_directory_path().string() : ctx.work_dir;
  const std::string dir = absl::StrCat(base, "/shards/", a.job_id(), "-", a.attempt(), "-rank", a.rank());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  RETURN_IF_ERROR(FetchFile(a, ctx, data::kManifestFile, dir + "/" + data::kManifestFile));
  ASSIGN_OR_RETURN(data::Manifest manifest, data::ReadManifest(dir));
  for (const data::ShardInfo& s : manifest.train_shards) {
    if (s.index % a.world_size() == a.rank()) RETURN_IF_ERROR(FetchFile(a, ctx, s.file, dir + "/" + s.file));
  }
  if (a.rank() == 0) RETURN_IF_ERROR(FetchFile(a, ctx, data::kEvalShardFile, dir + "/" + data::kEvalShardFile));
  return dir;
}

// The training state a resumed attempt starts from, and the epoch it was
// saved after.
absl::StatusOr<std::string> FetchCheckpoint(const v1::Assignment& a, const RunContext& ctx, int32_t* epoch) {
  std::string bytes;
  *epoch = -1;
  RETURN_IF_ERROR(FetchInChunks(
      "the checkpoint",
      [&](int64_t offset, std::string* chunk, int64_t* total) -> absl::Status {
        v1::FetchCheckpointRequest req;
        req.set_job_id(a.job_id());
        req.set_attempt(a.attempt());
        req.set_rank(a.rank());
        req.set_offset(offset);
        req.set_max_bytes(1 << 20);
        v1::FetchCheckpointResponse resp;
        RETURN_IF_ERROR(CallWithRetry(ctx, "fetching the checkpoint to resume from", [&](grpc::ClientContext* c) {
          return ctx.stub->FetchCheckpoint(c, req, &resp);
        }));
        if (*epoch >= 0 && resp.epoch() != *epoch) {
          return absl::DataLossError("the checkpoint changed while it was fetched");
        }
        *epoch = resp.epoch();
        *chunk = std::move(*resp.mutable_data());
        *total = resp.total_bytes();
        return absl::OkStatus();
      },
      [&](const std::string& chunk) { bytes += chunk; }));
  return bytes;
}

// What a rank trains and evaluates on, on its device.
struct RankData {
  torch::Tensor x_train, y_train;  // this rank's partition
  torch::Tensor x_eval, y_eval;    // the eval split (rank 0; empty elsewhere)
  int64_t train_rows = 0;          // the global N
  int64_t dim = 0;
  std::vector<std::string> features;  // the PUMS features the columns encode
};

// This rank's training records, the global N, and (rank 0) the eval split:
// the prepared shards of rank % world_size, or the raw files split by the
// coordinator's key. An audit run (world size 1, rank 0) thus gets every
// training record and the eval split, as the audited job trained.
absl::StatusOr<RankData> LoadRankData(const v1::Assignment& a, const RunContext& ctx, const JobSpec& spec,
                                      const c10::Device& device) {
  data::EncodedDataset ds;
  data::EncodedSplit local;
  RankData out;
  if (!a.shard_dir().empty()) {
    // Read the coordinator's dataset directory where this worker sees it;
    // otherwise stream this rank's files into a local cache. Either way the
    // loader checks every file against the manifest's SHA-256.
    std::string dir = a.shard_dir();
    absl::StatusOr<data::Manifest> manifest = data::ReadManifest(dir);
    if (!manifest.ok() || ctx.fetch_shards) {
      ASSIGN_OR_RETURN(dir, FetchShards(a, ctx));
      manifest = data::ReadManifest(dir);
      if (!manifest.ok()) return manifest.status();
    }
    data::ShardLoadOptions load;
    load.rank = a.rank();
    load.world_size = a.world_size();
    ASSIGN_OR_RETURN(local, data::LoadTrainShards(dir, load));
    if (a.rank() == 0) {
      ASSIGN_OR_RETURN(ds.eval, data::LoadEvalShard(dir));
    }
    if (local.dim == 0) local.dim = manifest->dim;  // a rank may hold no shard
    ds.train.rows = manifest->rows_train;
    ds.train.dim = manifest->dim;
    ds.eval.dim = manifest->dim;
    out.features = manifest->features;
  } else {
    std::vector<std::string> paths(a.data_paths().begin(), a.data_paths().end());
    // The coordinator's split key: the same held-out persons it counted N
    // without, and none the spec could have chosen.
    ASSIGN_OR_RETURN(data::EncodeOptions enc, EncodeOptionsFor(spec, a.split_key()));
    ASSIGN_OR_RETURN(ds, data::LoadAndEncode(paths, enc));
    local = data::Partition(ds.train, a.rank(), a.world_size());
    out.features = enc.features;
  }
  if (out.features.empty()) out.features = data::DefaultFeatures();
  out.x_train = train::FeatureTensor(local);
  out.y_train = train::LabelTensor(local);
  out.x_eval = train::FeatureTensor(ds.eval);
  out.y_eval = train::LabelTensor(ds.eval);
  if (!device.is_cpu()) {
    // The partition and the eval split stay resident on the device: a step
    // then moves only the sampled row indices to it and the noise share.
    out.x_train = out.x_train.to(device);
    out.y_train = out.y_train.to(device);
    out.x_eval = out.x_eval.to(device);
    out.y_eval = out.y_eval.to(device);
  }
  out.train_rows = ds.train.rows;
  out.dim = ds.train.dim;
  return out;
}

train::ModelConfig ModelConfigOf(const JobSpec& spec) {
  train::ModelConfig model;
  model.type = spec.model.type == "logistic" ? train::ModelType::kLogistic : train::ModelType::kMlp;
  model.hidden = spec.model.hidden;
  model.activation = spec.model.activation == "tanh" ? train::Activation::kTanh : train::Activation::kRelu;
  return model;
}

// How the spec trains, with the coordinator's σ and the global N.
train::TrainConfig TrainConfigOf(const JobSpec& spec, const v1::Assignment& a, const RunContext& ctx,
                                 int64_t train_rows, const c10::Device& device) {
  train::TrainConfig tc;
  tc.dataset_size = train_rows;
  tc.batch_size = spec.training.batch_size;
  tc.optimizer = spec.training.optimizer == "adam" ? train::OptimizerType::kAdam : train::OptimizerType::kSgd;
  tc.learning_rate = spec.training.learning_rate;
  tc.momentum = spec.training.momentum;
  tc.dp = spec.dp();
  tc.max_grad_norm = spec.privacy.max_grad_norm;
  tc.noise_multiplier = a.noise_multiplier();
  tc.seed = spec.training.seed;  // model initialisation; sampling and noise are keyed by getrandom
  tc.collective_timeout = ctx.collective_timeout;
  tc.device = device;
  return tc;
}

// The audited job's trained model (an audit run's rank 0 only).
absl::StatusOr<std::string> FetchAuditedModel(const v1::Assignment& a, const RunContext& ctx) {
  std::string bytes;
  RETURN_IF_ERROR(FetchInChunks(
      "the audited model",
      [&](int64_t offset, std::string* chunk, int64_t* total) -> absl::Status {
        v1::FetchModelRequest req;
        req.set_job_id(a.job_id());
        req.set_attempt(a.attempt());
        req.set_rank(a.rank());
        req.set_offset(offset);
        req.set_max_bytes(1 << 20);
        v1::FetchModelResponse resp;
        RETURN_IF_ERROR(CallWithRetry(ctx, "fetching the audited model",
                                      [&](grpc::ClientContext* c) { return ctx.stub->FetchModel(c, req, &resp); }));
        *chunk = std::move(*resp.mutable_data());
        *total = resp.total_bytes();
        return absl::OkStatus();
      },
      [&](const std::string& chunk) { bytes += chunk; }));
  return bytes;
}

void ToProto(const audit::ModelAudit& m, v1::ModelAuditResult* out) {
  out->set_model(m.model);
  for (const audit::MembershipResult& r : m.membership) {
    v1::MembershipAttackResult* o = out->add_membership();
    o->set_attack(r.attack);
    o->set_members(r.members);
    o->set_non_members(r.non_members);
    o->set_auc(r.auc);
    o->set_tpr_at_fpr_0_1pct(r.tpr_at_fpr_0_1pct);
    o->set_tpr_at_fpr_1pct(r.tpr_at_fpr_1pct);
    o->set_epsilon_lower_bound(r.epsilon_lower_bound);
  }
  for (const audit::InversionResult& r : m.inversion) {
    v1::InversionAttackResult* o = out->add_inversion();
    o->set_feature(r.feature);
    o->set_records(r.records);
    o->set_accuracy(r.accuracy);
    o->set_base_rate(r.base_rate);
  }
  if (m.one_run) {
    v1::OneRunAuditResult* o = out->mutable_one_run();
    o->set_canaries(m.one_run->canaries);
    o->set_included(m.one_run->included);
    o->set_guesses(m.one_run->guesses);
    o->set_correct(m.one_run->correct);
    o->set_epsilon_lower_bound(m.one_run->epsilon_lower_bound);
    o->set_sample_rate(m.one_run->sample_rate);
    o->set_steps(m.one_run->steps);
  }
  out->set_epsilon_lower_bound(m.epsilon_lower_bound);
}

// An audit run (`dpctl audit`): the audited job's data loaded as its
// training loaded it (world size 1: every training record and the eval
// split), its model from the coordinator, the attacks of
// worker/audit/audit.h, and the report back. Nothing is charged: the report
// goes to custodians only.
absl::Status RunAuditAssignment(const v1::Assignment& a, const RunContext& ctx, const JobSpec& spec,
                                const c10::Device& device, ReleasedLog& rlog) {
  const v1::AuditOrder& order = a.audit();
  if (a.world_size() != 1 || a.rank() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("an audit run has one rank; this assignment is rank ", a.rank(), " of ", a.world_size()));
  }
  rlog.Started(a.attempt(), a.rank(), a.world_size(), 0, spec.training.epochs, device.is_cuda());
  rlog.Stage(log::RunStage::kLoadingData);
  ASSIGN_OR_RETURN(RankData data, LoadRankData(a, ctx, spec, device));
  ASSIGN_OR_RETURN(const std::string model_bytes, FetchAuditedModel(a, ctx));
  audit::AuditTarget target;
  target.model = ModelConfigOf(spec);
  target.train = TrainConfigOf(spec, a, ctx, data.train_rows, device);
  target.epochs = spec.training.epochs;
  {
    // The archive is the trainer's own (DpSgdTrainer::SaveToBytes): a
    // trainer of the same spec reads it and holds the flat parameters.
    comm::LocalCommunicator local;
    ASSIGN_OR_RETURN(std::unique_ptr<train::DpSgdTrainer> trainer,
                     train::DpSgdTrainer::Create(target.model, target.train, data.dim, &local));
    RETURN_IF_ERROR(trainer->LoadFromBytes(model_bytes));
    target.flat_params = trainer->model().flat().detach().to(torch::kCPU).clone();
  }
  ASSIGN_OR_RETURN(target.columns, data::EncodedColumns(data.features));
  if (order.has_reported_epsilon()) target.reported_epsilon = order.reported_epsilon();
  target.delta = order.delta();
  audit::AuditData audit_data;
  audit_data.x_train = data.x_train;
  audit_data.y_train = data.y_train;
  audit_data.x_eval = data.x_eval;
  audit_data.y_eval = data.y_eval;
  audit::AuditOptions options;
  options.membership = order.options().membership();
  options.inversion = order.options().inversion();
  options.shadow_models = order.options().shadow_models();
  options.max_challenge = order.options().max_challenge();
  options.baseline = order.options().baseline();
  options.one_run = order.options().one_run();
  if (order.options().canaries() > 0) options.canaries = order.options().canaries();
  options.inversion_features.assign(order.options().inversion_features().begin(),
                                    order.options().inversion_features().end());
  rlog.Stage(log::RunStage::kAuditing);
  rlog.AuditStarted(options.shadow_models, options.baseline);
  ASSIGN_OR_RETURN(
      const audit::AuditReport report,
      audit::RunAudit(target, audit_data, options, ctx.cancel, [&rlog](const std::string& phase, int done, int total) {
        rlog.AuditProgress(phase, done, total);
      }));
  rlog.Stage(log::RunStage::kReporting);
  v1::ReportAuditRequest req;
  req.set_job_id(a.job_id());
  req.set_attempt(a.attempt());
  req.set_rank(a.rank());
  v1::AuditReport* out = req.mutable_report();
  out->set_job_id(order.target_job_id());
  if (report.reported_epsilon) out->set_reported_epsilon(*report.reported_epsilon);
  out->set_delta(report.delta);
  out->set_confidence(report.confidence);
  out->set_shadow_models(report.shadow_models);
  ToProto(report.target, out->mutable_target());
  if (report.baseline) ToProto(*report.baseline, out->mutable_baseline());
  out->set_seconds(report.seconds);
  v1::ReportAuditResponse done;
  RETURN_IF_ERROR(CallWithRetry(ctx, "reporting the audit",
                                [&](grpc::ClientContext* c) { return ctx.stub->ReportAudit(c, req, &done); }));
  rlog.AuditReported();
  return absl::OkStatus();
}

}  // namespace

absl::Status RunAssignment(const v1::Assignment& a, const RunContext& ctx) {
  ReleasedLog unused;
  ReleasedLog& rlog = ctx.log != nullptr ? *ctx.log : unused;
  rlog.Stage(log::RunStage::kStarting);
  ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(a.spec_yaml()));
  // Where this rank computes (the worker resolved it at start-up).
  ASSIGN_OR_RETURN(const c10::Device device, train::ResolveDevice(ctx.device));
  const bool cuda = device.is_cuda();
  if ((spec.resources.device == "cuda") != cuda) {
    return absl::FailedPreconditionError(absl::StrCat("resources.device '", spec.resources.device,
                                                      "' does not match this worker's device ", ctx.device));
  }
  if (ctx.threads > 0) at::set_num_threads(ctx.threads);
  if (a.has_audit()) return RunAuditAssignment(a, ctx, spec, device, rlog);
  rlog.Started(a.attempt(), a.rank(), a.world_size(), a.start_epoch(), spec.training.epochs, cuda);
  rlog.Stage(log::RunStage::kLoadingData);

  ASSIGN_OR_RETURN(RankData data, LoadRankData(a, ctx, spec, device));
  const train::ModelConfig model = ModelConfigOf(spec);
  const train::TrainConfig tc = TrainConfigOf(spec, a, ctx, data.train_rows, device);
  torch::Tensor& x_train = data.x_train;
  torch::Tensor& y_train = data.y_train;
  torch::Tensor& x_eval = data.x_eval;
  torch::Tensor& y_eval = data.y_eval;

  // Rendezvous through the coordinator: ranks meet under job/attempt keys.
  rlog.Stage(log::RunStage::kConnecting);
  std::unique_ptr<comm::Communicator> comm;
  if (a.world_size() == 1) {
    comm = std::make_unique<comm::LocalCommunicator>();
  } else if (cuda) {
#ifdef DPFLEET_WITH_NCCL
    auto store = c10::make_intrusive<CoordinatorStore>(
        ctx.stub, a.job_id(), a.attempt(),
        std::chrono::milliseconds(absl::ToInt64Milliseconds(ctx.collective_timeout)));
    comm::NcclOptions nccl;
    nccl.device = device.index();
    nccl.host = ctx.gloo_host;
    nccl.init_timeout = ctx.collective_timeout;
    nccl.cancel = ctx.cancel;
    ASSIGN_OR_RETURN(comm, comm::NcclCommunicator::Create(store, a.rank(), a.world_size(), nccl));
#else
    return absl::FailedPreconditionError("this worker was built without CUDA/NCCL (DPFLEET_WITH_CUDA=OFF)");
#endif
  } else {
    auto store = c10::make_intrusive<CoordinatorStore>(
        ctx.stub, a.job_id(), a.attempt(),
        std::chrono::milliseconds(absl::ToInt64Milliseconds(ctx.collective_timeout)));
    comm::GlooOptions gloo;
    gloo.host = ctx.gloo_host;
    gloo.connect_timeout = ctx.collective_timeout;
    gloo.cancel = ctx.cancel;
    ASSIGN_OR_RETURN(comm, comm::GlooCommunicator::Create(store, a.rank(), a.world_size(), gloo));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<train::DpSgdTrainer> trainer,
                   train::DpSgdTrainer::Create(model, tc, data.dim, comm.get()));
  if (a.world_size() > 1) rlog.Connected(a.world_size(), cuda);
  if (a.start_epoch() > 0) {
    // A resumed attempt: every rank starts from rank 0's state after the
    // last finished epoch (this attempt's noise streams are fresh: the
    // attempt number is part of their keys).
    rlog.Stage(log::RunStage::kResuming);
    int32_t epoch = 0;
    ASSIGN_OR_RETURN(const std::string state, FetchCheckpoint(a, ctx, &epoch));
    RETURN_IF_ERROR(trainer->LoadFromBytes(state));
    if (epoch != a.start_epoch() || trainer->steps_done() != epoch * trainer->steps_per_epoch()) {
      return absl::DataLossError(absl::StrCat("checkpoint after epoch ", epoch, " holds ", trainer->steps_done(),
                                              " steps; resuming after epoch ", a.start_epoch(), " needs ",
                                              a.start_epoch() * trainer->steps_per_epoch()));
    }
    rlog.Resumed(epoch);
  }

  // Rank 0's eval release: a DP job's metrics come only from its noisy
  // histogram (worker/train/dp_eval.h).
  const EvalSpec& eval = spec.privacy.eval;
  std::optional<train::EvalReleaser> releaser;
  if (a.rank() == 0 && spec.dp() && eval.enabled) {
    ASSIGN_OR_RETURN(releaser, train::EvalReleaser::Create(eval.noise_multiplier, eval.bins));
  }
  auto charge = [&](int32_t epoch, v1::Mechanism mechanism, int64_t steps, double q, double sigma) {
    v1::ChargeBudgetRequest req;
    req.set_job_id(a.job_id());
    req.set_attempt(a.attempt());
    req.set_rank(a.rank());
    req.set_epoch(epoch);
    req.set_mechanism(mechanism);
    req.set_steps(steps);
    req.set_sample_rate(q);
    req.set_noise_multiplier(sigma);
    v1::ChargeBudgetResponse charged;
    return CallWithRetry(ctx, "charging the privacy ledger",
                         [&](grpc::ClientContext* c) { return ctx.stub->ChargeBudget(c, req, &charged); });
  };

  for (int32_t epoch = a.start_epoch() + 1; epoch <= spec.training.epochs; ++epoch) {
    if (ctx.cancel && ctx.cancel->load()) return absl::CancelledError("run cancelled");
    // 1. Charge before anything of this epoch can be released.
    rlog.Stage(log::RunStage::kReporting);
    RETURN_IF_ERROR(charge(epoch, v1::MECHANISM_TRAIN, trainer->steps_per_epoch(), trainer->sample_rate(),
                           spec.dp() ? a.noise_multiplier() : 0.0));
    rlog.EpochCharged(epoch);
    rlog.Stage(log::RunStage::kTraining);
    // 2. Train, checking for a cancel between steps.
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < trainer->steps_per_epoch(); ++s) {
      if (ctx.cancel && ctx.cancel->load()) return absl::CancelledError("run cancelled");
      RETURN_IF_ERROR(trainer->Step(x_train, y_train));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // 3. Rank 0 speaks for the job (ranks hold identical models): after an
    // epoch with an eval release it charges the release, THEN evaluates on
    // the held-out split; the metrics are computed from the noisy histogram
    // only. A non-private job's metrics are exact.
    rlog.EpochTrained(epoch, spec.training.epochs, trainer->steps_per_epoch());
    if (a.rank() != 0) continue;
    v1::ProgressReport report;
    report.set_job_id(a.job_id());
    report.set_attempt(a.attempt());
    report.set_rank(a.rank());
    report.set_worker_id(ctx.worker_id());
    v1::EpochMetrics* out = report.mutable_metrics();
    out->set_epoch(epoch);
    if (eval.ReleasedAfter(epoch, spec.training.epochs)) {
      rlog.Stage(log::RunStage::kEvaluating);
      train::EvalMetrics m;
      if (releaser) {
        RETURN_IF_ERROR(charge(epoch, v1::MECHANISM_EVAL, 1, 1.0, releaser->noise_multiplier()));
        ASSIGN_OR_RETURN(m, releaser->Release(trainer->model(), x_eval, y_eval));
      } else {
        ASSIGN_OR_RETURN(m, trainer->TryEvaluate(x_eval, y_eval));
      }
      out->set_eval_loss(m.loss);
      out->set_eval_accuracy(m.accuracy);
      out->set_eval_auc(m.auc);
      out->set_eval_balanced_accuracy(m.balanced_accuracy);
      out->set_majority_rate(m.majority_rate);
    }
    out->set_steps(trainer->steps_done());
    out->set_train_seconds(seconds);
    if (spec.resources.max_attempts > 1) {
      // The state a retried attempt resumes from, stored before the epoch counts.
      ASSIGN_OR_RETURN(*report.mutable_checkpoint(), trainer->SaveToBytes());
    }
    rlog.Stage(log::RunStage::kReporting);
    v1::ProgressAck ack;
    RETURN_IF_ERROR(CallWithRetry(ctx, "reporting progress", [&](grpc::ClientContext* c) {
      report.set_worker_id(ctx.worker_id());
      return ctx.stub->ReportProgress(c, report, &ack);
    }));
    if (report.metrics().has_eval_accuracy()) rlog.EvalReleased(epoch);
    if (ack.stop()) return absl::CancelledError(ack.reason());
  }
  if (a.rank() == 0) {
    // The job succeeds only once the coordinator holds the trained model;
    // the same bytes go to the work directory.
    rlog.Stage(log::RunStage::kUploading);
    v1::UploadModelRequest upload;
    upload.set_job_id(a.job_id());
    upload.set_attempt(a.attempt());
    upload.set_rank(a.rank());
    ASSIGN_OR_RETURN(*upload.mutable_model(), trainer->SaveToBytes());
    v1::UploadModelResponse uploaded;
    RETURN_IF_ERROR(CallWithRetry(ctx, "uploading the trained model",
                                  [&](grpc::ClientContext* c) { return ctx.stub->UploadModel(c, upload, &uploaded); }));
    if (!ctx.work_dir.empty()) {
      RETURN_IF_ERROR(WriteFileAtomically(absl::StrCat(ctx.work_dir, "/", a.job_id(), "-model.pt"), upload.model()));
    }
    rlog.ModelUploaded();
  }
  return absl::OkStatus();
}

}  // namespace dpfleet::worker
