// The enrolment decision (ambient-contract.md §2): one pure function shared by the plugin (at
// ADD) and the node agent (on label changes), so both always agree.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/enrolment_policy.h"
#include "config/kube_objects.h"

namespace ambient::config {

struct EnrolmentDecision {
  bool enrol = false;
  std::string reason;                 // short, e.g. "excluded namespace kube-system"
  std::vector<std::string> warnings;  // e.g. an unknown istio.io/dataplane-mode value
};

// Rules 1–3, which need no API call: not a Kubernetes pod, excluded namespace, our own agent pod.
// Returns nullopt when the pod's metadata is needed to decide.
std::optional<EnrolmentDecision> decide_from_names(const EnrolmentPolicy& policy,
                                                   std::string_view pod_namespace,
                                                   std::string_view pod_name);

// The whole precedence (rules 1–7).
EnrolmentDecision decide(const EnrolmentPolicy& policy, const PodInfo& pod,
                         const NamespaceInfo& ns);

}  // namespace ambient::config
