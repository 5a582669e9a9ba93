// A private containerd 1.6 (Debian's, with runc) for one test suite: its own root, state, gRPC
// socket, runc root and cgroup parent under a tagged temp dir; the CRI plugin configured as
// cni-contract.md describes (restrict_oom_score_adj, runc v2 without systemd cgroups, netns
// under its state dir) with one conflist, bridge + host-local + ambient-cni; and a busybox
// sandbox image built and imported offline. Runs in the caller's (node) network namespace.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/runtime/cri_client.h"
#include "tests/runtime/runtime_env.h"

namespace ambient::testing {
class BackgroundProcess;
}

namespace ambient::runtime_test {

struct ContainerdOptions {
  std::string role = "cri";  // tag "ambrt-<pid>-<role>": dir, cgroup, network name
  std::string bridge = "ambt0";
  std::string subnet = "10.213.7.0/24";
  std::string plugin_binary;    // the built ambient-cni
  nlohmann::json plugin_entry;  // its conflist element (Mesh::plugin_entry())
  std::string sandbox_image = "ambrt.local/sandbox:1";
};

class PrivateContainerd {
 public:
  explicit PrivateContainerd(ContainerdOptions options);
  ~PrivateContainerd();  // stop(), then everything under the tag is removed
  PrivateContainerd(const PrivateContainerd&) = delete;
  PrivateContainerd& operator=(const PrivateContainerd&) = delete;

  // Writes the configuration, starts containerd, waits for CRI, imports the sandbox image.
  // Throws std::runtime_error (with the end of containerd's log) when it cannot.
  void start();
  // Stops and removes every sandbox (so the plugin sees its DELs), stops containerd, then
  // removes everything tagged (leftover shims and sandboxes killed, mounts, dirs, cgroups).
  void stop();

  CriClient& cri() { return *cri_; }
  // A PodSandboxConfig as the kubelet sends it for `ns/name` (with this harness's cgroup parent).
  SandboxSpec sandbox(const std::string& ns, const std::string& name, const std::string& uid) const;

  const std::string& tag() const { return tag_; }
  fs::path dir() const { return dir_; }
  fs::path calls_log() const { return dir_ / "cni-calls.log"; }
  fs::path log() const { return dir_ / "containerd.log"; }
  std::string log_tail(std::size_t bytes = 4000) const;
  nlohmann::json conflist() const;

 private:
  void write_config() const;

  ContainerdOptions options_;
  std::string tag_;
  fs::path dir_;
  std::unique_ptr<testing::BackgroundProcess> process_;
  std::unique_ptr<CriClient> cri_;
};

}  // namespace ambient::runtime_test
