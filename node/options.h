// What every subcommand of ambient-cni-node shares: the node configuration flags (the one source
// of the plugin's conflist entry and, in `run`, of the agent's policy), the host paths, the
// agent's flags, and process setup (logger, stop signals, the node component's own API access).
// Every flag is also an environment variable, so the DaemonSet's ConfigMap feeds them through
// `envFrom`.
#pragma once

#include <signal.h>

#include <functional>
#include <memory>
#include <string>

#include <spdlog/logger.h>
#include <CLI/CLI.hpp>

#include "agent/agent.h"
#include "config/node_config.h"
#include "install/installer.h"
#include "kube/kubeconfig.h"

namespace ambient::node {

// The node configuration as flags and env vars give it (texts are parsed by config/).
struct NodeFlags {
  std::string exclude_namespaces{contract::kDefaultExcludedNamespace};
  std::string enablement_selectors;
  bool ambient_enabled = true;
  std::string plugin_log_level = "info";
  bool dns_capture = true;
  bool ipv6 = true;
  std::string failure_policy = "closed";
  int api_timeout_ms = 5000;
  int agent_timeout_ms = 15000;
  std::string pod_namespace{contract::kDefaultPodNamespace};
  std::string daemonset_name{contract::kDefaultDaemonSetName};
  std::string system_namespace{contract::kDefaultSystemNamespace};
  std::string plugin_kubeconfig;
  bool status_checks_agent = true;
};

// Where things are on the host (as mounted into our container).
struct HostFlags {
  std::string cni_bin_dir = "/opt/cni/bin";
  std::string cni_conf_dir = "/etc/cni/net.d";
  std::string netns_dir = "/var/run/netns";
  std::string plugin_binary;  // empty: the ambient-cni next to this executable
  std::string service_account_dir = install::kDefaultServiceAccountDir;
  std::string mode = "chained";
  std::string owned_name{install::kDefaultOwnedName};
};

// The plugin's own credentials (install/plugin_token.h): a TokenRequest for its service account.
struct PluginTokenFlags {
  std::string service_account;  // empty: the plugin gets the node component's token (warned)
  int lifetime_seconds = 3600;
  std::string node_name;  // the token is bound to this Node (NODE_NAME)
};

void add_host_options(CLI::App* cmd, HostFlags& h);
// with_node_name: the command has no --node-name of its own (run takes its agent's).
void add_plugin_token_options(CLI::App* cmd, PluginTokenFlags& t, bool with_node_name);
void add_node_config_options(CLI::App* cmd, NodeFlags& n);
void add_run_dir_option(CLI::App* cmd, std::string& run_dir);
void add_log_level_option(CLI::App* cmd, std::string& level);
// The agent's flags, shared by `agent` and `run` (--log-level included).
void add_agent_options(CLI::App* cmd, agent::AgentOptions& options, std::string& log_level);

config::NodeConfig node_config(const NodeFlags& f, const std::string& run_dir);
// `kubeconfig`: the node component's own API access (empty: in-cluster), which requests the
// plugin's token; `token` empty or without a service account: the node's own token (warned).
install::InstallerOptions installer_options(const HostFlags& h, config::NodeConfig node,
                                            const PluginTokenFlags& token = {},
                                            const std::string& kubeconfig = "",
                                            std::shared_ptr<spdlog::logger> log = nullptr,
                                            std::function<void(const std::string&)> degraded = {});

// A stderr logger named `name` (stdout belongs to command output), made the default too.
std::shared_ptr<spdlog::logger> make_logger(const std::string& name, const std::string& level);
// Blocks SIGTERM/SIGINT in every thread started from here on; sigwait() takes them.
sigset_t block_stop_signals();
// The API the node component itself uses (not the plugin's kubeconfig).
kube::Kubeconfig node_kubeconfig(const std::string& kubeconfig, const std::string& sa_dir);
// Warns when the netns dir is not mounted so that new pods' namespaces show up in it.
void check_netns_dir(const std::string& dir, spdlog::logger& log);
// Makes a subcommand's callback throw CLI's exit code when the command failed.
inline void exit_on_failure(int rc) {
  if (rc != 0) throw CLI::RuntimeError(rc);
}

}  // namespace ambient::node
