#include "node/explain_report.h"

#include <sstream>

#include "config/constants.h"
#include "node/node_text.h"

namespace ambient::node {
namespace {

constexpr std::string_view kUseWaypointNamespaceLabel = "istio.io/use-waypoint-namespace";

LabelRead read(const config::Labels& labels, std::string_view key) {
  const auto it = labels.find(key);
  if (it == labels.end()) return {};
  return {true, it->second};
}

std::string shown(const LabelRead& l) {
  return l.set ? l.value : "(unset)";
}

Waypoint waypoint_of(const LabelRead& pod, const LabelRead& ns, const config::PodInfo& p,
                     const config::NamespaceInfo& n) {
  Waypoint w;
  if (pod.set && pod.value == "none") {
    if (ns.set && ns.value != "none") {
      w.note = "the pod's label istio.io/use-waypoint=none opts out of its namespace's waypoint " +
               ns.value;
    }
    return w;
  }
  if (pod.set) {
    w.name = pod.value;
    w.from = "pod";
    w.namespace_ = read(p.labels, kUseWaypointNamespaceLabel).value;
  } else if (ns.set && ns.value != "none") {
    w.name = ns.value;
    w.from = "namespace";
    w.namespace_ = read(n.labels, kUseWaypointNamespaceLabel).value;
  }
  return w;
}

bool has_sandbox(const config::PodInfo& p) {
  return !p.ips.empty();
}

// What the agent says, in words.
std::string agent_words(const AgentAnswer& a, std::chrono::system_clock::time_point now) {
  if (!a.asked) return "not asked" + (a.error.empty() ? "" : " (" + a.error + ")");
  if (!a.reachable) return "unreachable via " + a.via + ": " + a.error;
  std::string out = a.via + ": ";
  if (!a.pod || (!a.pod->held && a.pod->last_error.empty())) {
    out += "does not hold the pod";
  } else if (!a.pod->held) {
    out += "does not hold the pod (" + a.pod->state + ")";
  } else {
    out += "holds the pod (" + a.pod->state + ") since " + when(a.pod->since, now) + ", ";
    out += a.pod->ztunnel_acked
               ? "ztunnel acked it (connection " + std::to_string(a.pod->ztunnel_connection) + ")"
               : "no live ztunnel has acked it";
  }
  if (a.pod && !a.pod->last_error.empty()) {
    out += "; last error " + when(a.pod->last_error_at, now) + ": " + a.pod->last_error;
  }
  if (!a.agent_ready) out += "; the agent is NOT READY: " + a.agent_not_ready;
  if (a.ztunnel_connections == 0) out += "; no ztunnel is connected to it";
  return out;
}

// The agent's last error as a clause, or a pointer to where the cause is.
std::string cause(const AgentAnswer& a) {
  if (a.reachable && a.pod && !a.pod->last_error.empty()) {
    return ": " + a.pod->last_error;
  }
  return " (see `kubectl describe pod` Events and the node agent's log)";
}

void judge(PodExplanation& e) {
  const auto& d = e.decision;
  const auto& a = e.agent;
  const bool held = a.reachable && a.pod && a.pod->held;
  const bool agent_knows = a.reachable;
  const std::string& ann = e.annotation.value;
  auto mismatch = [&](std::string state, std::string text) {
    e.consistent = false;
    e.state = std::move(state);
    e.mismatch = std::move(text);
  };
  if (e.pod.phase == "Succeeded" || e.pod.phase == "Failed") {
    e.state = "finished";
    e.notes.push_back("the pod has finished (phase " + e.pod.phase +
                      "): it is out of the mesh whatever its labels say");
    return;
  }
  if (e.pod.node_name.empty()) {
    e.state = "not scheduled";
    e.notes.push_back("the pod is not scheduled on a node yet");
    return;
  }
  if (d.enrol) {
    if (ann == contract::kRedirectionEnabled) {
      if (agent_knows && !held) {
        return mismatch("stale",
                        "annotated enabled but the node agent does not hold it: istiod sends it "
                        "HBONE that nothing captures" +
                            cause(a));
      }
      if (held && a.pod->state == "pending") {
        return mismatch("pending",
                        "should be enrolled (" + d.reason +
                            ") and is held by the node agent, but its in-pod rules are not in "
                            "place" +
                            cause(a));
      }
      if (held && !a.pod->ztunnel_acked) {
        return mismatch("no ztunnel",
                        "should be enrolled (" + d.reason +
                            ") and is held by the node agent, but no live ztunnel has acked it "
                            "(is ztunnel running on node " +
                            e.pod.node_name + "?)");
      }
      e.state = "enrolled";
      if (!agent_knows) e.notes.push_back("the node agent was not asked: " + a.error);
      return;
    }
    if (ann == contract::kRedirectionPending) {
      return mismatch("pending", "should be enrolled (" + d.reason +
                                     ") but its enrolment is pending" + cause(a));
    }
    if (!has_sandbox(e.pod)) {
      return mismatch("not started",
                      "should be enrolled (" + d.reason +
                          ") but its sandbox has not started: the kubelet waits for an enrolling "
                          "ADD" +
                          cause(a));
    }
    return mismatch(
        "not enrolled",
        "should be enrolled (" + d.reason + ") but is not (no redirection annotation" +
            (agent_knows ? held ? "; the node agent holds it" : ", not held by the node agent"
                         : "") +
            "); a label changed a moment ago is applied within seconds" + cause(a));
  }
  if (ann == contract::kRedirectionEnabled || held) {
    return mismatch(
        "enrolled",
        "should not be enrolled (" + d.reason + ") but is" +
            std::string(ann == contract::kRedirectionEnabled ? " (annotated enabled)" : "") +
            (held ? " (the node agent holds it)" : "") +
            "; a label changed a moment ago is applied within seconds");
  }
  e.state = "untouched";
  if (ann == contract::kRedirectionPending) {
    e.notes.push_back(
        "annotation ambient.istio.io/redirection=pending is left from an earlier attempt; "
        "istiod acts on \"enabled\" only");
  }
  if (!e.waypoint.name.empty()) {
    e.notes.push_back("the waypoint applies only once the pod is in the mesh");
  }
}

}  // namespace

PodExplanation explain_pod(const config::EnrolmentPolicy& policy, const config::PodInfo& pod,
                           const config::NamespaceInfo& ns, AgentAnswer agent) {
  PodExplanation e;
  e.pod = pod;
  e.namespace_name = ns.name;
  e.decision = config::decide(policy, pod, ns);
  e.pod_mode = read(pod.labels, contract::kDataplaneModeLabel);
  e.namespace_mode = read(ns.labels, contract::kDataplaneModeLabel);
  e.pod_waypoint = read(pod.labels, contract::kUseWaypointLabel);
  e.namespace_waypoint = read(ns.labels, contract::kUseWaypointLabel);
  e.annotation = read(pod.annotations, contract::kRedirectionAnnotation);
  e.sidecar = pod.annotations.contains(contract::kSidecarStatusAnnotation);
  e.waypoint = waypoint_of(e.pod_waypoint, e.namespace_waypoint, pod, ns);
  e.agent = std::move(agent);
  for (const auto& w : e.decision.warnings) e.notes.push_back("warning: " + w);
  judge(e);
  return e;
}

std::string render_pod(const PodExplanation& e, std::chrono::system_clock::time_point now) {
  std::ostringstream out;
  const std::string who = e.pod.namespace_ + "/" + e.pod.name;
  if (!e.consistent) {
    out << "MISMATCH " << who << ": " << e.mismatch << "\n\n";
  } else {
    out << who << ": " << e.state << ", as decided\n\n";
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"pod", who + " (uid " + e.pod.uid + ", node " +
                             (e.pod.node_name.empty() ? "-" : e.pod.node_name) + ", phase " +
                             (e.pod.phase.empty() ? "-" : e.pod.phase) + ")"});
  rows.push_back({"decision", std::string(e.decision.enrol ? "enrol" : "leave untouched") +
                                  " — rule: " + e.decision.reason});
  std::string labels = "pod " + std::string(contract::kDataplaneModeLabel) + "=" +
                       shown(e.pod_mode) + "; namespace " + e.namespace_name + " " +
                       std::string(contract::kDataplaneModeLabel) + "=" + shown(e.namespace_mode);
  if (e.sidecar) labels += "; annotation sidecar.istio.io/status present";
  if (e.pod.host_network) labels += "; hostNetwork";
  rows.push_back({"labels", labels});
  rows.push_back(
      {"annotation", std::string(contract::kRedirectionAnnotation) + "=" + shown(e.annotation)});
  std::string waypoint = "(none)";
  if (!e.waypoint.name.empty()) {
    waypoint = e.waypoint.name +
               (e.waypoint.namespace_.empty() ? "" : " in namespace " + e.waypoint.namespace_) +
               " (" + e.waypoint.from + " label " + std::string(contract::kUseWaypointLabel) + ")";
  }
  if (!e.waypoint.note.empty()) waypoint += "; " + e.waypoint.note;
  rows.push_back({"waypoint", waypoint});
  rows.push_back({"node agent", agent_words(e.agent, now)});
  for (const auto& n : e.notes) rows.push_back({"note", n});
  for (auto& r : rows) r[0] += ":";
  out << render_table(rows);
  return out.str();
}

std::string render_namespace(const std::string& ns, const std::vector<PodExplanation>& pods,
                             std::chrono::system_clock::time_point now) {
  std::ostringstream out;
  std::size_t mismatches = 0;
  for (const auto& e : pods) {
    if (e.consistent) continue;
    ++mismatches;
    out << "MISMATCH " << e.pod.namespace_ << "/" << e.pod.name << ": " << e.mismatch << '\n';
  }
  if (mismatches > 0) out << '\n';
  if (pods.empty()) {
    out << "no pods in namespace " << ns << '\n';
    return out.str();
  }
  std::vector<std::vector<std::string>> rows = {
      {"POD", "DECISION", "RULE", "ANNOTATION", "AGENT", "ZTUNNEL", "WAYPOINT", "STATE"}};
  for (const auto& e : pods) {
    std::string agent = "-", ztunnel = "-";
    if (!e.agent.asked) {
      agent = "not asked";
    } else if (!e.agent.reachable) {
      agent = "unreachable";
    } else if (e.agent.pod && e.agent.pod->held) {
      agent = e.agent.pod->state + " since " + when(e.agent.pod->since, now);
      ztunnel = e.agent.pod->ztunnel_acked ? "acked" : "not acked";
    } else if (e.agent.pod && !e.agent.pod->last_error.empty()) {
      agent = "not held (" + e.agent.pod->state + ")";
    } else {
      agent = "not held";
    }
    std::string waypoint =
        e.waypoint.name.empty() ? "-" : e.waypoint.name + " (" + e.waypoint.from + ")";
    rows.push_back({e.pod.name, e.decision.enrol ? "enrol" : "untouched", e.decision.reason,
                    e.annotation.set ? e.annotation.value : "-", agent, ztunnel, waypoint,
                    e.consistent ? e.state : "MISMATCH (" + e.state + ")"});
  }
  out << render_table(rows);
  return out.str();
}

nlohmann::json to_json(const PodExplanation& e) {
  auto label = [](const LabelRead& l) -> nlohmann::json {
    return l.set ? nlohmann::json(l.value) : nlohmann::json(nullptr);
  };
  nlohmann::json agent = {{"asked", e.agent.asked}, {"reachable", e.agent.reachable}};
  if (!e.agent.via.empty()) agent["via"] = e.agent.via;
  if (!e.agent.error.empty()) agent["error"] = e.agent.error;
  if (e.agent.reachable) {
    agent["ready"] = e.agent.agent_ready;
    if (!e.agent.agent_not_ready.empty()) agent["notReady"] = e.agent.agent_not_ready;
    agent["ztunnelConnections"] = e.agent.ztunnel_connections;
    if (e.agent.pod) agent["pod"] = rundir::to_json(*e.agent.pod, /*node_local=*/false);
  }
  nlohmann::json j = {
      {"namespace", e.pod.namespace_},
      {"name", e.pod.name},
      {"uid", e.pod.uid},
      {"node", e.pod.node_name},
      {"phase", e.pod.phase},
      {"decision", {{"enrol", e.decision.enrol}, {"reason", e.decision.reason}}},
      {"labels",
       {{"pod",
         {{std::string(contract::kDataplaneModeLabel), label(e.pod_mode)},
          {std::string(contract::kUseWaypointLabel), label(e.pod_waypoint)}}},
        {"namespace",
         {{std::string(contract::kDataplaneModeLabel), label(e.namespace_mode)},
          {std::string(contract::kUseWaypointLabel), label(e.namespace_waypoint)}}}}},
      {"annotation", label(e.annotation)},
      {"sidecar", e.sidecar},
      {"hostNetwork", e.pod.host_network},
      {"waypoint", nullptr},
      {"agent", agent},
      {"consistent", e.consistent},
      {"state", e.state}};
  if (!e.decision.warnings.empty()) j["decision"]["warnings"] = e.decision.warnings;
  if (!e.waypoint.name.empty()) {
    j["waypoint"] = {{"name", e.waypoint.name}, {"from", e.waypoint.from}};
    if (!e.waypoint.namespace_.empty()) j["waypoint"]["namespace"] = e.waypoint.namespace_;
  }
  if (!e.mismatch.empty()) j["mismatch"] = e.mismatch;
  if (!e.notes.empty()) j["notes"] = e.notes;
  return j;
}

}  // namespace ambient::node
