#include "config/kube_objects.h"

#include <nlohmann/json.hpp>

#include "config/errors.h"

namespace ambient::config {
namespace {

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw ConfigError(ConfigError::Kind::kDecode, where, where + ": " + what);
}

const nlohmann::json* object_at(const nlohmann::json& j, const char* key,
                                const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  if (!it->is_object()) bad(where + "." + key, "must be an object");
  return &*it;
}

std::string string_at(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (!it->is_string()) bad(where + "." + key, "must be a string");
  return it->get<std::string>();
}

Labels string_map_at(const nlohmann::json& j, const char* key, const std::string& where) {
  Labels out;
  const auto* m = object_at(j, key, where);
  if (m == nullptr) return out;
  for (const auto& [k, v] : m->items()) {
    if (!v.is_string()) bad(where + "." + key + "." + k, "must be a string");
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

const nlohmann::json& checked_object(const nlohmann::json& j, const char* kind) {
  if (!j.is_object()) bad(kind, "must be a JSON object");
  if (const auto k = j.find("kind"); k != j.end() && !(k->is_string() && *k == kind)) {
    bad(std::string(kind) + ".kind", std::string("must be \"") + kind + "\"");
  }
  return j;
}

}  // namespace

PodInfo parse_pod(const nlohmann::json& j) {
  checked_object(j, "Pod");
  PodInfo pod;
  if (const auto* meta = object_at(j, "metadata", "Pod")) {
    pod.name = string_at(*meta, "name", "Pod.metadata");
    pod.namespace_ = string_at(*meta, "namespace", "Pod.metadata");
    pod.uid = string_at(*meta, "uid", "Pod.metadata");
    pod.labels = string_map_at(*meta, "labels", "Pod.metadata");
    pod.annotations = string_map_at(*meta, "annotations", "Pod.metadata");
    pod.terminating = !string_at(*meta, "deletionTimestamp", "Pod.metadata").empty();
  }
  if (pod.name.empty()) bad("Pod.metadata.name", "is required");
  if (const auto* spec = object_at(j, "spec", "Pod")) {
    if (const auto hn = spec->find("hostNetwork"); hn != spec->end() && !hn->is_null()) {
      if (!hn->is_boolean()) bad("Pod.spec.hostNetwork", "must be a boolean");
      pod.host_network = hn->get<bool>();
    }
    pod.service_account = string_at(*spec, "serviceAccountName", "Pod.spec");
    if (pod.service_account.empty()) {
      pod.service_account = string_at(*spec, "serviceAccount", "Pod.spec");
    }
    pod.node_name = string_at(*spec, "nodeName", "Pod.spec");
  }
  if (const auto* status = object_at(j, "status", "Pod")) {
    pod.phase = string_at(*status, "phase", "Pod.status");
    if (const auto ips = status->find("podIPs"); ips != status->end() && !ips->is_null()) {
      if (!ips->is_array()) bad("Pod.status.podIPs", "must be an array");
      for (std::size_t i = 0; i < ips->size(); ++i) {
        const std::string where = "Pod.status.podIPs[" + std::to_string(i) + "]";
        if (!(*ips)[i].is_object()) bad(where, "must be an object");
        if (auto ip = string_at((*ips)[i], "ip", where); !ip.empty()) {
          pod.ips.push_back(std::move(ip));
        }
      }
    }
    if (pod.ips.empty()) {
      if (auto ip = string_at(*status, "podIP", "Pod.status"); !ip.empty()) {
        pod.ips.push_back(std::move(ip));
      }
    }
  }
  if (pod.service_account.empty()) pod.service_account = "default";
  return pod;
}

NamespaceInfo parse_namespace(const nlohmann::json& j) {
  checked_object(j, "Namespace");
  NamespaceInfo ns;
  if (const auto* meta = object_at(j, "metadata", "Namespace")) {
    ns.name = string_at(*meta, "name", "Namespace.metadata");
    ns.labels = string_map_at(*meta, "labels", "Namespace.metadata");
    ns.annotations = string_map_at(*meta, "annotations", "Namespace.metadata");
  }
  if (ns.name.empty()) bad("Namespace.metadata.name", "is required");
  return ns;
}

}  // namespace ambient::config
