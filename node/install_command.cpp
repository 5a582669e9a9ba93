// `install`: installs the plugin on this node (binary, conflist entry, kubeconfig) and exits;
// without a primary CNI configuration yet it waits for one.
#include <chrono>

#include <spdlog/spdlog.h>

#include "install/installer.h"
#include "install/watcher.h"
#include "node/commands.h"
#include "node/options.h"

namespace ambient::node {
namespace {

struct InstallCmd {
  HostFlags host;
  NodeFlags node;
  PluginTokenFlags token;
  std::string kubeconfig;  // the node component's own API access (empty: in-cluster)
  std::string run_dir{contract::kDefaultRunDir};
  std::string log_level = "info";
  int wait_seconds = 0;
};

int run_install(const InstallCmd& c) {
  auto log = make_logger("install", c.log_level);
  try {
    install::Installer installer(
        installer_options(c.host, node_config(c.node, c.run_dir), c.token, c.kubeconfig, log), log);
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

}  // namespace

void add_install_command(CLI::App& app) {
  auto c = std::make_shared<InstallCmd>();
  auto* cmd = app.add_subcommand("install", "Install the plugin on this node and exit");
  add_host_options(cmd, c->host);
  add_node_config_options(cmd, c->node);
  add_plugin_token_options(cmd, c->token, /*with_node_name=*/true);
  cmd->add_option(
         "--kubeconfig", c->kubeconfig,
         "this component's API access, to request the plugin's token (default: in-cluster)")
      ->envname("AMBIENT_KUBECONFIG");
  add_run_dir_option(cmd, c->run_dir);
  add_log_level_option(cmd, c->log_level);
  cmd->add_option("--wait-timeout", c->wait_seconds,
                  "seconds to wait for a primary CNI config (0: forever)")
      ->envname("AMBIENT_WAIT_TIMEOUT")
      ->capture_default_str();
  cmd->callback([c] { exit_on_failure(run_install(*c)); });
}

}  // namespace ambient::node
