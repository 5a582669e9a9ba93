#include "tests/runtime/mesh.h"

#include <fstream>
#include <sstream>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include "agent/agent.h"

namespace ambient::runtime_test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

json to_json_map(const std::map<std::string, std::string>& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

}  // namespace

Mesh::Mesh(fs::path run_dir) : run_dir_(std::move(run_dir)) {}

Mesh::~Mesh() {
  stop();
}

void Mesh::start() {
  fs::create_directories(run_dir_);
  api_.start();
  api_.write_kubeconfig(kubeconfig());
  ztunnel_ = std::make_unique<standins::ZtunnelStandin>(
      standins::ZtunnelStandin::Options{(run_dir_ / "ztunnel.sock").string(), 100ms});
  ztunnel_->start();
  start_agent();
}

void Mesh::stop() {
  stop_agent();
  ztunnel_.reset();
  api_.stop();
}

void Mesh::start_agent() {
  if (agent_) return;
  agent::AgentOptions o;
  o.run_dir = run_dir_.string();
  o.ztunnel_socket = (run_dir_ / "ztunnel.sock").string();
  o.kubeconfig = kubeconfig().string();
  o.node_name = kNodeName;
  o.host_netns = "";  // the agent's own netns: the node netns the test process runs in
  o.health_port = -1;
  o.metrics_port = -1;
  o.ztunnel_deadline = 2s;
  auto log = std::make_shared<spdlog::logger>(
      "agent",
      std::make_shared<spdlog::sinks::basic_file_sink_mt>((run_dir_ / "agent.log").string()));
  log->set_level(spdlog::level::debug);
  log->flush_on(spdlog::level::debug);
  agent_ = std::make_unique<agent::Agent>(o, log);
  agent_->start();
}

void Mesh::stop_agent() {
  if (!agent_) return;
  agent_->stop();
  agent_.reset();
}

json Mesh::plugin_entry() const {
  return {{"type", "ambient-cni"},
          {"cni_agent_run_dir", run_dir_.string()},
          {"kubeconfig", kubeconfig().string()},
          {"agent_timeout_ms", 8000},
          {"api_timeout_ms", 5000},
          {"plugin_log_level", "info"}};
}

void Mesh::put_namespace(const std::string& name,
                         const std::map<std::string, std::string>& labels) {
  api_.put({{"apiVersion", "v1"},
            {"kind", "Namespace"},
            {"metadata", {{"name", name}, {"labels", to_json_map(labels)}}}});
}

void Mesh::put_pod(const PodRef& pod) {
  api_.put({{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata",
             {{"name", pod.name},
              {"namespace", pod.ns},
              {"uid", pod.uid},
              {"labels", to_json_map(pod.labels)},
              {"annotations", to_json_map(pod.annotations)}}},
            {"spec", {{"nodeName", kNodeName}, {"serviceAccountName", pod.name + "-sa"}}},
            {"status", {{"phase", "Pending"}}}});
}

void Mesh::set_pod_running(const PodRef& pod, const std::string& ip) {
  auto obj = api_.get_object("Pod", pod.ns, pod.name);
  if (!obj) throw std::runtime_error("no pod " + pod.ns + "/" + pod.name + " in the API stand-in");
  (*obj)["status"]["phase"] = "Running";
  (*obj)["status"]["podIP"] = ip;
  (*obj)["status"]["podIPs"] = json::array({{{"ip", ip}}});
  (*obj)["status"]["hostIP"] = "127.0.0.1";
  api_.put(std::move(*obj));
}

std::string Mesh::redirection(const PodRef& pod) const {
  const auto obj = api_.get_object("Pod", pod.ns, pod.name);
  if (!obj) return "<no pod>";
  const auto ann = (*obj)["metadata"].value("annotations", json::object());
  return ann.value("ambient.istio.io/redirection", "");
}

bool Mesh::enrolled_record(const std::string& uid) const {
  return fs::exists(run_dir_ / "enrolled" / (uid + ".json"));
}

bool Mesh::pod_record(const std::string& container_id) const {
  return fs::exists(run_dir_ / "pods" / (container_id + ".json"));
}

bool Mesh::agent_watches() const {
  for (const auto& r : api_.requests()) {
    if (r.query.find("watch=true") != std::string::npos ||
        r.query.find("watch=1") != std::string::npos) {
      return true;
    }
  }
  return api_.open_watches() > 0;
}

std::vector<testing::ApiRequest> Mesh::requests_naming(const std::string& ns) const {
  std::vector<testing::ApiRequest> out;
  const std::string needle = "/namespaces/" + ns;
  for (const auto& r : api_.requests()) {
    const auto at = r.path.find(needle);
    if (at == std::string::npos) continue;
    const auto end = at + needle.size();
    if (end == r.path.size() || r.path[end] == '/') out.push_back(r);
  }
  return out;
}

std::string Mesh::agent_log_tail(std::size_t bytes) const {
  std::ifstream in(run_dir_ / "agent.log");
  std::ostringstream s;
  s << in.rdbuf();
  const std::string all = s.str();
  return all.size() > bytes ? all.substr(all.size() - bytes) : all;
}

Command Mesh::kubectl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{"/usr/bin/kubectl", "--kubeconfig", kubeconfig().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, {}, 30s);
}

}  // namespace ambient::runtime_test
