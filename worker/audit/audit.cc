#include "worker/audit/audit.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <iterator>
#include <limits>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/secure_random.h"
#include "common/status.h"
#include "worker/audit/statistics.h"
#include "worker/comm/communicator.h"
#include "worker/train/guard_torch.h"

namespace dpfleet::audit {
namespace {

// Below this many shadows LiRA uses one variance for every challenge point:
// Carlini et al. 2022 fit a global variance when shadows are few, as a
// per-example variance from a handful of samples is too noisy.
constexpr int kPerPointStdShadows = 16;

// Uniform integers from getrandom(2), fetched in blocks.
class SecureDraws {
 public:
  // Uniform in [0, bound), bound >= 1, without modulo bias (rejection of the
  // 2^64 mod bound lowest values).
  absl::StatusOr<uint64_t> Below(uint64_t bound) {
    const uint64_t reject_below = (0 - bound) % bound;
    while (true) {
      if (next_ == buffer_.size()) {
        RETURN_IF_ERROR(SecureRandomBytes(buffer_.data(), sizeof(buffer_)));
        next_ = 0;
      }
      const uint64_t r = buffer_[next_++];
      if (r >= reject_below) return r % bound;
    }
  }

 private:
  std::array<uint64_t, 512> buffer_{};
  size_t next_ = buffer_.size();
};

// k distinct indices of [0, n), uniformly at random and in random order
// (partial Fisher–Yates): any prefix of the result is itself a uniform
// random subset.
absl::StatusOr<std::vector<int64_t>> SampleIndices(SecureDraws& draws, int64_t n, int64_t k) {
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[i] = i;
  for (int64_t i = 0; i < k; ++i) {
    ASSIGN_OR_RETURN(uint64_t j, draws.Below(static_cast<uint64_t>(n - i)));
    std::swap(all[i], all[i + static_cast<int64_t>(j)]);
  }
  all.resize(static_cast<size_t>(k));
  return all;
}

torch::Tensor IndexTensor(const std::vector<int64_t>& idx) {
  return torch::tensor(idx, torch::TensorOptions().dtype(torch::kLong));
}

// Indices of [0, n) not in `taken`.
std::vector<int64_t> Complement(int64_t n, const std::vector<int64_t>& taken) {
  std::vector<char> used(static_cast<size_t>(n), 0);
  for (int64_t i : taken) used[i] = 1;
  std::vector<int64_t> rest;
  rest.reserve(static_cast<size_t>(n) - taken.size());
  for (int64_t i = 0; i < n; ++i)
    if (!used[i]) rest.push_back(i);
  return rest;
}

// The challenge set (members first, then non-members, each side in random
// order) and the shadow pool (every other record), all on the audit device.
struct Split {
  torch::Tensor x, y;  // challenge points
  int64_t members = 0, non_members = 0;
  torch::Tensor pool_x, pool_y;
};

absl::StatusOr<Split> MakeSplit(SecureDraws& draws, const AuditData& data, int64_t per_side, c10::Device device) {
  const int64_t n_train = data.x_train.size(0), n_eval = data.x_eval.size(0);
  ASSIGN_OR_RETURN(std::vector<int64_t> in, SampleIndices(draws, n_train, per_side));
  ASSIGN_OR_RETURN(std::vector<int64_t> out, SampleIndices(draws, n_eval, per_side));
  const torch::Tensor in_t = IndexTensor(in), out_t = IndexTensor(out);
  const torch::Tensor rest_in = IndexTensor(Complement(n_train, in));
  const torch::Tensor rest_out = IndexTensor(Complement(n_eval, out));
  Split s;
  s.members = per_side;
  s.non_members = per_side;
  s.x = torch::cat({data.x_train.index_select(0, in_t), data.x_eval.index_select(0, out_t)}).to(device);
  s.y = torch::cat({data.y_train.index_select(0, in_t), data.y_eval.index_select(0, out_t)}).to(device);
  s.pool_x = torch::cat({data.x_train.index_select(0, rest_in), data.x_eval.index_select(0, rest_out)});
  s.pool_y = torch::cat({data.y_train.index_select(0, rest_in), data.y_eval.index_select(0, rest_out)});
  return s;
}

absl::Status Cancelled(const std::atomic<bool>* cancel) {
  if (cancel != nullptr && cancel->load()) return absl::CancelledError("audit cancelled");
  return absl::OkStatus();
}

// How a model the audit trains on n records follows the target's schedule.
enum class Schedule {
  // The target's B, one pass over its own n records per epoch (shadows and
  // the baseline: models like the target's, on their own data).
  kOwnPass,
  // The target's mechanism exactly: its N and B (so every record is
  // sampled at the ledger's q = B / N and the noisy sum is divided by B),
  // its steps per epoch. The one-run audit's n = N + included canaries
  // records are sampled at that q, so neither q nor the divisor depends on
  // the canaries' coins, and the run's accounted ε is the reported ε.
  kTargetAccounting,
};

// A model of the target's spec trained on (x, y) (on the audit device):
// DP-SGD with the target's σ, C and optimizer when dp, else the
// non-private baseline; `epochs` epochs; cancel checked before every step.
absl::StatusOr<std::unique_ptr<train::DpSgdTrainer>> TrainLikeTarget(const AuditTarget& target, bool dp,
                                                                     const torch::Tensor& x, const torch::Tensor& y,
                                                                     const std::atomic<bool>* cancel,
                                                                     Schedule schedule = Schedule::kOwnPass) {
  train::TrainConfig config = target.train;
  config.dp = dp;
  const int64_t n = x.size(0);
  if (schedule == Schedule::kTargetAccounting) {
    config.steps_per_epoch = train::DpSgdTrainer::StepsPerEpoch(target.train);
  } else {
    if (n != config.dataset_size) config.steps_per_epoch = 0;  // another set: one pass per epoch again
    config.batch_size = std::min(config.batch_size, n);
    config.dataset_size = n;
  }
  comm::LocalCommunicator comm;
  ASSIGN_OR_RETURN(std::unique_ptr<train::DpSgdTrainer> trainer,
                   train::DpSgdTrainer::Create(target.model, config, x.size(1), &comm));
  for (int e = 0; e < target.epochs; ++e) {
    for (int64_t s = 0; s < trainer->steps_per_epoch(); ++s) {
      RETURN_IF_ERROR(Cancelled(cancel));
      RETURN_IF_ERROR(trainer->Step(x, y));
    }
  }
  return trainer;
}

// φ = (2y - 1) * logit: the logit of the probability the model gives the
// true label (LiRA's logit scaling), float64 on the CPU.
torch::Tensor TrueClassLogit(const train::Model& model, const torch::Tensor& x, const torch::Tensor& y) {
  const torch::Tensor logits = model.Logits(x).to(torch::kCPU, torch::kDouble);
  return (2.0 * y.to(torch::kCPU, torch::kDouble) - 1.0) * logits;
}

std::vector<double> ToVector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// The shadow models' φ on every challenge point: [K, points].
absl::StatusOr<torch::Tensor> ShadowScores(const AuditTarget& target, bool dp, const Split& split, int shadows,
                                           int64_t shadow_size, c10::Device device, SecureDraws& draws,
                                           const std::atomic<bool>* cancel, const AuditProgress& progress,
                                           const std::string& phase) {
  std::vector<torch::Tensor> rows;
  const int64_t pool = split.pool_x.size(0);
  for (int k = 0; k < shadows; ++k) {
    if (progress) progress(phase, k, shadows);
    ASSIGN_OR_RETURN(std::vector<int64_t> pick, SampleIndices(draws, pool, shadow_size));
    const torch::Tensor idx = IndexTensor(pick);
    const torch::Tensor x = split.pool_x.index_select(0, idx).to(device);
    const torch::Tensor y = split.pool_y.index_select(0, idx).to(device);
    ASSIGN_OR_RETURN(std::unique_ptr<train::DpSgdTrainer> shadow, TrainLikeTarget(target, dp, x, y, cancel));
    rows.push_back(TrueClassLogit(shadow->model(), split.x, split.y));
  }
  if (progress) progress(phase, shadows, shadows);
  return torch::stack(rows);
}

// Offline LiRA score of every challenge point: (φ_target - μ_out) / σ_out,
// with μ_out, σ_out the shadows' (all OUT) mean and standard deviation of φ
// on that point; one pooled σ for all points below kPerPointStdShadows
// shadows (with one shadow, the spread of its φ across points).
torch::Tensor LiraScores(const torch::Tensor& phi_target, const torch::Tensor& phi_shadows) {
  const int64_t k = phi_shadows.size(0);
  const torch::Tensor mean = phi_shadows.mean(0);
  torch::Tensor std;
  if (k >= kPerPointStdShadows) {
    std = phi_shadows.std(0, /*unbiased=*/true);
  } else if (k >= 2) {
    const double pooled =
        (phi_shadows - mean).pow(2).sum().item<double>() / static_cast<double>(phi_shadows.size(1) * (k - 1));
    std = torch::full_like(mean, std::sqrt(pooled));
  } else {
    std = torch::full_like(mean, phi_shadows.std().item<double>());
  }
  // A spread of 0 (every shadow identical) would divide by zero; any
  // positive floor keeps the ranking of φ_target - μ_out.
  std = std.clamp_min(1e-6);
  return (phi_target - mean) / std;
}

MembershipResult Measure(const std::string& attack, const torch::Tensor& scores, const Split& split, double delta,
                         double alpha) {
  const std::vector<double> all = ToVector(scores);
  const std::vector<double> in(all.begin(), all.begin() + split.members);
  const std::vector<double> out(all.begin() + split.members, all.end());
  MembershipResult r;
  r.attack = attack;
  r.members = split.members;
  r.non_members = split.non_members;
  r.auc = Auc(in, out);
  r.tpr_at_fpr_0_1pct = TprAtFpr(in, out, 0.001);
  r.tpr_at_fpr_1pct = TprAtFpr(in, out, 0.01);
  // Each side is in uniformly random order (MakeSplit), so its first half
  // is a uniform random half: it chooses the test, the rest evaluates it.
  const auto half_in = in.begin() + static_cast<int64_t>(in.size() / 2);
  const auto half_out = out.begin() + static_cast<int64_t>(out.size() / 2);
  r.epsilon_lower_bound =
      EpsilonLowerBound(std::vector<double>(in.begin(), half_in), std::vector<double>(out.begin(), half_out),
                        std::vector<double>(half_in, in.end()), std::vector<double>(half_out, out.end()), delta, alpha);
  return r;
}

// Both membership attacks on `model`, given its shadows' φ.
std::vector<MembershipResult> Membership(const train::Model& model, const torch::Tensor& phi_shadows,
                                         const Split& split, double delta, double alpha) {
  const torch::Tensor phi = TrueClassLogit(model, split.x, split.y);
  // Loss threshold (Yeom et al. 2018): score = -BCE(logit, y) = -softplus(-φ).
  const torch::Tensor loss_score = -torch::softplus(-phi);
  return {Measure("loss_threshold", loss_score, split, delta, alpha),
          Measure("lira_offline", LiraScores(phi, phi_shadows), split, delta, alpha)};
}

// The one-run audit's canaries: eval records (never trained on by the
// target) in random order with their label flipped, and each one's coin.
struct Canaries {
  torch::Tensor x, y;  // CPU; y = 1 - the record's label
  std::vector<bool> included;
};

absl::StatusOr<Canaries> DrawCanaries(SecureDraws& draws, const AuditData& cpu, int64_t m) {
  ASSIGN_OR_RETURN(std::vector<int64_t> pick, SampleIndices(draws, cpu.x_eval.size(0), m));
  const torch::Tensor idx = IndexTensor(pick);
  Canaries c;
  c.x = cpu.x_eval.index_select(0, idx);
  c.y = 1.0f - cpu.y_eval.index_select(0, idx);
  c.included.resize(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) {
    ASSIGN_OR_RETURN(uint64_t coin, draws.Below(2));
    c.included[i] = coin == 1;
  }
  return c;
}

// Trains one model of the target's spec on every training record plus the
// included canaries (Schedule::kTargetAccounting), scores every canary by
// the log-likelihood of its flipped label, and returns the best bound over
// the fixed guess counts (each a test at alpha).
absl::StatusOr<OneRunResult> OneRun(const AuditTarget& target, bool dp, const AuditData& cpu, const Canaries& c,
                                    c10::Device device, double alpha, const std::atomic<bool>* cancel) {
  std::vector<int64_t> in;
  for (size_t i = 0; i < c.included.size(); ++i)
    if (c.included[i]) in.push_back(static_cast<int64_t>(i));
  const torch::Tensor in_t = IndexTensor(in);
  const torch::Tensor x = torch::cat({cpu.x_train, c.x.index_select(0, in_t)}).to(device);
  const torch::Tensor y = torch::cat({cpu.y_train, c.y.index_select(0, in_t)}).to(device);
  ASSIGN_OR_RETURN(std::unique_ptr<train::DpSgdTrainer> trained,
                   TrainLikeTarget(target, dp, x, y, cancel, Schedule::kTargetAccounting));
  const torch::Tensor phi = TrueClassLogit(trained->model(), c.x.to(device), c.y.to(device));
  const std::vector<double> scores = ToVector(-torch::softplus(-phi));
  OneRunResult r;
  r.canaries = static_cast<int64_t>(c.included.size());
  r.included = static_cast<int64_t>(in.size());
  r.sample_rate = trained->sample_rate();
  r.steps = trained->steps_done();
  for (double share : kOneRunGuessShares) {
    const int64_t k = std::max<int64_t>(1, std::llround(share * static_cast<double>(r.canaries)));
    const OneRunGuesses g = GuessTopAndBottom(scores, c.included, k);
    const double eps = OneRunEpsilonLowerBound(r.canaries, g.guesses, g.correct, target.delta, alpha);
    if (r.guesses == 0 || eps > r.epsilon_lower_bound) {
      r.guesses = g.guesses;
      r.correct = g.correct;
      r.epsilon_lower_bound = eps;
    }
  }
  return r;
}

// An inversion feature's one-hot columns in the encoding.
struct Group {
  std::string feature;
  std::vector<int64_t> columns;
};

absl::StatusOr<std::vector<Group>> InversionGroups(const AuditTarget& target, const AuditOptions& options) {
  const bool defaults = options.inversion_features.empty();
  std::vector<std::string> names = options.inversion_features;
  if (defaults) names = {"DIS", "MAR"};
  std::vector<Group> groups;
  for (const std::string& raw : names) {
    Group g;
    g.feature = absl::AsciiStrToUpper(raw);
    bool numeric = false;
    for (size_t c = 0; c < target.columns.size(); ++c) {
      if (absl::StartsWith(target.columns[c], g.feature + "=")) g.columns.push_back(static_cast<int64_t>(c));
      numeric |= target.columns[c] == g.feature;
    }
    if (g.columns.empty() && defaults) continue;  // a default feature the job does not have
    if (numeric) {
      return absl::InvalidArgumentError(
          absl::StrCat("inversion_features: \"", raw, "\" is a numeric feature of the job, not a categorical one"));
    }
    if (g.columns.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "inversion_features: \"", raw, "\" is not a feature of the job (no encoded column \"", g.feature, "=...\")"));
    }
    if (g.columns.size() < 2) {
      return absl::InvalidArgumentError(absl::StrCat("inversion_features: \"", raw, "\" has ", g.columns.size(),
                                                     " one-hot column; inversion needs at least 2 values"));
    }
    groups.push_back(std::move(g));
  }
  return groups;
}

// Fredrikson et al. 2015: for every attacked record and every candidate
// value v of the feature, set the record's one-hot group to v and weigh the
// model's probability of the record's true label by the prior of v (the
// feature's marginal on the eval split: a population estimate); guess the
// heaviest. x, y: the attacked member records (audit device); x_eval: the
// eval split (CPU).
absl::StatusOr<InversionResult> Invert(const train::Model& model, const Group& g, const torch::Tensor& x,
                                       const torch::Tensor& y, const torch::Tensor& x_eval) {
  const torch::Tensor cols = IndexTensor(g.columns);
  const torch::Tensor onehot = x.index_select(1, cols.to(x.device())).to(torch::kCPU);
  const bool is_onehot = ((onehot == 0) | (onehot == 1)).all().item<bool>() && (onehot.sum(1) == 1).all().item<bool>();
  if (!is_onehot) {
    return absl::InvalidArgumentError(
        absl::StrCat("inversion_features: the columns of \"", g.feature, "\" are not one-hot in the training records"));
  }
  const torch::Tensor truth = onehot.argmax(1);
  const torch::Tensor log_prior = x_eval.index_select(1, cols).to(torch::kDouble).sum(0).log();  // -inf if never seen
  const torch::Tensor sign = 2.0 * y.to(torch::kCPU, torch::kDouble) - 1.0;
  std::vector<torch::Tensor> weights;
  for (size_t v = 0; v < g.columns.size(); ++v) {
    torch::Tensor xv = x.clone();
    xv.index_fill_(1, cols.to(x.device()), 0.0f);
    xv.select(1, g.columns[v]).fill_(1.0f);
    const torch::Tensor phi = sign * model.Logits(xv).to(torch::kCPU, torch::kDouble);
    weights.push_back(-torch::softplus(-phi) + log_prior[static_cast<int64_t>(v)]);  // log p(y|x') + log prior
  }
  const torch::Tensor guess = torch::stack(weights, 1).argmax(1);
  InversionResult r;
  r.feature = g.feature;
  r.records = x.size(0);
  const double n = static_cast<double>(std::max<int64_t>(r.records, 1));
  r.accuracy = (guess == truth).sum().item<double>() / n;
  r.base_rate = onehot.sum(0).max().item<double>() / n;
  return r;
}

absl::Status Validate(const AuditTarget& target, const AuditData& data, const AuditOptions& options) {
  auto check_split = [](const char* name, const torch::Tensor& x, const torch::Tensor& y) -> absl::Status {
    if (!x.defined() || x.dim() != 2 || x.size(0) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": needs a non-empty [n, d] feature matrix"));
    }
    if (!y.defined() || y.dim() != 1 || y.size(0) != x.size(0)) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": labels must be [", x.size(0), "]"));
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(check_split("x_train", data.x_train, data.y_train));
  RETURN_IF_ERROR(check_split("x_eval", data.x_eval, data.y_eval));
  if (data.x_eval.size(1) != data.x_train.size(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("x_eval: ", data.x_eval.size(1), " columns, x_train has ", data.x_train.size(1)));
  }
  if (target.columns.size() != static_cast<size_t>(data.x_train.size(1))) {
    return absl::InvalidArgumentError(
        absl::StrCat("columns: ", target.columns.size(), " names for ", data.x_train.size(1), " encoded columns"));
  }
  if (options.shadow_models < 1) {
    return absl::InvalidArgumentError(absl::StrCat("shadow_models: ", options.shadow_models, " (must be >= 1)"));
  }
  if (options.one_run && options.canaries < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("canaries: ", options.canaries, " (the one-run audit needs at least 2)"));
  }
  if (options.one_run && data.x_eval.size(0) < 2) {
    return absl::InvalidArgumentError(absl::StrCat("x_eval: ", data.x_eval.size(0),
                                                   " records; the one-run audit draws its canaries from at least 2"));
  }
  if (options.max_challenge < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_challenge: ", options.max_challenge, " (must be >= 1)"));
  }
  if (!(options.confidence > 0 && options.confidence < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("confidence: ", options.confidence, " (must be in (0, 1))"));
  }
  if (target.epochs < 1) {
    return absl::InvalidArgumentError(absl::StrCat("epochs: ", target.epochs, " (must be >= 1)"));
  }
  if (!(target.delta >= 0 && target.delta < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("delta: ", target.delta, " (must be in [0, 1))"));
  }
  if (target.train.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("train.batch_size: ", target.train.batch_size, " (must be >= 1)"));
  }
  if (!target.flat_params.defined()) return absl::InvalidArgumentError("flat_params: missing");
  return absl::OkStatus();
}

absl::StatusOr<AuditReport> Run(const AuditTarget& target, const AuditData& data, const AuditOptions& options,
                                const std::atomic<bool>* cancel, const AuditProgress& progress) {
  const auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(Validate(target, data, options));
  std::vector<Group> groups;
  if (options.inversion) {
    ASSIGN_OR_RETURN(groups, InversionGroups(target, options));
  }
  RETURN_IF_ERROR(Cancelled(cancel));
  const c10::Device device = target.train.device;
  const int64_t d = data.x_train.size(1);
  AuditData cpu;  // index_select and the pool stay on the CPU; batches move
  cpu.x_train = data.x_train.to(torch::kCPU, torch::kFloat).contiguous();
  cpu.y_train = data.y_train.to(torch::kCPU, torch::kFloat).contiguous();
  cpu.x_eval = data.x_eval.to(torch::kCPU, torch::kFloat).contiguous();
  cpu.y_eval = data.y_eval.to(torch::kCPU, torch::kFloat).contiguous();

  ASSIGN_OR_RETURN(train::Model model, train::Model::Create(target.model, d, target.train.seed, device));
  if (target.flat_params.numel() != model.num_parameters()) {
    return absl::InvalidArgumentError(absl::StrCat("flat_params: ", target.flat_params.numel(),
                                                   " values, the model's spec has ", model.num_parameters()));
  }
  model.mutable_flat().copy_(target.flat_params.reshape({-1}).to(device, torch::kFloat));

  // Half of each split at most, so the shadow pool keeps records of both.
  const int64_t per_side =
      std::max<int64_t>(1, std::min({options.max_challenge, data.x_train.size(0) / 2, data.x_eval.size(0) / 2}));
  SecureDraws draws;
  ASSIGN_OR_RETURN(Split split, MakeSplit(draws, cpu, per_side, device));
  const int64_t shadow_size = std::min(data.x_train.size(0), split.pool_x.size(0));

  AuditReport report;
  report.reported_epsilon = target.reported_epsilon;
  report.delta = target.delta;
  report.confidence = options.confidence;
  report.shadow_models = options.membership ? options.shadow_models : 0;
  // Bonferroni over every test of the report, so that all ε bounds hold
  // jointly at `confidence`: two one-sided bounds (TPR, FPR) per membership
  // attack, one test per guess count of each one-run audit.
  const int models = options.baseline ? 2 : 1;
  const int one_run_tests = static_cast<int>(std::size(kOneRunGuessShares));
  const int tests = models * ((options.membership ? 2 * 2 : 0) + (options.one_run ? one_run_tests : 0));
  const double alpha = (1.0 - options.confidence) / std::max(tests, 1);
  Canaries canaries;
  if (options.one_run) {
    ASSIGN_OR_RETURN(canaries, DrawCanaries(draws, cpu, std::min(options.canaries, data.x_eval.size(0))));
  }

  // Member challenge records, for inversion.
  const torch::Tensor x_members = split.x.narrow(0, 0, split.members);
  const torch::Tensor y_members = split.y.narrow(0, 0, split.members);

  auto audit_model = [&](const std::string& name, const train::Model& m, bool dp,
                         const std::string& shadow_phase) -> absl::StatusOr<ModelAudit> {
    ModelAudit a;
    a.model = name;
    if (options.membership) {
      ASSIGN_OR_RETURN(torch::Tensor phi_shadows, ShadowScores(target, dp, split, options.shadow_models, shadow_size,
                                                               device, draws, cancel, progress, shadow_phase));
      if (progress) progress("membership inference", 0, 1);
      a.membership = Membership(m, phi_shadows, split, target.delta, alpha);
      for (const MembershipResult& r : a.membership)
        a.epsilon_lower_bound = std::max(a.epsilon_lower_bound, r.epsilon_lower_bound);
    }
    for (size_t i = 0; i < groups.size(); ++i) {
      if (progress) progress("model inversion", static_cast<int>(i), static_cast<int>(groups.size()));
      ASSIGN_OR_RETURN(InversionResult r, Invert(m, groups[i], x_members, y_members, cpu.x_eval));
      a.inversion.push_back(std::move(r));
    }
    if (options.one_run) {
      if (progress) progress("training with canaries", 0, 1);
      ASSIGN_OR_RETURN(a.one_run, OneRun(target, dp, cpu, canaries, device, alpha, cancel));
      if (progress) progress("training with canaries", 1, 1);
      a.epsilon_lower_bound = std::max(a.epsilon_lower_bound, a.one_run->epsilon_lower_bound);
    }
    return a;
  };

  ASSIGN_OR_RETURN(report.target, audit_model("target", model, target.train.dp, "training shadow models"));
  if (options.baseline) {
    if (progress) progress("training baseline model", 0, 1);
    const torch::Tensor x_all = cpu.x_train.to(device);
    const torch::Tensor y_all = cpu.y_train.to(device);
    ASSIGN_OR_RETURN(std::unique_ptr<train::DpSgdTrainer> baseline,
                     TrainLikeTarget(target, /*dp=*/false, x_all, y_all, cancel));
    if (progress) progress("training baseline model", 1, 1);
    ASSIGN_OR_RETURN(report.baseline, audit_model("non_private_baseline", baseline->model(), /*dp=*/false,
                                                  "training baseline shadow models"));
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace

absl::StatusOr<AuditReport> RunAudit(const AuditTarget& target, const AuditData& data, const AuditOptions& options,
                                     const std::atomic<bool>* cancel, const AuditProgress& progress) {
  absl::StatusOr<AuditReport> result = absl::InternalError("audit did not run");
  const absl::Status guarded = train::GuardTorch("audit", [&]() -> absl::Status {
    result = Run(target, data, options, cancel, progress);
    return result.status();
  });
  if (!guarded.ok()) return guarded;
  return result;
}

}  // namespace dpfleet::audit
