// Where and how to reach the Kubernetes API: a kubeconfig file or the in-cluster service account.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ambient::kube {

struct Kubeconfig {
  std::string server;      // https://host:port
  std::string ca_pem;      // certificate-authority-data, decoded
  std::string ca_file;     // certificate-authority (absolute path)
  std::string token;       // bearer token
  std::string token_file;  // tokenFile (read on every request, so rotation is picked up)
  std::string client_cert_pem;
  std::string client_cert_file;
  std::string client_key_pem;
  std::string client_key_file;
  bool insecure_skip_tls_verify = false;  // only when the kubeconfig says so
  std::string tls_server_name;
  std::string context;     // the context this came from ("" in-cluster)
  std::string namespace_;  // that context's namespace ("" when it sets none)
};

// A kubeconfig that cannot be used; the message names the file and the field.
class KubeconfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses a context of a kubeconfig (YAML): `context`, or current-context when empty (kubectl's
// --context). Relative file paths resolve against
// `base_dir`; referenced files must exist. Throws KubeconfigError, whose message starts with
// `source_name` (load_kubeconfig uses "kubeconfig <path>") and names the offending field, e.g.
// "kubeconfig /etc/k: users[name=admin].user.client-key-data is not valid base64".
// exec/auth-provider users, basic auth and proxy-url are rejected as unsupported.
Kubeconfig parse_kubeconfig(std::string_view yaml, const std::filesystem::path& base_dir);
Kubeconfig parse_kubeconfig(std::string_view yaml, const std::filesystem::path& base_dir,
                            std::string_view source_name, std::string_view context = {});
Kubeconfig load_kubeconfig(const std::filesystem::path& path, std::string_view context = {});

// In-cluster: KUBERNETES_SERVICE_HOST/PORT and the service-account directory (ca.crt, token).
Kubeconfig in_cluster_config(
    const std::filesystem::path& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

}  // namespace ambient::kube
