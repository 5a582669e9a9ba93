// What the plugin and the node agent say on <run dir>/agent.sock: one request, one reply, JSON in
// one SOCK_SEQPACKET datagram each way. The agent's core never sees these: its socket edge
// translates them (agent/plugin_server.cpp), as the plugin's does (plugin/agent_client.cpp).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "rundir/records.h"

namespace ambient::rundir {

// "add": decide with fresh reads of the pod and its namespace and enrol when selected (one round
// trip: docs/decisions/009); "del": forget the sandbox; "check": is what ADD set up in place;
// "status": can the agent enrol pods now (CNI STATUS, decision 011; no pod).
struct AgentRequest {
  std::string op;
  PodRecord pod;  // uid from CNI_ARGS (may be empty), IPs from prevResult
};

struct AgentReply {
  bool ok = false;
  // ok: what the agent decided for an add (enrolled, or untouched with the reason).
  bool enrolled = false;
  std::string reason;
  // !ok: a CNI error. `undecided` says the decision itself could not be made (the API failed):
  // the plugin's failure_policy then says whether the pod may start outside the mesh.
  int code = 0;
  std::string msg;
  std::string details;
  bool undecided = false;

  static AgentReply success(bool enrolled, std::string reason) {
    AgentReply r;
    r.ok = true;
    r.enrolled = enrolled;
    r.reason = std::move(reason);
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

nlohmann::json to_json(const AgentRequest& r);
AgentRequest agent_request_from_json(const nlohmann::json& j);  // throws config::ConfigError
nlohmann::json to_json(const AgentReply& r);
AgentReply agent_reply_from_json(const nlohmann::json& j);  // throws config::ConfigError

}  // namespace ambient::rundir
