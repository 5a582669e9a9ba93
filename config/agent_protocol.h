// What the plugin and the node agent say to each other, and what they leave in the run dir.
// Data formats only (JSON); the sockets live in plugin/ and agent/.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/kube_objects.h"

namespace ambient::config {

// How a pod's traffic is redirected, from the node defaults and the pod's annotations
// (ambient.istio.io/dns-capture, ambient.istio.io/bypass-inbound-capture,
// istio.io/reroute-virtual-interfaces).
struct RedirectSettings {
  bool dns_capture = true;
  bool ipv6 = true;  // program IPv6 too when the pod has an IPv6 address
  bool bypass_inbound_capture = false;
  std::vector<std::string> reroute_interfaces;
  std::vector<std::string> warnings;  // unparsable annotations (ignored, default kept)

  bool operator==(const RedirectSettings& o) const {
    return dns_capture == o.dns_capture && ipv6 == o.ipv6 &&
           bypass_inbound_capture == o.bypass_inbound_capture &&
           reroute_interfaces == o.reroute_interfaces;
  }
};

RedirectSettings redirect_settings_for(const Labels& pod_annotations, bool default_dns_capture,
                                       bool ipv6_enabled);

// A pod as the run dir records it: written at ADD, removed at DEL, so the agent can find a
// running pod's netns without scanning /proc.
struct PodRecord {
  std::string container_id;
  std::string netns;
  std::string ifname;
  std::string uid;
  std::string name;
  std::string namespace_;
  std::vector<std::string> ips;  // from prevResult, without prefix length
};
nlohmann::json to_json(const PodRecord& r);
PodRecord pod_record_from_json(const nlohmann::json& j);  // throws ConfigError

// plugin → agent. `op` is "lookup" (the pod's and its namespace's metadata, read fresh on the
// agent's warm API connection), "add", "del" or "check".
struct AgentRequest {
  std::string op;
  PodRecord pod;
  std::string service_account;
  RedirectSettings redirect;
};
nlohmann::json to_json(const AgentRequest& r);
AgentRequest agent_request_from_json(const nlohmann::json& j);  // throws ConfigError

// agent → plugin. code is a CNI error code when !ok.
struct AgentReply {
  bool ok = false;
  int code = 0;
  std::string msg;
  std::string details;
  nlohmann::json pod;         // lookup: the Pod object
  nlohmann::json namespace_;  // lookup: the Namespace object

  static AgentReply success() {
    AgentReply r;
    r.ok = true;
    return r;
  }
  static AgentReply failure(int code, std::string msg, std::string details = {}) {
    AgentReply r;
    r.code = code;
    r.msg = std::move(msg);
    r.details = std::move(details);
    return r;
  }
};
nlohmann::json to_json(const AgentReply& r);
AgentReply agent_reply_from_json(const nlohmann::json& j);  // throws ConfigError

// Paths inside the run dir (cni_agent_run_dir / the agent's --run-dir).
namespace run_dir {
inline std::string agent_socket(const std::string& dir) {
  return dir + "/agent.sock";
}
inline std::string pods_dir(const std::string& dir) {
  return dir + "/pods";
}
inline std::string tombstones_dir(const std::string& dir) {
  return dir + "/tombstones";
}
inline std::string enrolled_dir(const std::string& dir) {
  return dir + "/enrolled";
}
}  // namespace run_dir

// IPs of a CNI result (prevResult), without prefix lengths.
std::vector<std::string> result_ips(const nlohmann::json& result);

}  // namespace ambient::config
