#include "node/options.h"

#include <fstream>
#include <sstream>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "config/errors.h"
#include "config/plugin_config.h"
#include "install/lifecycle.h"

namespace ambient::node {
namespace {

namespace fs = std::filesystem;

std::string default_plugin_binary() {
  std::error_code ec;
  const auto self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(contract::kPluginType)
            : (self.parent_path() / std::string(contract::kPluginType)).string();
}

}  // namespace

void add_host_options(CLI::App* cmd, HostFlags& h) {
  cmd->add_option("--cni-bin-dir", h.cni_bin_dir, "CNI bin dir (the plugin is copied here)")
      ->envname("AMBIENT_CNI_BIN_DIR")
      ->capture_default_str();
  cmd->add_option("--cni-conf-dir", h.cni_conf_dir, "CNI conf dir (our entry goes here)")
      ->envname("AMBIENT_CNI_CONF_DIR")
      ->capture_default_str();
  cmd->add_option("--netns-dir", h.netns_dir, "where the runtime bind-mounts pod netns")
      ->envname("AMBIENT_NETNS_DIR")
      ->capture_default_str();
  cmd->add_option("--plugin-binary", h.plugin_binary,
                  "ambient-cni binary to install (default: next to this executable)")
      ->envname("AMBIENT_PLUGIN_BINARY");
  cmd->add_option("--service-account-dir", h.service_account_dir,
                  "token and ca.crt for the plugin's kubeconfig")
      ->envname("AMBIENT_SERVICE_ACCOUNT_DIR")
      ->capture_default_str();
  cmd->add_option("--mode", h.mode, "chained (into the primary conflist) or owned (our own copy)")
      ->envname("AMBIENT_CNI_MODE")
      ->check(CLI::IsMember({"chained", "owned"}))
      ->capture_default_str();
  cmd->add_option("--owned-conflist-name", h.owned_name,
                  "owned mode: our conflist's name (must sort before the primary)")
      ->envname("AMBIENT_OWNED_CONFLIST_NAME")
      ->capture_default_str();
}

void add_plugin_token_options(CLI::App* cmd, PluginTokenFlags& t, bool with_node_name) {
  cmd->add_option("--plugin-service-account", t.service_account,
                  "service account whose token the plugin's kubeconfig carries (requested with "
                  "TokenRequest; RBAC: get pods, namespaces); empty: this component's own token")
      ->envname("AMBIENT_PLUGIN_SERVICE_ACCOUNT");
  cmd->add_option("--plugin-token-seconds", t.lifetime_seconds,
                  "lifetime asked for the plugin's token (renewed at 80%; at least 600)")
      ->envname("AMBIENT_PLUGIN_TOKEN_SECONDS")
      ->check(CLI::Range(600, 86400 * 365))
      ->capture_default_str();
  if (with_node_name) {
    cmd->add_option("--node-name", t.node_name,
                    "this node's name (the plugin's token is bound to it)")
        ->envname("NODE_NAME");
  }
}

void add_node_config_options(CLI::App* cmd, NodeFlags& n) {
  cmd->add_option("--exclude-namespaces", n.exclude_namespaces,
                  "comma-separated namespaces never touched")
      ->envname("AMBIENT_EXCLUDE_NAMESPACES")
      ->capture_default_str();
  cmd->add_option("--enablement-selectors", n.enablement_selectors,
                  "JSON array of {podSelector, namespaceSelector} (default: Istio's)")
      ->envname("AMBIENT_ENABLEMENT_SELECTORS");
  cmd->add_option("--ambient-enabled", n.ambient_enabled, "false leaves every pod untouched")
      ->envname("AMBIENT_ENABLED")
      ->capture_default_str();
  cmd->add_option("--plugin-log-level", n.plugin_log_level,
                  "plugin log level: trace, debug, info, warn, error, none")
      ->envname("AMBIENT_PLUGIN_LOG_LEVEL")
      ->capture_default_str();
  cmd->add_option("--dns-capture", n.dns_capture, "redirect pods' DNS to ztunnel")
      ->envname("AMBIENT_DNS_CAPTURE")
      ->capture_default_str();
  cmd->add_option("--ipv6", n.ipv6, "program IPv6 rules for pods with IPv6")
      ->envname("AMBIENT_IPV6")
      ->capture_default_str();
  cmd->add_option("--failure-policy", n.failure_policy, "closed or open (API failures at ADD)")
      ->envname("AMBIENT_FAILURE_POLICY")
      ->capture_default_str();
  cmd->add_option("--api-timeout-ms", n.api_timeout_ms, "plugin: budget of its API lookups")
      ->envname("AMBIENT_API_TIMEOUT_MS")
      ->capture_default_str();
  cmd->add_option("--agent-timeout-ms", n.agent_timeout_ms,
                  "plugin: how long an enrolled ADD waits for the agent")
      ->envname("AMBIENT_AGENT_TIMEOUT_MS")
      ->capture_default_str();
  cmd->add_option("--pod-namespace", n.pod_namespace, "namespace of this DaemonSet's pods")
      ->envname("POD_NAMESPACE")
      ->capture_default_str();
  cmd->add_option("--daemonset-name", n.daemonset_name, "this DaemonSet's name")
      ->envname("AMBIENT_DAEMONSET_NAME")
      ->capture_default_str();
  cmd->add_option("--system-namespace", n.system_namespace, "where ztunnel runs")
      ->envname("AMBIENT_SYSTEM_NAMESPACE")
      ->capture_default_str();
  cmd->add_option("--status-checks-agent", n.status_checks_agent,
                  "plugin: CNI STATUS fails (50) while the node agent is not ready")
      ->envname("AMBIENT_STATUS_CHECKS_AGENT")
      ->capture_default_str();
  cmd->add_option("--plugin-kubeconfig", n.plugin_kubeconfig,
                  "where the plugin's kubeconfig is written (default: <run-dir>/kubeconfig)")
      ->envname("AMBIENT_PLUGIN_KUBECONFIG");
}

config::NodeConfig node_config(const NodeFlags& f, const std::string& run_dir) {
  config::NodeConfig c;
  c.exclude_namespaces = config::split_namespace_list(f.exclude_namespaces);
  c.enablement_selectors = config::parse_enablement_selectors_text(f.enablement_selectors);
  c.ambient_enabled = f.ambient_enabled;
  c.plugin_log_level = f.plugin_log_level;
  c.dns_capture = f.dns_capture;
  c.ipv6 = f.ipv6;
  c.failure_policy = config::parse_failure_policy(f.failure_policy);
  c.api_timeout_ms = f.api_timeout_ms;
  c.agent_timeout_ms = f.agent_timeout_ms;
  c.pod_namespace = f.pod_namespace;
  c.daemonset_name = f.daemonset_name;
  c.system_namespace = f.system_namespace;
  c.run_dir = run_dir;
  c.kubeconfig = f.plugin_kubeconfig;
  c.status_checks_agent = f.status_checks_agent;
  config::validate_node_config(c);
  return c;
}

install::InstallerOptions installer_options(const HostFlags& h, config::NodeConfig node,
                                            const PluginTokenFlags& token,
                                            const std::string& kubeconfig,
                                            std::shared_ptr<spdlog::logger> log,
                                            std::function<void(const std::string&)> degraded) {
  install::InstallerOptions o;
  if (!token.service_account.empty()) {
    install::TokenRequestOptions t;
    t.namespace_name = node.pod_namespace;
    t.service_account = token.service_account;
    t.lifetime = std::chrono::seconds(token.lifetime_seconds);
    t.bound_node = token.node_name;
    t.degraded = std::move(degraded);
    if (!log) log = spdlog::default_logger();
    auto requester = std::make_shared<install::TokenRequester>(
        t,
        [kubeconfig, sa_dir = h.service_account_dir] {
          return kube::Client(node_kubeconfig(kubeconfig, sa_dir),
                              kube::ClientOptions{.user_agent = "ambient-cni-node"});
        },
        log);
    o.plugin_token = [requester] { return requester->token(); };
  } else if (log) {
    log->warn(
        "the plugin's kubeconfig carries this component's own service-account token, with its "
        "rights (pods/status patch); set --plugin-service-account (AMBIENT_PLUGIN_SERVICE_ACCOUNT) "
        "to give the plugin a token that can only get pods and namespaces");
  }
  o.cni_bin_dir = h.cni_bin_dir;
  o.cni_conf_dir = h.cni_conf_dir;
  o.plugin_source = h.plugin_binary.empty() ? default_plugin_binary() : h.plugin_binary;
  o.service_account_dir = h.service_account_dir;
  o.mode = install::parse_mode(h.mode);
  o.owned_name = h.owned_name;
  o.node = std::move(node);
  return o;
}

std::shared_ptr<spdlog::logger> make_logger(const std::string& name, const std::string& level) {
  auto log =
      std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  log->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  log->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(log);
  return log;
}

void check_netns_dir(const std::string& dir, spdlog::logger& log) {
  std::ifstream in("/proc/self/mountinfo");
  std::ostringstream text;
  text << in.rdbuf();
  std::error_code ec;
  for (const auto& p : install::netns_dir_problems(text.str(), dir, fs::is_directory(dir, ec))) {
    log.warn("{}", p);
  }
}

// The API the node component itself uses (not the plugin's kubeconfig).
kube::Kubeconfig node_kubeconfig(const std::string& kubeconfig, const std::string& sa_dir) {
  return kubeconfig.empty() ? kube::in_cluster_config(sa_dir) : kube::load_kubeconfig(kubeconfig);
}

// Blocks SIGTERM/SIGINT in every thread started from here on; sigwait() takes them.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

void add_run_dir_option(CLI::App* cmd, std::string& run_dir) {
  cmd->add_option("--run-dir", run_dir, "run directory shared by plugin and agent")
      ->envname("AMBIENT_RUN_DIR")
      ->capture_default_str();
}

void add_log_level_option(CLI::App* cmd, std::string& level) {
  cmd->add_option("--log-level", level, "trace, debug, info, warn, error")
      ->envname("AMBIENT_LOG_LEVEL")
      ->capture_default_str();
}

void add_agent_options(CLI::App* cmd, agent::AgentOptions& o, std::string& log_level) {
  // The same policy the plugin's conflist entry carries (exclude_namespaces, selectors, DNS
  // capture, IPv6), so agent and plugin decide alike.
  cmd->add_option_function<std::string>(
         "--plugin-config",
         [&o](const std::string& path) {
           std::ifstream in(path);
           const auto doc = nlohmann::json::parse(in, nullptr, false);
           if (doc.is_discarded())
             throw CLI::ValidationError("--plugin-config", path + " is not JSON");
           try {
             const auto c = config::plugin_config_from_document(doc);
             o.policy = c.policy;
             o.dns_capture = c.dns_capture;
             o.ipv6 = c.ipv6;
           } catch (const config::ConfigError& e) {
             throw CLI::ValidationError("--plugin-config", e.what());
           }
         },
         "conflist (or ambient-cni entry) whose policy the agent applies on label changes")
      ->envname("AMBIENT_PLUGIN_CONFIG");
  cmd->add_flag("!--no-watch", o.watch, "do not watch the API for label changes");
  cmd->add_option_function<int>(
         "--drift-interval-ms", [&o](int ms) { o.drift_interval = std::chrono::milliseconds(ms); },
         "how often in-pod rules and host probe SNAT are re-checked (default 30000)")
      ->envname("AMBIENT_DRIFT_INTERVAL_MS");
  cmd->add_option("--run-dir", o.run_dir, "run directory shared with the plugin")
      ->envname("AMBIENT_RUN_DIR")
      ->capture_default_str();
  cmd->add_option("--ztunnel-socket", o.ztunnel_socket, "ZDS socket ztunnel connects to")
      ->envname("AMBIENT_ZTUNNEL_SOCKET")
      ->capture_default_str();
  cmd->add_option("--kubeconfig", o.kubeconfig, "kubeconfig (default: in-cluster service account)")
      ->envname("AMBIENT_KUBECONFIG");
  cmd->add_option("--node-name", o.node_name, "this node's name")->envname("NODE_NAME");
  cmd->add_option("--host-netns", o.host_netns,
                  "netns holding the host probe SNAT (default: the agent's own)")
      ->envname("AMBIENT_HOST_NETNS");
  cmd->add_option("--listen-address", o.listen_address, "address of the HTTP endpoints")
      ->envname("AMBIENT_LISTEN_ADDRESS")
      ->capture_default_str();
  cmd->add_option("--health-port", o.health_port, "/healthz and /readyz (-1: off)")
      ->envname("AMBIENT_HEALTH_PORT")
      ->capture_default_str();
  cmd->add_option("--metrics-port", o.metrics_port, "Prometheus /metrics (-1: off)")
      ->envname("AMBIENT_METRICS_PORT")
      ->capture_default_str();
  cmd->add_option("--kubelet-uid", o.kubelet_uid, "UID whose probes are SNATed")
      ->envname("AMBIENT_KUBELET_UID")
      ->capture_default_str();
  cmd->add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->envname("AMBIENT_LOG_LEVEL")
      ->capture_default_str();
}

}  // namespace ambient::node
