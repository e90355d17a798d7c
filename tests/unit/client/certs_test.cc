// `dpctl admin certs` (client/certs.h): the chain verifies with OpenSSL's
// X509_verify_cert for the names and purposes it was made for, and for no
// others; keys are private to their owner; nothing is overwritten.
#include "client/certs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <filesystem>
#include <sstream>

#include "tests/testing/files.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet::client {
namespace {

using ::testing::HasSubstr;

class CertsTest : public ::testing::Test {
 protected:
  std::string Make(const std::string& sub, std::vector<std::string> names = {"127.0.0.1", "coord.example"},
                   int workers = 2) {
    FleetCertOptions o;
    o.out_dir = dir_.Join(sub);
    o.server_names = std::move(names);
    o.workers = workers;
    auto files = WriteFleetCertificates(o);
    EXPECT_TRUE(files.ok()) << files.status();
    return o.out_dir;
  }
  std::string Read(const std::string& d, const std::string& f) { return testing::ReadAll(d + "/" + f); }
  testing::TempDir dir_;
};

TEST_F(CertsTest, ChainVerifiesForEveryServerNameAndEveryWorker) {
  const std::string d = Make("fleet");
  const std::string ca = Read(d, "ca.pem");
  EXPECT_TRUE(VerifyCertificate(ca, Read(d, "server.pem"), "ssl_server", "127.0.0.1").ok());
  EXPECT_TRUE(VerifyCertificate(ca, Read(d, "server.pem"), "ssl_server", "coord.example").ok());
  EXPECT_TRUE(VerifyCertificate(ca, Read(d, "worker-1.pem"), "ssl_client").ok());
  EXPECT_TRUE(VerifyCertificate(ca, Read(d, "worker-2.pem"), "ssl_client").ok());
  EXPECT_FALSE(std::filesystem::exists(d + "/worker-3.pem"));
}

TEST_F(CertsTest, RefusesOtherNamesPurposesAndCas) {
  const std::string d = Make("fleet");
  const std::string other = Make("other");
  const std::string ca = Read(d, "ca.pem");
  auto wrong_host = VerifyCertificate(ca, Read(d, "server.pem"), "ssl_server", "10.0.0.9");
  EXPECT_EQ(wrong_host.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(wrong_host.message(), HasSubstr("mismatch"));
  EXPECT_FALSE(VerifyCertificate(ca, Read(d, "server.pem"), "ssl_server", "evil.example").ok());
  // A worker certificate cannot serve as the coordinator, nor the
  // coordinator's as a worker.
  EXPECT_FALSE(VerifyCertificate(ca, Read(d, "worker-1.pem"), "ssl_server").ok());
  EXPECT_FALSE(VerifyCertificate(ca, Read(d, "server.pem"), "ssl_client").ok());
  // Another fleet's certificates do not chain to this CA.
  EXPECT_FALSE(VerifyCertificate(ca, Read(other, "worker-1.pem"), "ssl_client").ok());
  EXPECT_FALSE(VerifyCertificate(ca, Read(other, "server.pem"), "ssl_server", "127.0.0.1").ok());
}

TEST_F(CertsTest, KeysAreP256AndPrivateCertificatesReadable) {
  const std::string d = Make("fleet");
  for (const char* key : {"ca-key.pem", "server-key.pem", "worker-1-key.pem", "worker-2-key.pem"}) {
    struct stat st;
    ASSERT_EQ(stat((d + "/" + key).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << key;
    const std::string pem = Read(d, key);
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    EVP_PKEY* k = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    ASSERT_NE(k, nullptr) << key;
    EXPECT_TRUE(EVP_PKEY_is_a(k, "EC")) << key;
    char group[64] = {0};
    size_t len = 0;
    ASSERT_EQ(EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof(group), &len), 1);
    EXPECT_STREQ(group, "prime256v1") << key;
    EVP_PKEY_free(k);
  }
  struct stat st;
  ASSERT_EQ(stat((d + "/server.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  // The worker's name is its certificate's CN; the leaf lives about a year.
  const std::string pem = Read(d, "worker-2.pem");
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(cert, nullptr);
  char cn[64] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
  EXPECT_STREQ(cn, "worker-2");
  int days = 0, secs = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert), X509_get0_notAfter(cert)), 1);
  EXPECT_GE(days, 397);
  EXPECT_LE(days, 398);
  X509_free(cert);
}

TEST_F(CertsTest, NeverOverwritesAndNamesBadInput) {
  const std::string d = Make("fleet");
  const std::string ca_before = Read(d, "ca.pem");
  FleetCertOptions o;
  o.out_dir = d;
  o.server_names = {"127.0.0.1"};
  auto again = WriteFleetCertificates(o);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("ca.pem"));
  EXPECT_EQ(Read(d, "ca.pem"), ca_before);
  o.out_dir = dir_.Join("bad");
  o.server_names = {"coord,IP:1.2.3.4"};
  auto bad = WriteFleetCertificates(o);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("'coord,IP:1.2.3.4' is neither an IP address nor a DNS name"));
  EXPECT_FALSE(std::filesystem::exists(o.out_dir)) << "nothing written for refused input";
  o.server_names = {};
  EXPECT_EQ(WriteFleetCertificates(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CertsTest, DpctlVerbWritesTheFilesAndRefusesUsageErrors) {
  std::ostringstream out, err;
  EXPECT_EQ(RunAdminCerts({"--out", dir_.Join("v"), "--server-name", "localhost", "--server-name", "::1",
                           "--workers", "1"},
                          out, err),
            0)
      << err.str();
  EXPECT_THAT(out.str(), HasSubstr("worker-1-key.pem"));
  EXPECT_TRUE(VerifyCertificate(testing::ReadAll(dir_.Join("v/ca.pem")), testing::ReadAll(dir_.Join("v/server.pem")),
                                "ssl_server", "::1")
                  .ok());
  std::ostringstream out2, err2;
  EXPECT_EQ(RunAdminCerts({"--out", dir_.Join("w"), "--workers", "x", "--server-name", "a"}, out2, err2), 2);
  EXPECT_THAT(err2.str(), HasSubstr("--workers 'x'"));
}

}  // namespace
}  // namespace dpfleet::client
