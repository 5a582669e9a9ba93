// What every end-to-end test stands up: the API stand-in, a run dir, the ztunnel stand-in, the
// real agent (in-process) and the built plugin binary driven as a runtime drives it.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "netns/redirect.h"
#include "tests/standins/apiserver/apiserver.h"
#include "tests/standins/ztunnel/ztunnel_standin.h"
#include "tests/support/process.h"

namespace ambient::e2e {

struct Pod {
  std::string ns, name, uid, netns, ip4, ip6, container;
};

nlohmann::json pod_object(const Pod& p, nlohmann::json labels = nlohmann::json::object(),
                          bool running = false);
nlohmann::json ns_object(const std::string& name, nlohmann::json labels = nlohmann::json::object());

class Env {
 public:
  // host_netns: the netns playing the node (host probe SNAT). Without the ztunnel stand-in the
  // test brings its own ZDS client on zds_socket() (the real ztunnel).
  Env(const std::string& test_name, const std::string& host_netns, bool ztunnel_standin = true);
  ~Env();

  testing::ApiServerStandin& api() { return api_; }
  standins::ZtunnelStandin& ztunnel() { return *ztunnel_; }
  agent::Agent& agent() { return *agent_; }
  const std::filesystem::path& run_dir() const { return run_dir_; }
  std::string zds_socket() const { return (run_dir_ / "ztunnel.sock").string(); }

  agent::AgentOptions agent_options() const;
  void start_agent(agent::AgentOptions options);
  void start_agent() { start_agent(agent_options()); }
  void stop_agent();
  void start_ztunnel();
  void stop_ztunnel() { ztunnel_.reset(); }
  void keep_run_dir() { keep_ = true; }

  nlohmann::json conf() const;
  nlohmann::json prev_result(const Pod& p) const;
  // The plugin binary with `verb` for p, as containerd calls it. netns "-" = the pod's.
  testing::Execution cni(const char* verb, const Pod& p, bool with_prev = true,
                         const std::string& netns = "-") const;
  // kubectl 1.32 against the API stand-in; returns its exit status and output.
  testing::Execution kubectl(const std::vector<std::string>& args) const;

  std::string annotation(const Pod& p) const;
  static netns::RedirectStatus rules(const Pod& p);

 private:
  std::filesystem::path run_dir_;
  std::string host_netns_;
  bool keep_ = false;
  testing::ApiServerStandin api_;
  std::unique_ptr<standins::ZtunnelStandin> ztunnel_;
  std::unique_ptr<agent::Agent> agent_;
};

}  // namespace ambient::e2e
