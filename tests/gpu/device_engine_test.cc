// GPU path: the DP-SGD engine computing on a CUDA device. Labelled `gpu`;
// every test skips (saying why) where no CUDA device can be used.
//
// What must hold on the GPU is what holds on the CPU: the clipped sums equal
// the per-example autograd oracle, a GPU rank takes the same Poisson batches
// and adds bit-for-bit the same noise as a CPU rank (so the two trainers end
// within float rounding of each other), NCCL reads the gradient only after
// the kernels that wrote it, and checkpoints move between devices.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <unistd.h>

#include "tests/testing/dp_sgd_test_peer.h"
#include "worker/comm/communicator.h"
#include "worker/train/device.h"
#include "worker/train/dp_sgd.h"
#include "worker/train/oracle.h"
#ifdef DPFLEET_WITH_NCCL
#include "worker/comm/cuda/nccl_communicator.h"
#endif

namespace dpfleet::train {
namespace {

// ATen decides once whether CUDA exists: load libtorch_cuda before any test.
class CudaRuntime : public ::testing::Environment {
 public:
  void SetUp() override { (void)LoadCudaRuntime(); }
};
const ::testing::Environment* const kCudaRuntime = ::testing::AddGlobalTestEnvironment(new CudaRuntime);

#define REQUIRE_CUDA_DEVICE()                                                         \
  absl::StatusOr<c10::Device> cuda_device = ResolveDevice("cuda:0");                  \
  if (!cuda_device.ok()) GTEST_SKIP() << "no usable CUDA device: " << cuda_device.status()

double RelativeError(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor g = got.cpu().to(at::kDouble), w = want.cpu().to(at::kDouble);
  return (g - w).norm().item<double>() / std::max(w.norm().item<double>(), 1e-12);
}

ModelConfig Mlp(std::vector<int64_t> hidden) {
  ModelConfig c;
  c.type = ModelType::kMlp;
  c.hidden = std::move(hidden);
  return c;
}

std::pair<at::Tensor, at::Tensor> RandomData(int64_t n, int64_t d, uint64_t seed, double scale = 1.0) {
  at::manual_seed(seed);
  at::Tensor x = at::randn({n, d}) * scale;
  at::Tensor y = (x.select(1, 0) + 0.5 * at::randn({n}) > 0).to(at::kFloat);
  return {x, y};
}

TrainConfig Config(c10::Device device) {
  TrainConfig c;
  c.dataset_size = 4000;
  c.batch_size = 256;
  c.learning_rate = 0.5;
  c.max_grad_norm = 0.7;
  c.noise_multiplier = 1.1;
  c.seed = 17;
  c.device = device;
  return c;
}

TEST(GpuEngineTest, ClippedSumOnTheGpuMatchesPerExampleAutograd) {
  REQUIRE_CUDA_DEVICE();
  auto cpu_model = Model::Create(Mlp({64, 32}), 20, 5);
  auto gpu_model = Model::Create(Mlp({64, 32}), 20, 5, *cuda_device);
  ASSERT_TRUE(cpu_model.ok() && gpu_model.ok());
  EXPECT_TRUE(gpu_model->flat().is_cuda());
  EXPECT_TRUE(at::equal(gpu_model->flat().cpu(), cpu_model->flat())) << "initialisation is device-independent";
  auto [x, y] = RandomData(300, 20, 3, /*scale=*/2.0);
  GradientEngine engine(&*gpu_model);
  at::Tensor out = at::empty({gpu_model->num_parameters()}, gpu_model->flat().options());
  for (double clip : {0.01, 0.5, 100.0}) {
    SCOPED_TRACE(clip);
    OracleGradients want = PerExampleOracle(*cpu_model, x, y, clip);
    at::Tensor norms;
    engine.ClippedSum(x.to(*cuda_device), y.to(*cuda_device), clip, out, &norms);
    EXPECT_TRUE(out.is_cuda());
    EXPECT_LT(RelativeError(out, want.clipped_sum), 1e-5);
    EXPECT_LT(RelativeError(norms, want.norms), 1e-5);
  }
}

TEST(GpuEngineTest, GpuRankTrainsLikeACpuRank) {
  REQUIRE_CUDA_DEVICE();
  comm::LocalCommunicator cpu_comm, gpu_comm;
  auto cpu = DpSgdTrainer::Create(Mlp({32}), Config(c10::Device(c10::kCPU)), 12, &cpu_comm);
  auto gpu = DpSgdTrainer::Create(Mlp({32}), Config(*cuda_device), 12, &gpu_comm);
  ASSERT_TRUE(cpu.ok() && gpu.ok());
  // The product keys every trainer from getrandom; the same test keys on
  // both make the two runs comparable.
  dpfleet::testing::DpSgdTrainerTestPeer::UseSeededStreams(**cpu, 17);
  dpfleet::testing::DpSgdTrainerTestPeer::UseSeededStreams(**gpu, 17);
  auto [x, y] = RandomData(4000, 12, 8);
  const at::Tensor xg = x.to(*cuda_device), yg = y.to(*cuda_device);
  for (int s = 0; s < 30; ++s) {
    ASSERT_TRUE((*cpu)->Step(x, y).ok());
    ASSERT_TRUE((*gpu)->Step(xg, yg).ok());
  }
  // Same batches, same noise: only float rounding of the matmuls differs.
  const auto a = (*cpu)->parameters(), b = (*gpu)->parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_FALSE(b[i].is_cuda()) << "parameters() returns host copies";
    EXPECT_LT(RelativeError(b[i], a[i]), 1e-4) << "tensor " << i;
  }
  const EvalMetrics mc = (*cpu)->Evaluate(x, y), mg = (*gpu)->Evaluate(xg, yg);
  EXPECT_EQ(mg.rows, 4000);
  EXPECT_NEAR(mg.accuracy, mc.accuracy, 2e-3);
}

TEST(GpuEngineTest, HostBatchesAreRefusedByAGpuTrainer) {
  REQUIRE_CUDA_DEVICE();
  comm::LocalCommunicator comm;
  auto t = DpSgdTrainer::Create(Mlp({4}), Config(*cuda_device), 3, &comm);
  ASSERT_TRUE(t.ok());
  absl::Status s = (*t)->Step(at::zeros({5, 3}), at::zeros({5}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("cuda:0"));
  EXPECT_EQ((*t)->steps_done(), 0);
}

TEST(GpuEngineTest, CheckpointsMoveBetweenDevices) {
  REQUIRE_CUDA_DEVICE();
  comm::LocalCommunicator c1, c2;
  auto gpu = DpSgdTrainer::Create(Mlp({8}), Config(*cuda_device), 6, &c1);
  ASSERT_TRUE(gpu.ok());
  auto [x, y] = RandomData(4000, 6, 2);
  ASSERT_TRUE((*gpu)->Step(x.to(*cuda_device), y.to(*cuda_device)).ok());
  const std::string path =
      (std::filesystem::temp_directory_path() / ("dpfleet-gpu-ckpt-" + std::to_string(getpid()) + ".pt")).string();
  ASSERT_TRUE((*gpu)->Save(path).ok());
  auto cpu = DpSgdTrainer::Create(Mlp({8}), Config(c10::Device(c10::kCPU)), 6, &c2);
  ASSERT_TRUE(cpu.ok());
  ASSERT_TRUE((*cpu)->Load(path).ok());
  std::filesystem::remove(path);
  EXPECT_EQ((*cpu)->steps_done(), 1);
  const auto a = (*gpu)->parameters(), b = (*cpu)->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i]));
}

#ifdef DPFLEET_WITH_NCCL
// One rank through NCCL on device-resident buffers is the identity
// all-reduce: the result must equal the local trainer's bit for bit — which
// also fails if NCCL ever read the gradient before the kernels that wrote it.
TEST(GpuEngineTest, NcclOnDeviceBuffersEqualsTheLocalTrainer) {
  REQUIRE_CUDA_DEVICE();
  auto store = c10::make_intrusive<c10d::HashStore>();
  auto nccl = comm::NcclCommunicator::Create(store, 0, 1, comm::NcclOptions{});
  ASSERT_TRUE(nccl.ok()) << nccl.status();
  comm::LocalCommunicator local;
  auto a = DpSgdTrainer::Create(Mlp({256, 256}), Config(*cuda_device), 64, nccl->get());
  auto b = DpSgdTrainer::Create(Mlp({256, 256}), Config(*cuda_device), 64, &local);
  ASSERT_TRUE(a.ok() && b.ok());
  dpfleet::testing::DpSgdTrainerTestPeer::UseSeededStreams(**a, 17);
  dpfleet::testing::DpSgdTrainerTestPeer::UseSeededStreams(**b, 17);
  auto [x, y] = RandomData(4000, 64, 4);
  const at::Tensor xg = x.to(*cuda_device), yg = y.to(*cuda_device);
  ASSERT_TRUE((*a)->TrainEpoch(xg, yg).ok());
  ASSERT_TRUE((*b)->TrainEpoch(xg, yg).ok());
  const auto pa = (*a)->parameters(), pb = (*b)->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(at::equal(pa[i], pb[i])) << "tensor " << i;
}
#endif

}  // namespace
}  // namespace dpfleet::train
