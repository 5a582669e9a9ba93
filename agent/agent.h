// The node agent: serves the plugin, hands pods to ztunnel, keeps host probe SNAT, exposes health
// and metrics. `ambient-cni-node agent` runs one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "config/constants.h"

namespace ambient::agent {

struct AgentOptions {
  std::string run_dir{contract::kDefaultRunDir};
  std::string ztunnel_socket{contract::kDefaultZtunnelSocket};
  std::string kubeconfig;  // empty: in-cluster service account
  std::string node_name;
  std::string host_netns;  // empty: the agent's own network namespace
  std::string listen_address = "0.0.0.0";
  int health_port = 8000;    // /healthz, /readyz; 0 picks a free port, -1 disables
  int metrics_port = 15014;  // /metrics; 0 picks a free port, -1 disables
  std::uint32_t kubelet_uid = 0;
  std::chrono::milliseconds ztunnel_deadline{contract::kZdsDeadlineMs};
  std::chrono::milliseconds api_timeout{5000};
  // Extra readiness condition (e.g. `run`: the plugin is installed); /readyz needs both.
  std::function<bool()> ready_gate;
};

class Enroller;
class PodTable;
class ZdsServer;
class Metrics;

class Agent {
 public:
  Agent(AgentOptions options, std::shared_ptr<spdlog::logger> log);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Restores what an earlier agent left (tombstones, enrolled pods), then opens its sockets.
  // Ready when it returns. Throws std::runtime_error when it cannot start.
  void start();
  // Stops serving. Enrolled pods stay enrolled: an agent restart must not unmesh them.
  void stop();

  bool ready() const;
  int health_port() const;
  int metrics_port() const;

  Enroller& enroller();
  PodTable& pods();
  ZdsServer& zds();
  Metrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ambient::agent
