// The plugin's kubeconfig: how the plugin (exec'd by the runtime on the host, outside any pod)
// reaches the API server with the node component's service account.
//
// CA and token are written inline (certificate-authority-data, token), not as file paths: the
// service-account volume lives in a kubelet-managed directory whose host path includes our pod's
// UID and changes with every pod, so no path inside it is stable for the plugin; and one file
// replaced atomically gives the plugin a consistent server/CA/token triple on every read. The
// cost is a rewrite when the token rotates: the watcher follows the service-account directory
// (kubelet swaps its `..data` symlink) and rewrites the file when its rendering changes.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace ambient::install {

inline constexpr const char* kDefaultServiceAccountDir =
    "/var/run/secrets/kubernetes.io/serviceaccount";

struct ServiceAccountCredentials {
  std::string server;  // https://host:port (an IPv6 host in brackets)
  std::string ca_pem;
  std::string token;
};

// KUBERNETES_SERVICE_HOST/PORT from the environment, ca.crt and token from `sa_dir`. Throws
// InstallError naming the variable or file that is missing or empty.
ServiceAccountCredentials read_service_account(const std::filesystem::path& sa_dir);

// The kubeconfig text (YAML) for those credentials. Its first line marks it as ours.
std::string render_plugin_kubeconfig(const ServiceAccountCredentials& credentials);

// Whether a kubeconfig text was written by render_plugin_kubeconfig (uninstall removes only
// those: a kubeconfig path may point at a file the operator owns).
bool is_our_kubeconfig(std::string_view text);

}  // namespace ambient::install
