// `run`: the DaemonSet's entry point — install and keep installed (watcher), run the agent, and
// on SIGTERM tell an upgrade (leave everything in place: new ambient pods wait for the new agent)
// from a removal (unenrol every pod, then uninstall).
#include <chrono>
#include <memory>

#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "agent/metrics.h"
#include "agent/pod_table.h"
#include "config/errors.h"
#include "config/plugin_config.h"
#include "install/installer.h"
#include "install/lifecycle.h"
#include "install/watcher.h"
#include "kube/client.h"
#include "netns/host_probe.h"
#include "node/commands.h"
#include "node/options.h"

namespace ambient::node {
namespace {

using namespace std::chrono_literals;

struct RunCmd {
  HostFlags host;
  NodeFlags node;
  PluginTokenFlags token;
  std::string host_proc_dir = "/proc";
  agent::AgentOptions agent;
  std::string log_level = "info";
  install::WatcherOptions watcher;
};

int run_run(RunCmd& c, bool plugin_config_given) {
  auto log = make_logger("node", c.log_level);
  const auto set = block_stop_signals();
  try {
    const auto node = node_config(c.node, c.agent.run_dir);
    if (plugin_config_given) {
      log->warn("--plugin-config is ignored by run: the node configuration flags are the policy");
    }
    // One source of truth: the agent decides with exactly what the plugin's entry says.
    auto entry = config::render_plugin_entry(node);
    entry["cniVersion"] = "1.0.0";
    const auto plugin = config::parse_plugin_config(entry.dump());
    c.agent.policy = plugin.policy;
    c.agent.dns_capture = plugin.dns_capture;
    c.agent.ipv6 = plugin.ipv6;
    c.agent.proc_root = c.host_proc_dir;
    // Built once: the watcher counts reverts of our installation into the agent's /metrics.
    c.agent.metrics = std::make_shared<agent::Metrics>();

    c.token.node_name = c.agent.node_name;
    install::Installer installer(
        installer_options(c.host, node, c.token, c.agent.kubeconfig, log,
                          [metrics = c.agent.metrics](const std::string& what) {
                            metrics->count_degraded(what);
                          }),
        log);
    check_netns_dir(c.host.netns_dir, *log);
    install::Watcher watcher(installer, c.watcher, log,
                             [metrics = c.agent.metrics](std::string_view what) {
                               metrics->count_repair("installer_" + std::string(what));
                             });
    c.agent.ready_gate = [&installer, &watcher] {
      return installer.installed() && watcher.healthy();
    };
    watcher.start();  // its first pass installs; until then /readyz says "not installed"
    agent::Agent a(c.agent, log);
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
      a.stop();
      return 0;
    }
    // Pods whose annotation the API will not let us clear keep their enrolment (and the host
    // probe SNAT their probes need); the node itself goes back to the primary CNI.
    const auto kept_enrolled = [&](std::size_t kept) {
      if (kept == 0) return false;
      log->warn(
          "{} enrolled pods keep their redirection, ztunnel and their `enabled` annotation (the "
          "API refuses us, so it cannot be cleared) until they restart; delete the DaemonSet "
          "before its ServiceAccount and RBAC to unenrol them first (README: Uninstall)",
          kept);
      return true;
    };
    if (decision.action == install::ShutdownAction::kUninstallKeepingPods) {
      log->warn("{}: giving the node back to the primary CNI", decision.reason);
      installer.uninstall();  // new pods start without us: no API lookup that would fail closed
      const auto kept = a.pods().size();
      a.stop();
      kept_enrolled(kept);
      return 0;
    }
    log->info("{}: uninstalling", decision.reason);
    auto kept = a.release_all().kept;  // first the pods, while ztunnel still gets our `del`s
    installer.uninstall();
    kept += a.release_all().kept;  // any pod an ADD enrolled while the entry was still there
    a.stop();
    if (kept_enrolled(kept)) return 0;
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

void add_run_command(CLI::App& app) {
  auto c = std::make_shared<RunCmd>();
  auto* cmd = app.add_subcommand(
      "run", "Install, keep installed, and run the agent (the DaemonSet's entry point)");
  add_host_options(cmd, c->host);
  add_node_config_options(cmd, c->node);
  add_plugin_token_options(cmd, c->token, /*with_node_name=*/false);
  add_agent_options(cmd, c->agent, c->log_level);
  cmd->add_option("--host-proc-dir", c->host_proc_dir,
                  "the host's /proc (the agent finds running pods' netns there)")
      ->envname("AMBIENT_HOST_PROC_DIR")
      ->capture_default_str();
  cmd->callback([c, cmd] { exit_on_failure(run_run(*c, cmd->count("--plugin-config") > 0)); });
}

}  // namespace ambient::node
