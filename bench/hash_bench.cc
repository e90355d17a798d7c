// SHA-256 throughput on the shard writer's path: dpfleet::Sha256
// (common/sha256.h, what common/pums/shards.cc and prepare.cc call) against
// OpenSSL's EVP interface used directly, on the same buffers in one run.
//
//   dpfleet-hash-bench [--seconds S] [--json]
//
// Rows: one-shot digests of 64 B, 1 KiB and 1 MiB messages, and one 64 MiB
// message fed by incremental updates of 100 B, 4 KiB and 1 MiB (the shard
// writer hashes its output buffer by buffer). Columns: MB/s (10^6 bytes per
// second of wall time, best of 5 timed repetitions of about S/5 seconds each).
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common/sha256.h"

namespace {

using Clock = std::chrono::steady_clock;

// Best-of-5 bytes per second of `hash_once`, which hashes `bytes` bytes.
double BestRate(double seconds, size_t bytes, const std::function<void()>& hash_once) {
  // Calibrate: how many calls fill one repetition.
  size_t calls = 1;
  while (true) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < calls; ++i) hash_once();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (dt > seconds / 50 || calls > (size_t{1} << 30)) {
      calls = std::max<size_t>(1, static_cast<size_t>(calls * (seconds / 5) / std::max(dt, 1e-9)));
      break;
    }
    calls *= 4;
  }
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < calls; ++i) hash_once();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(bytes) * calls / dt);
  }
  return best;
}

volatile uint8_t g_sink;

void DpfleetHash(const uint8_t* data, size_t size, size_t piece) {
  dpfleet::Sha256 h;
  for (size_t off = 0; off < size; off += piece) h.Update(data + off, std::min(piece, size - off));
  g_sink = h.Finish()[0];
}

void OpensslHash(EVP_MD_CTX* ctx, const uint8_t* data, size_t size, size_t piece) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) std::abort();
  for (size_t off = 0; off < size; off += piece) {
    EVP_DigestUpdate(ctx, data + off, std::min(piece, size - off));
  }
  EVP_DigestFinal_ex(ctx, md, &len);
  g_sink = md[0];
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2.0;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--json") {
      json = true;
    } else {
      std::fprintf(stderr, "usage: dpfleet-hash-bench [--seconds S] [--json]\n");
      return 2;
    }
  }
  struct Row {
    const char* name;
    size_t size;
    size_t piece;
  };
  const Row rows[] = {
      {"one-shot 64 B", 64, 64},
      {"one-shot 1 KiB", 1024, 1024},
      {"one-shot 1 MiB", size_t{1} << 20, size_t{1} << 20},
      {"64 MiB in 100 B updates", size_t{64} << 20, 100},
      {"64 MiB in 4 KiB updates", size_t{64} << 20, 4096},
      {"64 MiB in 1 MiB updates", size_t{64} << 20, size_t{1} << 20},
  };
  std::vector<uint8_t> data(size_t{64} << 20);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 2654435761u >> 13);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return 1;
  if (!json) {
    std::printf("%-26s %14s %14s %8s\n", "message", "dpfleet MB/s", "OpenSSL MB/s", "ratio");
  } else {
    std::printf("[\n");
  }
  bool first = true;
  for (const Row& r : rows) {
    const double ours = BestRate(seconds, r.size, [&] { DpfleetHash(data.data(), r.size, r.piece); }) / 1e6;
    const double theirs = BestRate(seconds, r.size, [&] { OpensslHash(ctx, data.data(), r.size, r.piece); }) / 1e6;
    if (json) {
      std::printf("%s  {\"message\": \"%s\", \"dpfleet_mb_s\": %.1f, \"openssl_mb_s\": %.1f}", first ? "" : ",\n",
                  r.name, ours, theirs);
    } else {
      std::printf("%-26s %14.1f %14.1f %8.2f\n", r.name, ours, theirs, ours / theirs);
    }
    first = false;
  }
  if (json) std::printf("\n]\n");
  EVP_MD_CTX_free(ctx);
  return 0;
}
