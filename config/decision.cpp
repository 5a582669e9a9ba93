#include "config/decision.h"

#include <algorithm>

#include "config/constants.h"

namespace ambient::config {
namespace {

EnrolmentDecision untouched(std::string reason) {
  return {false, std::move(reason), {}};
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

// The label value, when present.
const std::string* dataplane_mode(const Labels& labels) {
  const auto it = labels.find(contract::kDataplaneModeLabel);
  return it == labels.end() ? nullptr : &it->second;
}

void warn_unknown_value(const Labels& labels, std::string_view what,
                        std::vector<std::string>& warnings) {
  const auto* mode = dataplane_mode(labels);
  if (mode == nullptr || *mode == contract::kDataplaneModeAmbient ||
      *mode == contract::kDataplaneModeNone) {
    return;
  }
  warnings.push_back(std::string(what) + " label " + std::string(contract::kDataplaneModeLabel) +
                     "=\"" + *mode + "\" is neither \"ambient\" nor \"none\"; treated as absent");
}

}  // namespace

std::optional<EnrolmentDecision> decide_from_names(const EnrolmentPolicy& policy,
                                                   std::string_view pod_namespace,
                                                   std::string_view pod_name) {
  if (pod_namespace.empty() || pod_name.empty()) {
    return untouched("not a Kubernetes pod (CNI_ARGS has no K8S_POD_NAMESPACE/K8S_POD_NAME)");
  }
  if (!policy.ambient_enabled) return untouched("ambient disabled in the plugin configuration");
  const auto& excluded = policy.exclude_namespaces;
  if (std::find(excluded.begin(), excluded.end(), pod_namespace) != excluded.end()) {
    return untouched("excluded namespace " + std::string(pod_namespace));
  }
  if (pod_namespace == policy.pod_namespace && starts_with(pod_name, policy.daemonset_name + "-")) {
    return untouched("ambient-cni node agent pod");
  }
  return std::nullopt;
}

EnrolmentDecision decide(const EnrolmentPolicy& policy, const PodInfo& pod,
                         const NamespaceInfo& ns) {
  if (auto early = decide_from_names(policy, pod.namespace_, pod.name)) return *early;
  if (pod.host_network) return untouched("host network pod");
  if (pod.annotations.contains(contract::kSidecarStatusAnnotation)) {
    return untouched("sidecar pod (annotation sidecar.istio.io/status)");
  }
  const auto app = pod.labels.find(contract::kZtunnelAppLabel);
  if (pod.namespace_ == policy.system_namespace && app != pod.labels.end() &&
      app->second == contract::kZtunnelAppValue) {
    return untouched("ztunnel pod");
  }

  EnrolmentDecision d;
  warn_unknown_value(pod.labels, "pod", d.warnings);
  warn_unknown_value(ns.labels, "namespace", d.warnings);
  for (const auto& sel : policy.enablement_selectors) {
    if (sel.pod.matches(pod.labels) && sel.namespace_.matches(ns.labels)) {
      d.enrol = true;
      d.reason = sel.reason;
      return d;
    }
  }
  const auto* pod_mode = dataplane_mode(pod.labels);
  const auto* ns_mode = dataplane_mode(ns.labels);
  if (pod_mode != nullptr && *pod_mode == contract::kDataplaneModeNone) {
    d.reason = "pod label none";
  } else if (ns_mode != nullptr && *ns_mode == contract::kDataplaneModeNone) {
    d.reason = "namespace label none";
  } else {
    d.reason = "no enablement selector matched (pod and namespace not labelled ambient)";
  }
  return d;
}

}  // namespace ambient::config
