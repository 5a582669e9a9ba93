#include "rundir/messages.h"

#include "config/json_fields.h"

namespace ambient::rundir {

namespace f = config::fields;

namespace {

std::int64_t int64_field(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return 0;
  if (!it->is_number_integer()) f::bad(key, "must be an integer");
  return it->get<std::int64_t>();
}

std::uint64_t uint64_field(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return 0;
  if (!it->is_number_unsigned()) f::bad(key, "must be an unsigned integer");
  return it->get<std::uint64_t>();
}

}  // namespace

nlohmann::json to_json(const AgentRequest& r) {
  if (r.op == "pods") return {{"op", r.op}, {"offset", r.offset}};
  return {{"op", r.op}, {"pod", to_json(r.pod)}};
}

nlohmann::json to_json(const HeldPod& p, bool node_local) {
  nlohmann::json j = {{"uid", p.uid},     {"name", p.name}, {"namespace", p.namespace_},
                      {"state", p.state}, {"held", p.held}, {"ztunnelAcked", p.ztunnel_acked}};
  if (p.ztunnel_connection != 0) j["ztunnelConnection"] = p.ztunnel_connection;
  if (p.since != 0) j["since"] = p.since;
  if (!p.last_error.empty()) {
    j["lastError"] = p.last_error;
    j["lastErrorAt"] = p.last_error_at;
  }
  if (node_local) {
    if (!p.container_id.empty()) j["containerID"] = p.container_id;
    if (!p.netns.empty()) j["netns"] = p.netns;
    if (!p.ips.empty()) j["ips"] = p.ips;
  }
  return j;
}

HeldPod held_pod_from_json(const nlohmann::json& j) {
  f::object(j, "pod");
  HeldPod p;
  p.uid = f::string(j, "uid", /*required=*/true);
  p.name = f::string(j, "name");
  p.namespace_ = f::string(j, "namespace");
  p.state = f::string(j, "state", /*required=*/true);
  p.held = f::boolean(j, "held", false);
  p.ztunnel_acked = f::boolean(j, "ztunnelAcked", false);
  p.ztunnel_connection = uint64_field(j, "ztunnelConnection");
  p.since = int64_field(j, "since");
  p.last_error = f::string(j, "lastError");
  p.last_error_at = int64_field(j, "lastErrorAt");
  p.container_id = f::string(j, "containerID");
  p.netns = f::string(j, "netns");
  p.ips = f::strings(j, "ips");
  return p;
}

nlohmann::json to_json(const AgentView& v) {
  nlohmann::json pods = nlohmann::json::array();
  for (const auto& p : v.pods) pods.push_back(to_json(p));
  nlohmann::json j = {
      {"node", v.node},   {"ready", v.ready},   {"ztunnelConnections", v.ztunnel_connections},
      {"total", v.total}, {"offset", v.offset}, {"pods", std::move(pods)}};
  if (!v.not_ready.empty()) j["notReady"] = v.not_ready;
  return j;
}

AgentView agent_view_from_json(const nlohmann::json& j) {
  f::object(j, "agent");
  AgentView v;
  v.node = f::string(j, "node");
  v.ready = f::boolean(j, "ready", false);
  v.not_ready = f::string(j, "notReady");
  v.ztunnel_connections = uint64_field(j, "ztunnelConnections");
  v.total = uint64_field(j, "total");
  v.offset = uint64_field(j, "offset");
  const auto pods = j.find("pods");
  if (pods != j.end() && !pods->is_null()) {
    if (!pods->is_array()) f::bad("pods", "must be an array");
    for (const auto& p : *pods) v.pods.push_back(held_pod_from_json(p));
  }
  return v;
}

AgentRequest agent_request_from_json(const nlohmann::json& j) {
  f::object(j, "request");
  AgentRequest r;
  r.op = f::string(j, "op", /*required=*/true);
  if (r.op != "add" && r.op != "del" && r.op != "check" && r.op != "status" && r.op != "pods") {
    f::bad("op", "unknown operation " + r.op);
  }
  if (r.op == "status") return r;  // about the agent, not a pod
  if (r.op == "pods") {
    r.offset = uint64_field(j, "offset");
    return r;
  }
  const auto pod = j.find("pod");
  if (pod == j.end()) f::bad("pod", "is required");
  r.pod = pod_record_from_json(*pod);
  if (r.pod.container_id.empty()) f::bad("pod.containerID", "is required");
  return r;
}

nlohmann::json to_json(const AgentReply& r) {
  nlohmann::json j = {{"ok", r.ok}};
  if (r.ok) {
    j["enrolled"] = r.enrolled;
    j["reason"] = r.reason;
    if (r.view) j["agent"] = to_json(*r.view);
  } else {
    j["code"] = r.code;
    j["msg"] = r.msg;
    if (!r.details.empty()) j["details"] = r.details;
    if (r.undecided) j["undecided"] = true;
  }
  return j;
}

AgentReply agent_reply_from_json(const nlohmann::json& j) {
  f::object(j, "reply");
  AgentReply r;
  r.ok = f::boolean(j, "ok", false);
  if (r.ok) {
    r.enrolled = f::boolean(j, "enrolled", false);
    r.reason = f::string(j, "reason");
    if (const auto view = j.find("agent"); view != j.end() && !view->is_null()) {
      r.view = agent_view_from_json(*view);
    }
  } else {
    if (!j.contains("code") || !j["code"].is_number_integer()) f::bad("code", "must be an integer");
    r.code = j["code"].get<int>();
    r.msg = f::string(j, "msg", /*required=*/true);
    r.details = f::string(j, "details");
    r.undecided = f::boolean(j, "undecided", false);
  }
  return r;
}

}  // namespace ambient::rundir
