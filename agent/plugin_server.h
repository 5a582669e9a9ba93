// The agent's socket edge for the plugin: <run_dir>/agent.sock, SOCK_SEQPACKET, root only. It
// translates the plugin's messages (rundir/messages.h) into calls on the agent's core and back;
// nothing past it sees the protocol. One request and one reply per connection; requests are
// served concurrently.
#pragma once

#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "agent/enrolment.h"
#include "rundir/messages.h"
#include "rundir/records.h"

namespace ambient::agent {

// What the plugin may ask of the agent's core.
class PluginRequests {
 public:
  virtual ~PluginRequests() = default;
  virtual AddResult add(const rundir::PodRecord& sandbox) = 0;  // decide, and enrol if selected
  virtual void del(const rundir::PodRecord& sandbox) = 0;       // never fails
  virtual Outcome check(const rundir::PodRecord& sandbox) = 0;
  virtual Outcome status() = 0;  // ready to enrol pods, or CNI 50 with why not
  // What the agent holds, one page (`ambient-cni-node status`; read-only).
  virtual rundir::AgentView listing(std::size_t offset) = 0;
};

class PluginServer {
 public:
  PluginServer(std::string socket_path, PluginRequests& core, std::shared_ptr<spdlog::logger> log);
  ~PluginServer();
  PluginServer(const PluginServer&) = delete;
  PluginServer& operator=(const PluginServer&) = delete;

  void start();
  void stop();  // stops accepting and waits for requests in flight

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ambient::agent
