// GlooCommunicator with real ProcessGroupGloo ranks (threads of this
// process, loopback TCP, an in-memory c10d store): collectives, the DP-SGD
// exactness properties across W ranks, and bounded failure.
#include "worker/comm/gloo_communicator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/torch.h>

#include <functional>
#include <thread>

#include "absl/time/clock.h"
#include "worker/train/dp_sgd.h"

namespace dpfleet::comm {
namespace {

// Runs fn(rank, communicator) on W threads that rendezvous through one store.
void RunRanks(int world, const std::function<void(int, GlooCommunicator&)>& fn,
              absl::Duration connect_timeout = absl::Seconds(30)) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      GlooOptions options;
      options.connect_timeout = connect_timeout;
      auto comm = GlooCommunicator::Create(store, r, world, options);
      ASSERT_TRUE(comm.ok()) << comm.status();
      fn(r, **comm);
    });
  }
  for (auto& t : threads) t.join();
}

TEST(GlooCommunicatorTest, AllReduceBroadcastBarrier) {
  RunRanks(3, [](int rank, GlooCommunicator& c) {
    EXPECT_EQ(c.rank(), rank);
    EXPECT_EQ(c.world_size(), 3);
    torch::Tensor t = torch::arange(5, torch::kFloat32) * (rank + 1);
    ASSERT_TRUE(c.AllReduceSum(t, absl::Seconds(10)).ok());
    EXPECT_TRUE(torch::equal(t, torch::arange(5, torch::kFloat32) * 6));
    torch::Tensor b = torch::full({4}, static_cast<float>(rank));
    ASSERT_TRUE(c.Broadcast(b, 2, absl::Seconds(10)).ok());
    EXPECT_TRUE(torch::equal(b, torch::full({4}, 2.0f)));
    EXPECT_TRUE(c.Barrier(absl::Seconds(10)).ok());
    torch::Tensor bad = torch::zeros({1});
    EXPECT_EQ(c.Broadcast(bad, 7, absl::Seconds(1)).code(), absl::StatusCode::kInvalidArgument);
  });
}

TEST(GlooCommunicatorTest, MissingPeerIsAnErrorNotAHang) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  GlooOptions options;
  options.connect_timeout = absl::Milliseconds(500);
  const absl::Time start = absl::Now();
  auto comm = GlooCommunicator::Create(store, 0, 2, options);  // rank 1 never comes
  EXPECT_FALSE(comm.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
}

TEST(GlooCommunicatorTest, PeerThatStopsCallingFailsTheCollectiveInBoundedTime) {
  RunRanks(2, [](int rank, GlooCommunicator& c) {
    torch::Tensor t = torch::ones({8});
    ASSERT_TRUE(c.AllReduceSum(t, absl::Seconds(10)).ok());
    if (rank == 1) return;  // rank 1 leaves; its communicator is destroyed
    const absl::Time start = absl::Now();
    absl::Status s = c.AllReduceSum(t, absl::Seconds(2));
    EXPECT_FALSE(s.ok());
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
    // A broken group refuses further work instead of hanging.
    EXPECT_FALSE(c.AllReduceSum(t, absl::Seconds(1)).ok());
  });
}

TEST(GlooCommunicatorTest, CancelAbandonsAWaitingCollective) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::atomic<bool> cancel{false};
  std::unique_ptr<GlooCommunicator> keep_rank1;
  std::thread other([&] {
    GlooOptions o;
    auto c = GlooCommunicator::Create(store, 1, 2, o);
    ASSERT_TRUE(c.ok());
    keep_rank1 = std::move(*c);  // joins, then never calls a collective
  });
  GlooOptions o;
  o.cancel = &cancel;
  auto c = GlooCommunicator::Create(store, 0, 2, o);
  other.join();
  ASSERT_TRUE(c.ok());
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    cancel = true;
  });
  torch::Tensor t = torch::ones({4});
  const absl::Time start = absl::Now();
  absl::Status s = (*c)->AllReduceSum(t, absl::Seconds(60));
  canceller.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "did not wait for the 60 s timeout";
}

// --- DP-SGD across W real ranks ---

train::TrainConfig Config(double sigma) {
  train::TrainConfig tc;
  tc.dataset_size = 4000;
  tc.batch_size = 200;
  tc.learning_rate = 1.0;
  tc.max_grad_norm = 0.5;
  tc.noise_multiplier = sigma;
  tc.seed = 11;
  return tc;
}

class GlooDpSgdTest : public ::testing::TestWithParam<int> {};

// Per-coordinate variance, on every rank, of one step's update with no data
// anywhere (pure noise) for an MLP 100-256-256-1 on W ranks.
std::vector<double> EmptyStepUpdateVariance(int world, const train::TrainConfig& tc) {
  train::ModelConfig mc;
  mc.hidden = {256, 256};
  std::vector<double> variance(world);
  RunRanks(world, [&](int rank, GlooCommunicator& c) {
    auto trainer = train::DpSgdTrainer::Create(mc, tc, 100, &c);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    auto flat = [&] {
      std::vector<torch::Tensor> v;
      for (auto& p : (*trainer)->parameters()) v.push_back(p.reshape({-1}));
      return torch::cat(v).to(torch::kDouble);
    };
    const torch::Tensor before = flat();
    ASSERT_TRUE((*trainer)->Step(torch::zeros({0, 100}), torch::zeros({0})).ok());
    variance[rank] = (flat() - before).var().item<double>();
  });
  return variance;
}

// With no data anywhere, one step's update is pure noise:
// delta = -lr * (sum of the W noise shares) / B. Its per-coordinate variance
// must be sigma^2 C^2 (lr/B)^2 whatever W is.
TEST_P(GlooDpSgdTest, TotalNoiseVarianceIsSigmaSquaredCSquared) {
  const int world = GetParam();
  const std::vector<double> variance = EmptyStepUpdateVariance(world, Config(2.0));
  const double expected = std::pow(2.0 * 0.5 * 1.0 / 200.0, 2);
  for (int r = 0; r < world; ++r) {
    // ~92k coordinates: the variance estimate's relative std error is ~0.5%.
    EXPECT_NEAR(variance[r] / expected, 1.0, 0.03) << "W=" << world << " rank " << r;
    EXPECT_DOUBLE_EQ(variance[r], variance[0]) << "every rank applied the same update";
  }
}

// privacy.noise_split: full runs every rank with the total multiplier
// sigma * sqrt(W) (the coordinator's AccountedNoiseMultiplier), so each
// rank's share N(0, (sigma sqrt(W))^2 C^2 / W) is the whole N(0, sigma^2 C^2)
// before it leaves the rank, and the all-reduced total is
// N(0, W sigma^2 C^2): the update's variance is W sigma^2 C^2 (lr/B)^2.
TEST_P(GlooDpSgdTest, FullNoiseSplitGivesEveryRankTheWholeSigma) {
  const int world = GetParam();
  const double sigma = 2.0, clip = 0.5, lr = 1.0, batch = 200.0;
  const std::vector<double> variance =
      EmptyStepUpdateVariance(world, Config(sigma * std::sqrt(static_cast<double>(world))));
  const double expected = world * sigma * sigma * clip * clip * std::pow(lr / batch, 2);
  for (int r = 0; r < world; ++r) EXPECT_NEAR(variance[r] / expected, 1.0, 0.03) << "W=" << world;
}

// Ranks sample their own records, add their own noise and still end with
// identical parameters after training.
TEST_P(GlooDpSgdTest, ParametersAreIdenticalAcrossRanksAfterTraining) {
  const int world = GetParam();
  train::ModelConfig mc;
  mc.hidden = {32, 16};
  train::TrainConfig tc = Config(1.0);
  tc.optimizer = train::OptimizerType::kAdam;
  tc.learning_rate = 0.01;
  std::vector<std::vector<torch::Tensor>> params(world);
  RunRanks(world, [&](int rank, GlooCommunicator& c) {
    torch::manual_seed(100 + rank);  // each rank holds different records
    const int64_t n = 4000 / world;
    torch::Tensor x = torch::randn({n, 20});
    torch::Tensor y = (x.select(1, 0) > 0).to(torch::kFloat32);
    auto trainer = train::DpSgdTrainer::Create(mc, tc, 20, &c);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    for (int s = 0; s < 30; ++s) ASSERT_TRUE((*trainer)->Step(x, y).ok());
    params[rank] = (*trainer)->parameters();
  });
  for (int r = 1; r < world; ++r) {
    ASSERT_EQ(params[r].size(), params[0].size());
    for (std::size_t i = 0; i < params[0].size(); ++i) {
      EXPECT_TRUE(torch::equal(params[r][i], params[0][i])) << "rank " << r << " tensor " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Worlds, GlooDpSgdTest, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace dpfleet::comm
