#include "install/plugin_kubeconfig.h"

#include <nlohmann/json.hpp>

#include "install/errors.h"
#include "install/files.h"
#include "kube/base64.h"
#include "kube/kubeconfig.h"

namespace ambient::install {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kHeader =
    "# Written by ambient-cni-node for the ambient-cni plugin; rewritten when the token rotates.\n";

// A YAML double-quoted scalar: JSON's string syntax is valid YAML.
std::string quoted(const std::string& s) {
  return nlohmann::json(s).dump();
}

std::string required_file(const fs::path& path, bool trim) {
  auto text = read_file(path);
  if (!text) throw InstallError("service account: " + path.string() + " does not exist");
  if (trim) {
    const auto last = text->find_last_not_of(" \t\r\n");
    text->erase(last == std::string::npos ? 0 : last + 1);
  }
  if (text->empty()) throw InstallError("service account: " + path.string() + " is empty");
  return *text;
}

}  // namespace

ServiceAccountCredentials read_service_account(const fs::path& sa_dir) {
  kube::Kubeconfig in_cluster;
  try {
    in_cluster = kube::in_cluster_config(sa_dir);  // server URL (IPv6 bracketed), files present
  } catch (const kube::KubeconfigError& e) {
    throw InstallError(std::string("plugin kubeconfig: ") + e.what());
  }
  ServiceAccountCredentials c;
  c.server = in_cluster.server;
  c.ca_pem = required_file(in_cluster.ca_file, /*trim=*/false);
  c.token = required_file(in_cluster.token_file, /*trim=*/true);
  return c;
}

std::string render_plugin_kubeconfig(const ServiceAccountCredentials& c) {
  std::string y(kHeader);
  y += "apiVersion: v1\n";
  y += "kind: Config\n";
  y += "clusters:\n";
  y += "- name: local\n";
  y += "  cluster:\n";
  y += "    server: " + quoted(c.server) + "\n";
  y += "    certificate-authority-data: " + quoted(kube::base64_encode(c.ca_pem)) + "\n";
  y += "users:\n";
  y += "- name: ambient-cni\n";
  y += "  user:\n";
  y += "    token: " + quoted(c.token) + "\n";
  y += "contexts:\n";
  y += "- name: ambient-cni\n";
  y += "  context:\n";
  y += "    cluster: local\n";
  y += "    user: ambient-cni\n";
  y += "current-context: ambient-cni\n";
  return y;
}

bool is_our_kubeconfig(std::string_view text) {
  return text.starts_with(kHeader);
}

}  // namespace ambient::install
