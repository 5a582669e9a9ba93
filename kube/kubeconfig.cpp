#include "kube/kubeconfig.h"

#include <yaml-cpp/yaml.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

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

ExecPlugin read_exec(const Reader& reader, const YAML::Node& exec, const std::string& field,
                     const fs::path& base_dir) {
  if (!exec.IsMap()) reader.fail(field + " must be a mapping");
  ExecPlugin p;
  p.field = field;
  p.api_version = reader.string_field(exec, "apiVersion", field + ".apiVersion");
  if (p.api_version != "client.authentication.k8s.io/v1" &&
      p.api_version != "client.authentication.k8s.io/v1beta1") {
    reader.fail(field + ".apiVersion \"" + p.api_version +
                "\" is not client.authentication.k8s.io/v1 or v1beta1");
  }
  p.command = reader.string_field(exec, "command", field + ".command");
  if (p.command.empty()) reader.fail(field + ".command is not set");
  // kubectl: a command with a '/' that is relative is relative to the kubeconfig's directory.
  if (p.command.find('/') != std::string::npos && fs::path(p.command).is_relative()) {
    p.command = (base_dir / p.command).lexically_normal().string();
  }
  if (const YAML::Node args = exec["args"]; args && !args.IsNull()) {
    if (!args.IsSequence()) reader.fail(field + ".args must be a list");
    for (const auto& a : args) {
      if (!a.IsScalar()) reader.fail(field + ".args must be strings");
      p.args.push_back(a.as<std::string>());
    }
  }
  if (const YAML::Node env = exec["env"]; env && !env.IsNull()) {
    if (!env.IsSequence()) reader.fail(field + ".env must be a list");
    for (const auto& e : env) {
      if (!e.IsMap()) reader.fail(field + ".env entries must be {name, value}");
      const std::string name = reader.string_field(e, "name", field + ".env[].name");
      if (name.empty()) reader.fail(field + ".env[].name is not set");
      p.env.emplace_back(name, reader.string_field(e, "value", field + ".env[].value"));
    }
  }
  p.install_hint = reader.string_field(exec, "installHint", field + ".installHint");
  p.provide_cluster_info =
      reader.bool_field(exec, "provideClusterInfo", field + ".provideClusterInfo");
  return p;
}

Kubeconfig parse(std::string_view yaml, const fs::path& base_dir, const std::string& source,
                 std::string_view wanted_context = {}, bool allow_exec = false) {
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
      for (const char* unsupported : {"auth-provider", "username", "password"}) {
        if (user[unsupported]) reader.fail(uf + "." + unsupported + " is not supported");
      }
      if (const YAML::Node exec = user["exec"]; exec && !exec.IsNull()) {
        if (!allow_exec) reader.fail(uf + ".exec is not supported");
        config.exec = read_exec(reader, exec, uf + ".exec", base_dir);
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
                            std::string_view source_name, std::string_view context,
                            bool allow_exec) {
  return parse(yaml, base_dir, std::string(source_name), context, allow_exec);
}

Kubeconfig load_kubeconfig(const std::filesystem::path& path, std::string_view context,
                           bool allow_exec) {
  const std::string source = "kubeconfig " + path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw KubeconfigError(source + ": cannot read: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw KubeconfigError(source + ": cannot read: " + std::strerror(errno));
  std::error_code ec;
  fs::path absolute = fs::absolute(path, ec);
  if (ec) absolute = path;
  return parse(text.str(), absolute.parent_path(), source, context, allow_exec);
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

namespace ambient::kube {
namespace {

// The KUBERNETES_EXEC_INFO kubectl gives a credential plugin.
std::string exec_info(const Kubeconfig& config) {
  const ExecPlugin& p = *config.exec;
  std::string spec = "{\"interactive\":false";
  if (p.provide_cluster_info) {
    auto quote = [](const std::string& s) {
      std::string out = "\"";
      for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      return out + "\"";
    };
    spec += ",\"cluster\":{\"server\":" + quote(config.server);
    if (!config.tls_server_name.empty()) {
      spec += ",\"tls-server-name\":" + quote(config.tls_server_name);
    }
    if (!config.ca_pem.empty()) {
      spec += ",\"certificate-authority-data\":" + quote(base64_encode(config.ca_pem));
    }
    if (config.insecure_skip_tls_verify) spec += ",\"insecure-skip-tls-verify\":true";
    spec += "}";
  }
  spec += "}";
  return "{\"apiVersion\":\"" + p.api_version + "\",\"kind\":\"ExecCredential\",\"spec\":" + spec +
         "}";
}

// A string field of the ExecCredential's status ("" when absent).
std::string status_string(const YAML::Node& status, const char* key, const std::string& what) {
  const YAML::Node n = status[key];
  if (!n || n.IsNull()) return {};
  if (!n.IsScalar()) throw KubeconfigError(what + ": status." + key + " is not a string");
  return n.as<std::string>();
}

}  // namespace

void run_exec_plugin(Kubeconfig& config, std::chrono::milliseconds timeout) {
  if (!config.exec) return;
  const ExecPlugin& p = *config.exec;
  const std::string what = p.field + " (" + p.command + ")";
  std::vector<std::string> env_text;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto name = entry.substr(0, entry.find('='));
    bool overridden = name == "KUBERNETES_EXEC_INFO";
    for (const auto& [k, v] : p.env) overridden = overridden || name == k;
    if (!overridden) env_text.emplace_back(entry);
  }
  for (const auto& [k, v] : p.env) env_text.push_back(k + "=" + v);
  env_text.push_back("KUBERNETES_EXEC_INFO=" + exec_info(config));
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_text = {p.command};
  argv_text.insert(argv_text.end(), p.args.begin(), p.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    throw KubeconfigError(what + ": pipe: " + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  pid_t pid = -1;
  const int rc =
      ::posix_spawnp(&pid, p.command.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    std::string message = what + ": cannot run it: " + std::strerror(rc);
    if (!p.install_hint.empty()) message += " (" + p.install_hint + ")";
    throw KubeconfigError(message);
  }
  // Its answer, within the deadline and a size cap; the plugin's stderr is the user's.
  constexpr std::size_t kMaxAnswer = 1 << 20;
  std::string answer;
  const auto until = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false, too_big = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd fd{out[0], POLLIN, 0};
    const int ready = ::poll(&fd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;  // the deadline is checked above
    char buf[4096];
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
    if (answer.size() > kMaxAnswer) {
      too_big = true;
      break;
    }
  }
  ::close(out[0]);
  if (timed_out || too_big) ::kill(pid, SIGKILL);  // the child we started, by its pid
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    throw KubeconfigError(what + ": no answer within " + std::to_string(timeout.count()) + " ms");
  }
  if (too_big) throw KubeconfigError(what + ": answered more than 1 MiB");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw KubeconfigError(what + ": exited with " +
                          (WIFEXITED(status) ? "status " + std::to_string(WEXITSTATUS(status))
                                             : "signal " + std::to_string(WTERMSIG(status))));
  }
  YAML::Node credential;
  try {
    credential = YAML::Load(answer);  // JSON is YAML
  } catch (const YAML::Exception& e) {
    throw KubeconfigError(what + ": its answer is not JSON: " + e.msg);
  }
  if (!credential.IsMap() || !credential["kind"] || !credential["kind"].IsScalar() ||
      credential["kind"].as<std::string>() != "ExecCredential") {
    throw KubeconfigError(what + ": its answer is not an ExecCredential");
  }
  const YAML::Node version = credential["apiVersion"];
  if (!version || !version.IsScalar() || version.as<std::string>() != p.api_version) {
    throw KubeconfigError(what + ": its answer's apiVersion is not " + p.api_version);
  }
  const YAML::Node status_node = credential["status"];
  if (!status_node || !status_node.IsMap()) {
    throw KubeconfigError(what + ": its answer has no status");
  }
  const auto token = status_string(status_node, "token", what);
  const auto cert = status_string(status_node, "clientCertificateData", what);
  const auto key = status_string(status_node, "clientKeyData", what);
  if (token.empty() && (cert.empty() || key.empty())) {
    throw KubeconfigError(what +
                          ": its answer has neither status.token nor "
                          "status.clientCertificateData and status.clientKeyData");
  }
  if (!token.empty()) {
    config.token = token;
    config.token_file.clear();
  }
  if (!cert.empty() && !key.empty()) {
    config.client_cert_pem = cert;  // PEM as given (the ExecCredential carries PEM, not base64)
    config.client_key_pem = key;
    config.client_cert_file.clear();
    config.client_key_file.clear();
  }
  config.exec.reset();
}

}  // namespace ambient::kube
