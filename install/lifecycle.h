// Decisions around the node component's life: what SIGTERM means (an upgrade or a removal), and
// whether the netns directory is mounted so that the agent sees network namespaces created after
// it started.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "kube/client.h"

namespace ambient::install {

enum class ShutdownAction {
  kLeaveInPlace,  // upgrade (or unknown): plugin, config, kubeconfig and host rules stay
  kUninstall,     // the DaemonSet is gone or being deleted: unenrol pods, remove what is ours
  // The API no longer knows us (401) or grants us nothing (403): our ServiceAccount or RBAC was
  // deleted, which an upgrade never does — `kubectl delete -k` removes them together with the
  // DaemonSet. The node is given back to the primary CNI (plugin, conflist entry, kubeconfig
  // removed) so new pods start; enrolled pods keep their rules and ztunnel (their `enabled`
  // annotation cannot be cleared without the API, and rules without it would break HBONE to
  // them) until they restart.
  kUninstallKeepingPods,
};

struct ShutdownDecision {
  ShutdownAction action = ShutdownAction::kLeaveInPlace;
  std::string reason;
};

// From the answer to GET .../daemonsets/{name}: the object (when the GET succeeded) or the error.
// Exists without deletionTimestamp → upgrade. 404, or a deletionTimestamp → removal. 401/403 →
// removal without the API (kUninstallKeepingPods). Any other error → unknown, and unknown leaves
// everything in place: removing the plugin by mistake lets new pods start outside the mesh,
// while leaving it by mistake only makes ambient pods wait (fail closed) until an operator runs
// `ambient-cni-node uninstall`.
ShutdownDecision decide_shutdown(const nlohmann::json* daemonset, const kube::ApiError* error);

// GETs /apis/apps/v1/namespaces/{ns}/daemonsets/{name} and decides.
ShutdownDecision check_daemonset(kube::Client& client, const std::string& ns,
                                 const std::string& name);

// Problems with the netns directory given /proc/self/mountinfo's text: missing, or a mount
// without propagation from the host (a private mount never shows the netns bind mounts the
// runtime creates after our container started; HostToContainer gives a slave mount).
std::vector<std::string> netns_dir_problems(std::string_view mountinfo,
                                            const std::string& netns_dir, bool dir_exists);

}  // namespace ambient::install
