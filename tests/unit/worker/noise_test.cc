// Tests for the Gaussian noise sampler (rng.h FillNormal / AddNormal) and the
// keystream plumbing under it: the distribution (moments, tails, a
// Kolmogorov-Smirnov test against the normal CDF), independence of the two
// halves of each Box-Muller pair, bit-identical results of the SIMD and
// portable kernels and for every thread count, and that the sampler reads
// exactly the blocks it reserved.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "worker/train/rng.h"

namespace dpfleet::train {
namespace {

ChaChaKey NoiseKey() { return DeriveSeededKey(11, 0, 0, StreamPurpose::kNoise); }

at::Tensor Sample(int64_t n, double stddev, uint64_t nonce) {
  ChaCha20Stream stream(NoiseKey(), nonce);
  at::Tensor out = at::empty({n});
  NormalScratch scratch;
  FillNormal(stream, stddev, out, scratch);
  return out;
}

double NormalCdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

TEST(GaussianSamplerTest, MomentsTailsAndKolmogorovSmirnov) {
  const double sd = 2.5;
  const int64_t n = 1000001;  // odd: the last pair's sine is dropped
  const at::Tensor d = Sample(n, sd, 0).to(at::kDouble) / sd;  // standardised
  const double nn = static_cast<double>(n);
  // Mean and variance within 5 standard errors.
  EXPECT_NEAR(d.mean().item<double>(), 0.0, 5.0 / std::sqrt(nn));
  EXPECT_NEAR(d.var().item<double>(), 1.0, 5.0 * std::sqrt(2.0 / nn));
  // Skewness 0 (SE sqrt(6/n)) and kurtosis 3 (SE sqrt(24/n)).
  EXPECT_NEAR(d.pow(3).mean().item<double>(), 0.0, 5.0 * std::sqrt(6.0 / nn));
  EXPECT_NEAR(d.pow(4).mean().item<double>(), 3.0, 5.0 * std::sqrt(96.0 / nn));

  // Kolmogorov-Smirnov: D_n = sup |F_n(x) - Phi(x)|; the 0.1% critical value
  // is 1.95 / sqrt(n).
  std::vector<double> v(d.data_ptr<double>(), d.data_ptr<double>() + n);
  std::sort(v.begin(), v.end());
  double ks = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double f = NormalCdf(v[i]);
    ks = std::max({ks, f - static_cast<double>(i) / nn, static_cast<double>(i + 1) / nn - f});
  }
  EXPECT_LT(ks, 1.95 / std::sqrt(nn)) << "KS statistic";
}

TEST(GaussianSamplerTest, TailFractionsBeyondThreeFourAndFiveSigma) {
  // 2^22 samples: expected counts beyond 3/4/5 sigma (two-sided) are about
  // 11324, 266 and 2.4; each is checked within 5 binomial standard errors.
  const int64_t n = int64_t{1} << 22;
  const at::Tensor a = Sample(n, 0.5, 7).to(at::kDouble).abs_() / 0.5;
  const double nn = static_cast<double>(n);
  for (double k : {3.0, 4.0, 5.0}) {
    const double p = std::erfc(k / std::sqrt(2.0));
    const double got = (a > k).sum().item<double>();
    EXPECT_NEAR(got, p * nn, 5.0 * std::sqrt(p * (1 - p) * nn) + 1.0) << k << " sigma";
  }
  // Nothing beyond the largest radius the 53-bit uniform allows:
  // sqrt(2 * 53 ln 2) = 8.57 sigma.
  EXPECT_LT(a.max().item<double>(), 8.58);
}

TEST(GaussianSamplerTest, TheTwoHalvesOfEachPairAreUncorrelated) {
  // out[i] = r cos(theta), out[h + i] = r sin(theta): independent normals.
  const int64_t h = 500000;
  const at::Tensor d = Sample(2 * h, 1.0, 3).to(at::kDouble);
  const at::Tensor c = d.narrow(0, 0, h), s = d.narrow(0, h, h);
  const double corr = ((c * s).mean() / (c.std() * s.std())).item<double>();
  EXPECT_NEAR(corr, 0.0, 5.0 / std::sqrt(static_cast<double>(h)));
  // Squared radius c^2 + s^2 ~ Exp(mean 2): its mean and its variance (4).
  const at::Tensor r2 = c * c + s * s;
  EXPECT_NEAR(r2.mean().item<double>(), 2.0, 5.0 * 2.0 / std::sqrt(static_cast<double>(h)));
  EXPECT_NEAR(r2.var().item<double>(), 4.0, 0.1);
}

TEST(GaussianSamplerTest, SimdAndPortableKernelsAgreeBitForBit) {
  for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{7}, int64_t{17}, int64_t{2047}, int64_t{2048}, int64_t{2049},
                    2 * kNormalTilePairs * 9 + 5, int64_t{81409}}) {
    for (double sd : {1.0, 0.37}) {
      ChaCha20Stream a(NoiseKey(), 5), b(NoiseKey(), 5);
      at::Tensor fast = at::empty({n}), portable = at::empty({n});
      NormalScratch scratch;
      FillNormal(a, sd, fast, scratch);
      FillNormalPortable(b, sd, portable);
      ASSERT_TRUE(at::equal(fast, portable)) << "n=" << n << " sd=" << sd;
      ASSERT_TRUE(fast.isfinite().all().item<bool>());
    }
  }
}

TEST(GaussianSamplerTest, ResultDoesNotDependOnTheThreadCount) {
  const int before = at::get_num_threads();
  const int64_t n = 2 * kNormalTilePairs * 37 + 3;
  std::vector<at::Tensor> runs;
  for (int threads : {1, 2, 3, 4}) {
    at::set_num_threads(threads);
    runs.push_back(Sample(n, 1.3, 9));
  }
  at::set_num_threads(before);
  for (size_t i = 1; i < runs.size(); ++i) EXPECT_TRUE(at::equal(runs[0], runs[i])) << i;
  // Same (key, nonce) reproduces; another nonce does not.
  EXPECT_TRUE(at::equal(runs[0], Sample(n, 1.3, 9)));
  EXPECT_FALSE(at::equal(runs[0], Sample(n, 1.3, 10)));
}

TEST(GaussianSamplerTest, AddNormalAddsExactlyWhatFillNormalDraws) {
  for (int64_t n : {int64_t{5}, int64_t{81409}}) {
    const at::Tensor base = at::randn({n});
    at::Tensor sum = base.clone();
    ChaCha20Stream a(NoiseKey(), 4);
    AddNormal(a, 0.8, sum);
    const at::Tensor want = base + Sample(n, 0.8, 4).mul(1.0);  // stream (NoiseKey, 4) again
    EXPECT_TRUE(at::equal(sum, want)) << n;
  }
}

TEST(KeystreamTest, KeystreamAtIsTheBlockFunctionInStreamOrder) {
  const ChaChaKey key = {9, 8, 7, 6, 5, 4, 3, 2};
  const uint64_t nonce = 0xa1b2c3d4e5f60718ull;
  ChaCha20Stream stream(key, nonce);
  // A counter range that carries into the high counter word.
  const uint64_t first = 0xfffffffcull;
  std::vector<uint32_t> words(16 * 16);
  stream.KeystreamAt(first, 16, words.data());
  for (uint64_t b = 0; b < 16; ++b) {
    const uint64_t counter = first + b;
    uint32_t in[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};
    for (int i = 0; i < 8; ++i) in[4 + i] = key[i];
    in[12] = static_cast<uint32_t>(counter);
    in[13] = static_cast<uint32_t>(counter >> 32);
    in[14] = static_cast<uint32_t>(nonce);
    in[15] = static_cast<uint32_t>(nonce >> 32);
    uint32_t out[16];
    ChaCha20Block(in, out);
    for (int i = 0; i < 16; ++i) ASSERT_EQ(words[16 * b + i], out[i]) << b << " " << i;
  }
}

TEST(KeystreamTest, ReservedBlocksAreNeverHandedOutAgain) {
  const ChaChaKey key = {1, 1, 2, 3, 5, 8, 13, 21};
  ChaCha20Stream stream(key, 3);
  uint32_t w[5];
  stream.Fill(w, 5);  // buffers blocks 0..7
  const uint64_t first = stream.ReserveBlocks(16);
  EXPECT_EQ(first, 8u);  // after the buffered (now dropped) blocks
  // The next word comes from block 24, the first one after the reservation.
  ChaCha20Stream reference(key, 3);
  std::vector<uint32_t> all(16 * 25);
  reference.Fill(all.data(), all.size());
  EXPECT_EQ(stream.NextU32(), all[16 * 24]);
  // A fresh stream reserves from block 0.
  ChaCha20Stream fresh(key, 3);
  EXPECT_EQ(fresh.ReserveBlocks(8), 0u);
}

}  // namespace
}  // namespace dpfleet::train
