// The plugin's socket edge to the node agent: one request (rundir/messages.h), one reply, within
// a deadline, over <run_dir>/agent.sock.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "plugin/cni_error.h"
#include "rundir/messages.h"

namespace ambient::plugin {

// No agent listens (not installed yet, restarting): nothing was sent, so the plugin may decide on
// its own. CNI code 11.
class AgentNotRunning : public CniError {
 public:
  explicit AgentNotRunning(const std::string& why)
      : CniError(cni_code::kTryAgainLater, "node agent unavailable: " + why) {}
};

class AgentClient {
 public:
  virtual ~AgentClient() = default;
  // The agent's reply. Throws AgentNotRunning when it cannot be reached, CniError(11, "node agent
  // unavailable: …") when it took the request but did not answer in time or answered garbage —
  // it may have acted on it, so the caller must not carry on as if it had not.
  virtual rundir::AgentReply call(const rundir::AgentRequest& request) = 0;
};

std::unique_ptr<AgentClient> make_socket_agent_client(const std::string& socket_path,
                                                      std::chrono::milliseconds deadline);

}  // namespace ambient::plugin
