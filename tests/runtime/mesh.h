// The cluster around a real runtime: the Kubernetes API stand-in (holding the pods and
// namespaces the runtime creates sandboxes for), the real node agent (in-process) and the ztunnel
// stand-in, all bound to paths under one run dir, plus the conflist entry that points the plugin
// at them.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/runtime/runtime_env.h"
#include "tests/standins/apiserver/apiserver.h"
#include "tests/standins/ztunnel/ztunnel_standin.h"

namespace ambient::agent {
class Agent;
}

namespace ambient::runtime_test {

inline constexpr const char* kNodeName = "node-1";

struct PodRef {
  std::string ns;
  std::string name;
  std::string uid;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
};

class Mesh {
 public:
  explicit Mesh(fs::path run_dir);
  ~Mesh();
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  // API stand-in (kubeconfig written), ztunnel stand-in, agent.
  void start();
  void stop();
  void start_agent();
  void stop_agent();
  bool agent_running() const { return agent_ != nullptr; }

  testing::ApiServerStandin& api() { return api_; }
  standins::ZtunnelStandin& ztunnel() { return *ztunnel_; }
  agent::Agent& agent() { return *agent_; }
  const fs::path& run_dir() const { return run_dir_; }
  fs::path kubeconfig() const { return run_dir_ / "kubeconfig"; }

  // The ambient-cni element of a conflist's plugins[] (README "Configuration reference").
  nlohmann::json plugin_entry() const;

  void put_namespace(const std::string& name,
                     const std::map<std::string, std::string>& labels = {});
  void put_pod(const PodRef& pod);
  // What the kubelet reports once the sandbox runs: phase Running, podIP(s), hostIP.
  void set_pod_running(const PodRef& pod, const std::string& ip);
  // ambient.istio.io/redirection on the API stand-in's pod ("" when absent).
  std::string redirection(const PodRef& pod) const;
  bool enrolled_record(const std::string& uid) const;      // <run_dir>/enrolled/<uid>.json
  bool pod_record(const std::string& container_id) const;  // <run_dir>/pods/<id>.json
  // Whether the agent has watched the API (a watch=true request reached the stand-in).
  bool agent_watches() const;
  // Requests to the API stand-in whose path names `ns` (/api/v1/namespaces/<ns>[/...]).
  std::vector<testing::ApiRequest> requests_naming(const std::string& ns) const;

  std::string agent_log_tail(std::size_t bytes = 6000) const;

  // kubectl 1.32 against the stand-in; returns its exit code and output.
  Command kubectl(const std::vector<std::string>& args) const;

 private:
  fs::path run_dir_;
  testing::ApiServerStandin api_;
  std::unique_ptr<standins::ZtunnelStandin> ztunnel_;
  std::unique_ptr<agent::Agent> agent_;
};

}  // namespace ambient::runtime_test
