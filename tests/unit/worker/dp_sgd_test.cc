// Tests for the DP-SGD engine: the book-keeping clipped sums against the
// per-example autograd oracle, the clip bound, the noise scale, division by
// the public batch size, Poisson sampling, stream independence, the
// single all-reduce, multi-rank agreement, optimizers and checkpoints.
#include "worker/train/dp_sgd.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/dp_sgd_test_peer.h"
#include "tests/testing/temp_dir.h"
#include "worker/comm/communicator.h"
#include "worker/train/clipped_grad.h"
#include "worker/train/model.h"
#include "worker/train/optimizer.h"
#include "worker/train/oracle.h"
#include "worker/train/rng.h"

namespace dpfleet::train {
namespace {

using ::testing::HasSubstr;

at::Tensor Flatten(const std::vector<torch::Tensor>& parts) {
  std::vector<at::Tensor> flat;
  for (const auto& p : parts) flat.push_back(p.reshape({-1}));
  return at::cat(flat);
}

double RelativeError(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor g = got.to(at::kDouble), w = want.to(at::kDouble);
  const double denom = std::max(w.norm().item<double>(), 1e-12);
  return (g - w).norm().item<double>() / denom;
}

// Random features and 0/1 labels.
std::pair<at::Tensor, at::Tensor> RandomData(int64_t n, int64_t d, uint64_t seed, double scale = 1.0) {
  at::manual_seed(seed);
  at::Tensor x = at::randn({n, d}) * scale;
  at::Tensor y = (at::rand({n}) < 0.4).to(at::kFloat);
  return {x, y};
}

// World of W as seen by one rank: AllReduceSum is the identity but records
// what this rank contributed (to inspect the local noise share and count).
class RecordingCommunicator final : public comm::Communicator {
 public:
  RecordingCommunicator(int rank, int world) : rank_(rank), world_(world) {}
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  absl::Status AllReduceSum(torch::Tensor& tensor, absl::Duration) override {
    ++calls_;
    if (fail_) return absl::DeadlineExceededError("peer gone");
    recorded_.push_back(tensor.clone());
    return absl::OkStatus();
  }
  absl::Status Broadcast(torch::Tensor&, int, absl::Duration) override { return absl::OkStatus(); }
  absl::Status Barrier(absl::Duration) override { return absl::OkStatus(); }
  void Abort() override {}

  int calls() const { return calls_; }
  const std::vector<at::Tensor>& recorded() const { return recorded_; }
  void set_fail(bool fail) { fail_ = fail; }

 private:
  int rank_, world_;
  int calls_ = 0;
  bool fail_ = false;
  std::vector<at::Tensor> recorded_;
};

// W ranks in one process (one thread each) with a real sum all-reduce.
class InProcessGroup {
 public:
  explicit InProcessGroup(int world) : world_(world), slots_(world) {}

  absl::Status AllReduce(int rank, torch::Tensor& t) {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t generation = generation_;
    slots_[rank] = &t;
    if (++arrived_ == world_) {
      at::Tensor sum = at::zeros_like(t);
      for (at::Tensor* s : slots_) sum.add_(*s);
      for (at::Tensor* s : slots_) s->copy_(sum);
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
    return absl::OkStatus();
  }

 private:
  const int world_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<at::Tensor*> slots_;
  int arrived_ = 0;
  int64_t generation_ = 0;
};

class GroupCommunicator final : public comm::Communicator {
 public:
  GroupCommunicator(InProcessGroup* group, int rank, int world) : group_(group), rank_(rank), world_(world) {}
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  absl::Status AllReduceSum(torch::Tensor& tensor, absl::Duration) override {
    ++calls_;
    return group_->AllReduce(rank_, tensor);
  }
  absl::Status Broadcast(torch::Tensor&, int, absl::Duration) override { return absl::OkStatus(); }
  absl::Status Barrier(absl::Duration) override { return absl::OkStatus(); }
  void Abort() override {}
  int calls() const { return calls_; }

 private:
  InProcessGroup* group_;
  int rank_, world_;
  int calls_ = 0;
};

ModelConfig Mlp(std::vector<int64_t> hidden, Activation act = Activation::kRelu) {
  ModelConfig c;
  c.type = ModelType::kMlp;
  c.hidden = std::move(hidden);
  c.activation = act;
  return c;
}

ModelConfig Logistic() {
  ModelConfig c;
  c.type = ModelType::kLogistic;
  return c;
}

// ---------------------------------------------------------------- RNG

TEST(ChaCha20Test, MatchesRfc7539BlockVector) {
  // RFC 7539 section 2.3.2.
  uint32_t in[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574, 0x03020100, 0x07060504,
                     0x0b0a0908, 0x0f0e0d0c, 0x13121110, 0x17161514, 0x1b1a1918, 0x1f1e1d1c,
                     0x00000001, 0x09000000, 0x4a000000, 0x00000000};
  const uint32_t want[16] = {0xe4e7f110, 0x15593bd1, 0x1fdd0f50, 0xc47120a3, 0xc7f4d1c7, 0x0368c033,
                             0x9aaa2204, 0x4e6cd4c3, 0x466482d2, 0x09aa9f07, 0x05d7c214, 0xa2028bd9,
                             0xd19c12b5, 0xb94e16de, 0xe883d0cb, 0x4e3c50a2};
  uint32_t out[16];
  ChaCha20Block(in, out);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(out[i], want[i]) << i;
}

TEST(ChaCha20Test, StreamEqualsBlockFunctionWithCounterAndNonce) {
  ChaChaKey key = {1, 2, 3, 4, 5, 6, 7, 8};
  const uint64_t nonce = 0x1122334455667788ull;
  ChaCha20Stream stream(key, nonce);
  std::vector<uint32_t> words(16 * 11);  // crosses the 8-block buffer
  stream.Fill(words.data(), 5);
  stream.Fill(words.data() + 5, words.size() - 5);
  for (uint64_t block = 0; block < 11; ++block) {
    uint32_t in[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};
    for (int i = 0; i < 8; ++i) in[4 + i] = key[i];
    in[12] = static_cast<uint32_t>(block);
    in[13] = static_cast<uint32_t>(block >> 32);
    in[14] = static_cast<uint32_t>(nonce);
    in[15] = static_cast<uint32_t>(nonce >> 32);
    uint32_t out[16];
    ChaCha20Block(in, out);
    for (int i = 0; i < 16; ++i) ASSERT_EQ(words[16 * block + i], out[i]) << block << " " << i;
  }
}

TEST(RngTest, SeededKeysAreDistinctPerRankAttemptPurpose) {
  const ChaChaKey base = DeriveSeededKey(7, 0, 0, StreamPurpose::kNoise);
  EXPECT_EQ(base, DeriveSeededKey(7, 0, 0, StreamPurpose::kNoise));
  EXPECT_NE(base, DeriveSeededKey(8, 0, 0, StreamPurpose::kNoise));
  EXPECT_NE(base, DeriveSeededKey(7, 1, 0, StreamPurpose::kNoise));
  EXPECT_NE(base, DeriveSeededKey(7, 0, 1, StreamPurpose::kNoise));
  EXPECT_NE(base, DeriveSeededKey(7, 0, 0, StreamPurpose::kSample));
  auto a = SecureRandomKey();
  auto b = SecureRandomKey();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST(RngTest, FillNormalHasRequestedMoments) {
  ChaCha20Stream stream(DeriveSeededKey(1, 0, 0, StreamPurpose::kNoise), 0);
  at::Tensor out = at::empty({200001});  // odd length: last pair half-used
  NormalScratch scratch;
  FillNormal(stream, 1.5, out, scratch);
  const at::Tensor d = out.to(at::kDouble);
  const double mean = d.mean().item<double>();
  const double var = d.var().item<double>();
  const double n = static_cast<double>(out.numel());
  EXPECT_NEAR(mean, 0.0, 5 * 1.5 / std::sqrt(n));
  EXPECT_NEAR(var, 2.25, 5 * 2.25 * std::sqrt(2.0 / n));
  // Fourth moment of a Gaussian: 3 sigma^4.
  const double m4 = (d.pow(4)).mean().item<double>() / (2.25 * 2.25);
  EXPECT_NEAR(m4, 3.0, 0.1);
  // Roughly 0.27% beyond 3 sigma.
  const double tail = (d.abs() > 4.5).to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(tail, 0.0027, 0.0008);
  // Deterministic for the same (key, nonce); different for another nonce.
  ChaCha20Stream again(DeriveSeededKey(1, 0, 0, StreamPurpose::kNoise), 0);
  at::Tensor out2 = at::empty({200001});
  FillNormal(again, 1.5, out2, scratch);
  EXPECT_TRUE(at::equal(out, out2));
  ChaCha20Stream other(DeriveSeededKey(1, 0, 0, StreamPurpose::kNoise), 1);
  FillNormal(other, 1.5, out2, scratch);
  EXPECT_FALSE(at::equal(out, out2));
}

TEST(RngTest, PoissonSampleIsBernoulliPerRow) {
  const int64_t n = 1000;
  const double q = 0.05;
  const int trials = 2000;
  std::vector<double> sizes;
  at::Tensor hits = at::zeros({n}, at::kDouble);
  const ChaChaKey key = DeriveSeededKey(3, 0, 0, StreamPurpose::kSample);
  for (int t = 0; t < trials; ++t) {
    ChaCha20Stream stream(key, static_cast<uint64_t>(t));
    at::Tensor rows = PoissonSample(stream, n, q);
    sizes.push_back(static_cast<double>(rows.numel()));
    if (rows.numel() > 0) {
      // Sorted, unique, in range.
      EXPECT_GE(rows.min().item<int64_t>(), 0);
      EXPECT_LT(rows.max().item<int64_t>(), n);
      if (rows.numel() > 1) {
        EXPECT_TRUE((rows.narrow(0, 1, rows.numel() - 1) > rows.narrow(0, 0, rows.numel() - 1)).all().item<bool>());
      }
      hits.index_add_(0, rows, at::ones({rows.numel()}, at::kDouble));
    }
  }
  double mean = 0, var = 0;
  for (double s : sizes) mean += s;
  mean /= trials;
  for (double s : sizes) var += (s - mean) * (s - mean);
  var /= trials - 1;
  // Binomial(n, q): mean nq = 50, variance nq(1-q) = 47.5.
  EXPECT_NEAR(mean, n * q, 5 * std::sqrt(n * q * (1 - q) / trials));
  EXPECT_NEAR(var, n * q * (1 - q), 0.15 * n * q * (1 - q));
  // Every row is equally likely: compare the first, middle and last tenth.
  const double expected = trials * q * (n / 10);
  for (int64_t start : {int64_t{0}, n / 2, n - n / 10}) {
    const double got = hits.narrow(0, start, n / 10).sum().item<double>();
    EXPECT_NEAR(got, expected, 5 * std::sqrt(expected));
  }
  ChaCha20Stream s(key, 0);
  EXPECT_EQ(PoissonSample(s, n, 0.0).numel(), 0);
  EXPECT_EQ(PoissonSample(s, n, 1.0).numel(), n);
  EXPECT_EQ(PoissonSample(s, 0, 0.5).numel(), 0);
}

// ---------------------------------------------------------------- engine vs oracle

struct EngineCase {
  std::string name;
  ModelConfig model;
  int64_t dim;
  int64_t batch;
};

class EngineOracleTest : public ::testing::TestWithParam<EngineCase> {};

// Both clipping passes — the fused CPU loop and the ATen ops a GPU runs —
// against autograd.
TEST_P(EngineOracleTest, ClippedSumMatchesPerExampleAutograd) {
  const EngineCase& c = GetParam();
  auto model = Model::Create(c.model, c.dim, /*init_seed=*/11);
  ASSERT_TRUE(model.ok()) << model.status();
  auto [x, y] = RandomData(c.batch, c.dim, 5, /*scale=*/2.0);
  for (ClipPass pass : {ClipPass::kFused, ClipPass::kAten}) {
    SCOPED_TRACE(pass == ClipPass::kFused ? "fused" : "aten");
    GradientEngine engine(&*model, pass);
    at::Tensor out = at::empty({model->num_parameters()});
    // Unclipped sum (the non-private gradient) against autograd.
    OracleGradients oracle = PerExampleOracle(*model, x, y, /*clip=*/1.0);
    engine.Sum(x, y, out);
    EXPECT_LT(RelativeError(out, oracle.sum), 1e-5);
    // Clip at quantiles of the true norms: all clipped, about half, none.
    const at::Tensor sorted = std::get<0>(oracle.norms.sort());
    const double tiny = sorted[0].item<double>() * 0.5;
    const double median = sorted[c.batch / 2].item<double>();
    const double huge = sorted[c.batch - 1].item<double>() * 2;
    for (double clip : {tiny, median, huge}) {
      SCOPED_TRACE(clip);
      OracleGradients want = PerExampleOracle(*model, x, y, clip);
      at::Tensor norms;
      engine.ClippedSum(x, y, clip, out, &norms);
      EXPECT_LT(RelativeError(out, want.clipped_sum), 1e-5);
      ASSERT_EQ(norms.numel(), c.batch);
      EXPECT_LT(RelativeError(norms, want.norms), 1e-5);
    }
  }
}

// The two passes compute the same factors: their sums agree far more
// closely than either agrees with the float64 oracle.
TEST(EngineTest, FusedAndAtenPassesAgree) {
  auto model = Model::Create(Mlp({32, 16}), 10, 3);
  ASSERT_TRUE(model.ok());
  auto [x, y] = RandomData(200, 10, 21, /*scale=*/3.0);
  GradientEngine fused(&*model, ClipPass::kFused), aten(&*model, ClipPass::kAten);
  at::Tensor a = at::empty({model->num_parameters()}), b = at::empty({model->num_parameters()});
  at::Tensor na, nb;
  fused.ClippedSum(x, y, 0.1, a, &na);
  aten.ClippedSum(x, y, 0.1, b, &nb);
  EXPECT_LT(RelativeError(a, b.to(at::kDouble)), 1e-6);
  EXPECT_LT(RelativeError(na, nb.to(at::kDouble)), 1e-6);
  EXPECT_GT(at::sum(na > 0.1).item<int64_t>(), 100) << "most rows must be clipped for this check to mean anything";
}

INSTANTIATE_TEST_SUITE_P(
    Models, EngineOracleTest,
    ::testing::Values(EngineCase{"logistic", Logistic(), 7, 33},
                      EngineCase{"relu_64_32", Mlp({64, 32}), 20, 48},
                      EngineCase{"tanh_5", Mlp({5}, Activation::kTanh), 3, 17},
                      EngineCase{"tanh_wide_narrow", Mlp({40, 3, 12}, Activation::kTanh), 9, 25},
                      EngineCase{"relu_deep", Mlp({16, 16, 16, 16}), 12, 31},
                      EngineCase{"relu_single_row", Mlp({8}), 4, 1}),
    [](const ::testing::TestParamInfo<EngineCase>& info) { return info.param.name; });

class EnginePassTest : public ::testing::TestWithParam<ClipPass> {};

TEST_P(EnginePassTest, EveryClippedContributionIsAtMostC) {
  auto model = Model::Create(Mlp({32, 16}), 10, 2);
  ASSERT_TRUE(model.ok());
  auto [x, y] = RandomData(64, 10, 9, /*scale=*/5.0);
  GradientEngine engine(&*model, GetParam());
  at::Tensor out = at::empty({model->num_parameters()});
  const double clip = 0.05;
  int clipped = 0;
  for (int64_t i = 0; i < x.size(0); ++i) {
    at::Tensor norms;
    engine.ClippedSum(x.narrow(0, i, 1), y.narrow(0, i, 1), clip, out, &norms);
    const double contribution = out.norm().item<double>();
    EXPECT_LE(contribution, clip * (1 + 1e-5));
    if (norms[0].item<double>() > clip) {
      ++clipped;
      EXPECT_NEAR(contribution, clip, clip * 1e-5);  // clipped exactly onto the ball
    }
  }
  EXPECT_GT(clipped, 32);
}

TEST_P(EnginePassTest, EmptyBatchGivesZero) {
  auto model = Model::Create(Mlp({4}), 3, 2);
  ASSERT_TRUE(model.ok());
  GradientEngine engine(&*model, GetParam());
  at::Tensor out = at::ones({model->num_parameters()});
  engine.ClippedSum(at::empty({0, 3}), at::empty({0}), 1.0, out);
  EXPECT_EQ(out.abs().sum().item<double>(), 0.0);
  out.fill_(1);
  engine.Sum(at::empty({0, 3}), at::empty({0}), out);
  EXPECT_EQ(out.abs().sum().item<double>(), 0.0);
}

TEST_P(EnginePassTest, WorkspacesSurviveVaryingBatchSizes) {
  auto model = Model::Create(Mlp({16, 8}, Activation::kTanh), 6, 4);
  ASSERT_TRUE(model.ok());
  GradientEngine engine(&*model, GetParam());
  at::Tensor out = at::empty({model->num_parameters()});
  for (int64_t n : {50, 3, 0, 120, 7}) {
    auto [x, y] = RandomData(n, 6, static_cast<uint64_t>(n) + 1);
    engine.ClippedSum(x, y, 0.3, out);
    if (n == 0) continue;
    EXPECT_LT(RelativeError(out, PerExampleOracle(*model, x, y, 0.3).clipped_sum), 1e-5) << n;
  }
}

INSTANTIATE_TEST_SUITE_P(Passes, EnginePassTest, ::testing::Values(ClipPass::kFused, ClipPass::kAten),
                         [](const ::testing::TestParamInfo<ClipPass>& info) {
                           return std::string(info.param == ClipPass::kFused ? "fused" : "aten");
                         });

// ---------------------------------------------------------------- trainer

TrainConfig BaseConfig() {
  TrainConfig c;
  c.dataset_size = 1000;
  c.batch_size = 100;
  c.learning_rate = 1.0;
  c.max_grad_norm = 0.5;
  c.noise_multiplier = 0.0;
  c.seed = 42;
  return c;
}

TEST(DpSgdTrainerTest, RejectsBadConfigs) {
  comm::LocalCommunicator comm;
  auto bad = [&](auto mutate) {
    TrainConfig c = BaseConfig();
    mutate(c);
    return DpSgdTrainer::Create(Mlp({4}), c, 3, &comm).status();
  };
  EXPECT_EQ(bad([](TrainConfig& c) { c.dataset_size = 0; }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](TrainConfig& c) { c.batch_size = 0; }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](TrainConfig& c) { c.batch_size = 2000; }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](TrainConfig& c) { c.max_grad_norm = 0; }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](TrainConfig& c) { c.noise_multiplier = -1; }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](TrainConfig& c) { c.learning_rate = 0; }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](TrainConfig& c) { c.momentum = 1.0; }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DpSgdTrainer::Create(Mlp({4}), BaseConfig(), 3, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DpSgdTrainer::Create(Mlp({0}), BaseConfig(), 3, &comm).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DpSgdTrainer::Create(Mlp({4}), BaseConfig(), 0, &comm).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DpSgdTrainerTest, DerivedQuantities) {
  comm::LocalCommunicator comm;
  TrainConfig c = BaseConfig();
  c.dataset_size = 1050;
  c.batch_size = 100;
  auto t = DpSgdTrainer::Create(Mlp({4}), c, 3, &comm);
  ASSERT_TRUE(t.ok());
  EXPECT_DOUBLE_EQ((*t)->sample_rate(), 100.0 / 1050.0);
  EXPECT_EQ((*t)->steps_per_epoch(), 11);  // round(10.5) away from zero
  c.steps_per_epoch = 3;
  c.batch_size = 1050;
  t = DpSgdTrainer::Create(Mlp({4}), c, 3, &comm);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->steps_per_epoch(), 3);
  c.steps_per_epoch = 0;
  t = DpSgdTrainer::Create(Mlp({4}), c, 3, &comm);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->steps_per_epoch(), 1);
}

TEST(DpSgdTrainerTest, RejectsMalformedBatches) {
  comm::LocalCommunicator comm;
  auto t = DpSgdTrainer::Create(Mlp({4}), BaseConfig(), 3, &comm);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->Step(at::zeros({5, 4}), at::zeros({5})).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*t)->Step(at::zeros({5, 3}), at::zeros({4})).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*t)->Step(at::zeros({5, 3}, at::kDouble), at::zeros({5})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*t)->steps_done(), 0);
  EXPECT_EQ((*t)->Evaluate(at::zeros({5, 4}), at::zeros({5})).rows, 0);
  EXPECT_FALSE((*t)->TryEvaluate(at::zeros({5, 4}), at::zeros({5})).ok());
}

// The update is (clipped sum + noise) / B with B the public expected batch
// size, even when the actual batch has another size.
TEST(DpSgdTrainerTest, DividesByExpectedBatchSizeNotActual) {
  comm::LocalCommunicator comm;
  TrainConfig c = BaseConfig();
  // q = B/N = 1: this rank's 6 rows are all sampled, but B = 16 (the other
  // 10 records live on other ranks), so the divisor must be 16, not 6.
  c.dataset_size = 16;
  c.batch_size = 16;
  c.learning_rate = 0.5;
  const ModelConfig mc = Mlp({8, 4}, Activation::kTanh);
  auto trainer = DpSgdTrainer::Create(mc, c, 5, &comm);
  ASSERT_TRUE(trainer.ok());
  auto [x, y] = RandomData(6, 5, 17, 3.0);
  auto reference = Model::Create(mc, 5, c.seed);  // same init as the trainer
  ASSERT_TRUE(reference.ok());
  const at::Tensor before = Flatten((*trainer)->parameters());
  ASSERT_TRUE(at::equal(before, reference->flat()));
  const at::Tensor clipped = PerExampleOracle(*reference, x, y, c.max_grad_norm).clipped_sum;
  ASSERT_TRUE((*trainer)->Step(x, y).ok());
  const at::Tensor delta = (Flatten((*trainer)->parameters()) - before).to(at::kDouble);
  EXPECT_LT(RelativeError(delta, -c.learning_rate * clipped / 16.0), 1e-5);
  EXPECT_GT(RelativeError(delta, -c.learning_rate * clipped / 6.0), 0.5);
  EXPECT_EQ((*trainer)->steps_done(), 1);
}

TEST(DpSgdTrainerTest, EmptyBatchWithoutNoiseIsZeroUpdateButStillAllReduces) {
  RecordingCommunicator comm(0, 1);
  TrainConfig c = BaseConfig();
  auto trainer = DpSgdTrainer::Create(Mlp({8}), c, 4, &comm);
  ASSERT_TRUE(trainer.ok());
  const at::Tensor before = Flatten((*trainer)->parameters());
  ASSERT_TRUE((*trainer)->Step(at::empty({0, 4}), at::empty({0})).ok());
  ASSERT_TRUE((*trainer)->Step(at::empty({0, 4}), at::empty({0})).ok());
  EXPECT_TRUE(at::equal(before, Flatten((*trainer)->parameters())));
  EXPECT_EQ(comm.calls(), 2);
  EXPECT_EQ((*trainer)->steps_done(), 2);
  // One buffer, exactly the parameter count (nothing else leaves in DP mode).
  EXPECT_EQ(comm.recorded()[0].numel(), before.numel());
}

// Rank r's contribution with an empty batch is pure noise of variance
// sigma^2 C^2 / W per coordinate.
TEST(DpSgdTrainerTest, NoiseShareHasVarianceSigmaSquaredCSquaredOverW) {
  const int world = 4;
  RecordingCommunicator comm(1, world);
  TrainConfig c = BaseConfig();
  c.noise_multiplier = 2.0;
  c.max_grad_norm = 0.5;
  auto trainer = DpSgdTrainer::Create(Mlp({64, 32}), c, 120, &comm);
  ASSERT_TRUE(trainer.ok());
  for (int s = 0; s < 5; ++s) ASSERT_TRUE((*trainer)->Step(at::empty({0, 120}), at::empty({0})).ok());
  const at::Tensor all = at::cat(comm.recorded()).to(at::kDouble);
  const double n = static_cast<double>(all.numel());
  const double want = 2.0 * 2.0 * 0.5 * 0.5 / world;  // 0.25
  EXPECT_NEAR(all.mean().item<double>(), 0.0, 5 * std::sqrt(want / n));
  EXPECT_NEAR(all.var().item<double>(), want, 5 * want * std::sqrt(2.0 / n));
  // Steps draw fresh noise.
  EXPECT_FALSE(at::equal(comm.recorded()[0], comm.recorded()[1]));
}

// The product's keys come from getrandom(2): two trainers built from the
// very same config (seed included) add different noise and take different
// samples, so a submitter who knows the spec can reproduce neither.
TEST(DpSgdTrainerTest, NoiseAndSamplingAreNeverReproducibleFromTheConfig) {
  auto run = [](int rank) {
    RecordingCommunicator comm(rank, 2);
    TrainConfig c = BaseConfig();
    c.noise_multiplier = 1.0;
    auto trainer = DpSgdTrainer::Create(Mlp({4}), c, 3, &comm);
    EXPECT_TRUE(trainer.ok());
    EXPECT_TRUE((*trainer)->Step(at::empty({0, 3}), at::empty({0})).ok());
    const auto keys = std::make_pair(testing::DpSgdTrainerTestPeer::SampleKey(**trainer),
                                     testing::DpSgdTrainerTestPeer::NoiseKey(**trainer));
    return std::make_pair(comm.recorded()[0], keys);
  };
  const auto a = run(0), b = run(0);
  EXPECT_FALSE(at::equal(a.first, b.first)) << "same config, same rank: the noise must still differ";
  EXPECT_NE(a.second.first, b.second.first);
  EXPECT_NE(a.second.second, b.second.second);
  EXPECT_NE(a.second.first, a.second.second) << "sampling and noise never share a key";
  // None of them is the key the seed would give.
  EXPECT_NE(a.second.second, DeriveSeededKey(BaseConfig().seed, 0, 0, StreamPurpose::kNoise));
  EXPECT_NE(a.second.first, DeriveSeededKey(BaseConfig().seed, 0, 0, StreamPurpose::kSample));
}

// The test-only seeded keys keep the old properties the oracle tests rely
// on: reproducible, and distinct per rank and attempt.
TEST(DpSgdTrainerTest, SeededTestStreamsDifferByRankAndAttemptAndReproduceOtherwise) {
  auto noise_of = [](int rank, int32_t attempt) {
    RecordingCommunicator comm(rank, 2);
    TrainConfig c = BaseConfig();
    c.noise_multiplier = 1.0;
    auto trainer = DpSgdTrainer::Create(Mlp({4}), c, 3, &comm);
    EXPECT_TRUE(trainer.ok());
    testing::DpSgdTrainerTestPeer::UseSeededStreams(**trainer, c.seed, attempt);
    EXPECT_TRUE((*trainer)->Step(at::empty({0, 3}), at::empty({0})).ok());
    return comm.recorded()[0];
  };
  const at::Tensor base = noise_of(0, 0);
  EXPECT_TRUE(at::equal(base, noise_of(0, 0)));
  EXPECT_FALSE(at::equal(base, noise_of(1, 0)));
  EXPECT_FALSE(at::equal(base, noise_of(0, 1)));
}

// Non-private mode sends the local batch size along: its mean is q * n.
TEST(DpSgdTrainerTest, SamplingRateIsQ) {
  RecordingCommunicator comm(0, 1);
  TrainConfig c = BaseConfig();
  c.dp = false;
  c.dataset_size = 2000;
  c.batch_size = 100;  // q = 0.05
  auto trainer = DpSgdTrainer::Create(Logistic(), c, 2, &comm);
  ASSERT_TRUE(trainer.ok());
  auto [x, y] = RandomData(2000, 2, 3);
  const int steps = 200;
  for (int s = 0; s < steps; ++s) ASSERT_TRUE((*trainer)->Step(x, y).ok());
  double total = 0;
  for (const at::Tensor& buf : comm.recorded()) total += buf[buf.numel() - 1].item<double>();
  const double mean = total / steps;
  EXPECT_NEAR(mean, 100.0, 5 * std::sqrt(100.0 * 0.95 / steps));
}

// dp = false: plain mini-batch SGD, mean gradient over the actual batch.
TEST(DpSgdTrainerTest, NonPrivateModeIsPlainMeanGradient) {
  comm::LocalCommunicator comm;
  TrainConfig c = BaseConfig();
  c.dp = false;
  c.dataset_size = 10;
  c.batch_size = 10;  // q = 1: the whole local set
  c.learning_rate = 0.3;
  const ModelConfig mc = Mlp({6});
  auto trainer = DpSgdTrainer::Create(mc, c, 4, &comm);
  ASSERT_TRUE(trainer.ok());
  auto [x, y] = RandomData(7, 4, 8, 3.0);
  auto reference = Model::Create(mc, 4, c.seed);
  ASSERT_TRUE(reference.ok());
  const at::Tensor sum = PerExampleOracle(*reference, x, y, 1.0).sum;
  const at::Tensor before = Flatten((*trainer)->parameters());
  ASSERT_TRUE((*trainer)->Step(x, y).ok());
  const at::Tensor delta = (Flatten((*trainer)->parameters()) - before).to(at::kDouble);
  EXPECT_LT(RelativeError(delta, -c.learning_rate * sum / 7.0), 1e-5);
}

TEST(DpSgdTrainerTest, FailedAllReduceLeavesStateUnchanged) {
  RecordingCommunicator comm(0, 1);
  TrainConfig c = BaseConfig();
  c.noise_multiplier = 1.0;
  auto trainer = DpSgdTrainer::Create(Mlp({4}), c, 3, &comm);
  ASSERT_TRUE(trainer.ok());
  auto [x, y] = RandomData(1000, 3, 1);
  const at::Tensor before = Flatten((*trainer)->parameters());
  comm.set_fail(true);
  const absl::Status s = (*trainer)->Step(x, y);
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(s.message(), HasSubstr("all-reduce"));
  EXPECT_EQ((*trainer)->steps_done(), 0);
  EXPECT_TRUE(at::equal(before, Flatten((*trainer)->parameters())));
  comm.set_fail(false);
  EXPECT_TRUE((*trainer)->Step(x, y).ok());
}

// W ranks with different shards: one all-reduce per step each, and all end
// with bit-identical parameters.
TEST(DpSgdTrainerTest, RanksStayIdentical) {
  const int world = 3;
  InProcessGroup group(world);
  std::vector<std::unique_ptr<GroupCommunicator>> comms;
  std::vector<std::unique_ptr<DpSgdTrainer>> trainers;
  TrainConfig c = BaseConfig();
  c.dataset_size = 900;
  c.batch_size = 90;
  c.noise_multiplier = 1.0;
  c.optimizer = OptimizerType::kAdam;
  c.learning_rate = 0.01;
  for (int r = 0; r < world; ++r) {
    comms.push_back(std::make_unique<GroupCommunicator>(&group, r, world));
    auto t = DpSgdTrainer::Create(Mlp({16, 8}), c, 5, comms.back().get());
    ASSERT_TRUE(t.ok());
    trainers.push_back(std::move(*t));
  }
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(world);
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      // Rank 2 holds no data at all: its batches are always empty.
      auto [x, y] = RandomData(r == 2 ? 0 : 450, 5, static_cast<uint64_t>(100 + r));
      results[r] = trainers[r]->TrainEpoch(x, y);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(results[r].ok()) << results[r];
    EXPECT_EQ(trainers[r]->steps_done(), 10);
    EXPECT_EQ(comms[r]->calls(), 10);
    EXPECT_TRUE(at::equal(Flatten(trainers[r]->parameters()), Flatten(trainers[0]->parameters()))) << r;
  }
}

TEST(DpSgdTrainerTest, LearnsSeparableDataPrivately) {
  comm::LocalCommunicator comm;
  at::manual_seed(3);
  const int64_t n = 4000, d = 10;
  at::Tensor x = at::randn({n, d});
  at::Tensor w = at::randn({d});
  at::Tensor y = (at::matmul(x, w) > 0).to(at::kFloat);
  TrainConfig c;
  c.dataset_size = n;
  c.batch_size = 200;
  c.learning_rate = 0.5;
  c.momentum = 0.5;
  c.max_grad_norm = 1.0;
  c.noise_multiplier = 1.0;
  c.seed = 9;
  auto trainer = DpSgdTrainer::Create(Mlp({32}), c, d, &comm);
  ASSERT_TRUE(trainer.ok());
  const EvalMetrics start = (*trainer)->Evaluate(x, y);
  for (int e = 0; e < 5; ++e) ASSERT_TRUE((*trainer)->TrainEpoch(x, y).ok());
  const EvalMetrics end = (*trainer)->Evaluate(x, y);
  EXPECT_EQ(end.rows, n);
  EXPECT_GT(end.accuracy, 0.9);
  EXPECT_GT(end.auc, 0.95);
  EXPECT_LT(end.loss, start.loss);
}

TEST(DpSgdTrainerTest, SaveLoadResumesExactly) {
  dpfleet::testing::TempDir dir;
  const std::string path = dir.path() + "/state.pt";
  comm::LocalCommunicator comm;
  TrainConfig c = BaseConfig();
  c.noise_multiplier = 1.0;
  c.optimizer = OptimizerType::kAdam;
  c.learning_rate = 0.05;
  auto [x, y] = RandomData(1000, 6, 12);
  auto a = DpSgdTrainer::Create(Mlp({8, 8}), c, 6, &comm);
  ASSERT_TRUE(a.ok());
  testing::DpSgdTrainerTestPeer::UseSeededStreams(**a, 5);
  for (int s = 0; s < 3; ++s) ASSERT_TRUE((*a)->Step(x, y).ok());
  ASSERT_TRUE((*a)->Save(path).ok());
  TrainConfig c2 = c;
  c2.seed = 777;  // different init: Load must overwrite it
  auto b = DpSgdTrainer::Create(Mlp({8, 8}), c2, 6, &comm);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->Load(path).ok());
  EXPECT_EQ((*b)->steps_done(), 3);
  EXPECT_TRUE(at::equal(Flatten((*a)->parameters()), Flatten((*b)->parameters())));
  // A load draws fresh keys: the restored step counter restarts the
  // nonces, which must never meet their old keys again.
  auto fresh = DpSgdTrainer::Create(Mlp({8, 8}), c, 6, &comm);
  ASSERT_TRUE(fresh.ok());
  testing::DpSgdTrainerTestPeer::UseSeededStreams(**fresh, 5);
  ASSERT_TRUE((*fresh)->Load(path).ok());
  EXPECT_NE(testing::DpSgdTrainerTestPeer::NoiseKey(**fresh), testing::DpSgdTrainerTestPeer::NoiseKey(**a));
  EXPECT_NE(testing::DpSgdTrainerTestPeer::SampleKey(**fresh), testing::DpSgdTrainerTestPeer::SampleKey(**a));
  // Same streams + restored step and Adam moments: identical futures.
  auto c3 = DpSgdTrainer::Create(Mlp({8, 8}), c, 6, &comm);
  ASSERT_TRUE(c3.ok());
  ASSERT_TRUE((*c3)->Load(path).ok());
  testing::DpSgdTrainerTestPeer::UseSeededStreams(**c3, 5);
  for (int s = 0; s < 2; ++s) {
    ASSERT_TRUE((*a)->Step(x, y).ok());
    ASSERT_TRUE((*c3)->Step(x, y).ok());
    ASSERT_TRUE((*fresh)->Step(x, y).ok());
  }
  EXPECT_TRUE(at::equal(Flatten((*a)->parameters()), Flatten((*c3)->parameters())));
  EXPECT_FALSE(at::equal(Flatten((*a)->parameters()), Flatten((*fresh)->parameters())))
      << "the resumed trainer's noise is fresh";

  // Wrong architecture or optimizer: refused, state untouched.
  auto other = DpSgdTrainer::Create(Mlp({8, 4}), c, 6, &comm);
  ASSERT_TRUE(other.ok());
  const at::Tensor untouched = Flatten((*other)->parameters());
  EXPECT_EQ((*other)->Load(path).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(at::equal(untouched, Flatten((*other)->parameters())));
  TrainConfig sgd = c;
  sgd.optimizer = OptimizerType::kSgd;
  auto other2 = DpSgdTrainer::Create(Mlp({8, 8}), sgd, 6, &comm);
  ASSERT_TRUE(other2.ok());
  EXPECT_EQ((*other2)->Load(path).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE((*other2)->Load(dir.path() + "/missing.pt").ok());

  // The same state as bytes (what a resumed attempt receives); garbage is
  // an error, not a crash, and changes nothing.
  auto bytes = (*a)->SaveToBytes();
  ASSERT_TRUE(bytes.ok());
  auto d = DpSgdTrainer::Create(Mlp({8, 8}), c2, 6, &comm);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE((*d)->LoadFromBytes(*bytes).ok());
  EXPECT_EQ((*d)->steps_done(), (*a)->steps_done());
  EXPECT_TRUE(at::equal(Flatten((*a)->parameters()), Flatten((*d)->parameters())));
  const at::Tensor before = Flatten((*d)->parameters());
  EXPECT_FALSE((*d)->LoadFromBytes("not a checkpoint").ok());
  EXPECT_FALSE((*d)->LoadFromBytes(bytes->substr(0, bytes->size() / 2)).ok());
  EXPECT_TRUE(at::equal(before, Flatten((*d)->parameters())));
}

// ---------------------------------------------------------------- optimizers

TEST(OptimizerTest, SgdMomentumMatchesTorchRule) {
  auto opt = Optimizer::Create({OptimizerType::kSgd, 0.1, 0.9}, 2);
  ASSERT_TRUE(opt.ok());
  at::Tensor p = at::tensor({1.0f, -1.0f});
  opt->Step(p, at::tensor({1.0f, 2.0f}));  // buf = g
  opt->Step(p, at::tensor({1.0f, 2.0f}));  // buf = 0.9 g + g
  EXPECT_NEAR(p[0].item<double>(), 1.0 - 0.1 * 1.0 - 0.1 * 1.9, 1e-6);
  EXPECT_NEAR(p[1].item<double>(), -1.0 - 0.1 * 2.0 - 0.1 * 3.8, 1e-6);
}

TEST(OptimizerTest, AdamMatchesTorchRule) {
  OptimizerConfig oc;
  oc.type = OptimizerType::kAdam;
  oc.learning_rate = 0.01;
  auto opt = Optimizer::Create(oc, 1);
  ASSERT_TRUE(opt.ok());
  at::Tensor p = at::tensor({0.5f});
  double m = 0, v = 0, want = 0.5;
  const double grads[3] = {0.3, -0.1, 0.7};
  for (int t = 1; t <= 3; ++t) {
    opt->Step(p, at::tensor({static_cast<float>(grads[t - 1])}));
    m = 0.9 * m + 0.1 * grads[t - 1];
    v = 0.999 * v + 0.001 * grads[t - 1] * grads[t - 1];
    const double mhat = m / (1 - std::pow(0.9, t));
    const double vhat = v / (1 - std::pow(0.999, t));
    want -= 0.01 * mhat / (std::sqrt(vhat) + 1e-8);
  }
  EXPECT_NEAR(p[0].item<double>(), want, 1e-6);
  EXPECT_EQ(opt->steps(), 3);
}

}  // namespace
}  // namespace dpfleet::train
