// The agent's memory of enrolled pods: identity, IPs, redirect settings and the netns fd it
// holds for ztunnel snapshots, mirrored to <run_dir>/enrolled/<uid>.json so a restarted agent
// (or a rebooted node) knows which pods it owes ztunnel.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/agent_protocol.h"
#include "netns/netns.h"

namespace ambient::agent {

struct EnrolledPod {
  config::PodRecord record;  // uid, name, namespace, container id, netns path, IPs
  std::string service_account;
  config::RedirectSettings redirect;
  std::shared_ptr<netns::NetnsHandle> netns;  // null after a restart found the netns gone
};

class PodTable {
 public:
  explicit PodTable(std::string run_dir);

  // Serialises work on one pod (ADD, DEL, relabel) while other pods proceed.
  std::unique_lock<std::mutex> lock_pod(const std::string& uid);

  void put(EnrolledPod pod);  // also persists
  void erase(const std::string& uid);
  std::optional<EnrolledPod> get(const std::string& uid) const;
  std::optional<EnrolledPod> find_by_container(const std::string& container_id) const;
  std::vector<EnrolledPod> all() const;
  std::size_t size() const;

  // The persisted state of an earlier agent (unreadable files are skipped and named in errors).
  std::vector<EnrolledPod> load_persisted(std::vector<std::string>& errors) const;

 private:
  std::string dir_;
  mutable std::mutex mu_;
  std::map<std::string, EnrolledPod> pods_;
  std::mutex locks_mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> locks_;
};

}  // namespace ambient::agent
