// A minimal host for node/redirect_command.cpp so the netns tests can drive the operator CLI
// (and prove the file builds against Debian's CLI11) without the rest of ambient-cni-node.
#include <CLI/CLI.hpp>

#include "node/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"redirect CLI test host"};
  app.require_subcommand(1);
  ambient::node::add_redirect_command(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
