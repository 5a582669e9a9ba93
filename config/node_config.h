// The node configuration: what the DaemonSet's ConfigMap and environment say about this node's
// plugin (excluded namespaces, selectors, log level, DNS capture, …). It is the one source of
// truth of the plugin's conflist entry: render_plugin_entry() writes the entry, and every value it
// renders is checked by the plugin's own parser (config::parse_plugin_config), so the installer
// can never write an entry the plugin would reject.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/constants.h"
#include "config/plugin_config.h"

namespace ambient::config {

struct NodeConfig {
  bool ambient_enabled = true;
  std::vector<std::string> exclude_namespaces{std::string(contract::kDefaultExcludedNamespace)};
  // `enablement_selectors` as JSON (an array of {podSelector, namespaceSelector}); null keeps
  // Istio's default selectors and is not rendered (the plugin's defaults carry readable reasons).
  nlohmann::json enablement_selectors;
  std::string pod_namespace{contract::kDefaultPodNamespace};
  std::string daemonset_name{contract::kDefaultDaemonSetName};
  std::string system_namespace{contract::kDefaultSystemNamespace};
  std::string run_dir{contract::kDefaultRunDir};  // cni_agent_run_dir
  std::string plugin_log_level = "info";
  std::string kubeconfig;  // where the plugin's kubeconfig is written; empty: <run_dir>/kubeconfig
  int api_timeout_ms = 5000;
  int agent_timeout_ms = 15000;
  FailurePolicy failure_policy = FailurePolicy::kClosed;
  bool dns_capture = true;
  bool ipv6 = true;
  bool status_checks_agent = true;

  // The plugin's kubeconfig path: `kubeconfig`, or <run_dir>/kubeconfig when empty.
  std::string plugin_kubeconfig_path() const;
};

// The plugin's entry for the primary CNI's `plugins[]`: type "ambient-cni", Istio 1.28's key
// names where Istio has the setting (exclude_namespaces, enablement_selectors,
// cni_agent_run_dir, plugin_log_level, ambient_enabled, pod_namespace), ours otherwise. Every
// value is explicit, so the plugin never depends on its defaults matching the node's. Keys keep
// a fixed order (the file is read by people). Throws ConfigError (kInvalid, naming the key) when
// a value would be rejected by the plugin.
nlohmann::ordered_json render_plugin_entry(const NodeConfig& config);

// Throws ConfigError naming the key when the plugin would reject the rendered entry.
void validate_node_config(const NodeConfig& config);

// "kube-system, istio-system,,x" → {"kube-system","istio-system","x"}: blanks trimmed, empty
// entries and duplicates dropped (how a ConfigMap value or a flag gives the list).
std::vector<std::string> split_namespace_list(std::string_view comma_separated);

// `enablement_selectors` given as JSON text (ConfigMap value or flag). Empty text → null
// (Istio's default). Throws ConfigError naming "enablement_selectors" (and the entry) when the
// text is not JSON or not valid selectors.
nlohmann::json parse_enablement_selectors_text(std::string_view text);

// "closed" / "open"; throws ConfigError naming "failure_policy" otherwise.
FailurePolicy parse_failure_policy(std::string_view text);
std::string_view failure_policy_name(FailurePolicy policy);

}  // namespace ambient::config
