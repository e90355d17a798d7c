// SHA-256 (FIPS 180-4) for shard checksums.
//
// The data pipeline records a SHA-256 of every shard in its manifest so that
// workers detect a corrupt or swapped file, and so that the embedded C++
// pipeline and the Spark job can be compared byte for byte. dpfleet_common
// links no crypto library, so this unit carries its own implementation: a
// portable one, and one on the x86 SHA extensions (SHA-NI, picked at run time
// when the CPU has them) because checksumming hundreds of MB of shards must
// not cost more than writing them.
//
// This is a checksum, not a security boundary: it must never be used for
// keys, passwords or MACs (no constant-time guarantees are made).
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
  enum class Impl {
    kAuto,      // SHA-NI when the CPU supports it, else portable
    kPortable,  // plain C++ (tests compare the two)
  };
  using Digest = std::array<uint8_t, 32>;

  explicit Sha256(Impl impl = Impl::kAuto);

  void Update(const void* data, size_t size);
  void Update(absl::string_view data) { Update(data.data(), data.size()); }
  // Pads, returns the digest and resets to the empty state.
  Digest Finish();

  // Whether kAuto uses the SHA-NI code path on this machine.
  static bool HardwareAccelerated();

 private:
  void Compress(const uint8_t* blocks, size_t count);
  void Reset();

  bool use_hw_;
  uint32_t state_[8];
  uint64_t total_bytes_ = 0;
  uint8_t buffer_[64];
  size_t buffered_ = 0;
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
