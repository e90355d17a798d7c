// SHA-256 (FIPS 180-4) for shard checksums and content keys.
//
// The data pipeline records a SHA-256 of every shard in its manifest so that
// workers detect a corrupt or swapped file, and so that the embedded C++
// pipeline and the Spark job can be compared byte for byte. The digest comes
// from OpenSSL's libcrypto (EVP, SHA-256), which the build links anyway for
// gRPC and TLS and which picks the CPU's SHA extensions itself; this unit
// only gives it the small interface the callers use (measured against the
// former hand-written code in docs/BENCHMARKS.md, "SHA-256").
//
// This is a checksum, not a security boundary: it must never be used for
// keys, passwords or MACs.
#ifndef DPFLEET_COMMON_SHA256_H_
#define DPFLEET_COMMON_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dpfleet {

class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;

  Sha256();
  ~Sha256();
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&& other) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t size);
  void Update(absl::string_view data) { Update(data.data(), data.size()); }
  // Pads, returns the digest and resets to the empty state.
  Digest Finish();

  // libcrypto's name for the implementation it runs (e.g. "SHA2-256").
  static std::string Implementation();

 private:
  void Reset();

  // An EVP_MD_CTX; opaque here so that callers do not include OpenSSL.
  struct Ctx;
  Ctx* ctx_;
};

// Lower-case hex of a digest.
std::string DigestHex(const Sha256::Digest& digest);

// Hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

// Hex SHA-256 of a file's bytes. NotFound when it cannot be opened,
// DataLoss on a read error.
absl::StatusOr<std::string> Sha256FileHex(const std::string& path);

}  // namespace dpfleet

#endif  // DPFLEET_COMMON_SHA256_H_
