// Randomness for DP-SGD: the per-step Poisson sampler and the Gaussian noise.
//
// Every stream is ChaCha20 (RFC 7539 block function, original 64-bit nonce /
// 64-bit block counter layout). A stream is named by a 256-bit key and a
// 64-bit nonce:
//   * seeded mode: key = (job seed, attempt, rank, purpose, fixed tag) written
//     straight into the key words. The map is injective, so no two
//     (seed, attempt, rank, purpose) tuples ever share a key; ChaCha20 being a
//     PRF, streams under different keys are computationally independent. This
//     is strictly better than hashing a 64-bit seed into a 32-bit mt19937
//     seed, where ranks x steps streams would collide by the birthday bound.
//   * secure mode: key = 256 bits from getrandom(2), one key per purpose;
//     nobody (including whoever knows the job seed) can reproduce the noise.
//   The nonce is the step number, so a step's stream depends only on
//   (key, step): the sampler position after a resume is just the step counter.
//
// This unit must never reuse a (key, nonce) pair for two different purposes
// and never hand out noise from a generator that another rank can reproduce in
// secure mode.
#ifndef DPFLEET_WORKER_TRAIN_RNG_H_
#define DPFLEET_WORKER_TRAIN_RNG_H_

#include <torch/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace dpfleet::train {

// What a stream is used for; part of the key so that sampling and noise never
// share a stream.
enum class StreamPurpose : uint32_t { kSample = 1, kNoise = 2 };

using ChaChaKey = std::array<uint32_t, 8>;

// The ChaCha20 block function: 20 rounds over `in`, plus the feed-forward.
// Exposed for the RFC 7539 test vector.
void ChaCha20Block(const uint32_t in[16], uint32_t out[16]);

// A ChaCha20 keystream as a source of uniform words.
class ChaCha20Stream {
 public:
  ChaCha20Stream(const ChaChaKey& key, uint64_t nonce);

  // Fills `out` with the next `n` keystream words.
  void Fill(uint32_t* out, size_t n);
  uint32_t NextU32();
  uint64_t NextU64();
  // Uniform in (0, 1]: never 0, so log() is always finite. 53 random bits.
  double NextOpenUnit();

 private:
  void Refill();

  uint32_t state_[16];
  // Buffered keystream: 8 blocks are computed at once so the compiler can keep
  // the rounds in SIMD registers.
  static constexpr int kLanes = 8;
  alignas(64) uint32_t buffer_[16 * kLanes];
  size_t pos_ = 16 * kLanes;
};

// Key for seeded mode from the job identity.
ChaChaKey DeriveSeededKey(uint64_t seed, int32_t attempt, int32_t rank, StreamPurpose purpose);
// Key for secure mode: 256 bits from the kernel CSPRNG.
absl::StatusOr<ChaChaKey> SecureRandomKey();

// Reusable buffers for FillNormal, so steady-state steps do not allocate.
struct NormalScratch {
  std::vector<uint32_t> words;
  torch::Tensor radius;    // float64 [pairs]
  torch::Tensor radius32;  // float32 [pairs]
  torch::Tensor angle;     // float32 [pairs]
  torch::Tensor cosine;    // float32 [pairs]
};

// Fills the contiguous float32 CPU tensor `out` with i.i.d. N(0, stddev^2)
// by Box-Muller. The radius sqrt(-2 ln U1) is computed in double from a
// 53-bit U1 in (0, 1], so the tails are not cut at ~5.8 sigma the way a
// 24-bit float uniform would cut them (the largest possible radius is
// ~8.6 sigma, beyond which float32 noise is meaningless anyway); the angle
// (32 random bits) and the trigonometry are float32, which is all a float32
// result can hold. Three keystream words per pair of normals.
void FillNormal(ChaCha20Stream& stream, double stddev, torch::Tensor& out, NormalScratch& scratch);

// Poisson (independent Bernoulli(q)) sample of the row indices 0..n-1, sorted.
// Drawn by geometric gap skipping: the gaps between kept rows of independent
// Bernoulli(q) trials are i.i.d. Geometric(q), so skipping by
// floor(log(U) / log(1 - q)) yields exactly the same distribution as a
// per-row mask while touching only ~q*n random numbers.
torch::Tensor PoissonSample(ChaCha20Stream& stream, int64_t n, double q);

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_RNG_H_
