#include "plugin/pod_metadata.h"

#include <chrono>
#include <string>

#include "config/errors.h"
#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "plugin/cni_error.h"

namespace ambient::plugin {
namespace {

class ApiMetadataSource final : public PodMetadataSource {
 public:
  explicit ApiMetadataSource(const config::PluginConfig& config) : config_(config) {}

  PodMetadata fetch(std::string_view pod_namespace, std::string_view pod_name) override {
    const std::string who = std::string(pod_namespace) + "/" + std::string(pod_name);
    kube::Kubeconfig kubeconfig;
    try {
      kubeconfig = kube::load_kubeconfig(config_.kubeconfig);
    } catch (const kube::KubeconfigError& e) {
      throw MetadataError("cannot read the plugin kubeconfig: " + std::string(e.what()));
    }
    kube::ClientOptions options;
    options.deadline = std::chrono::milliseconds(config_.api_timeout_ms);
    options.user_agent = "ambient-cni-plugin";
    kube::Client client(std::move(kubeconfig), options);
    const std::string ns_path = "/api/v1/namespaces/" + std::string(pod_namespace);
    try {
      PodMetadata m;
      m.pod = config::parse_pod(client.get(ns_path + "/pods/" + std::string(pod_name)));
      m.ns = config::parse_namespace(client.get(ns_path));
      if (m.pod.namespace_.empty()) m.pod.namespace_ = std::string(pod_namespace);
      return m;
    } catch (const kube::ApiError& e) {
      throw MetadataError("looking up pod " + who + ": " + e.what());
    } catch (const config::ConfigError& e) {
      throw MetadataError("looking up pod " + who +
                          ": the API returned a malformed object: " + e.what());
    }
  }

 private:
  const config::PluginConfig& config_;
};

}  // namespace

std::unique_ptr<PodMetadataSource> make_api_metadata_source(const config::PluginConfig& config) {
  return std::make_unique<ApiMetadataSource>(config);
}

}  // namespace ambient::plugin
