#include <iostream>

#include "node/commands.h"

#ifndef AMBIENT_VERSION
#define AMBIENT_VERSION "dev"
#endif

namespace ambient::node {

void add_version_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print the version");
  cmd->callback([] { std::cout << "ambient-cni-node " << AMBIENT_VERSION << '\n'; });
}

}  // namespace ambient::node
