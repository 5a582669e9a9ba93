// The parts of Pod and Namespace objects (as the API or `kubectl get -o json` returns them)
// that the decision and the agent use.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/labels.h"

namespace ambient::config {

struct PodInfo {
  std::string name;
  std::string namespace_;
  std::string uid;
  std::string service_account;
  std::string node_name;
  std::string phase;
  bool host_network = false;
  bool terminating = false;  // metadata.deletionTimestamp set
  Labels labels;
  Labels annotations;
  std::vector<std::string> ips;  // status.podIPs[].ip (or status.podIP)
};

struct NamespaceInfo {
  std::string name;
  Labels labels;
  Labels annotations;
};

// Throw ConfigError (kDecode) naming the field when the object is not a Pod/Namespace or a
// field has the wrong type. Missing optional fields are fine.
PodInfo parse_pod(const nlohmann::json& j);
NamespaceInfo parse_namespace(const nlohmann::json& j);

}  // namespace ambient::config
