// Asking the node agent on this node what it holds, over its root-only socket
// (<run-dir>/agent.sock, op "pods"): `ambient-cni-node status`, and `explain --agent socket`.
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>

#include "rundir/messages.h"

namespace ambient::node {

// The agent cannot be asked (no socket, not root, no answer, a malformed one); the message says
// which and names the socket.
class AgentViewError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Every page of the agent's listing, joined. Throws AgentViewError.
rundir::AgentView fetch_agent_view(const std::string& socket_path,
                                   std::chrono::milliseconds timeout);

}  // namespace ambient::node
