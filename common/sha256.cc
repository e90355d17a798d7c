#include "common/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace dpfleet {
namespace {

// Fetched once: EVP_sha256() makes every EVP_DigestInit_ex look the
// algorithm up again in the provider tables, which costs more than hashing a
// short message (docs/BENCHMARKS.md, "SHA-256").
const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : EVP_sha256();
  }();
  return md;
}

// libcrypto fails these calls only on allocation failure or a broken
// provider; there is no digest to return then, so stop loudly.
void Check(int ok, const char* what) {
  if (ok != 1) {
    std::fprintf(stderr, "dpfleet: OpenSSL %s failed for SHA-256\n", what);
    std::abort();
  }
}

}  // namespace

struct Sha256::Ctx {
  EVP_MD_CTX* evp;
};

Sha256::Sha256() : ctx_(new Ctx{EVP_MD_CTX_new()}) {
  if (ctx_->evp == nullptr) Check(0, "EVP_MD_CTX_new");
  Reset();
}

Sha256::~Sha256() {
  if (ctx_ != nullptr) {
    EVP_MD_CTX_free(ctx_->evp);
    delete ctx_;
  }
}

Sha256::Sha256(Sha256&& other) noexcept : ctx_(other.ctx_) { other.ctx_ = nullptr; }

Sha256& Sha256::operator=(Sha256&& other) noexcept {
  std::swap(ctx_, other.ctx_);
  return *this;
}

std::string Sha256::Implementation() { return EVP_MD_get0_name(Sha256Md()); }

void Sha256::Reset() { Check(EVP_DigestInit_ex(ctx_->evp, Sha256Md(), nullptr), "EVP_DigestInit_ex"); }

void Sha256::Update(const void* data, size_t size) {
  if (size == 0) return;
  Check(EVP_DigestUpdate(ctx_->evp, data, size), "EVP_DigestUpdate");
}

Sha256::Digest Sha256::Finish() {
  Digest out;
  unsigned int len = 0;
  Check(EVP_DigestFinal_ex(ctx_->evp, out.data(), &len), "EVP_DigestFinal_ex");
  if (len != out.size()) Check(0, "EVP_DigestFinal_ex (digest length)");
  Reset();
  return out;
}

std::string DigestHex(const Sha256::Digest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(64, '0');
  for (size_t i = 0; i < digest.size(); ++i) {
    s[2 * i] = kHex[digest[i] >> 4];
    s[2 * i + 1] = kHex[digest[i] & 15];
  }
  return s;
}

std::string Sha256Hex(absl::string_view data) {
  Sha256 h;
  h.Update(data);
  return DigestHex(h.Finish());
}

absl::StatusOr<std::string> Sha256FileHex(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  Sha256 h;
  std::vector<char> buf(size_t{1} << 20);
  while (true) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return absl::DataLossError(absl::StrCat("reading '", path, "': ", std::strerror(err)));
    }
    if (n == 0) break;
    h.Update(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return DigestHex(h.Finish());
}

}  // namespace dpfleet
