// Where the plugin reaches the agent: <run_dir>/agent.sock, SOCK_SEQPACKET, root only.
// One JSON request and one JSON reply per connection; requests are served concurrently.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "config/agent_protocol.h"

namespace ambient::agent {

class PluginServer {
 public:
  using Handler = std::function<config::AgentReply(const config::AgentRequest&)>;

  PluginServer(std::string socket_path, Handler handler, std::shared_ptr<spdlog::logger> log);
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
