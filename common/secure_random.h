// Randomness nobody can predict: bytes from the kernel's CSPRNG
// (getrandom(2), blocking until the pool is initialised).
//
// Everything a DP guarantee rests on — the Poisson sampling masks and the
// Gaussian noise of every rank, the eval release's noise, the coordinator's
// held-out split key — is keyed from here. This unit must never offer a seed,
// a fallback to a deterministic generator, or any way to make its output
// reproducible: a noise stream an analyst can regenerate is no noise. Tests
// that need reproducible streams build their keys in test code.
#ifndef DPFLEET_COMMON_SECURE_RANDOM_H_
#define DPFLEET_COMMON_SECURE_RANDOM_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dpfleet {

// Fills out[0, n) from getrandom(2). Unavailable (with errno's text) if the
// kernel refuses; EINTR and short reads are retried.
absl::Status SecureRandomBytes(void* out, size_t n);

// 64 uniformly random bits from SecureRandomBytes.
absl::StatusOr<uint64_t> SecureRandomU64();

}  // namespace dpfleet

#endif  // DPFLEET_COMMON_SECURE_RANDOM_H_
