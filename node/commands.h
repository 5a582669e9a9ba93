// Subcommands of ambient-cni-node; each lives in its own file.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "agent/agent.h"

namespace ambient::node {

void add_version_command(CLI::App& app);
void add_explain_command(CLI::App& app);
void add_redirect_command(CLI::App& app);
void add_agent_command(CLI::App& app);
// install, uninstall, run (node/install_command.cpp).
void add_install_commands(CLI::App& app);
// The agent's flags (each also an env var), shared by `agent` and `run`.
void add_agent_options(CLI::App* cmd, agent::AgentOptions& options, std::string& log_level);

}  // namespace ambient::node
