// Certificates for the API stand-in, made with the OpenSSL API at start: a CA, a server
// certificate for 127.0.0.1/::1/localhost signed by it, and client certificates on demand.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

namespace ambient::testing {

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

struct CertifiedKey {
  X509Ptr cert;
  PkeyPtr key;
  std::string cert_pem() const;
  std::string key_pem() const;
};

class Pki {
 public:
  // `extra_sans` are added to the server certificate ("IP:10.0.0.1", "DNS:api.local").
  explicit Pki(const std::vector<std::string>& extra_sans = {});

  const CertifiedKey& ca() const { return ca_; }
  const CertifiedKey& server() const { return server_; }
  const std::string& ca_pem() const { return ca_pem_; }

  // A client certificate (CN = user, O = each group) for x509 client authentication.
  CertifiedKey issue_client(const std::string& user, const std::vector<std::string>& groups) const;

 private:
  CertifiedKey ca_;
  CertifiedKey server_;
  std::string ca_pem_;
};

// Throws std::runtime_error with OpenSSL's error queue when `ok` is false.
void openssl_check(bool ok, const char* what);

}  // namespace ambient::testing
