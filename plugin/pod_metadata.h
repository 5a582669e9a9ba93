// Where the plugin gets a pod's metadata when no node agent runs: the Kubernetes API itself (one
// connection, bounded). With an agent, the agent reads and decides (docs/decisions/009).
#pragma once

#include <memory>
#include <stdexcept>
#include <string_view>

#include "config/kube_objects.h"
#include "config/plugin_config.h"

namespace ambient::plugin {

struct PodMetadata {
  config::PodInfo pod;
  config::NamespaceInfo ns;
};

// The lookup failed; the message names the cause (unreachable, 401, 403, 404, bad JSON, …).
class MetadataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class PodMetadataSource {
 public:
  virtual ~PodMetadataSource() = default;
  virtual PodMetadata fetch(std::string_view pod_namespace, std::string_view pod_name) = 0;
};

// GET /api/v1/namespaces/{ns}/pods/{name} and /api/v1/namespaces/{ns} with the kubeconfig and
// deadline of the plugin configuration.
std::unique_ptr<PodMetadataSource> make_api_metadata_source(const config::PluginConfig& config);

}  // namespace ambient::plugin
