// `status`: what the node agent on this node holds — each pod, its netns, whether ztunnel acked
// it, since when, and its last error — asked over the agent's root-only socket
// (<run-dir>/agent.sock). Text table or JSON.
#include <iostream>

#include "node/agent_view.h"
#include "node/commands.h"
#include "node/node_text.h"
#include "node/options.h"

namespace ambient::node {
namespace {

struct StatusOptions {
  std::string run_dir{contract::kDefaultRunDir};
  std::string output = "text";
  int timeout_ms = 5000;
};

int status(const StatusOptions& o) {
  const std::string socket = o.run_dir + "/agent.sock";
  rundir::AgentView view;
  try {
    view = fetch_agent_view(socket, std::chrono::milliseconds(o.timeout_ms));
  } catch (const AgentViewError& e) {
    std::cerr << "status: " << e.what() << '\n';
    return 2;
  }
  if (o.output == "json") {
    std::cout << rundir::to_json(view).dump(2) << '\n';
    return 0;
  }
  std::cout << render_agent_status(view);
  return 0;
}

}  // namespace

void add_status_command(CLI::App& app) {
  auto opts = std::make_shared<StatusOptions>();
  auto* cmd = app.add_subcommand(
      "status",
      "Show what the node agent on this node holds: pods, netns, ztunnel acks, last errors "
      "(root, over <run-dir>/agent.sock)");
  add_run_dir_option(cmd, opts->run_dir);
  cmd->add_option("--output,-o", opts->output, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->add_option("--timeout-ms", opts->timeout_ms, "how long to wait for the agent")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  cmd->callback([opts] { exit_on_failure(status(*opts)); });
}

}  // namespace ambient::node
