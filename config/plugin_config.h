// The plugin's conflist entry (ambient-contract.md §3): Istio's keys plus ours.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/enrolment_policy.h"

namespace ambient::config {

enum class FailurePolicy { kClosed, kOpen };

struct PluginConfig {
  // Generic CNI keys.
  std::string cni_version;
  std::string name;
  std::string type;

  EnrolmentPolicy policy;  // exclude_namespaces, enablement_selectors, pod_namespace, …
  std::string run_dir;     // cni_agent_run_dir
  std::string log_level = "info";
  std::string kubeconfig;  // default: <run_dir>/kubeconfig
  int api_timeout_ms = 5000;
  int agent_timeout_ms = 15000;
  FailurePolicy failure_policy = FailurePolicy::kClosed;
  bool dns_capture = true;
  bool ipv6 = true;
  // STATUS answers 50 while the node agent cannot enrol pods (decision 011).
  bool status_checks_agent = true;

  // Passed through, not interpreted here.
  nlohmann::json prev_result;     // null when absent
  nlohmann::json runtime_config;  // object (maybe empty)
};

// Parses the stdin document a runtime hands the plugin. Throws ConfigError: kDecode when the
// text is not a JSON object, kInvalid naming the key when a known key has a wrong type or value.
// Unknown keys are ignored (runtimes add their own).
PluginConfig parse_plugin_config(std::string_view stdin_text);

// The ambient-cni entry of a conflist (its plugins[] entry of type "ambient-cni", with the
// conflist's cniVersion), or a bare plugin entry. Throws ConfigError.
PluginConfig plugin_config_from_document(const nlohmann::json& document);

// Reads a key of `runtimeConfig` case-insensitively (runtimes capitalise some keys).
const nlohmann::json* find_runtime_config(const nlohmann::json& runtime_config,
                                          std::string_view key);

}  // namespace ambient::config
