#include "rundir/messages.h"

#include "config/json_fields.h"

namespace ambient::rundir {

namespace f = config::fields;

nlohmann::json to_json(const AgentRequest& r) {
  return {{"op", r.op}, {"pod", to_json(r.pod)}};
}

AgentRequest agent_request_from_json(const nlohmann::json& j) {
  f::object(j, "request");
  AgentRequest r;
  r.op = f::string(j, "op", /*required=*/true);
  if (r.op != "add" && r.op != "del" && r.op != "check" && r.op != "status") {
    f::bad("op", "unknown operation " + r.op);
  }
  if (r.op == "status") return r;  // about the agent, not a pod
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
