// `agent`: the node agent in the foreground until SIGTERM/SIGINT.
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "node/commands.h"
#include "node/options.h"

namespace ambient::node {
namespace {

int run_agent(const agent::AgentOptions& options, const std::string& log_level) {
  auto log = make_logger("agent", log_level);
  // Signals are taken synchronously by this thread; every other thread inherits the mask.
  const auto set = block_stop_signals();
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
  cmd->callback([o, level] { exit_on_failure(run_agent(*o, *level)); });
}

}  // namespace ambient::node
