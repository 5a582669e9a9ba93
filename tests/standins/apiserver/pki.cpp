#include "tests/standins/apiserver/pki.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <stdexcept>

namespace ambient::testing {
namespace {

PkeyPtr new_key() {
  // EC P-256: fast to generate (the stand-in makes three keys per start) and accepted by Go's
  // crypto/tls (kubectl) and libcurl/OpenSSL alike.
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  openssl_check(key != nullptr, "EC P-256 key generation");
  return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  openssl_check(ext != nullptr, "certificate extension");
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  openssl_check(ok == 1, "X509_add_ext");
}

X509Ptr new_cert(EVP_PKEY* key, const std::string& common_name,
                 const std::vector<std::string>& organizations, long valid_seconds) {
  X509Ptr cert(X509_new());
  openssl_check(cert != nullptr, "X509_new");
  openssl_check(X509_set_version(cert.get(), 2) == 1, "X509_set_version");
  // A random 127-bit serial: certificates of different runs never collide in a client's cache.
  BIGNUM* serial = BN_new();
  openssl_check(serial != nullptr && BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1,
                "serial");
  ASN1_INTEGER* asn1_serial = BN_to_ASN1_INTEGER(serial, nullptr);
  BN_free(serial);
  openssl_check(asn1_serial != nullptr, "serial");
  X509_set_serialNumber(cert.get(), asn1_serial);
  ASN1_INTEGER_free(asn1_serial);
  // Backdated an hour so a client with a slightly slow clock still accepts it.
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), valid_seconds);
  X509_NAME* name = X509_get_subject_name(cert.get());
  for (const auto& organization : organizations) {
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(organization.c_str()), -1, -1,
                               0);
  }
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  openssl_check(X509_set_pubkey(cert.get(), key) == 1, "X509_set_pubkey");
  return cert;
}

void sign(X509* cert, X509* issuer, EVP_PKEY* issuer_key) {
  openssl_check(X509_set_issuer_name(cert, X509_get_subject_name(issuer)) == 1, "issuer name");
  openssl_check(X509_sign(cert, issuer_key, EVP_sha256()) > 0, "X509_sign");
}

constexpr long kDay = 24 * 3600;

}  // namespace

void openssl_check(bool ok, const char* what) {
  if (ok) return;
  std::string message = std::string("OpenSSL: ") + what + " failed";
  while (const unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    message += std::string(": ") + buffer;
  }
  throw std::runtime_error(message);
}

std::string CertifiedKey::cert_pem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  openssl_check(bio != nullptr && PEM_write_bio_X509(bio, cert.get()) == 1, "PEM_write_bio_X509");
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(size));
  BIO_free(bio);
  return pem;
}

std::string CertifiedKey::key_pem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  openssl_check(bio != nullptr && PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0,
                                                           nullptr, nullptr) == 1,
                "PEM_write_bio_PrivateKey");
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(size));
  BIO_free(bio);
  return pem;
}

Pki::Pki(const std::vector<std::string>& extra_sans) {
  ca_.key = new_key();
  ca_.cert = new_cert(ca_.key.get(), "ambient-apiserver-standin-ca", {}, 3650 * kDay);
  add_extension(ca_.cert.get(), ca_.cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(ca_.cert.get(), ca_.cert.get(), NID_key_usage,
                "critical,keyCertSign,cRLSign,digitalSignature");
  add_extension(ca_.cert.get(), ca_.cert.get(), NID_subject_key_identifier, "hash");
  sign(ca_.cert.get(), ca_.cert.get(), ca_.key.get());
  ca_pem_ = ca_.cert_pem();

  server_.key = new_key();
  server_.cert = new_cert(server_.key.get(), "kube-apiserver", {}, 365 * kDay);
  std::string sans = "IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes.default.svc";
  for (const auto& san : extra_sans) sans += "," + san;
  add_extension(server_.cert.get(), ca_.cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(server_.cert.get(), ca_.cert.get(), NID_key_usage,
                "critical,digitalSignature,keyEncipherment");
  add_extension(server_.cert.get(), ca_.cert.get(), NID_ext_key_usage, "serverAuth");
  add_extension(server_.cert.get(), ca_.cert.get(), NID_subject_alt_name, sans);
  add_extension(server_.cert.get(), ca_.cert.get(), NID_authority_key_identifier, "keyid:always");
  sign(server_.cert.get(), ca_.cert.get(), ca_.key.get());
}

CertifiedKey Pki::issue_client(const std::string& user,
                               const std::vector<std::string>& groups) const {
  CertifiedKey client;
  client.key = new_key();
  client.cert = new_cert(client.key.get(), user, groups, 365 * kDay);
  add_extension(client.cert.get(), ca_.cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(client.cert.get(), ca_.cert.get(), NID_key_usage, "critical,digitalSignature");
  add_extension(client.cert.get(), ca_.cert.get(), NID_ext_key_usage, "clientAuth");
  add_extension(client.cert.get(), ca_.cert.get(), NID_authority_key_identifier, "keyid:always");
  sign(client.cert.get(), ca_.cert.get(), ca_.key.get());
  return client;
}

}  // namespace ambient::testing
