// Subcommands of ambient-cni-node; each lives in its own file, sharing node/options.h.
#pragma once

#include <CLI/CLI.hpp>

namespace ambient::node {

void add_version_command(CLI::App& app);
void add_explain_command(CLI::App& app);
void add_status_command(CLI::App& app);
void add_redirect_command(CLI::App& app);
void add_agent_command(CLI::App& app);
void add_install_command(CLI::App& app);
void add_uninstall_command(CLI::App& app);
void add_delete_daemonset_command(CLI::App& app);
void add_run_command(CLI::App& app);

}  // namespace ambient::node
