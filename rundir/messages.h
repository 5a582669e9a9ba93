// What the plugin and the node agent say on <run dir>/agent.sock: one request, one reply, JSON in
// one SOCK_SEQPACKET datagram each way. The agent's core never sees these: its socket edge
// translates them (agent/plugin_server.cpp), as the plugin's does (plugin/agent_client.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rundir/records.h"

namespace ambient::rundir {

// "add": decide with fresh reads of the pod and its namespace and enrol when selected (one round
// trip: docs/decisions/009); "del": forget the sandbox; "check": is what ADD set up in place;
// "status": can the agent enrol pods now (CNI STATUS, decision 011; no pod); "pods": what the
// agent holds, one page from `offset` (`ambient-cni-node status`, decision 016; no pod).
struct AgentRequest {
  std::string op;
  PodRecord pod;           // uid from CNI_ARGS (may be empty), IPs from prevResult
  std::size_t offset = 0;  // "pods": the first row wanted
};

// One pod as the node agent knows it: held (enrolled, pending, being released) or not held with
// the last error of an attempt to enrol it.
struct HeldPod {
  std::string uid;
  std::string name;
  std::string namespace_;
  // "enrolled", "enrolling" (an attempt under way: waiting for ztunnel's ack or the
  // annotation), "pending" (held, rules not in place: retried), "releasing", or not held:
  // "failed" (the last attempt failed and was undone), "waiting" (selected, waiting for ztunnel
  // or its netns; retried)
  std::string state;
  bool held = false;
  bool ztunnel_acked = false;            // the live ztunnel connection acked its add
  std::uint64_t ztunnel_connection = 0;  // which one (0: none)
  std::int64_t since = 0;                // unix seconds of the enrolment; 0 unknown / not held
  std::string last_error;                // of the latest failed attempt ("" none since success)
  std::int64_t last_error_at = 0;        // unix seconds
  // Node-local details: only over the root-only socket, never over HTTP.
  std::string container_id;
  std::string netns;
  std::vector<std::string> ips;

  bool operator==(const HeldPod&) const = default;
};

// The agent's answer to "pods": about itself, and one page of pods sorted by namespace/name.
struct AgentView {
  std::string node;
  bool ready = false;
  std::string not_ready;  // why, when not ready
  std::size_t ztunnel_connections = 0;
  std::size_t total = 0;   // rows in the whole listing
  std::size_t offset = 0;  // of the first row here
  std::vector<HeldPod> pods;

  bool operator==(const AgentView&) const = default;
};

// Rows per "pods" reply: one datagram stays far below the socket's default buffer (~208 KiB)
// with every field at its cap (a last error is cut at kMaxErrorBytes).
inline constexpr std::size_t kPodsPerPage = 100;
inline constexpr std::size_t kMaxErrorBytes = 1024;

// `node_local` false leaves out container id, netns and IPs (what leaves the node over HTTP).
nlohmann::json to_json(const HeldPod& p, bool node_local = true);
HeldPod held_pod_from_json(const nlohmann::json& j);  // throws config::ConfigError
nlohmann::json to_json(const AgentView& v);
AgentView agent_view_from_json(const nlohmann::json& j);  // throws config::ConfigError

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
  // ok, for "pods": the listing.
  std::optional<AgentView> view;

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
