#include "tests/support/node_env.h"

#include <unistd.h>

#include <cstdlib>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

namespace ambient::e2e {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

json pod_object(const Pod& p, json labels, bool running) {
  json status = {{"phase", running ? "Running" : "Pending"}};
  if (running) {
    status["podIP"] = p.ip4;
    json ips = json::array({{{"ip", p.ip4}}});
    if (!p.ip6.empty()) ips.push_back({{"ip", p.ip6}});
    status["podIPs"] = ips;
  }
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", p.name}, {"namespace", p.ns}, {"uid", p.uid}, {"labels", labels}}},
          {"spec", {{"nodeName", "node-1"}, {"serviceAccountName", p.name + "-sa"}}},
          {"status", status}};
}

json ns_object(const std::string& name, json labels) {
  return {{"apiVersion", "v1"},
          {"kind", "Namespace"},
          {"metadata", {{"name", name}, {"labels", labels}}}};
}

Env::Env(const std::string& test_name, const std::string& host_netns, bool ztunnel_standin)
    : run_dir_(fs::temp_directory_path() /
               ("ambient-e2e-" + std::to_string(::getpid()) + "-" + test_name)),
      host_netns_(host_netns) {
  fs::remove_all(run_dir_);
  fs::create_directories(run_dir_);
  api_.start();
  api_.write_kubeconfig(run_dir_ / "kubeconfig");
  if (ztunnel_standin) start_ztunnel();
}

Env::~Env() {
  stop_agent();
  ztunnel_.reset();
  api_.stop();
  if (!keep_ && std::getenv("AMBIENT_E2E_KEEP") == nullptr) fs::remove_all(run_dir_);
}

agent::AgentOptions Env::agent_options() const {
  agent::AgentOptions o;
  o.run_dir = run_dir_.string();
  o.ztunnel_socket = zds_socket();
  o.kubeconfig = (run_dir_ / "kubeconfig").string();
  o.host_netns = host_netns_;
  o.node_name = "node-1";
  o.health_port = -1;
  o.metrics_port = -1;
  o.ztunnel_deadline = 5s;  // the contract's; tests that need a quick failure set less
  return o;
}

void Env::start_agent(agent::AgentOptions options) {
  auto log = std::make_shared<spdlog::logger>(
      "agent",
      std::make_shared<spdlog::sinks::basic_file_sink_mt>((run_dir_ / "agent.log").string()));
  log->flush_on(spdlog::level::info);
  log->set_level(spdlog::level::debug);
  agent_ = std::make_unique<agent::Agent>(std::move(options), log);
  agent_->start();
}

void Env::stop_agent() {
  if (agent_) agent_->stop();
  agent_.reset();
}

void Env::start_ztunnel() {
  ztunnel_ = std::make_unique<standins::ZtunnelStandin>(
      standins::ZtunnelStandin::Options{zds_socket(), 100ms});
  ztunnel_->start();
}

json Env::conf() const {
  return {{"cniVersion", "1.0.0"},
          {"name", "k8s"},
          {"type", "ambient-cni"},
          {"cni_agent_run_dir", run_dir_.string()},
          {"agent_timeout_ms", 8000}};
}

json Env::prev_result(const Pod& p) const {
  json ips = json::array({{{"address", p.ip4 + "/24"}, {"interface", 0}}});
  if (!p.ip6.empty()) ips.push_back({{"address", p.ip6 + "/64"}, {"interface", 0}});
  return {{"cniVersion", "1.0.0"},
          {"interfaces", {{{"name", "eth0"}, {"sandbox", p.netns}}}},
          {"ips", ips},
          {"dns", json::object()}};
}

testing::Execution Env::cni(const char* verb, const Pod& p, bool with_prev,
                            const std::string& netns) const {
  auto c = conf();
  if (with_prev) c["prevResult"] = prev_result(p);
  const std::vector<std::string> env = {std::string("CNI_COMMAND=") + verb,
                                        "CNI_CONTAINERID=" + p.container,
                                        "CNI_NETNS=" + (netns == "-" ? p.netns : netns),
                                        "CNI_IFNAME=eth0",
                                        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=" + p.ns +
                                            ";K8S_POD_NAME=" + p.name + ";K8S_POD_UID=" + p.uid +
                                            ";K8S_POD_INFRA_CONTAINER_ID=" + p.container,
                                        "CNI_PATH=/opt/cni/bin",
                                        "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  return testing::run({AMBIENT_PLUGIN_BIN}, env, c.dump(), 30s);
}

testing::Execution Env::kubectl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"/usr/bin/kubectl", "--kubeconfig",
                                   (run_dir_ / "kubeconfig").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::run(argv, {"PATH=/usr/bin:/bin", "HOME=" + run_dir_.string()}, "", 30s);
}

std::string Env::annotation(const Pod& p) const {
  const auto obj = api_.get_object("Pod", p.ns, p.name);
  if (!obj) return "<no pod>";
  const auto& ann = (*obj)["metadata"].value("annotations", json::object());
  return ann.value("ambient.istio.io/redirection", "");
}

netns::RedirectStatus Env::rules(const Pod& p) {
  netns::RedirectOptions o;
  o.ipv6 = !p.ip6.empty();
  return netns::inspect(netns::NetnsHandle::open(p.netns), netns::RedirectPlan(o)).status;
}

}  // namespace ambient::e2e
