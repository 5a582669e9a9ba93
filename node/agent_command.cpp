// `agent`: the node agent in the foreground until SIGTERM/SIGINT.
#include <signal.h>

#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "config/errors.h"
#include "config/plugin_config.h"
#include "node/commands.h"

namespace ambient::node {
namespace {

int run_agent(const agent::AgentOptions& options, const std::string& log_level) {
  auto log =
      std::make_shared<spdlog::logger>("agent", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  log->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  log->set_level(spdlog::level::from_str(log_level));
  spdlog::set_default_logger(log);

  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  try {
    agent::Agent a(options, log);
    a.start();
    int sig = 0;
    sigwait(&set, &sig);
    log->info("signal {}: stopping (enrolled pods stay enrolled)", sig);
    a.stop();
    return 0;
  } catch (const std::exception& e) {
    log->critical("agent failed: {}", e.what());
    return 1;
  }
}

}  // namespace

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

void add_agent_command(CLI::App& app) {
  auto o = std::make_shared<agent::AgentOptions>();
  auto level = std::make_shared<std::string>("info");
  auto* cmd = app.add_subcommand("agent", "Run the node agent (ZDS server, plugin requests)");
  add_agent_options(cmd, *o, *level);
  // Same name as `run`'s (which defines it next to its other host paths).
  cmd->add_option("--host-proc-dir", o->proc_root,
                  "the host's /proc (the agent finds running pods' netns there)")
      ->envname("AMBIENT_HOST_PROC_DIR")
      ->capture_default_str();
  cmd->callback([o, level] {
    if (const int rc = run_agent(*o, *level); rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace ambient::node
