// What `ambient-cni-node explain` says about a live pod: the decision (the same config::decide
// the plugin and the agent use) with the rule that fired, the labels it read, the status
// annotation, the waypoint that applies, what the node agent holds, and whether all of that
// agrees — a mismatch (should be enrolled and is not, or the reverse) comes first. Pure: the
// command reads the cluster and the agent, this judges and renders.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/decision.h"
#include "config/enrolment_policy.h"
#include "config/kube_objects.h"
#include "rundir/messages.h"

namespace ambient::node {

// What explain learned from the node agent of the pod's node.
struct AgentAnswer {
  bool asked = false;      // explain tried (false: --agent none, or the pod has no node yet)
  bool reachable = false;  // and got an answer
  std::string via;         // "pods/proxy istio-system/ambient-cni-node-x:8000", "socket …"
  std::string error;       // why it could not ask, or what failed
  std::optional<rundir::HeldPod> pod;  // the agent's row for this pod's uid
  std::size_t ztunnel_connections = 0;
  bool agent_ready = false;
  std::string agent_not_ready;
};

// A label of a pod or its namespace as explain read it.
struct LabelRead {
  bool set = false;
  std::string value;
};

// Which waypoint the pod's traffic uses (istio.io/use-waypoint: the pod's label wins over its
// namespace's; "none" on the pod opts out of the namespace's).
struct Waypoint {
  std::string name;        // "" none applies
  std::string from;        // "pod", "namespace" or ""
  std::string namespace_;  // istio.io/use-waypoint-namespace, when set
  std::string note;        // e.g. the pod opts out of the namespace's waypoint
};

struct PodExplanation {
  config::PodInfo pod;
  std::string namespace_name;
  config::EnrolmentDecision decision;
  LabelRead pod_mode, namespace_mode;          // istio.io/dataplane-mode
  LabelRead pod_waypoint, namespace_waypoint;  // istio.io/use-waypoint
  LabelRead annotation;                        // ambient.istio.io/redirection
  bool sidecar = false;                        // sidecar.istio.io/status present
  Waypoint waypoint;
  AgentAnswer agent;
  // The verdict: consistent, or a mismatch said in one sentence.
  bool consistent = true;
  std::string state;     // "enrolled", "untouched", "not started", "finished", …
  std::string mismatch;  // "" when consistent
  std::vector<std::string> notes;
};

PodExplanation explain_pod(const config::EnrolmentPolicy& policy, const config::PodInfo& pod,
                           const config::NamespaceInfo& ns, AgentAnswer agent);

// One pod: the mismatch first (if any), then every fact on a line of its own.
std::string render_pod(const PodExplanation& e, std::chrono::system_clock::time_point now =
                                                    std::chrono::system_clock::now());
// A namespace: every mismatch first, then one row per pod.
std::string render_namespace(
    const std::string& ns, const std::vector<PodExplanation>& pods,
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now());
nlohmann::json to_json(const PodExplanation& e);

}  // namespace ambient::node
