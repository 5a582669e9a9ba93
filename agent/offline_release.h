// Uninstall with no agent running: unenrols every pod an agent persisted under the run dir (rules
// out of each pod's netns, probe SNAT entries, state file, status annotation when the API can be
// reached), then removes the host probe table once nothing is left. ztunnel gets no `del` (no
// agent, no ZDS connection): it drops the pods at its next snapshot, and with the rules gone no
// traffic reaches it meanwhile. The same Enroller steps as a running agent's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/logger.h>

#include "kube/kubeconfig.h"

namespace ambient::agent {

struct OfflineReleaseOptions {
  std::string run_dir;
  std::optional<kube::Kubeconfig> api;  // absent: annotations stay set (and that is logged)
  std::string host_netns;               // empty: the caller's own netns
  std::uint32_t kubelet_uid = 0;
};

// Returns how many enrolled pods (or unreadable state files) remain.
std::size_t release_persisted_pods(const OfflineReleaseOptions& options,
                                   const std::shared_ptr<spdlog::logger>& log);

}  // namespace ambient::agent
