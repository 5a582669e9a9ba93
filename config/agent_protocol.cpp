#include "config/agent_protocol.h"

#include <algorithm>
#include <cctype>

#include "config/constants.h"
#include "config/errors.h"

namespace ambient::config {
namespace {

// Kubernetes-style bools: true/false/1/0/t/f in any case.
std::optional<bool> parse_bool(std::string v) {
  std::transform(v.begin(), v.end(), v.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (v == "true" || v == "1" || v == "t") return true;
  if (v == "false" || v == "0" || v == "f") return false;
  return std::nullopt;
}

std::string trim(std::string_view s) {
  const auto a = s.find_first_not_of(" \t");
  if (a == std::string_view::npos) return {};
  return std::string(s.substr(a, s.find_last_not_of(" \t") - a + 1));
}

[[noreturn]] void bad(const std::string& key, const std::string& what) {
  throw ConfigError(ConfigError::Kind::kDecode, key, key + ": " + what);
}

std::string str(const nlohmann::json& j, const char* key, bool required = true) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) bad(key, "is required");
    return {};
  }
  if (!it->is_string()) bad(key, "must be a string");
  return it->get<std::string>();
}

std::vector<std::string> strings(const nlohmann::json& j, const char* key) {
  std::vector<std::string> out;
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) bad(key, "must be an array of strings");
  for (const auto& e : *it) {
    if (!e.is_string()) bad(key, "must be an array of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

bool boolean(const nlohmann::json& j, const char* key, bool fallback) {
  const auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (!it->is_boolean()) bad(key, "must be a boolean");
  return it->get<bool>();
}

}  // namespace

RedirectSettings redirect_settings_for(const Labels& annotations, bool default_dns_capture,
                                       bool ipv6_enabled) {
  RedirectSettings s;
  s.dns_capture = default_dns_capture;
  s.ipv6 = ipv6_enabled;
  const auto flag = [&](std::string_view key, bool& into) {
    const auto it = annotations.find(key);
    if (it == annotations.end()) return;
    if (const auto v = parse_bool(it->second)) {
      into = *v;
    } else {
      s.warnings.push_back("annotation " + std::string(key) + "=\"" + it->second +
                           "\" is not a boolean; ignored");
    }
  };
  flag(contract::kDnsCaptureAnnotation, s.dns_capture);
  flag(contract::kBypassInboundCaptureAnnotation, s.bypass_inbound_capture);
  if (const auto it = annotations.find(contract::kRerouteVirtualInterfacesAnnotation);
      it != annotations.end()) {
    std::string_view list = it->second;
    std::size_t pos = 0;
    while (pos <= list.size()) {
      const auto end = std::min(list.find(',', pos), list.size());
      if (auto name = trim(list.substr(pos, end - pos)); !name.empty()) {
        s.reroute_interfaces.push_back(std::move(name));
      }
      pos = end + 1;
    }
  }
  return s;
}

nlohmann::json to_json(const PodRecord& r) {
  return {{"containerID", r.container_id},
          {"netns", r.netns},
          {"ifname", r.ifname},
          {"uid", r.uid},
          {"name", r.name},
          {"namespace", r.namespace_},
          {"ips", r.ips}};
}

PodRecord pod_record_from_json(const nlohmann::json& j) {
  if (!j.is_object()) bad("record", "must be an object");
  PodRecord r;
  r.container_id = str(j, "containerID", false);
  r.netns = str(j, "netns", false);
  r.ifname = str(j, "ifname", false);
  r.uid = str(j, "uid", false);
  r.name = str(j, "name");
  r.namespace_ = str(j, "namespace");
  r.ips = strings(j, "ips");
  return r;
}

nlohmann::json to_json(const AgentRequest& r) {
  return {{"op", r.op},
          {"pod", to_json(r.pod)},
          {"serviceAccount", r.service_account},
          {"redirect",
           {{"dnsCapture", r.redirect.dns_capture},
            {"ipv6", r.redirect.ipv6},
            {"bypassInboundCapture", r.redirect.bypass_inbound_capture},
            {"rerouteInterfaces", r.redirect.reroute_interfaces}}}};
}

AgentRequest agent_request_from_json(const nlohmann::json& j) {
  if (!j.is_object()) bad("request", "must be an object");
  AgentRequest r;
  r.op = str(j, "op");
  if (r.op != "lookup" && r.op != "add" && r.op != "del" && r.op != "check") {
    bad("op", "unknown operation " + r.op);
  }
  const auto pod = j.find("pod");
  if (pod == j.end()) bad("pod", "is required");
  r.pod = pod_record_from_json(*pod);
  if (r.op != "lookup" && r.pod.container_id.empty()) bad("pod.containerID", "is required");
  r.service_account = str(j, "serviceAccount", false);
  if (const auto red = j.find("redirect"); red != j.end() && red->is_object()) {
    r.redirect.dns_capture = boolean(*red, "dnsCapture", true);
    r.redirect.ipv6 = boolean(*red, "ipv6", true);
    r.redirect.bypass_inbound_capture = boolean(*red, "bypassInboundCapture", false);
    r.redirect.reroute_interfaces = strings(*red, "rerouteInterfaces");
  }
  return r;
}

nlohmann::json to_json(const AgentReply& r) {
  nlohmann::json j = {{"ok", r.ok}};
  if (!r.ok) {
    j["code"] = r.code;
    j["msg"] = r.msg;
    if (!r.details.empty()) j["details"] = r.details;
  }
  if (!r.pod.is_null()) j["pod"] = r.pod;
  if (!r.namespace_.is_null()) j["namespace"] = r.namespace_;
  return j;
}

AgentReply agent_reply_from_json(const nlohmann::json& j) {
  if (!j.is_object()) bad("reply", "must be an object");
  AgentReply r;
  r.ok = boolean(j, "ok", false);
  if (!r.ok) {
    const auto code = j.find("code");
    if (code == j.end() || !code->is_number_integer()) bad("code", "must be an integer");
    r.code = code->get<int>();
    r.msg = str(j, "msg");
    r.details = str(j, "details", false);
  }
  if (const auto p = j.find("pod"); p != j.end()) r.pod = *p;
  if (const auto n = j.find("namespace"); n != j.end()) r.namespace_ = *n;
  return r;
}

std::vector<std::string> result_ips(const nlohmann::json& result) {
  std::vector<std::string> out;
  if (!result.is_object()) return out;
  const auto ips = result.find("ips");
  if (ips == result.end() || !ips->is_array()) return out;
  for (const auto& ip : *ips) {
    if (!ip.is_object() || !ip.contains("address") || !ip["address"].is_string()) continue;
    auto addr = ip["address"].get<std::string>();
    if (const auto slash = addr.find('/'); slash != std::string::npos) addr.resize(slash);
    if (!addr.empty()) out.push_back(std::move(addr));
  }
  return out;
}

}  // namespace ambient::config
