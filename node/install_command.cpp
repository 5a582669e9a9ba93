// `install`, `uninstall` and `run` (the DaemonSet's entry point: install + watcher + agent).
//
// Every flag is also an environment variable, so the DaemonSet's ConfigMap feeds them through
// `envFrom`. The node configuration flags are the one source of the plugin's conflist entry
// (config::render_plugin_entry) and, in `run`, of the agent's policy too.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "agent/enroller.h"
#include "agent/kube_access.h"
#include "agent/metrics.h"
#include "agent/pod_table.h"
#include "agent/reconciler.h"
#include "agent/zds_server.h"
#include "config/errors.h"
#include "config/node_config.h"
#include "install/errors.h"
#include "install/installer.h"
#include "install/lifecycle.h"
#include "install/watcher.h"
#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "netns/host_probe.h"
#include "node/commands.h"

namespace ambient::node {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

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
  config::validate_node_config(c);
  return c;
}

std::string default_plugin_binary() {
  std::error_code ec;
  const auto self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(contract::kPluginType)
            : (self.parent_path() / std::string(contract::kPluginType)).string();
}

install::InstallerOptions installer_options(const HostFlags& h, config::NodeConfig node) {
  install::InstallerOptions o;
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

// ---- install ----------------------------------------------------------------------------------

struct InstallCmd {
  HostFlags host;
  NodeFlags node;
  std::string run_dir{contract::kDefaultRunDir};
  std::string log_level = "info";
  int wait_seconds = 0;
};

int run_install(const InstallCmd& c) {
  auto log = make_logger("install", c.log_level);
  try {
    install::Installer installer(installer_options(c.host, node_config(c.node, c.run_dir)), log);
    auto r = installer.reconcile();
    if (r.installed) return 0;
    if (!r.error.empty()) return 1;
    // No primary CNI config yet: wait for one (the watcher reacts to the directory).
    const auto set = block_stop_signals();
    install::Watcher watcher(installer, {}, log);
    watcher.start();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(c.wait_seconds);
    const timespec tick{0, 100'000'000};
    while (!installer.installed()) {
      if (c.wait_seconds > 0 && std::chrono::steady_clock::now() > deadline) {
        log->error("no primary CNI configuration appeared in {} within {} s", c.host.cni_conf_dir,
                   c.wait_seconds);
        return 1;
      }
      if (sigtimedwait(&set, nullptr, &tick) > 0) {
        log->warn("interrupted while waiting for a primary CNI configuration");
        return 1;
      }
    }
    watcher.stop();
    log->info("installed");
    return 0;
  } catch (const std::exception& e) {
    log->critical("install failed: {}", e.what());
    return 1;
  }
}

// ---- uninstall --------------------------------------------------------------------------------

struct UninstallCmd {
  HostFlags host;
  NodeFlags node;
  std::string run_dir{contract::kDefaultRunDir};
  std::string log_level = "info";
  std::string kubeconfig;  // the node component's API access, to clear pod annotations
  std::string host_netns;
  std::uint32_t kubelet_uid = 0;
  std::string ztunnel_socket{contract::kDefaultZtunnelSocket};
};

// Unenrols every pod an agent persisted under the run dir: rules out of the pod's netns, probe
// SNAT entries, state file, status annotation. No agent runs (its sockets are not opened: an
// agent that does run would lose them), so ztunnel gets no `del`: it drops the pods at its next
// snapshot, and with the rules gone no traffic reaches it meanwhile. Returns how many remain.
std::size_t release_persisted_pods(const UninstallCmd& c,
                                   const std::shared_ptr<spdlog::logger>& log) {
  agent::PodTable pods(c.run_dir);
  std::vector<std::string> errors;
  const auto persisted = pods.load_persisted(errors);
  for (const auto& e : errors) log->warn("unreadable pod state {}: left in place", e);
  if (persisted.empty() && errors.empty()) {
    log->info("no enrolled pods in {}", c.run_dir);
  }
  kube::Kubeconfig kc;
  bool have_api = true;
  try {
    kc = node_kubeconfig(c.kubeconfig, c.host.service_account_dir);
  } catch (const std::exception& e) {
    have_api = false;
    if (!persisted.empty()) {
      log->warn("no API access ({}): redirection annotations of released pods stay set", e.what());
    }
  }
  agent::Metrics metrics;
  agent::ApiPool api(kc, kube::ClientOptions{.user_agent = "ambient-cni-node-uninstall"});
  agent::StatusAnnotator status(api);
  netns::HostProbeSnat probes(
      c.host_netns.empty() ? netns::NetnsHandle::current() : netns::NetnsHandle::open(c.host_netns),
      netns::HostProbeConfig{c.kubelet_uid});
  agent::ZdsServer zds(
      {c.ztunnel_socket, std::chrono::milliseconds(contract::kZdsDeadlineMs)},
      [] { return std::vector<agent::ZdsWorkload>{}; }, log);
  agent::Enroller enroller({pods, zds, probes, status, metrics, log});
  for (const auto& p : persisted) enroller.release(p, have_api);
  std::vector<std::string> again;
  const auto remaining = pods.load_persisted(again).size() + again.size();
  if (remaining == 0) {
    try {
      probes.teardown();  // the host probe SNAT table is ours and now empty
    } catch (const std::exception& e) {
      log->warn("removing the host probe SNAT table: {}", e.what());
    }
  }
  log->info("released {} enrolled pod(s)", persisted.size());
  return remaining;
}

int run_uninstall(const UninstallCmd& c) {
  auto log = make_logger("uninstall", c.log_level);
  try {
    install::Installer installer(installer_options(c.host, node_config(c.node, c.run_dir)), log);
    // First the pods (none may stay redirected to a ztunnel that is going away), then the files.
    const auto remaining = release_persisted_pods(c, log);
    installer.uninstall();
    if (remaining > 0) {
      log->error("{} enrolled pod(s) could not be released; their state is left in {}", remaining,
                 c.run_dir);
      return 1;
    }
    log->info("uninstalled");
    return 0;
  } catch (const std::exception& e) {
    log->critical("uninstall failed: {}", e.what());
    return 1;
  }
}

// ---- run --------------------------------------------------------------------------------------

struct RunCmd {
  HostFlags host;
  NodeFlags node;
  std::string host_proc_dir = "/proc";
  agent::AgentOptions agent;
  std::string log_level = "info";
  install::WatcherOptions watcher;
};

void release_all(agent::Agent& a, spdlog::logger& log) {
  const auto pods = a.pods().all();
  for (const auto& p : pods) a.enroller().release(p, /*clear_annotation=*/true);
  if (!pods.empty()) log.info("released {} enrolled pod(s)", pods.size());
}

int run_run(RunCmd& c, bool plugin_config_given) {
  auto log = make_logger("node", c.log_level);
  const auto set = block_stop_signals();
  try {
    const auto node = node_config(c.node, c.agent.run_dir);
    if (plugin_config_given) {
      log->warn("--plugin-config is ignored by run: the node configuration flags are the policy");
    }
    // One source of truth: the agent decides with exactly what the plugin's entry says.
    const auto entry = config::render_plugin_entry(node);
    auto as_stdin = entry;
    as_stdin["cniVersion"] = "1.0.0";
    const auto plugin = config::parse_plugin_config(as_stdin.dump());
    c.agent.policy = plugin.policy;
    c.agent.dns_capture = plugin.dns_capture;
    c.agent.ipv6 = plugin.ipv6;
    c.agent.proc_root = c.host_proc_dir;

    install::Installer installer(installer_options(c.host, node), log);
    check_netns_dir(c.host.netns_dir, *log);
    // The watcher counts reverts in the agent's metrics while the agent exists.
    std::mutex agent_mu;
    agent::Agent* agent_ptr = nullptr;
    const auto set_agent = [&](agent::Agent* a) {
      std::lock_guard g(agent_mu);
      agent_ptr = a;
    };
    install::Watcher watcher(installer, c.watcher, log, [&](std::string_view what) {
      std::lock_guard g(agent_mu);
      if (agent_ptr != nullptr) agent_ptr->metrics().count_repair("installer_" + std::string(what));
    });
    c.agent.ready_gate = [&installer, &watcher] {
      return installer.installed() && watcher.healthy();
    };
    watcher.start();  // its first pass installs; until then /readyz says "not installed"
    agent::Agent a(c.agent, log);
    struct Forget {
      std::function<void()> fn;
      ~Forget() { fn(); }
    } forget{[&] { set_agent(nullptr); }};  // before `a` goes, also when start() throws
    set_agent(&a);
    a.start();
    int sig = 0;
    sigwait(&set, &sig);
    log->info("signal {}: checking whether this is an upgrade or a removal", sig);
    install::ShutdownDecision decision;
    try {
      kube::Client client(node_kubeconfig(c.agent.kubeconfig, c.host.service_account_dir),
                          kube::ClientOptions{.deadline = 5s, .user_agent = "ambient-cni-node"});
      decision = install::check_daemonset(client, node.pod_namespace, node.daemonset_name);
    } catch (const std::exception& e) {
      decision = {install::ShutdownAction::kLeaveInPlace,
                  std::string("no API access (") + e.what() + "): leaving everything in place"};
    }
    watcher.stop();  // from here nothing re-installs behind our back
    if (decision.action == install::ShutdownAction::kLeaveInPlace) {
      log->info("{}: plugin, CNI config, kubeconfig and host rules stay in place", decision.reason);
      set_agent(nullptr);
      a.stop();
      return 0;
    }
    log->info("{}: uninstalling", decision.reason);
    // Label-driven enrolment stops first, or it would enrol again what is released next.
    if (auto* reconciler = a.reconciler()) reconciler->stop();
    release_all(a, *log);  // first the pods, while ztunnel still gets our `del`s
    installer.uninstall();
    release_all(a, *log);  // any pod an ADD enrolled while the entry was still there
    set_agent(nullptr);
    a.stop();
    try {
      netns::HostProbeSnat(c.agent.host_netns.empty()
                               ? netns::NetnsHandle::current()
                               : netns::NetnsHandle::open(c.agent.host_netns),
                           netns::HostProbeConfig{c.agent.kubelet_uid})
          .teardown();
    } catch (const std::exception& e) {
      log->warn("removing the host probe SNAT table: {}", e.what());
    }
    log->info("uninstalled");
    return 0;
  } catch (const std::exception& e) {
    log->critical("run failed: {}", e.what());
    return 1;
  }
}

}  // namespace

void add_install_commands(CLI::App& app) {
  {
    auto c = std::make_shared<InstallCmd>();
    auto* cmd = app.add_subcommand("install", "Install the plugin on this node and exit");
    add_host_options(cmd, c->host);
    add_node_config_options(cmd, c->node);
    cmd->add_option("--run-dir", c->run_dir, "run directory shared by plugin and agent")
        ->envname("AMBIENT_RUN_DIR")
        ->capture_default_str();
    cmd->add_option("--log-level", c->log_level, "trace, debug, info, warn, error")
        ->envname("AMBIENT_LOG_LEVEL")
        ->capture_default_str();
    cmd->add_option("--wait-timeout", c->wait_seconds,
                    "seconds to wait for a primary CNI config (0: forever)")
        ->envname("AMBIENT_WAIT_TIMEOUT")
        ->capture_default_str();
    cmd->callback([c] {
      if (const int rc = run_install(*c); rc != 0) throw CLI::RuntimeError(rc);
    });
  }
  {
    auto c = std::make_shared<UninstallCmd>();
    auto* cmd = app.add_subcommand(
        "uninstall", "Unenrol every pod, then remove the plugin, its entry and kubeconfig");
    add_host_options(cmd, c->host);
    add_node_config_options(cmd, c->node);
    cmd->add_option("--run-dir", c->run_dir, "run directory shared by plugin and agent")
        ->envname("AMBIENT_RUN_DIR")
        ->capture_default_str();
    cmd->add_option("--log-level", c->log_level, "trace, debug, info, warn, error")
        ->envname("AMBIENT_LOG_LEVEL")
        ->capture_default_str();
    cmd->add_option("--kubeconfig", c->kubeconfig,
                    "API access to clear pod annotations (default: in-cluster)")
        ->envname("AMBIENT_KUBECONFIG");
    cmd->add_option("--host-netns", c->host_netns, "netns holding the host probe SNAT")
        ->envname("AMBIENT_HOST_NETNS");
    cmd->add_option("--kubelet-uid", c->kubelet_uid, "UID whose probes are SNATed")
        ->envname("AMBIENT_KUBELET_UID")
        ->capture_default_str();
    cmd->callback([c] {
      if (const int rc = run_uninstall(*c); rc != 0) throw CLI::RuntimeError(rc);
    });
  }
  {
    auto c = std::make_shared<RunCmd>();
    auto* cmd = app.add_subcommand(
        "run", "Install, keep installed, and run the agent (the DaemonSet's entry point)");
    add_host_options(cmd, c->host);
    add_node_config_options(cmd, c->node);
    add_agent_options(cmd, c->agent, c->log_level);
    cmd->add_option("--host-proc-dir", c->host_proc_dir,
                    "the host's /proc (the agent finds running pods' netns there)")
        ->envname("AMBIENT_HOST_PROC_DIR")
        ->capture_default_str();
    cmd->callback([c, cmd] {
      if (const int rc = run_run(*c, cmd->count("--plugin-config") > 0); rc != 0) {
        throw CLI::RuntimeError(rc);
      }
    });
  }
}

}  // namespace ambient::node
