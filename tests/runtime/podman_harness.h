// podman 4.3 with its CNI backend, private to one test suite: containers.conf and storage.conf
// under a tagged temp dir (CONTAINERS_CONF / CONTAINERS_STORAGE_CONF; /etc/containers is never
// read for these settings nor changed), settings per cni-contract.md (cni backend, runc,
// cgroupfs, file events, ulimits), file locks, its own CNI config dir holding one conflist
// (bridge + host-local + ambient-cni) and bin dir, and containers run from a busybox rootfs
// directory (--rootfs: no image store, no registry). Runs in the caller's (node) netns.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/runtime/runtime_env.h"

namespace ambient::runtime_test {

struct PodmanOptions {
  std::string role = "pm";  // tag "ambrt-<pid>-<role>": dir, cgroup parent, network name
  std::string bridge = "ambt1";
  std::string subnet = "10.213.8.0/24";
  std::string plugin_binary;
  nlohmann::json plugin_entry;
};

class PrivatePodman {
 public:
  explicit PrivatePodman(PodmanOptions options);
  ~PrivatePodman();  // stop()
  PrivatePodman(const PrivatePodman&) = delete;
  PrivatePodman& operator=(const PrivatePodman&) = delete;

  void start();  // writes the configuration and the rootfs; throws when podman cannot run
  void stop();   // podman rm --all --force, then everything tagged is removed

  // podman with this instance's configuration; `env` is added to the caller's environment.
  Command podman(const std::vector<std::string>& args,
                 const std::vector<std::string>& env = {}) const;
  // `podman run -d` of a sleeping container on this network, with CNI_ARGS carrying the
  // Kubernetes keys (podman appends the caller's CNI_ARGS to its own
  // "IgnoreUnknown=1;K8S_POD_NAME=<name>"). Returns the container id; throws on failure.
  std::string run(const std::string& ns, const std::string& name, const std::string& uid);
  std::string netns(const std::string& name) const;  // its SandboxKey (/run/netns/...)
  std::string ip(const std::string& name) const;

  const std::string& network() const { return tag_; }
  fs::path calls_log() const { return dir_ / "cni-calls.log"; }
  fs::path cni_bin_dir() const { return dir_ / "cni" / "bin"; }
  nlohmann::json conflist() const;
  // The CNI_ARGS a caller passes for a pod.
  static std::string cni_args(const std::string& ns, const std::string& uid);

 private:
  std::string inspect(const std::string& name, const std::string& format) const;

  PodmanOptions options_;
  std::string tag_;
  fs::path dir_;
  bool started_ = false;
};

}  // namespace ambient::runtime_test
