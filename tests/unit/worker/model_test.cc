// Tests for the model: layout of the flat parameter buffer, initialisation,
// the inference forward pass, input validation.
#include "worker/train/model.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

namespace dpfleet::train {
namespace {

ModelConfig Mlp(std::vector<int64_t> hidden, Activation act = Activation::kRelu) {
  ModelConfig c;
  c.hidden = std::move(hidden);
  c.activation = act;
  return c;
}

TEST(ModelTest, LogisticIsOneLinearLayerAndIgnoresHidden) {
  ModelConfig c;
  c.type = ModelType::kLogistic;
  c.hidden = {99};
  auto m = Model::Create(c, 7, 1);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->num_layers(), 1);
  EXPECT_EQ(m->widths(), (std::vector<int64_t>{7, 1}));
  EXPECT_EQ(m->num_parameters(), 8);
  EXPECT_TRUE(m->config().hidden.empty());
}

TEST(ModelTest, MlpLayoutAndViewsShareTheFlatBuffer) {
  auto m = Model::Create(Mlp({64, 32}), 120, 1);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->widths(), (std::vector<int64_t>{120, 64, 32, 1}));
  EXPECT_EQ(m->num_parameters(), 120 * 64 + 64 + 64 * 32 + 32 + 32 + 1);
  EXPECT_EQ(m->weight(0).sizes(), (std::vector<int64_t>{64, 120}));
  EXPECT_EQ(m->bias(1).sizes(), (std::vector<int64_t>{32}));
  EXPECT_EQ(m->weight(2).sizes(), (std::vector<int64_t>{1, 32}));
  // Views alias the flat buffer in layout order.
  EXPECT_EQ(m->weight(0).data_ptr<float>(), m->flat().data_ptr<float>());
  EXPECT_EQ(m->bias(0).data_ptr<float>(), m->flat().data_ptr<float>() + 120 * 64);
  m->mutable_flat().zero_();
  EXPECT_EQ(m->weight(1).abs().sum().item<double>(), 0.0);
  // Parameters() are copies.
  auto params = m->Parameters();
  ASSERT_EQ(params.size(), 6u);
  params[0].fill_(1);
  EXPECT_EQ(m->weight(0).abs().sum().item<double>(), 0.0);
}

TEST(ModelTest, InitIsTorchLinearStyleAndSeedDeterministic) {
  auto a = Model::Create(Mlp({50}), 100, 5);
  auto b = Model::Create(Mlp({50}), 100, 5);
  auto c = Model::Create(Mlp({50}), 100, 6);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(at::equal(a->flat(), b->flat()));
  EXPECT_FALSE(at::equal(a->flat(), c->flat()));
  const double bound0 = 1.0 / std::sqrt(100.0), bound1 = 1.0 / std::sqrt(50.0);
  EXPECT_LE(a->weight(0).abs().max().item<double>(), bound0);
  EXPECT_LE(a->bias(0).abs().max().item<double>(), bound0);
  EXPECT_LE(a->weight(1).abs().max().item<double>(), bound1);
  // Uniform(-b, b) has variance b^2 / 3.
  EXPECT_NEAR(a->weight(0).var().item<double>(), bound0 * bound0 / 3, 0.05 * bound0 * bound0 / 3);
  EXPECT_NEAR(a->weight(0).mean().item<double>(), 0.0, 0.01);
}

TEST(ModelTest, LogitsMatchTorchReference) {
  for (Activation act : {Activation::kRelu, Activation::kTanh}) {
    auto m = Model::Create(Mlp({16, 8}, act), 5, 3);
    ASSERT_TRUE(m.ok());
    at::manual_seed(1);
    at::Tensor x = at::randn({40000, 5});  // spans several chunks
    at::Tensor h = x;
    for (int l = 0; l < 3; ++l) {
      h = at::linear(h, m->weight(l), m->bias(l));
      if (l < 2) h = act == Activation::kRelu ? at::relu(h) : at::tanh(h);
    }
    at::Tensor got = m->Logits(x);
    EXPECT_EQ(got.sizes(), (std::vector<int64_t>{40000}));
    EXPECT_TRUE(at::allclose(got, h.view({-1}), 1e-5, 1e-6)) << ActivationName(act);
  }
  auto empty = Model::Create(Mlp({4}), 3, 1);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->Logits(at::empty({0, 3})).numel(), 0);
}

TEST(ModelTest, RejectsBadConfigsAndBatches) {
  EXPECT_FALSE(Model::Create(Mlp({8}), 0, 1).ok());
  EXPECT_FALSE(Model::Create(Mlp({8, -1}), 4, 1).ok());
  auto m = Model::Create(Mlp({8}), 4, 1);
  ASSERT_TRUE(m.ok());
  at::Tensor y = at::zeros({3});
  EXPECT_TRUE(m->CheckBatch(at::zeros({3, 4}), &y).ok());
  EXPECT_TRUE(m->CheckBatch(at::zeros({3, 4}), nullptr).ok());
  EXPECT_FALSE(m->CheckBatch(at::zeros({3, 5}), &y).ok());
  EXPECT_FALSE(m->CheckBatch(at::zeros({4}), nullptr).ok());
  EXPECT_FALSE(m->CheckBatch(at::zeros({3, 4}, at::kDouble), &y).ok());
  at::Tensor y_short = at::zeros({2});
  EXPECT_FALSE(m->CheckBatch(at::zeros({3, 4}), &y_short).ok());
  at::Tensor y_long = at::zeros({3}, at::kLong);
  EXPECT_FALSE(m->CheckBatch(at::zeros({3, 4}), &y_long).ok());
  EXPECT_FALSE(m->CheckBatch(at::Tensor(), nullptr).ok());
}

}  // namespace
}  // namespace dpfleet::train
