// A small CRI client: the sandbox calls the kubelet makes (runtime.v1 over gRPC on the runtime's
// unix socket), so the tests create pods exactly as a node does.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ambient::runtime_test {

// A failed CRI call: the gRPC status code and the runtime's message (for a failed CNI ADD,
// containerd's message carries the plugin's error text).
class CriError : public std::runtime_error {
 public:
  CriError(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

// What the kubelet puts in a PodSandboxConfig for a pod.
struct SandboxSpec {
  std::string name;
  std::string ns;
  std::string uid;
  std::uint32_t attempt = 0;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string cgroup_parent;
};

struct SandboxStatus {
  std::string id;
  bool ready = false;
  std::string ip;     // the primary pod IP
  std::string netns;  // the sandbox's network namespace path (verbose info)
  int pid = 0;        // the sandbox process (verbose info)
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
};

class CriClient {
 public:
  // `socket` is a filesystem path; every call is bounded by `deadline`.
  explicit CriClient(const std::string& socket,
                     std::chrono::milliseconds deadline = std::chrono::seconds(60));
  ~CriClient();
  CriClient(const CriClient&) = delete;
  CriClient& operator=(const CriClient&) = delete;

  // "<runtime_name> <runtime_version>"; throws CriError when the runtime does not answer.
  std::string version(std::chrono::milliseconds deadline);
  // Each throws CriError on failure.
  std::string run_pod_sandbox(const SandboxSpec& spec);  // returns the sandbox id
  void stop_pod_sandbox(const std::string& id);
  void remove_pod_sandbox(const std::string& id);
  SandboxStatus pod_sandbox_status(const std::string& id);
  std::vector<std::string> list_pod_sandboxes();  // ids
  // ImageService.ImageStatus: whether the runtime's CRI image store knows `ref`.
  bool image_present(const std::string& ref);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ambient::runtime_test
