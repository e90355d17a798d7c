// ChaCha20 keystream throughput: the noise stream's keystream
// (worker/train/rng.h, ChaCha20Stream: KeystreamAt for the Gaussian tiles,
// Fill for the Poisson sampler) against libsodium's
// crypto_stream_chacha20_xor_ic on zeros (1.0.18 has no plain _ic) and
// OpenSSL's EVP_chacha20 called directly, at the request sizes the trainer
// really makes, on the same key, nonce and counters, in one run.
//
//   dpfleet-chacha-bench [--seconds S] [--json]
//
// Request sizes: 8 blocks (512 B: ChaCha20Stream's refill, what the Poisson
// sampler draws from), 192 blocks (12 KiB: one Box-Muller tile of 1024 pairs,
// 3 words per pair; FillNormal/AddNormal ask for one such tile per call) and
// 16384 blocks (1 MiB: long-message speed). Every KeystreamAt, libsodium and
// OpenSSL request starts at its own block counter, as the tiles do, so
// OpenSSL pays its per-request EVP_EncryptInit_ex (the only way to set its
// counter) and libsodium its per-call setup; "Fill" reads the same amount
// on from one stream (no seek). Columns: GB/s (10^9 bytes per second of wall
// time, best of 5 repetitions) and TSC ticks per byte (the time-stamp
// counter runs at the nominal clock, so this is cycles/byte at that clock).
// Before timing, the outputs are compared word for word (the "wrong"
// column: words that differ from libsodium's).
//
// Until commit d10a6a9 ChaCha20Stream had hand-written AVX-512VL / AVX2 /
// portable kernels; that build's numbers are in docs/BENCHMARKS.md.
//
// Layouts: the stream is original ChaCha20 (64-bit block counter in state
// words 12-13, 64-bit nonce in 14-15); libsodium's _xor_ic variant takes
// exactly that; OpenSSL's 16-byte IV is state words 12..15 (32-bit counter,
// then the 96-bit "nonce"), so the IV is counter_lo, counter_hi, nonce_lo,
// nonce_hi.
#include <openssl/evp.h>
#include <sodium.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "worker/train/rng.h"

namespace {

using Clock = std::chrono::steady_clock;
using dpfleet::train::ChaCha20Stream;
using dpfleet::train::ChaChaKey;

struct Rate {
  double gb_s = 0;
  double ticks_per_byte = 0;
};

// Best of 5 repetitions of `once` (which produces `bytes` bytes per call).
Rate Best(double seconds, size_t bytes, const std::function<void(uint64_t)>& once) {
  size_t calls = 1;
  while (true) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < calls; ++i) once(i);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (dt > seconds / 50 || calls > (size_t{1} << 30)) {
      calls = std::max<size_t>(1, static_cast<size_t>(calls * (seconds / 5) / std::max(dt, 1e-9)));
      break;
    }
    calls *= 4;
  }
  Rate best;
  best.ticks_per_byte = 1e300;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    const uint64_t c0 = __rdtsc();
    for (size_t i = 0; i < calls; ++i) once(i);
    const uint64_t c1 = __rdtsc();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    const double total = static_cast<double>(bytes) * calls;
    best.gb_s = std::max(best.gb_s, total / dt / 1e9);
    best.ticks_per_byte = std::min(best.ticks_per_byte, static_cast<double>(c1 - c0) / total);
  }
  return best;
}

void KeyBytes(const ChaChaKey& key, uint8_t out[32]) {
  for (int i = 0; i < 8; ++i) {
    for (int b = 0; b < 4; ++b) out[4 * i + b] = static_cast<uint8_t>(key[i] >> (8 * b));
  }
}

void Le32(uint32_t v, uint8_t* out) {
  for (int b = 0; b < 4; ++b) out[b] = static_cast<uint8_t>(v >> (8 * b));
}

void OpensslStream(EVP_CIPHER_CTX* ctx, const uint8_t key[32], uint64_t nonce, uint64_t counter, const uint8_t* zeros,
                   uint8_t* out, size_t bytes) {
  uint8_t iv[16];
  Le32(static_cast<uint32_t>(counter), iv);
  Le32(static_cast<uint32_t>(counter >> 32), iv + 4);
  Le32(static_cast<uint32_t>(nonce), iv + 8);
  Le32(static_cast<uint32_t>(nonce >> 32), iv + 12);
  int len = 0;
  if (EVP_EncryptInit_ex(ctx, EVP_chacha20(), nullptr, key, iv) != 1 ||
      EVP_EncryptUpdate(ctx, out, &len, zeros, static_cast<int>(bytes)) != 1) {
    std::abort();
  }
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 1.0;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--json") {
      json = true;
    } else {
      std::fprintf(stderr, "usage: dpfleet-chacha-bench [--seconds S] [--json]\n");
      return 2;
    }
  }
  if (sodium_init() < 0) {
    std::fprintf(stderr, "sodium_init failed\n");
    return 1;
  }
  const ChaChaKey key = dpfleet::train::DeriveSeededKey(
      20261202, 0, 0, dpfleet::train::StreamPurpose::kNoise);  // public: a benchmark key
  const uint64_t nonce = 0x0123456789abcdefULL;
  uint8_t key_bytes[32];
  KeyBytes(key, key_bytes);
  uint8_t nonce_bytes[8];
  Le32(static_cast<uint32_t>(nonce), nonce_bytes);
  Le32(static_cast<uint32_t>(nonce >> 32), nonce_bytes + 4);
  const ChaCha20Stream stream(key, nonce);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return 1;

  const uint64_t block_counts[] = {8, 192, 16384};
  const size_t max_bytes = 16384 * 64;
  std::vector<uint32_t> ours(max_bytes / 4), seq(max_bytes / 4);
  std::vector<uint8_t> sodium(max_bytes), openssl(max_bytes), zeros(max_bytes, 0);
  if (!json) {
    std::printf("%8s %8s | %-15s | %-15s | %-15s | %-15s | %6s\n", "blocks", "bytes", "KeystreamAt", "Fill",
                "libsodium", "OpenSSL EVP", "wrong");
    std::printf("%8s %8s |", "", "");
    for (int c = 0; c < 4; ++c) std::printf(" %7s %7s |", "GB/s", "tick/B");
    std::printf("\n");
  } else {
    std::printf("[\n");
  }
  for (size_t k = 0; k < sizeof(block_counts) / sizeof(block_counts[0]); ++k) {
    const uint64_t blocks = block_counts[k];
    const size_t bytes = blocks * 64;
    // Same words from all, starting just below 2^32 blocks so the carry into
    // the counter's high word is exercised too.
    const uint64_t check_counter = (uint64_t{1} << 32) - 8;
    stream.KeystreamAt(check_counter, blocks, seq.data());
    crypto_stream_chacha20_xor_ic(sodium.data(), zeros.data(), bytes, nonce_bytes, check_counter, key_bytes);
    OpensslStream(ctx, key_bytes, nonce, check_counter, zeros.data(), openssl.data(), bytes);
    ChaCha20Stream filled(key, nonce);
    filled.Fill(ours.data(), bytes / 4);
    std::vector<uint8_t> sodium0(bytes);
    crypto_stream_chacha20_xor_ic(sodium0.data(), zeros.data(), bytes, nonce_bytes, 0, key_bytes);
    size_t wrong = 0;
    for (size_t w = 0; w < bytes / 4; ++w) {
      uint32_t s, o, s0;
      std::memcpy(&s, sodium.data() + 4 * w, 4);
      std::memcpy(&o, openssl.data() + 4 * w, 4);
      std::memcpy(&s0, sodium0.data() + 4 * w, 4);
      wrong += (s != seq[w]) + (o != s) + (s0 != ours[w]);
    }

    ChaCha20Stream reader(key, nonce);
    const Rate rates[4] = {
        Best(seconds, bytes, [&](uint64_t i) { stream.KeystreamAt(i * blocks, blocks, ours.data()); }),
        Best(seconds, bytes, [&](uint64_t) { reader.Fill(ours.data(), bytes / 4); }),
        Best(seconds, bytes,
             [&](uint64_t i) {
               crypto_stream_chacha20_xor_ic(sodium.data(), zeros.data(), bytes, nonce_bytes, i * blocks, key_bytes);
             }),
        Best(
            seconds, bytes,
            [&](uint64_t i) { OpensslStream(ctx, key_bytes, nonce, i * blocks, zeros.data(), openssl.data(), bytes); }),
    };
    const char* names[4] = {"keystream_at", "fill", "sodium", "openssl"};
    if (json) {
      std::printf("%s  {\"blocks\": %llu, \"bytes\": %zu", k == 0 ? "" : ",\n", static_cast<unsigned long long>(blocks),
                  bytes);
      for (int c = 0; c < 4; ++c) {
        std::printf(", \"%s_gb_s\": %.3f, \"%s_ticks_per_byte\": %.3f", names[c], rates[c].gb_s, names[c],
                    rates[c].ticks_per_byte);
      }
      std::printf(", \"wrong\": %zu}", wrong);
    } else {
      std::printf("%8llu %8zu |", static_cast<unsigned long long>(blocks), bytes);
      for (int c = 0; c < 4; ++c) std::printf(" %7.3f %7.3f |", rates[c].gb_s, rates[c].ticks_per_byte);
      std::printf(" %6zu\n", wrong);
    }
  }
  if (json) std::printf("\n]\n");
  EVP_CIPHER_CTX_free(ctx);
  return 0;
}
