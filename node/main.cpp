// ambient-cni-node: the node component's CLI (DaemonSet entry point and operator tools).
#include <malloc.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "node/commands.h"

int main(int argc, char** argv) {
  // glibc gives each thread that meets contention an arena of its own (up to 8 per CPU), and an
  // arena keeps what a burst of pods made it grow to: two are plenty for a node agent's dozen
  // threads (the agent's anonymous memory after a 110-pod burst: 12 MiB with the default).
  mallopt(M_ARENA_MAX, 2);
  // stdout belongs to command output (explain, status, redirect --dry-run); logs go to stderr.
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "ambient-cni-node", std::make_shared<spdlog::sinks::stderr_sink_mt>()));
  CLI::App app{"ambient-cni-node: the ambient-cni node component"};
  app.require_subcommand(1);
  ambient::node::add_version_command(app);
  ambient::node::add_explain_command(app);
  ambient::node::add_status_command(app);
  ambient::node::add_redirect_command(app);
  ambient::node::add_agent_command(app);
  ambient::node::add_install_command(app);
  ambient::node::add_uninstall_command(app);
  ambient::node::add_delete_daemonset_command(app);
  ambient::node::add_run_command(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
