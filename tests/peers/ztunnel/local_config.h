// ztunnel's local configuration (LOCAL_XDS_PATH): the workloads, services and L4 authorization
// policies istiod would otherwise push over XDS. The testbed plays istiod: it derives the
// workloads from the cluster's pods as istiod does (protocol HBONE once the node agent marked the
// pod `ambient.istio.io/redirection: enabled`, TCP otherwise) and adds the services and policies
// a test declares.
//
// Schema: ztunnel 1.31 src/xds.rs LocalConfig, src/state/workload.rs, src/state/service.rs,
// src/rbac.rs (camelCase keys, parsed by serde_yaml 0.9: data-carrying enums such as a
// StringMatch are YAML tags, `!Exact demo`). ztunnel reads the file once, at start.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ambient::peers {

struct LocalWorkload {
  std::string uid;  // free-form for ztunnel; istiod's form is Kubernetes//Pod/<ns>/<name>
  std::string name;
  std::string namespace_;
  std::string service_account = "default";
  std::vector<std::string> ips;
  bool hbone = false;  // protocol HBONE (enrolled) or TCP
  std::string node;
  // "<ns>/<hostname>" → {service port → target port}
  std::map<std::string, std::map<int, int>> services;
  std::vector<std::string> authorization_policies;  // "<ns>/<name>" of WorkloadSelector policies
};

struct LocalService {
  std::string name;
  std::string namespace_;
  std::string hostname;
  std::vector<std::string> vips;  // plain IPs (default network)
  std::map<int, int> ports;       // service port → target port
  // Pods behind the service, "<ns>/<name>": render() lists the service in their workloads'
  // `services` (what istiod derives from the Service's selector).
  std::vector<std::string> endpoints;
};

// One RbacMatch: every non-empty field must hold. Namespaces match the source's namespace
// exactly; principals are matched without "spiffe://" (ns/<ns>/sa/<sa> form, `cluster.local/…`).
struct PolicyMatch {
  std::vector<std::string> namespaces, not_namespaces;
  std::vector<std::string> principals, not_principals;
  std::vector<int> destination_ports, not_destination_ports;
};

struct LocalPolicy {
  enum class Scope { kGlobal, kNamespace, kWorkloadSelector };
  enum class Action { kAllow, kDeny };
  std::string name;
  std::string namespace_;
  Scope scope = Scope::kNamespace;
  Action action = Action::kAllow;
  // A connection matches when any rule matches; each rule here is one clause of any-of matches.
  std::vector<std::vector<PolicyMatch>> rules;
};

// Builders for the common shapes (one clause of any-of matches, Namespace scope).
PolicyMatch to_ports(std::vector<int> ports);
PolicyMatch from_namespaces(std::vector<std::string> namespaces);
PolicyMatch not_from_namespaces(std::vector<std::string> namespaces);
PolicyMatch from_principals(std::vector<std::string> principals);
LocalPolicy namespace_policy(std::string name, std::string ns, LocalPolicy::Action action,
                             std::vector<PolicyMatch> any_of);

struct LocalConfig {
  std::vector<LocalWorkload> workloads;
  std::vector<LocalService> services;
  std::vector<LocalPolicy> policies;

  // The YAML ztunnel parses. Deterministic: the same config renders the same bytes, so a caller
  // can tell whether ztunnel must be restarted by comparing text.
  std::string render() const;
};

// istiod's view of the cluster's pods: one workload per pod that has an IP and is not host
// network, HBONE when its `ambient.istio.io/redirection` annotation is `enabled` (what istiod
// reads), service account from spec.serviceAccountName, IPs from status.podIPs.
std::vector<LocalWorkload> workloads_from_pods(const std::vector<nlohmann::json>& pods,
                                               const std::string& node);

// Services and policies from JSON (the demo's file), in ztunnel's own key names:
//   {"services": [{"name", "namespace", "hostname", "vips": [ip], "ports": {"80": 8080},
//                  "endpoints": ["<ns>/<pod>"]}],
//    "policies": [{"name", "namespace", "scope": "Namespace", "action": "Allow"|"Deny",
//                  "rules": [[{"namespaces": [..], "notNamespaces": [..], "principals": [..],
//                              "notPrincipals": [..], "destinationPorts": [..],
//                              "notDestinationPorts": [..]}]]}]}
// Throws std::invalid_argument naming what is wrong.
LocalConfig extras_from_json(const nlohmann::json& extras);

// "spiffe://cluster.local/ns/<ns>/sa/<sa>"
std::string spiffe_identity(const std::string& ns, const std::string& sa);

}  // namespace ambient::peers
