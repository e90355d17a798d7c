// Randomness for DP-SGD: the per-step Poisson sampler and the Gaussian noise.
//
// Every stream is ChaCha20 (RFC 7539 block function, original 64-bit nonce /
// 64-bit block counter layout), computed by OpenSSL's libcrypto
// (EVP_chacha20; the choice is measured in docs/BENCHMARKS.md). A stream is
// named by a 256-bit key and a 64-bit nonce:
//   * secure keys (SecureRandomKey): 256 bits from getrandom(2). Every
//     sampling and noise stream of a trainer is keyed this way, a fresh key
//     per rank, purpose and trainer (so per attempt, and again after a
//     checkpoint is loaded): nobody — not the submitter, who knows the spec,
//     nor anyone who reads the job back from the API — can reproduce the noise
//     and subtract it from a released model.
//   * seeded keys (DeriveSeededKey): (seed, attempt, rank, purpose, fixed tag)
//     written straight into the key words, an injective map. They are for
//     PUBLIC randomness only: the model's initialisation (a function of
//     training.seed, so all ranks start identical) and reproducible streams
//     in tests. The trainer never keys sampling or noise with them.
//   The nonce is the step number, so a step's stream depends only on
//   (key, step): the sampler position after a resume is just the step counter.
//
// This unit must never reuse a (key, nonce) pair for two different purposes
// and never derive a sampling or noise key from anything a submitter knows.
#ifndef DPFLEET_WORKER_TRAIN_RNG_H_
#define DPFLEET_WORKER_TRAIN_RNG_H_

#include <torch/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

// OpenSSL's cipher context (EVP_CIPHER_CTX), opaque here.
struct evp_cipher_ctx_st;

namespace dpfleet::train {

// What a stream is used for; part of the key so that sampling and noise never
// share a stream.
enum class StreamPurpose : uint32_t { kSample = 1, kNoise = 2 };

using ChaChaKey = std::array<uint32_t, 8>;

// The ChaCha20 block function: 20 rounds over `in`, plus the feed-forward.
// Exposed for the RFC 7539 test vector. in[0..3] must be the "expand 32-byte
// k" constants (the only ones libcrypto takes); anything else aborts.
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

  // Hands `count` consecutive keystream blocks to the caller and returns the
  // counter of the first; no later Fill/Next call returns any of them.
  // Buffered words not yet read are discarded (never handed out), so the
  // reserved range starts at a block boundary. With KeystreamAt this lets
  // several threads generate disjoint parts of one stream, each part fixed by
  // its counter range alone.
  uint64_t ReserveBlocks(uint64_t count);
  // The 16 * count words of blocks counter .. counter + count - 1, in stream
  // order: out[16 b + i] = word i of block counter + b, the same words Fill
  // would return there. Does not move the stream; safe to call concurrently
  // (each thread uses its own cipher context).
  void KeystreamAt(uint64_t counter, uint64_t count, uint32_t* out) const;

 private:
  void Refill();

  struct CipherDeleter {
    void operator()(::evp_cipher_ctx_st* ctx) const;
  };
  // Buffered keystream: 8 blocks per refill (the Poisson sampler's draws).
  static constexpr size_t kBufferBlocks = 8;
  static constexpr size_t kBufferWords = 16 * kBufferBlocks;

  uint8_t key_[32];
  uint64_t nonce_;
  uint64_t next_block_ = 0;  // counter of the first block not yet buffered
  // Created at the first refill; positioned at next_block_ unless a
  // reservation moved the counter since.
  std::unique_ptr<::evp_cipher_ctx_st, CipherDeleter> cipher_;
  bool cipher_positioned_ = false;
  alignas(64) uint32_t buffer_[kBufferWords];
  size_t pos_ = kBufferWords;
};

// A reproducible key for public randomness (model initialisation) and tests;
// never for a trainer's sampling or noise (see the top of this file).
ChaChaKey DeriveSeededKey(uint64_t seed, int32_t attempt, int32_t rank, StreamPurpose purpose);
// 256 bits from the kernel CSPRNG (common/secure_random.h).
absl::StatusOr<ChaChaKey> SecureRandomKey();

// Kept for source compatibility: FillNormal no longer needs scratch space
// (each thread works on a small stack tile).
struct NormalScratch {};

// Fills the contiguous float32 CPU tensor `out` with i.i.d. N(0, stddev^2)
// by Box-Muller, from keystream blocks reserved on `stream`
// (ReserveBlocks).
//
// Pair i (i < h = ceil(n/2)) gives out[i] = r cos(theta) and
// out[h + i] = r sin(theta) from three keystream words: 53 bits for
// U1 = (k + 1) / 2^53 in (0, 1] and 32 bits for theta = 2 pi w / 2^32.
//  * r = stddev * sqrt(-2 ln U1): U1 = m 2^e is split exactly in double
//    (m in (sqrt(1/2), sqrt(2)], f = m - 1 exact), so the tails are not cut
//    at ~5.8 sigma the way a 24-bit float uniform would cut them (the
//    largest possible r is ~8.57 sigma, from U1 = 2^-53); the rest is float32:
//    ln U1 = e ln 2 + 2 atanh(f/(2+f)) (series to s^9, truncation < 3e-9
//    relative), sqrt, and the scale stddev rounded up to float (never less
//    noise than asked for).
//  * cos/sin are float32: the top two bits of w pick the quadrant, the rest
//    is an angle in [-pi/4, pi/4) where degree-9/10 Taylor polynomials are
//    exact to float precision. No library trigonometry, no range reduction
//    error, exact 2 pi periodicity.
// Only correctly rounded IEEE operations (+, -, *, /, sqrt, conversions) are
// used, without FMA contraction, so the AVX2 kernel and the portable kernel
// give bit-identical results on every x86-64 machine.
//
// Pairs are processed in tiles of kNormalTilePairs; tile t always reads the
// same 192 keystream blocks (reserved block + 192 t), so the tiles run in
// parallel (parallel.h) and the result depends only on the stream's
// (key, nonce, position) — never on the number of threads.
constexpr int64_t kNormalTilePairs = 1024;
void FillNormal(ChaCha20Stream& stream, double stddev, torch::Tensor& out, NormalScratch& scratch);
// out += the samples FillNormal would have written (same stream use):
// adds the noise without a separate buffer and a second pass.
void AddNormal(ChaCha20Stream& stream, double stddev, torch::Tensor& out);
// Testing hook: FillNormal with the portable (non-SIMD) kernel; the result
// must equal FillNormal's bit for bit.
void FillNormalPortable(ChaCha20Stream& stream, double stddev, torch::Tensor& out);

// Poisson (independent Bernoulli(q)) sample of the row indices 0..n-1, sorted.
// Drawn by geometric gap skipping: the gaps between kept rows of independent
// Bernoulli(q) trials are i.i.d. Geometric(q), so skipping by
// floor(log(U) / log(1 - q)) yields exactly the same distribution as a
// per-row mask while touching only ~q*n random numbers.
torch::Tensor PoissonSample(ChaCha20Stream& stream, int64_t n, double q);

}  // namespace dpfleet::train

#endif  // DPFLEET_WORKER_TRAIN_RNG_H_
