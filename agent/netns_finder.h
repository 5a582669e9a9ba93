// Finding a running pod's network namespace without the plugin: the run-dir record its ADD left,
// else a /proc scan for a process whose cgroup names the pod UID (pods started while no agent or
// plugin ran, e.g. after a node reboot).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "rundir/store.h"

namespace ambient::agent {

struct FoundNetns {
  std::string path;          // a netns path the agent can open
  std::string container_id;  // the sandbox id when known
  std::string source;        // "record" or "proc"
};

class NetnsFinder {
 public:
  NetnsFinder(rundir::RunDir run_dir, std::string proc_root, std::uint64_t host_netns_inode);

  std::optional<FoundNetns> find(const std::string& pod_uid);
  // The record of a pod's ADD, when there is one.
  std::optional<rundir::PodRecord> record(const std::string& pod_uid);

  // /proc only (exposed for tests). When several netns show up for the UID, the oldest process
  // wins; the host's netns is skipped.
  std::optional<FoundNetns> scan_proc(const std::string& pod_uid) const;

 private:
  void refresh_records();

  rundir::RunDir run_dir_;
  std::string proc_root_;
  std::uint64_t host_inode_;
  std::mutex mu_;
  std::int64_t records_mtime_ns_ = -1;
  std::map<std::string, rundir::PodRecord> by_uid_;
};

}  // namespace ambient::agent
