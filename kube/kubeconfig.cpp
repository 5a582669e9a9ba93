#include "kube/kubeconfig.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "kube/base64.h"

namespace ambient::kube {
namespace {

namespace fs = std::filesystem;

// Builds errors that always name the source and the field ("kubeconfig /x: users[name=u]...").
class Reader {
 public:
  Reader(std::string source, fs::path base_dir)
      : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw KubeconfigError(source_ + ": " + what);
  }

  // An optional string field; non-scalars are an error, not silently ignored.
  std::string string_field(const YAML::Node& map, const std::string& key,
                           const std::string& field) const {
    const YAML::Node node = map[key];
    if (!node || node.IsNull()) return {};
    if (!node.IsScalar()) fail(field + " must be a string");
    return node.as<std::string>();
  }

  bool bool_field(const YAML::Node& map, const std::string& key, const std::string& field) const {
    const YAML::Node node = map[key];
    if (!node || node.IsNull()) return false;
    bool value = false;
    if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
      fail(field + " must be true or false");
    }
    return value;
  }

  std::string base64_field(const YAML::Node& map, const std::string& key,
                           const std::string& field) const {
    const std::string text = string_field(map, key, field);
    if (text.empty()) return {};
    auto decoded = base64_decode(text);
    if (!decoded) fail(field + " is not valid base64");
    if (decoded->empty()) fail(field + " is empty");
    return *decoded;
  }

  // A file field: resolved against the kubeconfig's directory and required to exist, so a typo
  // is reported here, naming the field, rather than as a TLS failure later.
  std::string file_field(const YAML::Node& map, const std::string& key,
                         const std::string& field) const {
    const std::string text = string_field(map, key, field);
    if (text.empty()) return {};
    fs::path path(text);
    if (path.is_relative()) path = base_dir_ / path;
    path = path.lexically_normal();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      fail(field + ": " + path.string() + ": " + (ec ? ec.message() : "not a regular file"));
    }
    return path.string();
  }

  // The entry of a named list (clusters, contexts, users) with the given name.
  YAML::Node named_entry(const YAML::Node& root, const std::string& list, const std::string& name,
                         const std::string& inner) const {
    const YAML::Node entries = root[list];
    if (entries && !entries.IsNull() && !entries.IsSequence()) fail(list + " must be a list");
    if (entries && entries.IsSequence()) {
      for (const auto& entry : entries) {
        if (!entry.IsMap()) fail(list + " entries must be mappings");
        const YAML::Node entry_name = entry["name"];
        if (entry_name && entry_name.IsScalar() && entry_name.as<std::string>() == name) {
          const YAML::Node body = entry[inner];
          const std::string field = list + "[name=" + name + "]." + inner;
          if (!body || body.IsNull()) fail(field + " is missing");
          if (!body.IsMap()) fail(field + " must be a mapping");
          return body;
        }
      }
    }
    fail(list + ": no entry named \"" + name + "\"");
  }

 private:
  std::string source_;
  fs::path base_dir_;
};

Kubeconfig parse(std::string_view yaml, const fs::path& base_dir, const std::string& source,
                 std::string_view wanted_context = {}) {
  Reader reader(source, base_dir);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    reader.fail("not valid YAML: " + e.msg + " (line " + std::to_string(e.mark.line + 1) +
                ", column " + std::to_string(e.mark.column + 1) + ")");
  }
  if (!root || root.IsNull()) reader.fail("is empty");
  if (!root.IsMap()) reader.fail("is not a YAML mapping");

  Kubeconfig config;
  try {
    std::string context_name(wanted_context);
    if (context_name.empty()) {
      context_name = reader.string_field(root, "current-context", "current-context");
      if (context_name.empty()) reader.fail("current-context is not set");
    }
    config.context = context_name;

    const YAML::Node context = reader.named_entry(root, "contexts", context_name, "context");
    const std::string context_field = "contexts[name=" + context_name + "].context";
    const std::string cluster_name =
        reader.string_field(context, "cluster", context_field + ".cluster");
    if (cluster_name.empty()) reader.fail(context_field + ".cluster is not set");
    const std::string user_name = reader.string_field(context, "user", context_field + ".user");
    config.namespace_ = reader.string_field(context, "namespace", context_field + ".namespace");

    const YAML::Node cluster = reader.named_entry(root, "clusters", cluster_name, "cluster");
    const std::string cf = "clusters[name=" + cluster_name + "].cluster";
    config.server = reader.string_field(cluster, "server", cf + ".server");
    if (config.server.empty()) reader.fail(cf + ".server is not set");
    if (!config.server.starts_with("https://") && !config.server.starts_with("http://")) {
      reader.fail(cf + ".server: \"" + config.server + "\" is not an http(s) URL");
    }
    while (config.server.ends_with('/')) config.server.pop_back();
    config.ca_pem = reader.base64_field(cluster, "certificate-authority-data",
                                        cf + ".certificate-authority-data");
    config.ca_file =
        reader.file_field(cluster, "certificate-authority", cf + ".certificate-authority");
    config.insecure_skip_tls_verify =
        reader.bool_field(cluster, "insecure-skip-tls-verify", cf + ".insecure-skip-tls-verify");
    config.tls_server_name =
        reader.string_field(cluster, "tls-server-name", cf + ".tls-server-name");
    if (config.insecure_skip_tls_verify && (!config.ca_pem.empty() || !config.ca_file.empty())) {
      // kubectl refuses this combination too: the CA would be silently ignored.
      reader.fail(cf + ".insecure-skip-tls-verify cannot be combined with a certificate authority");
    }
    if (!reader.string_field(cluster, "proxy-url", cf + ".proxy-url").empty()) {
      reader.fail(cf + ".proxy-url is not supported");
    }

    if (!user_name.empty()) {
      const YAML::Node user = reader.named_entry(root, "users", user_name, "user");
      const std::string uf = "users[name=" + user_name + "].user";
      for (const char* unsupported : {"exec", "auth-provider", "username", "password"}) {
        if (user[unsupported]) reader.fail(uf + "." + unsupported + " is not supported");
      }
      config.token = reader.string_field(user, "token", uf + ".token");
      config.token_file = reader.file_field(user, "tokenFile", uf + ".tokenFile");
      config.client_cert_pem =
          reader.base64_field(user, "client-certificate-data", uf + ".client-certificate-data");
      config.client_cert_file =
          reader.file_field(user, "client-certificate", uf + ".client-certificate");
      config.client_key_pem = reader.base64_field(user, "client-key-data", uf + ".client-key-data");
      config.client_key_file = reader.file_field(user, "client-key", uf + ".client-key");
      const bool has_cert = !config.client_cert_pem.empty() || !config.client_cert_file.empty();
      const bool has_key = !config.client_key_pem.empty() || !config.client_key_file.empty();
      if (has_cert && !has_key) reader.fail(uf + ": client-certificate without client-key");
      if (has_key && !has_cert) reader.fail(uf + ": client-key without client-certificate");
    }
  } catch (const YAML::Exception& e) {
    // Type conversions inside yaml-cpp; reported with the file like every other problem.
    reader.fail(std::string("unexpected structure: ") + e.msg);
  }
  return config;
}

}  // namespace

Kubeconfig parse_kubeconfig(std::string_view yaml, const std::filesystem::path& base_dir) {
  return parse(yaml, base_dir, "kubeconfig");
}

Kubeconfig parse_kubeconfig(std::string_view yaml, const std::filesystem::path& base_dir,
                            std::string_view source_name, std::string_view context) {
  return parse(yaml, base_dir, std::string(source_name), context);
}

Kubeconfig load_kubeconfig(const std::filesystem::path& path, std::string_view context) {
  const std::string source = "kubeconfig " + path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw KubeconfigError(source + ": cannot read: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw KubeconfigError(source + ": cannot read: " + std::strerror(errno));
  std::error_code ec;
  fs::path absolute = fs::absolute(path, ec);
  if (ec) absolute = path;
  return parse(text.str(), absolute.parent_path(), source, context);
}

Kubeconfig in_cluster_config(const std::filesystem::path& sa_dir) {
  const std::string source = "in-cluster config";
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    throw KubeconfigError(source +
                          ": KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set");
  }
  const std::string_view port_text(port);
  if (port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string_view::npos ||
      std::atoi(port) == 0 || std::atoi(port) > 65535) {
    throw KubeconfigError(source + ": KUBERNETES_SERVICE_PORT \"" + std::string(port_text) +
                          "\" is not a port number");
  }
  std::string host_text(host);
  if (host_text.find(':') != std::string::npos && !host_text.starts_with('[')) {
    host_text = "[" + host_text + "]";  // an IPv6 literal in a URL needs brackets
  }
  Kubeconfig config;
  config.server = "https://" + host_text + ":" + std::string(port_text);
  const fs::path ca = sa_dir / "ca.crt";
  const fs::path token = sa_dir / "token";
  for (const auto& file : {ca, token}) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) {
      throw KubeconfigError(source + ": " + file.string() + ": " +
                            (ec ? ec.message() : "not a regular file"));
    }
  }
  config.ca_file = ca.string();
  config.token_file = token.string();
  return config;
}

}  // namespace ambient::kube
