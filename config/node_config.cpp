#include "config/node_config.h"

#include <algorithm>
#include <cctype>

#include "config/enrolment_policy.h"
#include "config/errors.h"

namespace ambient::config {
namespace {

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::vector<std::string> normalized(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const auto& n : names) {
    auto t = trim(n);
    if (!t.empty() && std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
  }
  return out;
}

[[noreturn]] void invalid(const std::string& key, const std::string& what) {
  throw ConfigError(ConfigError::Kind::kInvalid, key, "config key \"" + key + "\" " + what);
}

}  // namespace

std::string NodeConfig::plugin_kubeconfig_path() const {
  return kubeconfig.empty() ? run_dir + "/kubeconfig" : kubeconfig;
}

std::string_view failure_policy_name(FailurePolicy policy) {
  return policy == FailurePolicy::kOpen ? "open" : "closed";
}

FailurePolicy parse_failure_policy(std::string_view text) {
  if (text == "closed") return FailurePolicy::kClosed;
  if (text == "open") return FailurePolicy::kOpen;
  invalid("failure_policy", "must be \"closed\" or \"open\", not \"" + std::string(text) + "\"");
}

std::vector<std::string> split_namespace_list(std::string_view text) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const auto end = comma == std::string_view::npos ? text.size() : comma;
    parts.emplace_back(text.substr(start, end - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return normalized(parts);
}

nlohmann::json parse_enablement_selectors_text(std::string_view text) {
  if (trim(text).empty()) return nullptr;
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) invalid("enablement_selectors", "is not valid JSON");
  if (j.is_null()) return nullptr;
  parse_enablement_selectors(j);  // throws ConfigError naming the entry
  return j;
}

nlohmann::ordered_json render_plugin_entry(const NodeConfig& c) {
  if (c.run_dir.empty() || c.run_dir.front() != '/') {
    invalid("cni_agent_run_dir", "must be an absolute path, not \"" + c.run_dir + "\"");
  }
  nlohmann::ordered_json e;
  e["type"] = std::string(contract::kPluginType);
  // Istio 1.28's keys.
  e["ambient_enabled"] = c.ambient_enabled;
  e["exclude_namespaces"] = normalized(c.exclude_namespaces);
  if (!c.enablement_selectors.is_null()) {
    parse_enablement_selectors(c.enablement_selectors);
    e["enablement_selectors"] = nlohmann::ordered_json::parse(c.enablement_selectors.dump());
  }
  e["pod_namespace"] = c.pod_namespace;
  e["cni_agent_run_dir"] = c.run_dir;
  e["plugin_log_level"] = lower(c.plugin_log_level);
  // Ours (README, configuration reference).
  e["daemonset_name"] = c.daemonset_name;
  e["system_namespace"] = c.system_namespace;
  e["kubeconfig"] = c.plugin_kubeconfig_path();
  e["api_timeout_ms"] = c.api_timeout_ms;
  e["agent_timeout_ms"] = c.agent_timeout_ms;
  e["failure_policy"] = std::string(failure_policy_name(c.failure_policy));
  e["dns_capture"] = c.dns_capture;
  e["ipv6"] = c.ipv6;
  e["status_checks_agent"] = c.status_checks_agent;

  // The plugin's parser is the judge: whatever it would reject is rejected here, by key.
  auto as_stdin = e;
  as_stdin["cniVersion"] = "1.0.0";
  parse_plugin_config(as_stdin.dump());
  return e;
}

void validate_node_config(const NodeConfig& config) {
  (void)render_plugin_entry(config);
}

}  // namespace ambient::config
