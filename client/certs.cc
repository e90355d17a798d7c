#include "client/certs.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/args.h"
#include "client/cli.h"
#include "common/status.h"

namespace dpfleet::client {
namespace {

struct OpenSslFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, OpenSslFree>;

// The reason OpenSSL gives for the last failure, then its error queue is
// cleared so the next call starts clean.
absl::Status OpenSslError(absl::string_view what) {
  const unsigned long code = ERR_get_error();
  char reason[256] = "unknown OpenSSL error";
  if (code != 0) ERR_error_string_n(code, reason, sizeof(reason));
  ERR_clear_error();
  return absl::InternalError(absl::StrCat(what, ": ", reason));
}

bool IsIpAddress(const std::string& name) {
  unsigned char buf[16];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

// A DNS name as a certificate may carry it: dot-separated labels of
// letters, digits and '-' (not at either end), at most 63 characters each
// and 253 in all; "*." may lead (a wildcard for one label).
bool IsDnsName(std::string name) {
  if (name.rfind("*.", 0) == 0) name = name.substr(2);
  if (name.empty() || name.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
  }
  return true;
}

absl::StatusOr<Owned<EVP_PKEY>> NewKey() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (key == nullptr) return OpenSslError("generating a P-256 key");
  return Owned<EVP_PKEY>(key);
}

enum class CertKind { kCa, kServer, kClient };

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  Owned<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return OpenSslError(absl::StrCat("certificate extension ", OBJ_nid2sn(nid), "=", value));
  }
  return absl::OkStatus();
}

// A certificate for `key` named `cn`, signed by issuer/issuer_key (itself
// for the CA). `san` is a subjectAltName value ("DNS:a,IP:1.2.3.4").
absl::StatusOr<Owned<X509>> MakeCertificate(CertKind kind, const std::string& cn, const std::string& san,
                                            EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, int days) {
  Owned<X509> cert(X509_new());
  if (!cert || X509_set_version(cert.get(), 2) != 1) return OpenSslError("new certificate");
  // A random positive 127-bit serial, as the baseline requirements ask.
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return OpenSslError("random serial number");
  serial[0] &= 0x7f;
  Owned<BIGNUM> bn(BN_bin2bn(serial, sizeof(serial), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return OpenSslError("serial number");
  }
  // Valid from an hour ago, so a fleet whose clocks disagree a little can
  // use the certificates at once.
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), days, 0, nullptr) == nullptr) {
    return OpenSslError("validity");
  }
  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("dpfleet"),
                                 -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()),
                                 -1, -1, 0) != 1) {
    return OpenSslError(absl::StrCat("subject CN=", cn));
  }
  X509* signer = issuer == nullptr ? cert.get() : issuer;
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) != 1 ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return OpenSslError("issuer and public key");
  }
  RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_subject_key_identifier, "hash"));
  switch (kind) {
    case CertKind::kCa:
      RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
      RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign"));
      break;
    case CertKind::kServer:
    case CertKind::kClient:
      RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_authority_key_identifier, "keyid:always"));
      RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE"));
      RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_key_usage, "critical,digitalSignature"));
      // A worker certificate cannot serve as the coordinator's and the
      // coordinator's cannot act as a worker.
      RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_ext_key_usage,
                                   kind == CertKind::kServer ? "serverAuth" : "clientAuth"));
      RETURN_IF_ERROR(AddExtension(cert.get(), signer, NID_subject_alt_name, san));
      break;
  }
  if (X509_sign(cert.get(), issuer_key == nullptr ? key : issuer_key, EVP_sha256()) == 0) {
    return OpenSslError(absl::StrCat("signing the certificate of ", cn));
  }
  return cert;
}

absl::StatusOr<std::string> BioContents(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  if (n < 0) return OpenSslError("reading PEM");
  return std::string(data, static_cast<size_t>(n));
}

absl::StatusOr<std::string> CertPem(X509* cert) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return OpenSslError("PEM of a certificate");
  return BioContents(bio.get());
}

absl::StatusOr<std::string> KeyPem(EVP_PKEY* key) {
  Owned<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("PEM of a private key");
  }
  return BioContents(bio.get());
}

absl::StatusOr<Owned<X509>> ParseCert(const std::string& pem, absl::string_view what) {
  Owned<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Owned<X509> cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(what, " is not a PEM certificate"));
  }
  return cert;
}

// Creates `path` (which must not exist) with `mode` whatever the umask.
absl::Status WriteNewFile(const std::string& path, const std::string& bytes, mode_t mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return absl::FailedPreconditionError(absl::StrCat("cannot create '", path, "': ", std::strerror(errno)));
  bool ok = fchmod(fd, mode) == 0;
  for (size_t done = 0; ok && done < bytes.size();) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = fsync(fd) == 0 && ok;
  ok = close(fd) == 0 && ok;
  if (!ok) {
    unlink(path.c_str());
    return absl::InternalError(absl::StrCat("cannot write '", path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> WriteFleetCertificates(const FleetCertOptions& options) {
  if (options.out_dir.empty()) return absl::InvalidArgumentError("--out: a directory is required");
  if (options.server_names.empty()) {
    return absl::InvalidArgumentError("--server-name: at least one name the coordinator is reached by is required");
  }
  if (options.workers < 0 || options.workers > 10000) {
    return absl::InvalidArgumentError(absl::StrCat("--workers: '", options.workers, "' must be in 0..10000"));
  }
  if (options.ca_days < 1 || options.leaf_days < 1 || options.leaf_days > options.ca_days) {
    return absl::InvalidArgumentError(absl::StrCat("--days: '", options.leaf_days,
                                                   "' must be at least 1 and at most the CA's ", options.ca_days));
  }
  std::vector<std::string> sans;
  for (const std::string& name : options.server_names) {
    if (IsIpAddress(name)) {
      sans.push_back("IP:" + name);
    } else if (IsDnsName(name)) {
      sans.push_back("DNS:" + name);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--server-name: '", name, "' is neither an IP address nor a DNS name"));
    }
  }
  const std::string dir = options.out_dir;
  std::vector<std::string> files = {dir + "/ca.pem", dir + "/ca-key.pem", dir + "/server.pem",
                                    dir + "/server-key.pem"};
  for (int k = 1; k <= options.workers; ++k) {
    files.push_back(absl::StrCat(dir, "/worker-", k, ".pem"));
    files.push_back(absl::StrCat(dir, "/worker-", k, "-key.pem"));
  }
  // Nothing is written when anything would be overwritten.
  for (const std::string& f : files) {
    std::error_code ec;
    if (std::filesystem::symlink_status(f, ec).type() != std::filesystem::file_type::not_found) {
      return absl::AlreadyExistsError(absl::StrCat("'", f, "' already exists; refusing to overwrite it"));
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("--out: cannot create '", dir, "': ", ec.message()));

  unsigned char id[4];
  if (RAND_bytes(id, sizeof(id)) != 1) return OpenSslError("random CA name");
  const std::string ca_name = absl::StrFormat("dpfleet CA %02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
  ASSIGN_OR_RETURN(Owned<EVP_PKEY> ca_key, NewKey());
  ASSIGN_OR_RETURN(Owned<X509> ca,
                   MakeCertificate(CertKind::kCa, ca_name, "", ca_key.get(), nullptr, nullptr, options.ca_days));
  std::vector<std::pair<std::string, std::string>> contents;  // (cert pem, key pem) per file pair
  ASSIGN_OR_RETURN(std::string ca_pem, CertPem(ca.get()));
  ASSIGN_OR_RETURN(std::string ca_key_pem, KeyPem(ca_key.get()));
  contents.emplace_back(std::move(ca_pem), std::move(ca_key_pem));
  {
    ASSIGN_OR_RETURN(Owned<EVP_PKEY> key, NewKey());
    ASSIGN_OR_RETURN(Owned<X509> cert, MakeCertificate(CertKind::kServer, options.server_names[0],
                                                       absl::StrJoin(sans, ","), key.get(), ca.get(), ca_key.get(),
                                                       options.leaf_days));
    ASSIGN_OR_RETURN(std::string cert_pem, CertPem(cert.get()));
    ASSIGN_OR_RETURN(std::string key_pem, KeyPem(key.get()));
    contents.emplace_back(std::move(cert_pem), std::move(key_pem));
  }
  for (int k = 1; k <= options.workers; ++k) {
    const std::string name = absl::StrCat("worker-", k);
    ASSIGN_OR_RETURN(Owned<EVP_PKEY> key, NewKey());
    ASSIGN_OR_RETURN(Owned<X509> cert, MakeCertificate(CertKind::kClient, name, "DNS:" + name, key.get(), ca.get(),
                                                       ca_key.get(), options.leaf_days));
    ASSIGN_OR_RETURN(std::string cert_pem, CertPem(cert.get()));
    ASSIGN_OR_RETURN(std::string key_pem, KeyPem(key.get()));
    contents.emplace_back(std::move(cert_pem), std::move(key_pem));
  }
  for (size_t i = 0; i < contents.size(); ++i) {
    RETURN_IF_ERROR(WriteNewFile(files[2 * i], contents[i].first, 0644));
    RETURN_IF_ERROR(WriteNewFile(files[2 * i + 1], contents[i].second, 0600));
  }
  return files;
}

absl::Status VerifyCertificate(const std::string& ca_pem, const std::string& cert_pem, const std::string& purpose,
                               const std::string& host) {
  ASSIGN_OR_RETURN(Owned<X509> ca, ParseCert(ca_pem, "the CA"));
  ASSIGN_OR_RETURN(Owned<X509> cert, ParseCert(cert_pem, "the certificate"));
  Owned<X509_STORE> store(X509_STORE_new());
  Owned<X509_STORE_CTX> ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca.get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1) {
    return OpenSslError("certificate store");
  }
  if (X509_STORE_CTX_set_default(ctx.get(), purpose.c_str()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("purpose '", purpose, "' is not ssl_server or ssl_client"));
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  if (!host.empty()) {
    const int set = IsIpAddress(host) ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                                      : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    if (set != 1) return OpenSslError(absl::StrCat("host '", host, "'"));
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    const int error = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return absl::PermissionDeniedError(
        absl::StrCat("certificate does not verify: ", X509_verify_cert_error_string(error)));
  }
  return absl::OkStatus();
}

int RunAdminCerts(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ArgSpec spec;
  spec.values = {"--out", "--workers", "--days"};
  spec.lists = {"--server-name"};
  spec.positionals = false;
  absl::StatusOr<Args> parsed = ParseArgs(args, spec);
  if (!parsed.ok()) {
    err << "dpctl admin certs: " << parsed.status().message() << "\n";
    return kExitUsage;
  }
  FleetCertOptions options;
  options.out_dir = parsed->values.count("--out") ? parsed->values.at("--out") : "";
  if (parsed->lists.count("--server-name")) options.server_names = parsed->lists.at("--server-name");
  if (parsed->values.count("--workers") && !absl::SimpleAtoi(parsed->values.at("--workers"), &options.workers)) {
    err << "dpctl admin certs: --workers '" << parsed->values.at("--workers") << "' is not an integer\n";
    return kExitUsage;
  }
  if (parsed->values.count("--days") && !absl::SimpleAtoi(parsed->values.at("--days"), &options.leaf_days)) {
    err << "dpctl admin certs: --days '" << parsed->values.at("--days") << "' is not an integer\n";
    return kExitUsage;
  }
  absl::StatusOr<std::vector<std::string>> files = WriteFleetCertificates(options);
  if (!files.ok()) {
    err << "dpctl admin certs: " << absl::StatusCodeToString(files.status().code()) << ": "
        << files.status().message() << "\n";
    return files.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  for (const std::string& f : *files) out << "wrote " << f << "\n";
  out << "coordinator: --tls-cert server.pem --tls-key server-key.pem --client-ca ca.pem; "
         "worker K: --tls-ca ca.pem --tls-cert worker-K.pem --tls-key worker-K-key.pem; dpctl: --ca ca.pem. "
         "Keep ca-key.pem offline.\n";
  return kExitOk;
}

}  // namespace dpfleet::client
