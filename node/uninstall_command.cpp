// `uninstall`: unenrols every pod an agent left enrolled, then removes the plugin, its conflist
// entry and kubeconfig (for a node taken out of ambient by hand; the DaemonSet's removal path is
// `run`'s).
#include "agent/offline_release.h"
#include "install/installer.h"
#include "node/commands.h"
#include "node/options.h"

namespace ambient::node {
namespace {

struct UninstallCmd {
  HostFlags host;
  NodeFlags node;
  std::string run_dir{contract::kDefaultRunDir};
  std::string log_level = "info";
  std::string kubeconfig;  // the node component's API access, to clear pod annotations
  std::string host_netns;
  std::uint32_t kubelet_uid = 0;
};

int run_uninstall(const UninstallCmd& c) {
  auto log = make_logger("uninstall", c.log_level);
  try {
    install::Installer installer(installer_options(c.host, node_config(c.node, c.run_dir)), log);
    agent::OfflineReleaseOptions release;
    release.run_dir = c.run_dir;
    release.host_netns = c.host_netns;
    release.kubelet_uid = c.kubelet_uid;
    try {
      release.api = node_kubeconfig(c.kubeconfig, c.host.service_account_dir);
    } catch (const std::exception& e) {
      log->warn("no API access ({})", e.what());
    }
    // First the pods (none may stay redirected to a ztunnel that is going away), then the files.
    const auto remaining = agent::release_persisted_pods(release, log);
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

}  // namespace

void add_uninstall_command(CLI::App& app) {
  auto c = std::make_shared<UninstallCmd>();
  auto* cmd = app.add_subcommand(
      "uninstall", "Unenrol every pod, then remove the plugin, its entry and kubeconfig");
  add_host_options(cmd, c->host);
  add_node_config_options(cmd, c->node);
  add_run_dir_option(cmd, c->run_dir);
  add_log_level_option(cmd, c->log_level);
  cmd->add_option("--kubeconfig", c->kubeconfig,
                  "API access to clear pod annotations (default: in-cluster)")
      ->envname("AMBIENT_KUBECONFIG");
  cmd->add_option("--host-netns", c->host_netns, "netns holding the host probe SNAT")
      ->envname("AMBIENT_HOST_NETNS");
  cmd->add_option("--kubelet-uid", c->kubelet_uid, "UID whose probes are SNATed")
      ->envname("AMBIENT_KUBELET_UID")
      ->capture_default_str();
  cmd->callback([c] { exit_on_failure(run_uninstall(*c)); });
}

}  // namespace ambient::node
