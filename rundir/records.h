// What the plugin and the node agent leave in the run dir (cni_agent_run_dir / --run-dir), as
// data. The store (store.h) reads and writes them; nothing else knows their JSON.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/redirect_settings.h"

namespace ambient::rundir {

// A pod's sandbox as its ADD saw it: written by the plugin at ADD for every Kubernetes pod it did
// not rule out by name (so a later label change finds the netns without scanning /proc), removed
// at DEL. A tombstone has the same shape: a DEL the agent did not hear.
struct PodRecord {
  std::string container_id;
  std::string netns;
  std::string ifname;
  std::string uid;
  std::string name;
  std::string namespace_;
  std::vector<std::string> ips;  // from prevResult, without prefix length
  // The conflist's network name: a GC is scoped to its own network's attachments (another
  // network sharing the run dir never releases ours). Empty in records of older plugins.
  std::string network;

  bool operator==(const PodRecord&) const = default;
};

// An enrolled pod: what the agent enrolled it with, and so what it owes ztunnel (and the in-pod
// rules) after a restart. The agent's enrolment API takes the same type (agent/enrolment.h).
struct Enrolment {
  PodRecord pod;
  std::string service_account;
  config::RedirectSettings redirect;
  // The network namespace enrolled (nsfs device and inode), recorded at enrolment: a path that
  // names another namespace later (a new sandbox, a reused PID) is never taken for this pod's.
  // 0 in state written before it was recorded.
  std::uint64_t netns_dev = 0;
  std::uint64_t netns_inode = 0;
  // When the agent enrolled it (unix seconds; 0 in state written before it was recorded):
  // `ambient-cni-node status` and explain show it, a restart keeps it.
  std::int64_t enrolled_at = 0;
};

nlohmann::json to_json(const PodRecord& r);
// Throws config::ConfigError naming the key.
PodRecord pod_record_from_json(const nlohmann::json& j);
nlohmann::json to_json(const Enrolment& s);
// Also reads the format agents before 0.2 wrote (the same keys plus "op").
Enrolment enrolment_from_json(const nlohmann::json& j);

}  // namespace ambient::rundir
