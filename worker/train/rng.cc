#include "worker/train/rng.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
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

constexpr double kTwoPow53Inv = 1.0 / 9007199254740992.0;  // 2^-53

// (0, 1] from 64 random bits: top 53 bits plus one, scaled.
inline double OpenUnitFromBits(uint64_t bits) { return (static_cast<double>(bits >> 11) + 1.0) * kTwoPow53Inv; }

void StoreLe32(uint32_t v, uint8_t* out) {
  for (int b = 0; b < 4; ++b) out[b] = static_cast<uint8_t>(v >> (8 * b));
}

// The keystream comes from OpenSSL's EVP_chacha20 (its AVX-512 / AVX2 code,
// picked by libcrypto for the CPU), measured against the former hand-written
// kernels and libsodium in docs/BENCHMARKS.md ("ChaCha20 keystream").
// OpenSSL's 16-byte IV is state words 12..15: a 32-bit block counter and a
// 96-bit nonce; it carries a counter wrap into word 13. Writing our 64-bit
// counter into words 12-13 and our 64-bit nonce into 14-15 therefore gives
// exactly the original ChaCha20 layout (tested across the 2^32 carry in
// tests/unit/worker/noise_test.cc).
const EVP_CIPHER* ChaCha20Cipher() {
  static const EVP_CIPHER* const cipher = [] {
    const EVP_CIPHER* fetched = EVP_CIPHER_fetch(nullptr, "ChaCha20", nullptr);
    return fetched != nullptr ? fetched : EVP_chacha20();
  }();
  return cipher;
}

// libcrypto fails these only when it cannot allocate or has no ChaCha20;
// there is no keystream to hand out then, and handing out anything else
// would be noise an analyst might predict: stop.
void CheckEvp(int ok, const char* what) {
  if (ok != 1) {
    std::fprintf(stderr, "dpfleet: OpenSSL %s failed for the ChaCha20 keystream\n", what);
    std::abort();
  }
}

EVP_CIPHER_CTX* NewCipherCtx() {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) CheckEvp(0, "EVP_CIPHER_CTX_new");
  return ctx;
}

// This thread's cipher context, for calls that seek anyway (freed when the
// thread ends).
EVP_CIPHER_CTX* ThreadCipherCtx() {
  struct Free {
    void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
  };
  thread_local const std::unique_ptr<EVP_CIPHER_CTX, Free> ctx(NewCipherCtx());
  return ctx.get();
}

// Positions `ctx` at block `counter` of the stream (key, nonce).
void SeekCipher(EVP_CIPHER_CTX* ctx, const uint8_t key[32], uint64_t nonce, uint64_t counter) {
  uint8_t iv[16];
  StoreLe32(static_cast<uint32_t>(counter), iv);
  StoreLe32(static_cast<uint32_t>(counter >> 32), iv + 4);
  StoreLe32(static_cast<uint32_t>(nonce), iv + 8);
  StoreLe32(static_cast<uint32_t>(nonce >> 32), iv + 12);
  CheckEvp(EVP_EncryptInit_ex(ctx, ChaCha20Cipher(), nullptr, key, iv), "EVP_EncryptInit_ex");
}

// `words` keystream words from the current position of `ctx`: the cipher
// applied in place to zeros.
void CipherWords(EVP_CIPHER_CTX* ctx, uint32_t* words, size_t count) {
  std::memset(words, 0, count * sizeof(uint32_t));
  unsigned char* bytes = reinterpret_cast<unsigned char*>(words);
  size_t left = count * sizeof(uint32_t);
  while (left > 0) {
    const int chunk = static_cast<int>(std::min<size_t>(left, size_t{1} << 30));
    int len = 0;
    CheckEvp(EVP_EncryptUpdate(ctx, bytes, &len, bytes, chunk), "EVP_EncryptUpdate");
    bytes += chunk;
    left -= static_cast<size_t>(chunk);
  }
  // Keystream bytes are little-endian words (RFC 7539 section 2.4).
  if constexpr (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__) {
    for (size_t i = 0; i < count; ++i) words[i] = __builtin_bswap32(words[i]);
  }
}

void KeyBytes(const uint32_t* key_words, uint8_t out[32]) {
  for (int i = 0; i < 8; ++i) StoreLe32(key_words[i], out + 4 * i);
}

}  // namespace

void ChaCha20Block(const uint32_t in[16], uint32_t out[16]) {
  for (int i = 0; i < 4; ++i) {
    if (in[i] != kSigma[i]) {
      std::fprintf(stderr, "dpfleet: ChaCha20Block needs the \"expand 32-byte k\" constants\n");
      std::abort();
    }
  }
  uint8_t key[32];
  KeyBytes(in + 4, key);
  EVP_CIPHER_CTX* const ctx = ThreadCipherCtx();
  SeekCipher(ctx, key, static_cast<uint64_t>(in[14]) | (static_cast<uint64_t>(in[15]) << 32),
             static_cast<uint64_t>(in[12]) | (static_cast<uint64_t>(in[13]) << 32));
  CipherWords(ctx, out, 16);
}

void ChaCha20Stream::CipherDeleter::operator()(::evp_cipher_ctx_st* ctx) const { EVP_CIPHER_CTX_free(ctx); }

ChaCha20Stream::ChaCha20Stream(const ChaChaKey& key, uint64_t nonce) : nonce_(nonce) { KeyBytes(key.data(), key_); }

void ChaCha20Stream::Refill() {
  // One cipher context per stream, positioned once and then read straight
  // on: a refill is a plain EVP_EncryptUpdate, no re-keying.
  if (cipher_ == nullptr) cipher_.reset(NewCipherCtx());
  if (!cipher_positioned_) {
    SeekCipher(cipher_.get(), key_, nonce_, next_block_);
    cipher_positioned_ = true;
  }
  CipherWords(cipher_.get(), buffer_, kBufferWords);
  next_block_ += kBufferBlocks;
  pos_ = 0;
}

void ChaCha20Stream::Fill(uint32_t* out, size_t n) {
  while (n > 0) {
    if (pos_ == kBufferWords) Refill();
    const size_t take = std::min(n, kBufferWords - pos_);
    std::memcpy(out, buffer_ + pos_, take * sizeof(uint32_t));
    pos_ += take;
    out += take;
    n -= take;
  }
}

uint32_t ChaCha20Stream::NextU32() {
  if (pos_ == kBufferWords) Refill();
  return buffer_[pos_++];
}

uint64_t ChaCha20Stream::NextU64() {
  const uint64_t lo = NextU32();
  const uint64_t hi = NextU32();
  return lo | (hi << 32);
}

double ChaCha20Stream::NextOpenUnit() { return OpenUnitFromBits(NextU64()); }

uint64_t ChaCha20Stream::ReserveBlocks(uint64_t count) {
  // next_block_ is the counter of the first block not yet in buffer_.
  const uint64_t first = next_block_;
  next_block_ += count;
  cipher_positioned_ = false;  // the next refill starts after the reservation
  pos_ = kBufferWords;         // unread buffered words are dropped, never reused
  return first;
}

void ChaCha20Stream::KeystreamAt(uint64_t counter, uint64_t count, uint32_t* out) const {
  // Concurrent callers (the sampler's tiles) each use their thread's context.
  EVP_CIPHER_CTX* const ctx = ThreadCipherCtx();
  SeekCipher(ctx, key_, nonce_, counter);
  CipherWords(ctx, out, static_cast<size_t>(count) * 16);
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
// 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + s^6/7 + s^8/9 + ...), in float: with
// |s| <= (sqrt 2 - 1)/(sqrt 2 + 1) = 0.1716, s^2 <= 0.0295 and the first
// omitted term s^10/11 is below 2.2e-9 relative, under float's 6e-8.
constexpr float kAtanhF[5] = {1.0f, 1.0f / 3, 1.0f / 5, 1.0f / 7, 1.0f / 9};
constexpr float kLn2F = 0.69314718055994530942f;
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
inline void NormalPair(uint32_t lo, uint32_t hi, uint32_t w, float stddev, float* c_out, float* s_out) {
  // U1 = (k + 1) 2^-53, k = 53 random bits; every step is exact in double.
  const double k = static_cast<double>(hi >> 11) * kTwoPow32 + static_cast<double>(lo);
  const double u = (k + 1.0) * kTwoPow53Inv;
  // ln U1 = e ln 2 + ln m, m in (sqrt(1/2), sqrt(2)]: the split is exact in
  // double (so the tail reaches U1 = 2^-53, r = 8.57 sigma), and f = m - 1
  // is exact too; only then does the arithmetic go to float, where f keeps
  // its full relative precision even for U1 next to 1.
  const uint64_t bits = DoubleToBits(u);
  double m = BitsToDouble((bits & kMantissaMask) | kOneBits);
  double e = (BitsToDouble((bits >> 52) | kMagic52Bits) - kTwoPow52) - 1023.0;
  if (m > kSqrt2) {
    m = m * 0.5;
    e = e + 1.0;
  }
  const float f = static_cast<float>(m - 1.0);
  const float ef = static_cast<float>(e);
  const float s = f / (2.0f + f);
  const float z = s * s;
  float p = kAtanhF[4];
  for (int i = 3; i >= 0; --i) p = p * z + kAtanhF[i];
  const float ln_u = ef * kLn2F + (s + s) * p;
  const float r = std::sqrt(-2.0f * ln_u) * stddev;
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
void NormalTilePortable(const uint32_t* words, int64_t pairs, int64_t s_count, float stddev, float* c, float* s) {
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

// Four lanes of the double part: f = m - 1 and e of U1 = m 2^e (see
// NormalPair), as floats.
__attribute__((target("avx2"))) inline void SplitUniformAvx2(__m128i lo, __m128i hi, __m128* f_out, __m128* e_out) {
  const __m256d two32 = _mm256_set1_pd(kTwoPow32);
  // Unsigned 32-bit lo to double: flip the sign bit, convert signed, add 2^31.
  const __m256d lo_d =
      _mm256_add_pd(_mm256_cvtepi32_pd(_mm_xor_si128(lo, _mm_set1_epi32(static_cast<int>(0x80000000u)))),
                    _mm256_set1_pd(2147483648.0));
  const __m256d hi_d = _mm256_cvtepi32_pd(_mm_srli_epi32(hi, 11));
  const __m256d k = _mm256_add_pd(_mm256_mul_pd(hi_d, two32), lo_d);
  const __m256d u = _mm256_mul_pd(_mm256_add_pd(k, _mm256_set1_pd(1.0)), _mm256_set1_pd(kTwoPow53Inv));
  const __m256i bits = _mm256_castpd_si256(u);
  __m256d m = _mm256_castsi256_pd(
      _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(static_cast<long long>(kMantissaMask))),
                      _mm256_set1_epi64x(static_cast<long long>(kOneBits))));
  __m256d e = _mm256_sub_pd(
      _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(bits, 52),
                                                        _mm256_set1_epi64x(static_cast<long long>(kMagic52Bits)))),
                    _mm256_set1_pd(kTwoPow52)),
      _mm256_set1_pd(1023.0));
  const __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(kSqrt2), _CMP_GT_OQ);
  m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
  e = _mm256_blendv_pd(e, _mm256_add_pd(e, _mm256_set1_pd(1.0)), big);
  *f_out = _mm256_cvtpd_ps(_mm256_sub_pd(m, _mm256_set1_pd(1.0)));
  *e_out = _mm256_cvtpd_ps(e);
}

// Eight lanes of the float part: r = stddev sqrt(-2 ln U1).
__attribute__((target("avx2"))) inline __m256 RadiusAvx2(__m256i lo, __m256i hi, __m256 stddev) {
  __m128 f_lo, e_lo, f_hi, e_hi;
  SplitUniformAvx2(_mm256_castsi256_si128(lo), _mm256_castsi256_si128(hi), &f_lo, &e_lo);
  SplitUniformAvx2(_mm256_extracti128_si256(lo, 1), _mm256_extracti128_si256(hi, 1), &f_hi, &e_hi);
  const __m256 f = _mm256_set_m128(f_hi, f_lo);
  const __m256 e = _mm256_set_m128(e_hi, e_lo);
  const __m256 s = _mm256_div_ps(f, _mm256_add_ps(_mm256_set1_ps(2.0f), f));
  const __m256 z = _mm256_mul_ps(s, s);
  __m256 p = _mm256_set1_ps(kAtanhF[4]);
  for (int i = 3; i >= 0; --i) p = _mm256_add_ps(_mm256_mul_ps(p, z), _mm256_set1_ps(kAtanhF[i]));
  const __m256 ln_u = _mm256_add_ps(_mm256_mul_ps(e, _mm256_set1_ps(kLn2F)), _mm256_mul_ps(_mm256_add_ps(s, s), p));
  return _mm256_mul_ps(_mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), ln_u)), stddev);
}

template <bool kAdd>
__attribute__((target("avx2"))) void NormalTileAvx2(const uint32_t* words, int64_t pairs, int64_t s_count, float stddev,
                                                    float* c, float* s) {
  const __m256 sd = _mm256_set1_ps(stddev);
  const __m256 step = _mm256_set1_ps(kAngleStep);
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t base = 0; base < pairs; base += kGroupPairs) {
    const uint32_t* g = words + (base / kGroupPairs) * kWordsPerGroup;
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g));
    const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kGroupPairs));
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 2 * kGroupPairs));
    const __m256 r = RadiusAvx2(lo, hi, sd);
    const __m256i q = _mm256_srli_epi32(_mm256_add_epi32(w, _mm256_set1_epi32(0x20000000)), 30);
    const __m256 phi = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(w, _mm256_slli_epi32(q, 30))), step);
    const __m256 x = _mm256_mul_ps(phi, phi);
    __m256 ps = _mm256_set1_ps(kSin[3]);
    for (int i = 2; i >= 0; --i) ps = _mm256_add_ps(_mm256_set1_ps(kSin[i]), _mm256_mul_ps(x, ps));
    const __m256 sin_phi = _mm256_add_ps(phi, _mm256_mul_ps(phi, _mm256_mul_ps(x, ps)));
    __m256 pc = _mm256_set1_ps(kCos[4]);
    for (int i = 3; i >= 0; --i) pc = _mm256_add_ps(_mm256_set1_ps(kCos[i]), _mm256_mul_ps(x, pc));
    const __m256 cos_phi = _mm256_add_ps(one, _mm256_mul_ps(x, pc));
    const __m256 odd =
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(q, _mm256_set1_epi32(1)), _mm256_set1_epi32(1)));
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

// The standard deviation as a float, rounded up, never down: float noise
// is never below the requested scale.
float StddevAsFloat(double stddev) {
  float f = static_cast<float>(stddev);
  if (static_cast<double>(f) < stddev) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

void GenerateNormal(ChaCha20Stream& stream, double stddev, torch::Tensor& out, NormalMode mode) {
  TORCH_CHECK(out.scalar_type() == at::kFloat && out.is_contiguous() && out.device().is_cpu(),
              "FillNormal needs a contiguous float32 CPU tensor");
  const int64_t n = out.numel();
  if (n == 0) return;
  const float sd = StddevAsFloat(stddev);
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
        avx2 ? NormalTileAvx2<true>(words, pairs, s_count, sd, c, s)
             : NormalTilePortable<true>(words, pairs, s_count, sd, c, s);
      } else {
        avx2 ? NormalTileAvx2<false>(words, pairs, s_count, sd, c, s)
             : NormalTilePortable<false>(words, pairs, s_count, sd, c, s);
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
