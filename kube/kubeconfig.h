// Where and how to reach the Kubernetes API: a kubeconfig file or the in-cluster service account.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ambient::kube {

// A user's `exec` credential plugin (gke-gcloud-auth-plugin, aws eks get-token, kubelogin…),
// accepted only where the caller asks for it (an operator's CLI: explain), never by the plugin or
// the agent, which must not run programs named in a file.
struct ExecPlugin {
  std::string api_version;  // client.authentication.k8s.io/v1 or v1beta1
  std::string command;      // a name looked up in PATH, or a path (relative: to the kubeconfig)
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::string install_hint;
  bool provide_cluster_info = false;
  std::string field;  // users[name=…].user.exec, for messages
};

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
  std::string context;             // the context this came from ("" in-cluster)
  std::string namespace_;          // that context's namespace ("" when it sets none)
  std::optional<ExecPlugin> exec;  // run_exec_plugin() turns it into a token or certificate
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
// auth-provider users, basic auth and proxy-url are rejected as unsupported; exec users too
// unless `allow_exec`.
Kubeconfig parse_kubeconfig(std::string_view yaml, const std::filesystem::path& base_dir);
Kubeconfig parse_kubeconfig(std::string_view yaml, const std::filesystem::path& base_dir,
                            std::string_view source_name, std::string_view context = {},
                            bool allow_exec = false);
Kubeconfig load_kubeconfig(const std::filesystem::path& path, std::string_view context = {},
                           bool allow_exec = false);

// Runs `config.exec` as kubectl does (KUBERNETES_EXEC_INFO set, stdin /dev/null, stderr passed
// through) and puts the ExecCredential's token or client certificate into `config`. Throws
// KubeconfigError naming the field and what went wrong (not found — with the install hint —,
// exit status, timeout, an answer that is not an ExecCredential). Never logs the token.
void run_exec_plugin(Kubeconfig& config,
                     std::chrono::milliseconds timeout = std::chrono::seconds(60));

// In-cluster: KUBERNETES_SERVICE_HOST/PORT and the service-account directory (ca.crt, token).
Kubeconfig in_cluster_config(
    const std::filesystem::path& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

}  // namespace ambient::kube
