// The node agent: serves the plugin, hands pods to ztunnel, keeps host probe SNAT, exposes health
// and metrics. `ambient-cni-node agent` runs one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "agent/enroller.h"
#include "agent/metrics.h"
#include "agent/pod_events.h"
#include "config/constants.h"
#include "config/enrolment_policy.h"
#include "rundir/messages.h"

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
  // Label changes: watch pods (on node_name) and namespaces and keep every pod where its labels
  // say, with the same policy as the plugin's conflist entry.
  bool watch = true;
  config::EnrolmentPolicy policy;
  bool dns_capture = true;
  bool ipv6 = true;
  std::chrono::milliseconds drift_interval{30000};  // in-pod rules and host probe SNAT re-checked
  std::chrono::milliseconds watch_timeout{300000};  // one watch request (timeoutSeconds)
  std::string proc_root = "/proc";
  // Extra readiness condition (e.g. `run`: the plugin is installed); /readyz needs both.
  std::function<bool()> ready_gate;
  // Shared with whoever else counts into the agent's /metrics (run's installer watcher); the
  // agent makes its own when null.
  std::shared_ptr<Metrics> metrics;
  // Kubernetes Events on pods (agent/pod_events.h): posted unless false, within these limits.
  bool events = true;
  EventLimiter::Options event_limits;
};

class Enroller;
class PodTable;
class ZdsServer;
class Reconciler;

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
  // Removal (not an upgrade): stops label-driven enrolment, then releases every enrolled pod
  // (annotation, ztunnel del, rules, probe entries, state); a pod whose annotation the API will
  // not clear stays enrolled (Enroller::release_all).
  Enroller::Released release_all();

  // Sockets up, earlier state restored and (with watch) every pod on the node reconciled once.
  bool ready() const;
  bool wait_ready(std::chrono::milliseconds timeout) const;
  int health_port() const;
  int metrics_port() const;

  Enroller& enroller();
  PodTable& pods();
  ZdsServer& zds();
  Metrics& metrics();
  Reconciler* reconciler();  // null without watch
  PodReporter& reporter();
  // What `ambient-cni-node status` shows: one page of the pods this agent holds or failed to
  // enrol, from `offset`, sorted by namespace and name.
  rundir::AgentView view(std::size_t offset);
  // The same rows for exactly these pod uids (a uid the agent knows nothing of: "not held").
  rundir::AgentView view_of(const std::vector<std::string>& uids);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ambient::agent
