// GPU path: NCCL communicator. Labelled `gpu`; every test skips (saying why)
// where the build has no CUDA toolkit or the machine has no GPU.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/torch.h>

#include <thread>

#include "worker/train/dp_sgd.h"
#ifdef DPFLEET_WITH_NCCL
#include "worker/comm/cuda/nccl_communicator.h"
#endif

namespace dpfleet::comm {
namespace {

#ifdef DPFLEET_WITH_NCCL
#define REQUIRE_GPU()                                                         \
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device on this machine"

TEST(NcclCommunicatorTest, SingleRankAllReduceAndBroadcast) {
  REQUIRE_GPU();
  auto store = c10::make_intrusive<c10d::HashStore>();
  auto comm = NcclCommunicator::Create(store, 0, 1, NcclOptions{});
  ASSERT_TRUE(comm.ok()) << comm.status();
  torch::Tensor t = torch::arange(1000, torch::kFloat32);
  ASSERT_TRUE((*comm)->AllReduceSum(t, absl::Seconds(30)).ok());
  EXPECT_TRUE(torch::equal(t, torch::arange(1000, torch::kFloat32)));
  ASSERT_TRUE((*comm)->Broadcast(t, 0, absl::Seconds(30)).ok());
  ASSERT_TRUE((*comm)->Barrier(absl::Seconds(30)).ok());
  torch::Tensor bad = torch::zeros({3}, torch::kFloat64);
  EXPECT_EQ((*comm)->AllReduceSum(bad, absl::Seconds(1)).code(), absl::StatusCode::kInvalidArgument);
}

TEST(NcclCommunicatorTest, TwoRanksOnOneGpuAreRefused) {
  REQUIRE_GPU();
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<absl::Status> result(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      NcclOptions o;
      o.device = 0;
      o.init_timeout = absl::Seconds(20);
      result[r] = NcclCommunicator::Create(store, r, 2, o).status();
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(result[r].code(), absl::StatusCode::kFailedPrecondition) << result[r];
    EXPECT_THAT(std::string(result[r].message()), ::testing::HasSubstr("own GPU"));
  }
}

TEST(NcclCommunicatorTest, UnknownDeviceIsRefused) {
  REQUIRE_GPU();
  auto store = c10::make_intrusive<c10d::HashStore>();
  NcclOptions o;
  o.device = 1000;
  EXPECT_EQ(NcclCommunicator::Create(store, 0, 1, o).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(NcclCommunicatorTest, DpSgdStepsThroughNccl) {
  REQUIRE_GPU();
  auto store = c10::make_intrusive<c10d::HashStore>();
  auto comm = NcclCommunicator::Create(store, 0, 1, NcclOptions{});
  ASSERT_TRUE(comm.ok()) << comm.status();
  train::TrainConfig tc;
  tc.dataset_size = 1000;
  tc.batch_size = 100;
  auto trainer = train::DpSgdTrainer::Create(train::ModelConfig{}, tc, 16, comm->get());
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  torch::Tensor x = torch::randn({1000, 16});
  torch::Tensor y = (x.select(1, 0) > 0).to(torch::kFloat32);
  ASSERT_TRUE((*trainer)->TrainEpoch(x, y).ok());
  EXPECT_EQ((*trainer)->steps_done(), 10);
}
#else
TEST(NcclCommunicatorTest, BuiltWithoutCuda) {
  GTEST_SKIP() << "this build has no CUDA toolkit (DPFLEET_WITH_CUDA=OFF): the NCCL path is not compiled";
}
#endif

}  // namespace
}  // namespace dpfleet::comm
