// Enrolment of one pod, end to end, and its undoing: in-pod rules, host probe entries, ztunnel
// handoff, status annotation. Nothing is left half-done: each failure rolls back what came before.
#pragma once

#include <memory>

#include <spdlog/logger.h>

#include "agent/kube_access.h"
#include "agent/metrics.h"
#include "agent/pod_table.h"
#include "agent/zds_server.h"
#include "config/agent_protocol.h"
#include "netns/host_probe.h"
#include "netns/redirect.h"

namespace ambient::agent {

struct EnrollerDeps {
  PodTable& pods;
  ZdsServer& zds;
  netns::HostProbeSnat& probes;
  StatusAnnotator& status;
  Metrics& metrics;
  std::shared_ptr<spdlog::logger> log;
};

// The in-pod plan for a pod: IPv4 unless it has only IPv6; IPv6 when enabled and present.
netns::RedirectPlan plan_for(const config::RedirectSettings& settings,
                             const std::vector<std::string>& ips);

class Enroller {
 public:
  explicit Enroller(EnrollerDeps deps) : d_(std::move(deps)) {}

  // The plugin's requests. Replies carry a CNI error code on failure.
  config::AgentReply add(const config::AgentRequest& request);
  config::AgentReply del(const config::AgentRequest& request);
  config::AgentReply check(const config::AgentRequest& request);

  // After a restart: re-opens the pod's netns and re-applies its rules (repairing drift); no ZDS
  // here, the next snapshot carries it. Returns false (and forgets the pod) when its netns is gone.
  bool restore(EnrolledPod pod);

  // Forgets a pod: ztunnel del, in-pod rules, probe entries, state; the annotation too when asked.
  // Best effort: every step runs even if an earlier one failed.
  void release(const EnrolledPod& pod, bool clear_annotation);

 private:
  EnrollerDeps d_;
};

}  // namespace ambient::agent
