#include "config/plugin_config.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "config/constants.h"
#include "config/errors.h"

namespace ambient::config {
namespace {

[[noreturn]] void invalid(const std::string& key, const std::string& what) {
  throw ConfigError(ConfigError::Kind::kInvalid, key, "config key \"" + key + "\" " + what);
}

const nlohmann::json* find(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string get_string(const nlohmann::json& j, const char* key, std::string fallback,
                       bool allow_empty = false) {
  const auto* v = find(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_string()) invalid(key, "must be a string");
  auto s = v->get<std::string>();
  if (s.empty() && !allow_empty) invalid(key, "must not be empty");
  return s;
}

bool get_bool(const nlohmann::json& j, const char* key, bool fallback) {
  const auto* v = find(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) invalid(key, "must be true or false");
  return v->get<bool>();
}

int get_int(const nlohmann::json& j, const char* key, int fallback, int min, int max) {
  const auto* v = find(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_number_integer()) invalid(key, "must be an integer");
  const auto n = v->get<long long>();
  if (n < min || n > max) {
    invalid(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return static_cast<int>(n);
}

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

std::vector<std::string> get_namespace_list(const nlohmann::json& j, const char* key,
                                            std::vector<std::string> fallback) {
  const auto* v = find(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_array()) invalid(key, "must be an array of strings");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < v->size(); ++i) {
    const auto& e = (*v)[i];
    if (!e.is_string())
      invalid(std::string(key) + "[" + std::to_string(i) + "]", "must be a string");
    // Istio's values files produce " ns" and "" entries: trim blanks, drop empty entries.
    auto name = trim(e.get<std::string>());
    if (!name.empty() && std::find(out.begin(), out.end(), name) == out.end()) {
      out.push_back(std::move(name));
    }
  }
  return out;
}

std::string get_log_level(const nlohmann::json& j) {
  static constexpr std::array<std::string_view, 8> kLevels = {"trace",   "debug", "info", "warn",
                                                              "warning", "error", "none", "off"};
  auto level = get_string(j, "plugin_log_level", "info");
  std::transform(level.begin(), level.end(), level.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (std::find(kLevels.begin(), kLevels.end(), level) == kLevels.end()) {
    invalid("plugin_log_level", "must be one of trace, debug, info, warn, error, none");
  }
  return level;
}

}  // namespace

PluginConfig parse_plugin_config(std::string_view stdin_text) {
  nlohmann::json j = nlohmann::json::parse(stdin_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    throw ConfigError(ConfigError::Kind::kDecode, "", "network configuration is not valid JSON");
  }
  if (!j.is_object()) {
    throw ConfigError(ConfigError::Kind::kDecode, "",
                      "network configuration must be a JSON object");
  }

  PluginConfig c;
  if (find(j, "cniVersion") == nullptr) invalid("cniVersion", "is required");
  c.cni_version = get_string(j, "cniVersion", "");
  c.name = get_string(j, "name", "", /*allow_empty=*/true);
  c.type = get_string(j, "type", std::string(contract::kPluginType));

  auto& p = c.policy;
  p.ambient_enabled = get_bool(j, "ambient_enabled", true);
  p.exclude_namespaces = get_namespace_list(j, "exclude_namespaces", p.exclude_namespaces);
  if (const auto* sel = find(j, "enablement_selectors"); sel != nullptr && !sel->is_null()) {
    p.enablement_selectors = parse_enablement_selectors(*sel);
  }
  p.pod_namespace = get_string(j, "pod_namespace", p.pod_namespace);
  p.daemonset_name = get_string(j, "daemonset_name", p.daemonset_name);
  p.system_namespace = get_string(j, "system_namespace", p.system_namespace);

  c.run_dir = get_string(j, "cni_agent_run_dir", std::string(contract::kDefaultRunDir));
  if (c.run_dir.front() != '/') invalid("cni_agent_run_dir", "must be an absolute path");
  c.log_level = get_log_level(j);
  c.kubeconfig = get_string(j, "kubeconfig", c.run_dir + "/kubeconfig");
  if (c.kubeconfig.front() != '/') invalid("kubeconfig", "must be an absolute path");
  c.api_timeout_ms = get_int(j, "api_timeout_ms", c.api_timeout_ms, 1, 600000);
  c.agent_timeout_ms = get_int(j, "agent_timeout_ms", c.agent_timeout_ms, 1, 600000);
  const auto policy = get_string(j, "failure_policy", "closed");
  if (policy == "closed") {
    c.failure_policy = FailurePolicy::kClosed;
  } else if (policy == "open") {
    c.failure_policy = FailurePolicy::kOpen;
  } else {
    invalid("failure_policy", "must be \"closed\" or \"open\", not \"" + policy + "\"");
  }
  c.dns_capture = get_bool(j, "dns_capture", c.dns_capture);
  c.ipv6 = get_bool(j, "ipv6", c.ipv6);
  c.status_checks_agent = get_bool(j, "status_checks_agent", c.status_checks_agent);

  if (const auto* prev = find(j, "prevResult"); prev != nullptr && !prev->is_null()) {
    if (!prev->is_object()) invalid("prevResult", "must be an object");
    c.prev_result = *prev;
  }
  c.runtime_config = nlohmann::json::object();
  if (const auto* rc = find(j, "runtimeConfig"); rc != nullptr && !rc->is_null()) {
    if (!rc->is_object()) invalid("runtimeConfig", "must be an object");
    c.runtime_config = *rc;
  }
  return c;
}

PluginConfig plugin_config_from_document(const nlohmann::json& doc) {
  if (!doc.is_object()) {
    throw ConfigError(ConfigError::Kind::kDecode, "", "configuration must be a JSON object");
  }
  if (const auto plugins = doc.find("plugins"); plugins != doc.end() && plugins->is_array()) {
    for (const auto& p : *plugins) {
      if (p.is_object() && p.value("type", "") == contract::kPluginType) {
        auto entry = p;
        entry["cniVersion"] = doc.value("cniVersion", "1.0.0");
        return parse_plugin_config(entry.dump());
      }
    }
    throw ConfigError(ConfigError::Kind::kInvalid, "plugins",
                      "the conflist has no plugins[] entry of type ambient-cni");
  }
  auto entry = doc;
  if (!entry.contains("cniVersion")) entry["cniVersion"] = "1.0.0";
  return parse_plugin_config(entry.dump());
}

const nlohmann::json* find_runtime_config(const nlohmann::json& runtime_config,
                                          std::string_view key) {
  if (!runtime_config.is_object()) return nullptr;
  const auto same = [key](const std::string& k) {
    return k.size() == key.size() &&
           std::equal(k.begin(), k.end(), key.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a)) ==
                    std::tolower(static_cast<unsigned char>(b));
           });
  };
  for (const auto& [k, v] : runtime_config.items()) {
    if (same(k)) return &v;
  }
  return nullptr;
}

}  // namespace ambient::config
