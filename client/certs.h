// `dpctl admin certs`: the certificates a TLS fleet needs, made with
// OpenSSL's library (no shell-out): a fleet CA, the coordinator's server
// certificate with a subjectAltName for every name clients dial, and one
// client certificate per worker (worker-1 .. worker-N, the name is the
// certificate's CN and its only identity).
//
// Keys are ECDSA P-256 and are written with mode 0600; certificates 0644.
// Refuses to overwrite any file that already exists (a fleet's CA replaced
// by accident would lock every worker out), and refuses a server name that
// is neither an IP address nor a DNS name, naming it.
//
// Never prints or logs a private key.
#ifndef DPFLEET_CLIENT_CERTS_H_
#define DPFLEET_CLIENT_CERTS_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dpfleet::client {

struct FleetCertOptions {
  std::string out_dir;
  std::vector<std::string> server_names;  // DNS names or IP addresses; the first is the CN
  int workers = 0;
  int ca_days = 3650;
  int leaf_days = 397;
};

// Writes ca.pem, ca-key.pem, server.pem, server-key.pem and
// worker-K.pem / worker-K-key.pem for K in 1..workers into out_dir (created
// if needed). Returns the files written, in that order.
absl::StatusOr<std::vector<std::string>> WriteFleetCertificates(const FleetCertOptions& options);

// Checks that `cert_pem` chains to `ca_pem` (OpenSSL's X509_verify_cert)
// for the given purpose ("sslserver" or "sslclient"); when `host` is not
// empty, also that the certificate names it (DNS or IP subjectAltName).
absl::Status VerifyCertificate(const std::string& ca_pem, const std::string& cert_pem, const std::string& purpose,
                               const std::string& host = "");

// `dpctl admin certs` (args after "certs").
int RunAdminCerts(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_CERTS_H_
