#include "worker/train/rng.h"

#include <ATen/ATen.h>
#include <c10/util/ParallelGuard.h>
#include <sys/random.h>

#include <cerrno>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace dpfleet::train {
namespace {

// "expand 32-byte k"
constexpr uint32_t kSigma[4] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u};
// Fixed tag in the seeded key ("dpfleet1"), so that these keys never coincide
// with a key some other component derives from the same seed.
constexpr uint32_t kTag0 = 0x65667064u;
constexpr uint32_t kTag1 = 0x3174656cu;

inline uint32_t Rotl(uint32_t v, int c) { return (v << c) | (v >> (32 - c)); }

inline void QuarterRound(uint32_t& a, uint32_t& b, uint32_t& c, uint32_t& d) {
  a += b; d ^= a; d = Rotl(d, 16);
  c += d; b ^= c; b = Rotl(b, 12);
  a += b; d ^= a; d = Rotl(d, 8);
  c += d; b ^= c; b = Rotl(b, 7);
}

// Eight blocks side by side; GCC/Clang vector extensions map this onto SSE2
// or AVX2 registers, which is ~4-8x faster than one block at a time.
typedef uint32_t V8 __attribute__((vector_size(32)));

// A macro rather than a function: passing 32-byte vectors by value would
// depend on whether AVX is enabled (-Wpsabi).
#define DPFLEET_ROTL_V(v, c) (((v) << (c)) | ((v) >> (32 - (c))))


constexpr double kTwoPow53Inv = 1.0 / 9007199254740992.0;  // 2^-53

// (0, 1] from 64 random bits: top 53 bits plus one, scaled.
inline double OpenUnitFromBits(uint64_t bits) {
  return (static_cast<double>(bits >> 11) + 1.0) * kTwoPow53Inv;
}

}  // namespace

void ChaCha20Block(const uint32_t in[16], uint32_t out[16]) {
  uint32_t x[16];
  std::memcpy(x, in, sizeof(x));
  for (int i = 0; i < 10; ++i) {
    QuarterRound(x[0], x[4], x[8], x[12]);
    QuarterRound(x[1], x[5], x[9], x[13]);
    QuarterRound(x[2], x[6], x[10], x[14]);
    QuarterRound(x[3], x[7], x[11], x[15]);
    QuarterRound(x[0], x[5], x[10], x[15]);
    QuarterRound(x[1], x[6], x[11], x[12]);
    QuarterRound(x[2], x[7], x[8], x[13]);
    QuarterRound(x[3], x[4], x[9], x[14]);
  }
  for (int i = 0; i < 16; ++i) out[i] = x[i] + in[i];
}

ChaCha20Stream::ChaCha20Stream(const ChaChaKey& key, uint64_t nonce) {
  for (int i = 0; i < 4; ++i) state_[i] = kSigma[i];
  for (int i = 0; i < 8; ++i) state_[4 + i] = key[i];
  state_[12] = 0;  // block counter, low word
  state_[13] = 0;  // block counter, high word
  state_[14] = static_cast<uint32_t>(nonce);
  state_[15] = static_cast<uint32_t>(nonce >> 32);
}

namespace {

// Eight consecutive blocks (counters counter .. counter+7) of the keystream
// for `state`, in block order. Compiled for AVX-512, AVX2 and baseline x86-64
// and picked at load time (GCC function multi-versioning), since the
// deployment machines differ and baseline SSE2 is ~2-3x slower.
__attribute__((target_clones("avx512f", "avx2", "default")))
void ChaCha8Blocks(const uint32_t state[16], uint64_t counter, uint32_t* out) {
  V8 x[16];
  V8 init[16];
  for (int i = 0; i < 16; ++i) {
    for (int l = 0; l < 8; ++l) init[i][l] = state[i];
  }
  for (int l = 0; l < 8; ++l) {
    const uint64_t c = counter + static_cast<uint64_t>(l);
    init[12][l] = static_cast<uint32_t>(c);
    init[13][l] = static_cast<uint32_t>(c >> 32);
  }
  for (int i = 0; i < 16; ++i) x[i] = init[i];
#define DPFLEET_QR_V(a, b, c, d)                       \
  a += b; d ^= a; d = DPFLEET_ROTL_V(d, 16);           \
  c += d; b ^= c; b = DPFLEET_ROTL_V(b, 12);           \
  a += b; d ^= a; d = DPFLEET_ROTL_V(d, 8);            \
  c += d; b ^= c; b = DPFLEET_ROTL_V(b, 7);
  for (int r = 0; r < 10; ++r) {
    DPFLEET_QR_V(x[0], x[4], x[8], x[12]);
    DPFLEET_QR_V(x[1], x[5], x[9], x[13]);
    DPFLEET_QR_V(x[2], x[6], x[10], x[14]);
    DPFLEET_QR_V(x[3], x[7], x[11], x[15]);
    DPFLEET_QR_V(x[0], x[5], x[10], x[15]);
    DPFLEET_QR_V(x[1], x[6], x[11], x[12]);
    DPFLEET_QR_V(x[2], x[7], x[8], x[13]);
    DPFLEET_QR_V(x[3], x[4], x[9], x[14]);
  }
#undef DPFLEET_QR_V
  for (int i = 0; i < 16; ++i) x[i] += init[i];
  // Lane l holds block (counter + l); emit blocks in counter order.
  for (int l = 0; l < 8; ++l) {
    for (int i = 0; i < 16; ++i) out[16 * l + i] = x[i][l];
  }
}

}  // namespace

void ChaCha20Stream::Refill() {
  static_assert(kLanes == 8, "ChaCha8Blocks computes eight blocks");
  const uint64_t counter = static_cast<uint64_t>(state_[12]) | (static_cast<uint64_t>(state_[13]) << 32);
  ChaCha8Blocks(state_, counter, buffer_);
  const uint64_t next = counter + kLanes;
  state_[12] = static_cast<uint32_t>(next);
  state_[13] = static_cast<uint32_t>(next >> 32);
  pos_ = 0;
}

void ChaCha20Stream::Fill(uint32_t* out, size_t n) {
  constexpr size_t kBuf = 16 * kLanes;
  while (n > 0) {
    if (pos_ == kBuf) Refill();
    const size_t take = std::min(n, kBuf - pos_);
    std::memcpy(out, buffer_ + pos_, take * sizeof(uint32_t));
    pos_ += take;
    out += take;
    n -= take;
  }
}

uint32_t ChaCha20Stream::NextU32() {
  if (pos_ == 16 * kLanes) Refill();
  return buffer_[pos_++];
}

uint64_t ChaCha20Stream::NextU64() {
  const uint64_t lo = NextU32();
  const uint64_t hi = NextU32();
  return lo | (hi << 32);
}

double ChaCha20Stream::NextOpenUnit() { return OpenUnitFromBits(NextU64()); }

ChaChaKey DeriveSeededKey(uint64_t seed, int32_t attempt, int32_t rank, StreamPurpose purpose) {
  return ChaChaKey{static_cast<uint32_t>(seed),
                   static_cast<uint32_t>(seed >> 32),
                   static_cast<uint32_t>(attempt),
                   static_cast<uint32_t>(rank),
                   static_cast<uint32_t>(purpose),
                   kTag0,
                   kTag1,
                   0u};
}

absl::StatusOr<ChaChaKey> SecureRandomKey() {
  ChaChaKey key;
  auto* bytes = reinterpret_cast<unsigned char*>(key.data());
  size_t got = 0;
  while (got < sizeof(key)) {
    const ssize_t r = getrandom(bytes + got, sizeof(key) - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("getrandom failed: ", std::strerror(errno)));
    }
    got += static_cast<size_t>(r);
  }
  return key;
}

namespace {

void EnsureSize(torch::Tensor& t, int64_t n, at::ScalarType type) {
  if (!t.defined() || t.scalar_type() != type) {
    t = at::empty({n}, at::TensorOptions().dtype(type));
  } else {
    t.resize_({n});
  }
}

}  // namespace

void FillNormal(ChaCha20Stream& stream, double stddev, torch::Tensor& out, NormalScratch& scratch) {
  const int64_t n = out.numel();
  if (n == 0) return;
  // Pair i gives out[i] (cosine branch) and out[h + i] (sine branch).
  const int64_t h = (n + 1) / 2;
  // Chunks keep the scratch buffers in L2 however large the model is.
  constexpr int64_t kChunkPairs = 8192;
  const int64_t chunk = std::min(h, kChunkPairs);
  scratch.words.resize(static_cast<size_t>(3 * chunk));
  EnsureSize(scratch.radius, chunk, at::kDouble);
  EnsureSize(scratch.radius32, chunk, at::kFloat);
  EnsureSize(scratch.angle, chunk, at::kFloat);
  EnsureSize(scratch.cosine, chunk, at::kFloat);
  // Keep ATen's (SIMD) element-wise kernels on this thread: the chunks are
  // small, and an OpenMP fork/join per op costs more than it saves — on a
  // busy machine it can stall a whole scheduler time slice per op.
  c10::ParallelGuard serial(true);
  at::Tensor flat = out.view({-1});
  constexpr float kAngleScale = static_cast<float>(6.283185307179586476925286766559 / 4294967296.0);
  for (int64_t start = 0; start < h; start += chunk) {
    const int64_t c = std::min(chunk, h - start);
    stream.Fill(scratch.words.data(), static_cast<size_t>(3 * c));
    at::Tensor radius = scratch.radius.narrow(0, 0, c);
    at::Tensor radius32 = scratch.radius32.narrow(0, 0, c);
    at::Tensor angle = scratch.angle.narrow(0, 0, c);
    at::Tensor cosine = scratch.cosine.narrow(0, 0, c);
    double* u = radius.data_ptr<double>();
    float* a = angle.data_ptr<float>();
    const uint32_t* w = scratch.words.data();
    for (int64_t i = 0; i < c; ++i) {
      u[i] = OpenUnitFromBits(static_cast<uint64_t>(w[3 * i]) | (static_cast<uint64_t>(w[3 * i + 1]) << 32));
      a[i] = static_cast<float>(w[3 * i + 2]) * kAngleScale;  // [0, 2 pi]
    }
    // r = stddev * sqrt(-2 ln u1), in double.
    radius.log_().mul_(-2.0).sqrt_().mul_(stddev);
    radius32.copy_(radius);
    at::cos_out(cosine, angle);
    angle.sin_();
    at::Tensor first = flat.narrow(0, start, c);
    at::mul_out(first, radius32, cosine);
    const int64_t second_len = std::min(c, n - h - start);
    if (second_len > 0) {
      at::Tensor second = flat.narrow(0, h + start, second_len);
      at::mul_out(second, radius32.narrow(0, 0, second_len), angle.narrow(0, 0, second_len));
    }
  }
}

torch::Tensor PoissonSample(ChaCha20Stream& stream, int64_t n, double q) {
  auto opts = at::TensorOptions().dtype(at::kLong);
  if (n <= 0 || q <= 0.0) return at::empty({0}, opts);
  if (q >= 1.0) return at::arange(n, opts);
  const double log_keep_fail = std::log1p(-q);  // log(1 - q) < 0
  std::vector<int64_t> rows;
  rows.reserve(static_cast<size_t>(q * static_cast<double>(n) * 1.2) + 16);
  int64_t i = -1;
  for (;;) {
    // Number of rejected rows before the next kept one ~ Geometric(q):
    // P(gap >= k) = P(U <= (1-q)^k) = (1-q)^k.
    const double gap = std::floor(std::log(stream.NextOpenUnit()) / log_keep_fail);
    if (gap >= static_cast<double>(n - i - 1)) break;
    i += 1 + static_cast<int64_t>(gap);
    rows.push_back(i);
  }
  return at::tensor(rows, opts);
}

}  // namespace dpfleet::train
