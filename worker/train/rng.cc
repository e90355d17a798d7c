#include "worker/train/rng.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/secure_random.h"
#include "common/status.h"
#include "worker/train/parallel.h"

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
// for `state`, written lane-major ("interleaved"): out[8 i + l] = word i of
// block counter + l. That is how the SIMD registers hold them, so the store
// is sixteen plain vector stores; Refill transposes to block order, while
// the Gaussian sampler consumes the interleaved words directly (any fixed
// bijection of reserved keystream words to samples is as good as another).
//
// Three builds of the same integer arithmetic, picked once at load time:
// AVX-512VL (one-instruction rotates, 32 vector registers), AVX2 (rotates by
// 16 and 8 as byte shuffles) and portable GCC vector code. Integer results
// are identical on all of them.
#define DPFLEET_QR(a, b, c, d)                      \
  a = ADD(a, b); d = XOR(d, a); d = ROT16(d);        \
  c = ADD(c, d); b = XOR(b, c); b = ROT12(b);        \
  a = ADD(a, b); d = XOR(d, a); d = ROT8(d);         \
  c = ADD(c, d); b = XOR(b, c); b = ROT7(b);
#define DPFLEET_DOUBLE_ROUND(x)                   \
  DPFLEET_QR(x[0], x[4], x[8], x[12]);            \
  DPFLEET_QR(x[1], x[5], x[9], x[13]);            \
  DPFLEET_QR(x[2], x[6], x[10], x[14]);           \
  DPFLEET_QR(x[3], x[7], x[11], x[15]);           \
  DPFLEET_QR(x[0], x[5], x[10], x[15]);           \
  DPFLEET_QR(x[1], x[6], x[11], x[12]);           \
  DPFLEET_QR(x[2], x[7], x[8], x[13]);            \
  DPFLEET_QR(x[3], x[4], x[9], x[14]);

// Per-lane block counters (low and high words), carrying into the high word.
inline void LaneCounters(uint64_t counter, uint32_t lo[8], uint32_t hi[8]) {
  for (int l = 0; l < 8; ++l) {
    const uint64_t c = counter + static_cast<uint64_t>(l);
    lo[l] = static_cast<uint32_t>(c);
    hi[l] = static_cast<uint32_t>(c >> 32);
  }
}

void ChaCha8Portable(const uint32_t state[16], uint64_t counter, uint32_t* out) {
  alignas(32) uint32_t lo[8], hi[8];
  LaneCounters(counter, lo, hi);
  V8 x[16];
  for (int i = 0; i < 16; ++i) {
    for (int l = 0; l < 8; ++l) x[i][l] = state[i];
  }
  std::memcpy(&x[12], lo, sizeof(lo));
  std::memcpy(&x[13], hi, sizeof(hi));
#define ADD(a, b) ((a) + (b))
#define XOR(a, b) ((a) ^ (b))
#define ROT16(v) DPFLEET_ROTL_V(v, 16)
#define ROT12(v) DPFLEET_ROTL_V(v, 12)
#define ROT8(v) DPFLEET_ROTL_V(v, 8)
#define ROT7(v) DPFLEET_ROTL_V(v, 7)
  for (int r = 0; r < 10; ++r) {
    DPFLEET_DOUBLE_ROUND(x)
  }
#undef ADD
#undef XOR
#undef ROT16
#undef ROT12
#undef ROT8
#undef ROT7
  for (int i = 0; i < 16; ++i) {
    V8 init;
    if (i == 12) {
      std::memcpy(&init, lo, sizeof(lo));
    } else if (i == 13) {
      std::memcpy(&init, hi, sizeof(hi));
    } else {
      for (int l = 0; l < 8; ++l) init[l] = state[i];
    }
    const V8 y = x[i] + init;
    std::memcpy(out + 8 * i, &y, sizeof(y));
  }
}

#define DPFLEET_CHACHA8_X86(NAME, TARGET)                                                                     \
  __attribute__((target(TARGET))) void NAME(const uint32_t state[16], uint64_t counter, uint32_t* out) {    \
    alignas(32) uint32_t lo[8], hi[8];                                                                     \
    LaneCounters(counter, lo, hi);                                                                         \
    const __m256i r16 = _mm256_setr_epi8(2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, \
                                         7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);                           \
    const __m256i r8 = _mm256_setr_epi8(3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14, 3, 0, 1, 2, 7,  \
                                        4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14);                            \
    (void)r16;                                                                                             \
    (void)r8;                                                                                              \
    __m256i x[16];                                                                                         \
    for (int i = 0; i < 16; ++i) x[i] = _mm256_set1_epi32(static_cast<int>(state[i]));                    \
    x[12] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo));                                       \
    x[13] = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));                                       \
    for (int r = 0; r < 10; ++r) {                                                                         \
      DPFLEET_DOUBLE_ROUND(x)                                                                              \
    }                                                                                                      \
    for (int i = 0; i < 16; ++i) {                                                                         \
      const __m256i init = i == 12   ? _mm256_load_si256(reinterpret_cast<const __m256i*>(lo))              \
                           : i == 13 ? _mm256_load_si256(reinterpret_cast<const __m256i*>(hi))              \
                                     : _mm256_set1_epi32(static_cast<int>(state[i]));                      \
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * i), _mm256_add_epi32(x[i], init));          \
    }                                                                                                      \
  }

#define ADD(a, b) _mm256_add_epi32(a, b)
#define XOR(a, b) _mm256_xor_si256(a, b)
#define ROT16(v) _mm256_shuffle_epi8(v, r16)
#define ROT12(v) _mm256_or_si256(_mm256_slli_epi32(v, 12), _mm256_srli_epi32(v, 20))
#define ROT8(v) _mm256_shuffle_epi8(v, r8)
#define ROT7(v) _mm256_or_si256(_mm256_slli_epi32(v, 7), _mm256_srli_epi32(v, 25))
DPFLEET_CHACHA8_X86(ChaCha8Avx2, "avx2")
#undef ROT16
#undef ROT12
#undef ROT8
#undef ROT7
#define ROT16(v) _mm256_rol_epi32(v, 16)
#define ROT12(v) _mm256_rol_epi32(v, 12)
#define ROT8(v) _mm256_rol_epi32(v, 8)
#define ROT7(v) _mm256_rol_epi32(v, 7)
DPFLEET_CHACHA8_X86(ChaCha8Avx512, "avx2,avx512f,avx512vl")
#undef ROT16
#undef ROT12
#undef ROT8
#undef ROT7
#undef ADD
#undef XOR
#undef DPFLEET_CHACHA8_X86
#undef DPFLEET_DOUBLE_ROUND
#undef DPFLEET_QR

using ChaCha8Fn = void (*)(const uint32_t*, uint64_t, uint32_t*);

ChaCha8Fn PickChaCha8() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return ChaCha8Avx512;
  if (__builtin_cpu_supports("avx2")) return ChaCha8Avx2;
  return ChaCha8Portable;
}

// Interleaved output (see above).
void ChaCha8Interleaved(const uint32_t state[16], uint64_t counter, uint32_t* out) {
  static const ChaCha8Fn fn = PickChaCha8();
  fn(state, counter, out);
}

}  // namespace

void ChaCha20Stream::Refill() {
  static_assert(kLanes == 8, "the ChaCha8 kernels compute eight blocks");
  const uint64_t counter = static_cast<uint64_t>(state_[12]) | (static_cast<uint64_t>(state_[13]) << 32);
  alignas(64) uint32_t lanes[16 * kLanes];
  ChaCha8Interleaved(state_, counter, lanes);
  for (int l = 0; l < kLanes; ++l) {
    for (int i = 0; i < 16; ++i) buffer_[16 * l + i] = lanes[kLanes * i + l];
  }
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

uint64_t ChaCha20Stream::ReserveBlocks(uint64_t count) {
  // state_[12..13] is the counter of the first block not yet in buffer_.
  const uint64_t first = static_cast<uint64_t>(state_[12]) | (static_cast<uint64_t>(state_[13]) << 32);
  const uint64_t next = first + count;
  state_[12] = static_cast<uint32_t>(next);
  state_[13] = static_cast<uint32_t>(next >> 32);
  pos_ = 16 * kLanes;  // unread buffered words are dropped, never reused
  return first;
}

void ChaCha20Stream::KeystreamAt(uint64_t counter, uint64_t count, uint32_t* out) const {
  for (uint64_t done = 0; done < count; done += kLanes) {
    ChaCha8Interleaved(state_, counter + done, out + 16 * done);
  }
}

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
  RETURN_IF_ERROR(SecureRandomBytes(key.data(), sizeof(key)));
  return key;
}

namespace {

// ---- Gaussian sampler (see FillNormal in rng.h) ----------------------------
//
// Keystream layout: a group of 8 pairs reads 24 consecutive words — 8 low
// words of k, 8 high words (only their top 21 bits are used) and 8 angle
// words — so that the SIMD kernel loads each as one vector.
constexpr int64_t kGroupPairs = 8;
constexpr int64_t kWordsPerGroup = 3 * kGroupPairs;
constexpr int64_t kTileGroups = kNormalTilePairs / kGroupPairs;
constexpr int64_t kTileWords = kTileGroups * kWordsPerGroup;
constexpr uint64_t kTileBlocks = static_cast<uint64_t>(kTileWords / 16);
static_assert(kTileWords % 128 == 0, "a tile must be a whole number of 8-block keystream groups");

constexpr double kTwoPow32 = 4294967296.0;
constexpr double kTwoPow52 = 4503599627370496.0;
constexpr double kLn2 = 0.69314718055994530941723212145818;
constexpr double kSqrt2 = 1.4142135623730950488016887242097;
constexpr uint64_t kMantissaMask = 0x000fffffffffffffull;
constexpr uint64_t kOneBits = 0x3ff0000000000000ull;
constexpr uint64_t kMagic52Bits = 0x4330000000000000ull;  // the double 2^52
// 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ... + s^16/17).
constexpr double kAtanh[9] = {1.0,       1.0 / 3,  1.0 / 5,  1.0 / 7, 1.0 / 9,
                              1.0 / 11,  1.0 / 13, 1.0 / 15, 1.0 / 17};
// Angle step 2 pi / 2^32 and the Taylor coefficients of sin and cos.
constexpr float kAngleStep = static_cast<float>(6.283185307179586476925286766559 / 4294967296.0);
constexpr float kSin[4] = {-1.0f / 6, 1.0f / 120, -1.0f / 5040, 1.0f / 362880};
constexpr float kCos[5] = {-1.0f / 2, 1.0f / 24, -1.0f / 720, 1.0f / 40320, -1.0f / 3628800};

inline double BitsToDouble(uint64_t b) {
  double d;
  std::memcpy(&d, &b, sizeof(d));
  return d;
}
inline uint64_t DoubleToBits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, sizeof(b));
  return b;
}
inline float BitsToFloat(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}
inline uint32_t FloatToBits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

// One pair, portable. Every operation below is mirrored one for one (same
// order, same rounding) by the AVX2 kernel.
inline void NormalPair(uint32_t lo, uint32_t hi, uint32_t w, double stddev, float* c_out, float* s_out) {
  // U1 = (k + 1) 2^-53, k = 53 random bits; every step is exact in double.
  const double k = static_cast<double>(hi >> 11) * kTwoPow32 + static_cast<double>(lo);
  const double u = (k + 1.0) * kTwoPow53Inv;
  // ln U1 = e ln 2 + ln m, m in (sqrt(1/2), sqrt(2)].
  const uint64_t bits = DoubleToBits(u);
  double m = BitsToDouble((bits & kMantissaMask) | kOneBits);
  double e = (BitsToDouble((bits >> 52) | kMagic52Bits) - kTwoPow52) - 1023.0;
  if (m > kSqrt2) {
    m = m * 0.5;
    e = e + 1.0;
  }
  const double f = m - 1.0;
  const double s = f / (2.0 + f);
  const double z = s * s;
  double p = kAtanh[8];
  for (int i = 7; i >= 0; --i) p = p * z + kAtanh[i];
  const double ln_u = e * kLn2 + (s + s) * p;
  const float r = static_cast<float>(std::sqrt(-2.0 * ln_u) * stddev);
  // theta = 2 pi w / 2^32 = q pi/2 + phi, phi in [-pi/4, pi/4).
  const uint32_t q = (w + 0x20000000u) >> 30;
  const float phi = static_cast<float>(static_cast<int32_t>(w - (q << 30))) * kAngleStep;
  const float x = phi * phi;
  const float sin_phi = phi + phi * (x * (kSin[0] + x * (kSin[1] + x * (kSin[2] + x * kSin[3]))));
  const float cos_phi = 1.0f + x * (kCos[0] + x * (kCos[1] + x * (kCos[2] + x * (kCos[3] + x * kCos[4]))));
  // Rotate by q quarter turns: q=1 (-s, c), q=2 (-c, -s), q=3 (s, -c).
  float cos_t = (q & 1) ? sin_phi : cos_phi;
  float sin_t = (q & 1) ? cos_phi : sin_phi;
  cos_t = BitsToFloat(FloatToBits(cos_t) ^ (((q + 1) & 2) << 30));
  sin_t = BitsToFloat(FloatToBits(sin_t) ^ ((q & 2) << 30));
  *c_out = r * cos_t;
  *s_out = r * sin_t;
}

// Tile kernel: `pairs` pairs from `words`; cosine results to c[0, pairs),
// sine results to s[0, s_count) (s_count is pairs or pairs - 1: an odd n
// drops the last sine). kAdd: += instead of =.
template <bool kAdd>
void NormalTilePortable(const uint32_t* words, int64_t pairs, int64_t s_count, double stddev, float* c, float* s) {
  for (int64_t i = 0; i < pairs; ++i) {
    const uint32_t* g = words + (i / kGroupPairs) * kWordsPerGroup;
    const int64_t l = i % kGroupPairs;
    float cv, sv;
    NormalPair(g[l], g[kGroupPairs + l], g[2 * kGroupPairs + l], stddev, &cv, &sv);
    if (kAdd) {
      c[i] += cv;
      if (i < s_count) s[i] += sv;
    } else {
      c[i] = cv;
      if (i < s_count) s[i] = sv;
    }
  }
}

// Four lanes of the double part: r = float(stddev sqrt(-2 ln U1)).
__attribute__((target("avx2"))) inline __m128 RadiusAvx2(__m128i lo, __m128i hi, __m256d stddev) {
  const __m256d two32 = _mm256_set1_pd(kTwoPow32);
  // Unsigned 32-bit lo to double: flip the sign bit, convert signed, add 2^31.
  const __m256d lo_d = _mm256_add_pd(_mm256_cvtepi32_pd(_mm_xor_si128(lo, _mm_set1_epi32(static_cast<int>(0x80000000u)))),
                                     _mm256_set1_pd(2147483648.0));
  const __m256d hi_d = _mm256_cvtepi32_pd(_mm_srli_epi32(hi, 11));
  const __m256d k = _mm256_add_pd(_mm256_mul_pd(hi_d, two32), lo_d);
  const __m256d u = _mm256_mul_pd(_mm256_add_pd(k, _mm256_set1_pd(1.0)), _mm256_set1_pd(kTwoPow53Inv));
  const __m256i bits = _mm256_castpd_si256(u);
  __m256d m = _mm256_castsi256_pd(_mm256_or_si256(
      _mm256_and_si256(bits, _mm256_set1_epi64x(static_cast<long long>(kMantissaMask))),
      _mm256_set1_epi64x(static_cast<long long>(kOneBits))));
  __m256d e = _mm256_sub_pd(
      _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(bits, 52),
                                                        _mm256_set1_epi64x(static_cast<long long>(kMagic52Bits)))),
                    _mm256_set1_pd(kTwoPow52)),
      _mm256_set1_pd(1023.0));
  const __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(kSqrt2), _CMP_GT_OQ);
  m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
  e = _mm256_blendv_pd(e, _mm256_add_pd(e, _mm256_set1_pd(1.0)), big);
  const __m256d f = _mm256_sub_pd(m, _mm256_set1_pd(1.0));
  const __m256d s = _mm256_div_pd(f, _mm256_add_pd(_mm256_set1_pd(2.0), f));
  const __m256d z = _mm256_mul_pd(s, s);
  __m256d p = _mm256_set1_pd(kAtanh[8]);
  for (int i = 7; i >= 0; --i) p = _mm256_add_pd(_mm256_mul_pd(p, z), _mm256_set1_pd(kAtanh[i]));
  const __m256d ln_u =
      _mm256_add_pd(_mm256_mul_pd(e, _mm256_set1_pd(kLn2)), _mm256_mul_pd(_mm256_add_pd(s, s), p));
  const __m256d r = _mm256_mul_pd(_mm256_sqrt_pd(_mm256_mul_pd(_mm256_set1_pd(-2.0), ln_u)), stddev);
  return _mm256_cvtpd_ps(r);
}

template <bool kAdd>
__attribute__((target("avx2"))) void NormalTileAvx2(const uint32_t* words, int64_t pairs, int64_t s_count,
                                                    double stddev, float* c, float* s) {
  const __m256d sd = _mm256_set1_pd(stddev);
  const __m256 step = _mm256_set1_ps(kAngleStep);
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t base = 0; base < pairs; base += kGroupPairs) {
    const uint32_t* g = words + (base / kGroupPairs) * kWordsPerGroup;
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g));
    const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kGroupPairs));
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 2 * kGroupPairs));
    const __m256 r = _mm256_set_m128(
        RadiusAvx2(_mm256_extracti128_si256(lo, 1), _mm256_extracti128_si256(hi, 1), sd),
        RadiusAvx2(_mm256_castsi256_si128(lo), _mm256_castsi256_si128(hi), sd));
    const __m256i q = _mm256_srli_epi32(_mm256_add_epi32(w, _mm256_set1_epi32(0x20000000)), 30);
    const __m256 phi = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(w, _mm256_slli_epi32(q, 30))), step);
    const __m256 x = _mm256_mul_ps(phi, phi);
    __m256 ps = _mm256_set1_ps(kSin[3]);
    for (int i = 2; i >= 0; --i) ps = _mm256_add_ps(_mm256_set1_ps(kSin[i]), _mm256_mul_ps(x, ps));
    const __m256 sin_phi = _mm256_add_ps(phi, _mm256_mul_ps(phi, _mm256_mul_ps(x, ps)));
    __m256 pc = _mm256_set1_ps(kCos[4]);
    for (int i = 3; i >= 0; --i) pc = _mm256_add_ps(_mm256_set1_ps(kCos[i]), _mm256_mul_ps(x, pc));
    const __m256 cos_phi = _mm256_add_ps(one, _mm256_mul_ps(x, pc));
    const __m256 odd = _mm256_castsi256_ps(
        _mm256_cmpeq_epi32(_mm256_and_si256(q, _mm256_set1_epi32(1)), _mm256_set1_epi32(1)));
    __m256 cos_t = _mm256_blendv_ps(cos_phi, sin_phi, odd);
    __m256 sin_t = _mm256_blendv_ps(sin_phi, cos_phi, odd);
    const __m256i two = _mm256_set1_epi32(2);
    cos_t = _mm256_xor_ps(cos_t, _mm256_castsi256_ps(_mm256_slli_epi32(
                                     _mm256_and_si256(_mm256_add_epi32(q, _mm256_set1_epi32(1)), two), 30)));
    sin_t = _mm256_xor_ps(sin_t, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(q, two), 30)));
    const __m256 cv = _mm256_mul_ps(r, cos_t);
    const __m256 sv = _mm256_mul_ps(r, sin_t);
    if (base + kGroupPairs <= s_count) {  // s_count <= pairs: both halves whole
      if (kAdd) {
        _mm256_storeu_ps(c + base, _mm256_add_ps(_mm256_loadu_ps(c + base), cv));
        _mm256_storeu_ps(s + base, _mm256_add_ps(_mm256_loadu_ps(s + base), sv));
      } else {
        _mm256_storeu_ps(c + base, cv);
        _mm256_storeu_ps(s + base, sv);
      }
    } else {  // the tile's last, partial group
      alignas(32) float ct[kGroupPairs], st[kGroupPairs];
      _mm256_store_ps(ct, cv);
      _mm256_store_ps(st, sv);
      for (int64_t l = 0; l < kGroupPairs; ++l) {
        const int64_t i = base + l;
        if (i < pairs) c[i] = kAdd ? c[i] + ct[l] : ct[l];
        if (i < s_count) s[i] = kAdd ? s[i] + st[l] : st[l];
      }
    }
  }
}

bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

enum class NormalMode { kFill, kAdd, kFillPortable };

void GenerateNormal(ChaCha20Stream& stream, double stddev, torch::Tensor& out, NormalMode mode) {
  TORCH_CHECK(out.scalar_type() == at::kFloat && out.is_contiguous() && out.device().is_cpu(),
              "FillNormal needs a contiguous float32 CPU tensor");
  const int64_t n = out.numel();
  if (n == 0) return;
  const int64_t h = (n + 1) / 2;  // pairs; pair i -> out[i], out[h + i]
  const int64_t tiles = (h + kNormalTilePairs - 1) / kNormalTilePairs;
  const uint64_t first_block = stream.ReserveBlocks(static_cast<uint64_t>(tiles) * kTileBlocks);
  float* data = out.data_ptr<float>();
  const bool avx2 = mode != NormalMode::kFillPortable && HasAvx2();
  auto run_tiles = [&](int64_t begin, int64_t end) {
    alignas(64) uint32_t words[kTileWords];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t start = t * kNormalTilePairs;
      const int64_t pairs = std::min(kNormalTilePairs, h - start);
      const int64_t s_count = std::max<int64_t>(0, std::min(pairs, n - h - start));
      // Only the blocks this tile reads (a partial last tile reads fewer).
      const int64_t words_needed = ((pairs + kGroupPairs - 1) / kGroupPairs) * kWordsPerGroup;
      const uint64_t blocks = static_cast<uint64_t>((words_needed + 127) / 128 * 8);
      stream.KeystreamAt(first_block + static_cast<uint64_t>(t) * kTileBlocks, blocks, words);
      float* c = data + start;
      float* s = data + h + start;
      if (mode == NormalMode::kAdd) {
        avx2 ? NormalTileAvx2<true>(words, pairs, s_count, stddev, c, s)
             : NormalTilePortable<true>(words, pairs, s_count, stddev, c, s);
      } else {
        avx2 ? NormalTileAvx2<false>(words, pairs, s_count, stddev, c, s)
             : NormalTilePortable<false>(words, pairs, s_count, stddev, c, s);
      }
    }
  };
  // A tile is ~10-15 us of work; forking for fewer than ~4 tiles per thread
  // costs more than it saves (and on a busy machine a fork/join can stall).
  constexpr int64_t kTilesPerTask = 4;
  ParallelRange(tiles, kTilesPerTask, run_tiles);
}

}  // namespace

void FillNormal(ChaCha20Stream& stream, double stddev, torch::Tensor& out, NormalScratch& /*scratch*/) {
  GenerateNormal(stream, stddev, out, NormalMode::kFill);
}

void AddNormal(ChaCha20Stream& stream, double stddev, torch::Tensor& out) {
  GenerateNormal(stream, stddev, out, NormalMode::kAdd);
}

void FillNormalPortable(ChaCha20Stream& stream, double stddev, torch::Tensor& out) {
  GenerateNormal(stream, stddev, out, NormalMode::kFillPortable);
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
