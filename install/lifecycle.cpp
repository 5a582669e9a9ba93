#include "install/lifecycle.h"

#include <sstream>

namespace ambient::install {

ShutdownDecision decide_shutdown(const nlohmann::json* daemonset, const kube::ApiError* error) {
  if (error != nullptr) {
    if (error->kind() == kube::ApiError::Kind::kNotFound) {
      return {ShutdownAction::kUninstall, "the DaemonSet no longer exists"};
    }
    if (error->kind() == kube::ApiError::Kind::kUnauthorized ||
        error->kind() == kube::ApiError::Kind::kForbidden) {
      return {ShutdownAction::kUninstallKeepingPods,
              std::string("the API refuses our own identity (") + error->what() +
                  "): our ServiceAccount or RBAC was deleted, so the install is being removed"};
    }
    return {ShutdownAction::kLeaveInPlace,
            std::string("cannot tell whether the DaemonSet still exists (") + error->what() +
                "): leaving everything in place"};
  }
  if (daemonset == nullptr || !daemonset->is_object()) {
    return {ShutdownAction::kLeaveInPlace, "no DaemonSet answer: leaving everything in place"};
  }
  const auto meta = daemonset->find("metadata");
  if (meta != daemonset->end() && meta->is_object()) {
    const auto deleting = meta->find("deletionTimestamp");
    if (deleting != meta->end() && !deleting->is_null()) {
      return {ShutdownAction::kUninstall, "the DaemonSet is being deleted"};
    }
  }
  return {ShutdownAction::kLeaveInPlace, "the DaemonSet still exists: an upgrade or a restart"};
}

ShutdownDecision check_daemonset(kube::Client& client, const std::string& ns,
                                 const std::string& name) {
  const std::string path = "/apis/apps/v1/namespaces/" + ns + "/daemonsets/" + name;
  try {
    const auto ds = client.get(path);
    return decide_shutdown(&ds, nullptr);
  } catch (const kube::ApiError& e) {
    return decide_shutdown(nullptr, &e);
  }
}

std::vector<std::string> netns_dir_problems(std::string_view mountinfo,
                                            const std::string& netns_dir, bool dir_exists) {
  std::vector<std::string> problems;
  if (!dir_exists) {
    problems.push_back("netns dir " + netns_dir +
                       " does not exist: the agent cannot open the pods' network namespaces");
    return problems;
  }
  // mountinfo: id parent major:minor root mountpoint options [optional fields...] - fstype ...
  std::istringstream lines{std::string(mountinfo)};
  std::string line;
  std::string fields_of_last;  // a later mount on the same point hides earlier ones
  bool mounted = false;
  while (std::getline(lines, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point, options, field, optional;
    if (!(f >> id >> parent >> dev >> root >> point >> options)) continue;
    while (f >> field && field != "-") optional += field + " ";
    if (point == netns_dir) {
      mounted = true;
      fields_of_last = optional;
    }
  }
  if (mounted && fields_of_last.find("master:") == std::string::npos &&
      fields_of_last.find("shared:") == std::string::npos) {
    problems.push_back("netns dir " + netns_dir +
                       " is a private mount: network namespaces the runtime creates after this "
                       "container started stay invisible to the agent (mount it with "
                       "mountPropagation: HostToContainer)");
  }
  return problems;
}

}  // namespace ambient::install
