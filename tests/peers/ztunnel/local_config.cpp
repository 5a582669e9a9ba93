#include "tests/peers/ztunnel/local_config.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "config/constants.h"

namespace ambient::peers {
namespace {

using nlohmann::json;

constexpr const char* kTrustDomain = "cluster.local";

// A YAML double-quoted scalar: JSON's string escapes are valid YAML.
std::string q(const std::string& s) {
  return json(s).dump();
}

std::string list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + q(items[i]);
  return out + "]";
}

std::string port_map(const std::map<int, int>& ports) {
  std::string out = "{";
  bool first = true;
  for (const auto& [from, to] : ports) {
    out += fmt::format("{}{}: {}", first ? "" : ", ", from, to);
    first = false;
  }
  return out + "}";
}

// serde_yaml: a StringMatch is a tagged scalar.
std::string string_matches(const std::vector<std::string>& values) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i)
    out += (i ? ", " : "") + ("!Exact " + q(values[i]));
  return out + "]";
}

std::string ports(const std::vector<int>& values) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i)
    out += fmt::format("{}{}", i ? ", " : "", values[i]);
  return out + "]";
}

// One RbacMatch as a YAML flow mapping; {} matches everything.
std::string render_match(const PolicyMatch& m) {
  std::vector<std::string> fields;
  const auto add = [&](const char* key, const std::string& value, bool present) {
    if (present) fields.push_back(std::string(key) + ": " + value);
  };
  add("namespaces", string_matches(m.namespaces), !m.namespaces.empty());
  add("notNamespaces", string_matches(m.not_namespaces), !m.not_namespaces.empty());
  add("principals", string_matches(m.principals), !m.principals.empty());
  add("notPrincipals", string_matches(m.not_principals), !m.not_principals.empty());
  add("destinationPorts", ports(m.destination_ports), !m.destination_ports.empty());
  add("notDestinationPorts", ports(m.not_destination_ports), !m.not_destination_ports.empty());
  std::string out = "{";
  for (std::size_t i = 0; i < fields.size(); ++i) out += (i ? ", " : "") + fields[i];
  return out + "}";
}

std::string scope_name(LocalPolicy::Scope s) {
  switch (s) {
    case LocalPolicy::Scope::kGlobal:
      return "Global";
    case LocalPolicy::Scope::kNamespace:
      return "Namespace";
    case LocalPolicy::Scope::kWorkloadSelector:
      return "WorkloadSelector";
  }
  return "Namespace";
}

}  // namespace

std::string spiffe_identity(const std::string& ns, const std::string& sa) {
  return fmt::format("spiffe://{}/ns/{}/sa/{}", kTrustDomain, ns, sa);
}

PolicyMatch to_ports(std::vector<int> ports) {
  PolicyMatch m;
  m.destination_ports = std::move(ports);
  return m;
}

PolicyMatch from_namespaces(std::vector<std::string> namespaces) {
  PolicyMatch m;
  m.namespaces = std::move(namespaces);
  return m;
}

PolicyMatch not_from_namespaces(std::vector<std::string> namespaces) {
  PolicyMatch m;
  m.not_namespaces = std::move(namespaces);
  return m;
}

PolicyMatch from_principals(std::vector<std::string> principals) {
  PolicyMatch m;
  m.principals = std::move(principals);
  return m;
}

LocalPolicy namespace_policy(std::string name, std::string ns, LocalPolicy::Action action,
                             std::vector<PolicyMatch> any_of) {
  LocalPolicy p;
  p.name = std::move(name);
  p.namespace_ = std::move(ns);
  p.scope = LocalPolicy::Scope::kNamespace;
  p.action = action;
  p.rules = {std::move(any_of)};
  return p;
}

std::string LocalConfig::render() const {
  std::string out = "workloads:\n";
  if (workloads.empty()) out = "workloads: []\n";
  for (const auto& w : workloads) {
    auto svcs = w.services;
    for (const auto& s : services) {
      const std::string key = w.namespace_ + "/" + w.name;
      if (std::find(s.endpoints.begin(), s.endpoints.end(), key) != s.endpoints.end()) {
        svcs[s.namespace_ + "/" + s.hostname] = s.ports;
      }
    }
    out += "- uid: " + q(w.uid) + "\n";
    out += "  name: " + q(w.name) + "\n";
    out += "  namespace: " + q(w.namespace_) + "\n";
    out += "  serviceAccount: " + q(w.service_account) + "\n";
    // The file path, unlike XDS, has no default trust domain: without it the identities differ.
    out += "  trustDomain: " + q(kTrustDomain) + "\n";
    out += "  workloadIps: " + list(w.ips) + "\n";
    out += std::string("  protocol: ") + (w.hbone ? "HBONE" : "TCP") + "\n";
    out += "  node: " + q(w.node) + "\n";
    out += "  workloadName: " + q(w.name) + "\n";
    out += "  clusterId: \"Kubernetes\"\n";
    if (!w.authorization_policies.empty()) {
      out += "  authorizationPolicies: " + list(w.authorization_policies) + "\n";
    }
    if (svcs.empty()) {
      out += "  services: {}\n";  // required: not defaulted by ztunnel
    } else {
      out += "  services:\n";
      for (const auto& [key, p] : svcs) out += "    " + q(key) + ": " + port_map(p) + "\n";
    }
  }
  out += services.empty() ? "services: []\n" : "services:\n";
  for (const auto& s : services) {
    std::vector<std::string> vips;
    for (const auto& v : s.vips) vips.push_back("/" + v);  // "<network>/<ip>", default network
    out += "- name: " + q(s.name) + "\n";
    out += "  namespace: " + q(s.namespace_) + "\n";
    out += "  hostname: " + q(s.hostname) + "\n";
    out += "  vips: " + list(vips) + "\n";
    out += "  ports: " + port_map(s.ports) + "\n";
  }
  out += policies.empty() ? "policies: []\n" : "policies:\n";
  for (const auto& p : policies) {
    out += "- name: " + q(p.name) + "\n";
    out += "  namespace: " + q(p.namespace_) + "\n";
    out += "  scope: " + scope_name(p.scope) + "\n";
    out += std::string("  action: ") +
           (p.action == LocalPolicy::Action::kAllow ? "Allow" : "Deny") + "\n";
    out += "  dryRun: false\n";
    if (p.rules.empty()) {
      out += "  rules: []\n";
      continue;
    }
    out += "  rules:\n";
    // rules: [rule: [clause: [match]]]; each of ours is a rule of one any-of clause.
    for (const auto& clause : p.rules) {
      for (std::size_t i = 0; i < clause.size(); ++i) {
        out += (i == 0 ? "  - - - " : "      - ") + render_match(clause[i]) + "\n";
      }
      if (clause.empty()) out += "  - - []\n";
    }
  }
  return out;
}

namespace {

std::vector<std::string> strings(const json& j, const char* key, const std::string& where) {
  std::vector<std::string> out;
  if (!j.contains(key)) return out;
  if (!j[key].is_array()) throw std::invalid_argument(where + "." + key + " is not an array");
  for (const auto& v : j[key]) {
    if (!v.is_string()) throw std::invalid_argument(where + "." + key + " holds a non-string");
    out.push_back(v.get<std::string>());
  }
  return out;
}

std::vector<int> numbers(const json& j, const char* key, const std::string& where) {
  std::vector<int> out;
  if (!j.contains(key)) return out;
  if (!j[key].is_array()) throw std::invalid_argument(where + "." + key + " is not an array");
  for (const auto& v : j[key]) {
    if (!v.is_number_integer())
      throw std::invalid_argument(where + "." + key + " holds a non-integer");
    out.push_back(v.get<int>());
  }
  return out;
}

std::string text(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_string()) {
    throw std::invalid_argument(where + "." + key + " is missing or not a string");
  }
  return j[key].get<std::string>();
}

}  // namespace

LocalConfig extras_from_json(const json& extras) {
  if (!extras.is_object()) throw std::invalid_argument("extras: not an object");
  LocalConfig c;
  for (const auto& s : extras.value("services", json::array())) {
    const std::string where = "services[" + std::to_string(c.services.size()) + "]";
    if (!s.is_object()) throw std::invalid_argument(where + " is not an object");
    LocalService svc;
    svc.name = text(s, "name", where);
    svc.namespace_ = text(s, "namespace", where);
    svc.hostname = text(s, "hostname", where);
    svc.vips = strings(s, "vips", where);
    svc.endpoints = strings(s, "endpoints", where);
    if (!s.contains("ports") || !s["ports"].is_object()) {
      throw std::invalid_argument(where + ".ports is missing or not an object");
    }
    for (auto it = s["ports"].begin(); it != s["ports"].end(); ++it) {
      if (!it->is_number_integer()) throw std::invalid_argument(where + ".ports has a non-integer");
      svc.ports[std::stoi(it.key())] = it->get<int>();
    }
    c.services.push_back(std::move(svc));
  }
  for (const auto& p : extras.value("policies", json::array())) {
    const std::string where = "policies[" + std::to_string(c.policies.size()) + "]";
    if (!p.is_object()) throw std::invalid_argument(where + " is not an object");
    LocalPolicy pol;
    pol.name = text(p, "name", where);
    pol.namespace_ = text(p, "namespace", where);
    const std::string scope = p.value("scope", "Namespace");
    if (scope == "Namespace") {
      pol.scope = LocalPolicy::Scope::kNamespace;
    } else if (scope == "Global") {
      pol.scope = LocalPolicy::Scope::kGlobal;
    } else {
      throw std::invalid_argument(where + ".scope must be Namespace or Global");
    }
    const std::string action = text(p, "action", where);
    if (action != "Allow" && action != "Deny") {
      throw std::invalid_argument(where + ".action must be Allow or Deny");
    }
    pol.action = action == "Allow" ? LocalPolicy::Action::kAllow : LocalPolicy::Action::kDeny;
    for (const auto& rule : p.value("rules", json::array())) {
      if (!rule.is_array()) throw std::invalid_argument(where + ".rules holds a non-array");
      std::vector<PolicyMatch> clause;
      for (const auto& m : rule) {
        if (!m.is_object()) throw std::invalid_argument(where + ".rules holds a non-object match");
        PolicyMatch pm;
        pm.namespaces = strings(m, "namespaces", where);
        pm.not_namespaces = strings(m, "notNamespaces", where);
        pm.principals = strings(m, "principals", where);
        pm.not_principals = strings(m, "notPrincipals", where);
        pm.destination_ports = numbers(m, "destinationPorts", where);
        pm.not_destination_ports = numbers(m, "notDestinationPorts", where);
        clause.push_back(std::move(pm));
      }
      pol.rules.push_back(std::move(clause));
    }
    c.policies.push_back(std::move(pol));
  }
  return c;
}

std::vector<LocalWorkload> workloads_from_pods(const std::vector<json>& pods,
                                               const std::string& node) {
  std::vector<LocalWorkload> out;
  for (const auto& pod : pods) {
    const auto& meta = pod.value("metadata", json::object());
    const auto& spec = pod.value("spec", json::object());
    const auto& status = pod.value("status", json::object());
    if (spec.value("hostNetwork", false)) continue;
    LocalWorkload w;
    w.name = meta.value("name", "");
    w.namespace_ = meta.value("namespace", "");
    w.uid = "Kubernetes//Pod/" + w.namespace_ + "/" + w.name;
    w.service_account = spec.value("serviceAccountName", "default");
    if (w.service_account.empty()) w.service_account = "default";
    for (const auto& ip : status.value("podIPs", json::array())) {
      if (ip.is_object() && ip.contains("ip")) w.ips.push_back(ip["ip"].get<std::string>());
    }
    if (w.ips.empty() && status.contains("podIP")) w.ips.push_back(status["podIP"]);
    if (w.ips.empty()) continue;  // not running yet: istiod has no address for it either
    const auto& ann = meta.value("annotations", json::object());
    w.hbone = ann.value(std::string(contract::kRedirectionAnnotation), "") ==
              contract::kRedirectionEnabled;
    w.node = node;
    out.push_back(std::move(w));
  }
  std::sort(out.begin(), out.end(),
            [](const LocalWorkload& a, const LocalWorkload& b) { return a.uid < b.uid; });
  return out;
}

}  // namespace ambient::peers
