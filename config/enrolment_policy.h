// What decides enrolment, independent of where it came from (conflist entry or node config).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/labels.h"

namespace ambient::config {

struct EnablementSelector {
  LabelSelector pod;         // podSelector; absent = {}
  LabelSelector namespace_;  // namespaceSelector; absent = {}
  std::string reason;        // what a match is reported as, e.g. "namespace label ambient"
};

struct EnrolmentPolicy {
  bool ambient_enabled = true;
  std::vector<std::string> exclude_namespaces{"kube-system"};
  std::vector<EnablementSelector> enablement_selectors = default_selectors();
  std::string pod_namespace = "istio-system";       // where our node agent runs
  std::string daemonset_name = "ambient-cni-node";  // our agent pods are named <this>-…
  std::string system_namespace = "istio-system";    // where ztunnel runs

  // Istio's defaults: pod label ambient anywhere; namespace label ambient unless pod says none.
  static std::vector<EnablementSelector> default_selectors();
};

// Parses `enablement_selectors` (array of {podSelector, namespaceSelector}). Throws ConfigError.
std::vector<EnablementSelector> parse_enablement_selectors(const nlohmann::json& j);

}  // namespace ambient::config
