// `explain`: why a pod is (not) in the ambient mesh.
//
// Live (decision 016): `explain -n NS [POD]` reads the pod(s) and the namespace from the cluster
// (--kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster; --context), the node policy from the
// DaemonSet's ConfigMap, and — where the pod's node agent can be asked, through the API server's
// pods/proxy of the agent pod on that node, or over the root-only socket on the node itself —
// what the agent holds; then judges with the same config::decide the plugin and the agent use.
// Exit status: 0 when everything agrees, 1 when a pod's state contradicts its decision, 2 when
// explain itself failed.
//
// Offline: `explain --pod pod.json [--namespace ns.json]` decides for objects as
// `kubectl get -o json` prints them.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "config/decision.h"
#include "config/errors.h"
#include "config/kube_objects.h"
#include "config/node_config.h"
#include "config/plugin_config.h"
#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "node/agent_view.h"
#include "node/commands.h"
#include "node/explain_report.h"
#include "node/options.h"

namespace ambient::node {
namespace {

namespace fs = std::filesystem;

struct ExplainOptions {
  std::string pod;          // live: the pod's name ("" = every pod of the namespace)
  std::string namespace_;   // live: the namespace; offline (with --pod): the namespace file
  std::string pod_file;     // offline
  std::string config_file;  // the policy from a conflist instead of the cluster's ConfigMap
  std::string output = "text";
  std::string kubeconfig;
  std::string context;
  std::string agent = "proxy";  // how the node agent is asked: proxy, socket, none
  std::string agent_namespace{contract::kDefaultPodNamespace};
  std::string configmap = "ambient-cni-config";
  std::string run_dir{contract::kDefaultRunDir};
  int timeout_ms = 10000;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

nlohmann::json read_json(const std::string& path) {
  auto j = nlohmann::json::parse(read_file(path), nullptr, false);
  if (j.is_discarded()) throw std::runtime_error(path + " is not valid JSON");
  return j;
}

// A conflist (its ambient-cni entry), a bare plugin entry, or nothing (defaults).
config::PluginConfig load_config(const std::string& path) {
  return config::plugin_config_from_document(path.empty() ? nlohmann::json::object()
                                                          : read_json(path));
}

int explain_offline(const ExplainOptions& o) {
  const auto cfg = load_config(o.config_file);
  const auto pod = config::parse_pod(read_json(o.pod_file));
  config::NamespaceInfo ns;
  if (!o.namespace_.empty()) {
    ns = config::parse_namespace(read_json(o.namespace_));
    if (!pod.namespace_.empty() && ns.name != pod.namespace_) {
      throw std::runtime_error("pod is in namespace " + pod.namespace_ + " but " + o.namespace_ +
                               " describes " + ns.name);
    }
  } else {
    ns.name = pod.namespace_;
  }
  const auto d = config::decide(cfg.policy, pod, ns);
  if (o.output == "json") {
    nlohmann::json j = {{"enrol", d.enrol}, {"reason", d.reason}};
    if (!d.warnings.empty()) j["warnings"] = d.warnings;
    std::cout << j.dump() << '\n';
  } else {
    std::cout << pod.namespace_ << "/" << pod.name << ": " << (d.enrol ? "enrolled" : "untouched")
              << " (" << d.reason << ")\n";
    for (const auto& w : d.warnings) std::cout << "  warning: " << w << '\n';
  }
  return 0;
}

// ---- live -----------------------------------------------------------------------------------

// kubectl's order: --kubeconfig, $KUBECONFIG (its first file that exists), ~/.kube/config, then
// the pod's own service account.
kube::Kubeconfig cluster_access(const ExplainOptions& o) {
  std::string path = o.kubeconfig;
  if (path.empty()) {
    if (const char* env = std::getenv("KUBECONFIG"); env != nullptr && *env != '\0') {
      std::istringstream list(env);
      std::string entry;
      while (std::getline(list, entry, ':')) {
        std::error_code ec;
        if (!entry.empty() && fs::is_regular_file(entry, ec)) {
          path = entry;
          break;
        }
      }
      if (path.empty()) {
        throw kube::KubeconfigError(std::string("KUBECONFIG=") + env +
                                    " names no file that exists");
      }
    }
  }
  if (path.empty()) {
    if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
      std::error_code ec;
      const auto file = fs::path(home) / ".kube" / "config";
      if (fs::is_regular_file(file, ec)) path = file.string();
    }
  }
  if (path.empty()) {
    if (!o.context.empty()) {
      throw kube::KubeconfigError("--context " + o.context +
                                  " needs a kubeconfig (--kubeconfig, KUBECONFIG, ~/.kube/config)");
    }
    return kube::in_cluster_config();
  }
  // An operator's kubeconfig may name a credential plugin (GKE, EKS, AKS): run it, as kubectl
  // does.
  auto config = kube::load_kubeconfig(path, o.context, /*allow_exec=*/true);
  kube::run_exec_plugin(config);
  return config;
}

// The node policy, as `run` derives it from the DaemonSet's ConfigMap (each key an environment
// variable of `run`): the same flags, the same validation, the same rendering.
config::EnrolmentPolicy policy_from_configmap(const nlohmann::json& data,
                                              const std::string& pod_namespace) {
  NodeFlags flags;
  flags.pod_namespace = pod_namespace;  // the downward API's, not the ConfigMap's
  CLI::App app;
  add_node_config_options(&app, flags);
  std::vector<std::string> args;
  for (auto* opt : app.get_options()) {
    const std::string env = opt->get_envname();
    opt->envname("");  // never this process's environment
    if (env.empty() || env == "POD_NAMESPACE" || !data.is_object()) continue;
    const auto it = data.find(env);
    if (it == data.end() || !it->is_string()) continue;
    args.push_back(opt->get_name() + "=" + it->get<std::string>());
  }
  std::reverse(args.begin(), args.end());  // CLI11 consumes a reversed vector
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    throw std::runtime_error(std::string(e.what()));
  }
  auto entry =
      config::render_plugin_entry(node_config(flags, std::string(contract::kDefaultRunDir)));
  entry["cniVersion"] = "1.0.0";
  return config::parse_plugin_config(entry.dump()).policy;
}

struct Policy {
  config::EnrolmentPolicy policy;
  std::string from;
};

Policy load_policy(const ExplainOptions& o, kube::Client& client) {
  if (!o.config_file.empty())
    return {load_config(o.config_file).policy, "--config " + o.config_file};
  const std::string where = o.agent_namespace + "/" + o.configmap;
  nlohmann::json cm;
  try {
    cm = client.get("/api/v1/namespaces/" + o.agent_namespace + "/configmaps/" + o.configmap);
  } catch (const kube::ApiError& e) {
    if (e.kind() != kube::ApiError::Kind::kNotFound &&
        e.kind() != kube::ApiError::Kind::kForbidden) {
      throw;
    }
    config::EnrolmentPolicy defaults;
    defaults.pod_namespace = o.agent_namespace;
    return {defaults, "built-in defaults (ConfigMap " + where + ": " + e.what() + ")"};
  }
  try {
    return {policy_from_configmap(cm.value("data", nlohmann::json::object()), o.agent_namespace),
            "ConfigMap " + where};
  } catch (const std::exception& e) {
    throw std::runtime_error("ConfigMap " + where + ": " + e.what());
  }
}

// The agent pod on `node`: a pod of our DaemonSet (named <daemonset_name>-…) there, preferably
// running; and its health port (the container port named "health", else 8000).
struct AgentPod {
  std::string name;
  int port = 8000;
};

std::optional<AgentPod> agent_pod_on(kube::Client& client, const std::string& ns,
                                     const std::string& daemonset, const std::string& node) {
  const auto list = client.list("/api/v1/namespaces/" + ns + "/pods?fieldSelector=" +
                                kube::query_escape("spec.nodeName=" + node));
  std::optional<AgentPod> found;
  for (const auto& item : list["items"]) {
    const std::string name = item.value("/metadata/name"_json_pointer, std::string());
    if (!name.starts_with(daemonset + "-")) continue;
    AgentPod a;
    a.name = name;
    for (const auto& c : item.value("/spec/containers"_json_pointer, nlohmann::json::array())) {
      for (const auto& p : c.value("ports", nlohmann::json::array())) {
        if (p.value("name", "") == "health" && p.contains("containerPort") &&
            p["containerPort"].is_number_integer()) {
          a.port = p["containerPort"].get<int>();
        }
      }
    }
    const bool running = item.value("/status/phase"_json_pointer, std::string()) == "Running";
    if (!found || running) found = a;
    if (running) break;
  }
  return found;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

void fill_from_view(const rundir::AgentView& v, const std::vector<std::string>& uids,
                    std::map<std::string, AgentAnswer>& out, const AgentAnswer& base) {
  for (const auto& uid : uids) {
    AgentAnswer a = base;
    a.reachable = true;
    a.agent_ready = v.ready;
    a.agent_not_ready = v.not_ready;
    a.ztunnel_connections = v.ztunnel_connections;
    for (const auto& p : v.pods) {
      if (p.uid == uid) a.pod = p;
    }
    out[uid] = a;
  }
}

// Through the API server: GET pods/<agent>:<port>/proxy/debug/pods?uid=… (read-only, per uid).
void ask_through_proxy(kube::Client& client, const ExplainOptions& o, const std::string& daemonset,
                       const std::string& node, const std::vector<std::string>& uids,
                       std::map<std::string, AgentAnswer>& out) {
  AgentAnswer base;
  base.asked = true;
  std::optional<AgentPod> agent;
  try {
    agent = agent_pod_on(client, o.agent_namespace, daemonset, node);
  } catch (const kube::ApiError& e) {
    base.error = std::string("cannot list the node agent pods: ") + e.what();
  }
  if (agent) {
    base.via = "pods/proxy " + o.agent_namespace + "/" + agent->name + ":" +
               std::to_string(agent->port) + " on node " + node;
  } else if (base.error.empty()) {
    base.error = "no pod of DaemonSet " + o.agent_namespace + "/" + daemonset + " on node " + node;
  }
  if (!agent) {
    base.via = "pods/proxy";
    for (const auto& uid : uids) out[uid] = base;
    return;
  }
  constexpr std::size_t kBatch = 100;  // what the agent answers per request
  for (std::size_t i = 0; i < uids.size(); i += kBatch) {
    const std::vector<std::string> batch(
        uids.begin() + static_cast<long>(i),
        uids.begin() + static_cast<long>(std::min(uids.size(), i + kBatch)));
    try {
      const auto body =
          client.get("/api/v1/namespaces/" + o.agent_namespace + "/pods/" + agent->name + ":" +
                     std::to_string(agent->port) + "/proxy/debug/pods?uid=" + join(batch, ","));
      rundir::AgentView v;
      v.node = body.value("node", "");
      v.ready = body.value("ready", false);
      v.not_ready = body.value("notReady", "");
      v.ztunnel_connections = body.value("ztunnelConnections", 0u);
      for (const auto& p : body.value("pods", nlohmann::json::array())) {
        v.pods.push_back(rundir::held_pod_from_json(p));
      }
      fill_from_view(v, batch, out, base);
    } catch (const std::exception& e) {
      AgentAnswer failed = base;
      const auto* api = dynamic_cast<const kube::ApiError*>(&e);
      failed.error = e.what();
      if (api != nullptr && api->kind() == kube::ApiError::Kind::kForbidden) {
        failed.error += " (you may not get pods/proxy in namespace " + o.agent_namespace +
                        "; on the node: explain --agent socket, or ambient-cni-node status)";
      }
      for (const auto& uid : batch) out[uid] = failed;
    }
  }
}

void ask_over_socket(const ExplainOptions& o, const std::vector<config::PodInfo>& pods,
                     std::map<std::string, AgentAnswer>& out) {
  const std::string socket = o.run_dir + "/agent.sock";
  AgentAnswer base;
  base.asked = true;
  base.via = "socket " + socket;
  std::optional<rundir::AgentView> view;
  try {
    view = fetch_agent_view(socket, std::chrono::milliseconds(o.timeout_ms));
  } catch (const AgentViewError& e) {
    base.error = e.what();
  }
  for (const auto& p : pods) {
    if (p.node_name.empty()) continue;
    if (!view) {
      out[p.uid] = base;
    } else if (!view->node.empty() && view->node != p.node_name) {
      AgentAnswer other = base;
      other.error = "the node agent behind this socket runs on node " + view->node +
                    ", the pod on node " + p.node_name;
      out[p.uid] = other;
    } else {
      fill_from_view(*view, {p.uid}, out, base);
    }
  }
}

int explain_live(const ExplainOptions& o) {
  const auto access = cluster_access(o);
  kube::Client client(access,
                      kube::ClientOptions{.deadline = std::chrono::milliseconds(o.timeout_ms),
                                          .user_agent = "ambient-cni-node-explain"});
  const std::string ns_name = !o.namespace_.empty()        ? o.namespace_
                              : !access.namespace_.empty() ? access.namespace_
                                                           : "default";
  const auto policy = load_policy(o, client);
  const std::string ns_path = "/api/v1/namespaces/" + ns_name;
  const auto ns = config::parse_namespace(client.get(ns_path));
  std::vector<config::PodInfo> pods;
  if (!o.pod.empty()) {
    pods.push_back(config::parse_pod(client.get(ns_path + "/pods/" + o.pod)));
  } else {
    std::string next;
    do {
      const auto list = client.list(ns_path + "/pods?limit=500" +
                                    (next.empty() ? "" : "&continue=" + kube::query_escape(next)));
      for (const auto& item : list["items"]) pods.push_back(config::parse_pod(item));
      next = list.value("/metadata/continue"_json_pointer, std::string());
    } while (!next.empty());
  }
  for (auto& p : pods) {
    if (p.namespace_.empty()) p.namespace_ = ns_name;
  }

  std::map<std::string, AgentAnswer> answers;  // pod uid →
  if (o.agent == "proxy") {
    std::map<std::string, std::vector<std::string>> by_node;
    for (const auto& p : pods) {
      if (!p.node_name.empty()) by_node[p.node_name].push_back(p.uid);
    }
    for (const auto& [node, uids] : by_node) {
      ask_through_proxy(client, o, policy.policy.daemonset_name, node, uids, answers);
    }
  } else if (o.agent == "socket") {
    ask_over_socket(o, pods, answers);
  }

  std::vector<PodExplanation> explained;
  bool consistent = true;
  for (const auto& p : pods) {
    AgentAnswer a;
    if (const auto it = answers.find(p.uid); it != answers.end()) {
      a = it->second;
    } else if (o.agent == "none") {
      a.error = "--agent none";
    } else if (p.node_name.empty()) {
      a.error = "the pod has no node yet";
    }
    explained.push_back(explain_pod(policy.policy, p, ns, a));
    consistent = consistent && explained.back().consistent;
  }

  if (o.output == "json") {
    if (!o.pod.empty()) {
      auto j = to_json(explained.front());
      j["policy"] = policy.from;
      std::cout << j.dump(2) << '\n';
    } else {
      nlohmann::json list = nlohmann::json::array();
      std::size_t mismatches = 0;
      for (const auto& e : explained) {
        list.push_back(to_json(e));
        mismatches += e.consistent ? 0 : 1;
      }
      std::cout << nlohmann::json{{"namespace", ns_name},
                                  {"policy", policy.from},
                                  {"mismatches", mismatches},
                                  {"pods", list}}
                       .dump(2)
                << '\n';
    }
  } else if (!o.pod.empty()) {
    std::cout << render_pod(explained.front()) << "policy:     " << policy.from << '\n';
  } else {
    std::cout << render_namespace(ns_name, explained) << "\npolicy: " << policy.from << '\n';
  }
  return consistent ? 0 : 1;
}

int explain(const ExplainOptions& o) {
  try {
    if (!o.pod_file.empty()) {
      if (!o.pod.empty())
        throw std::runtime_error("give either --pod FILE or a pod name, not both");
      return explain_offline(o);
    }
    return explain_live(o);
  } catch (const std::exception& e) {
    std::cerr << "explain: " << e.what() << '\n';
    return 2;
  }
}

}  // namespace

void add_explain_command(CLI::App& app) {
  auto opts = std::make_shared<ExplainOptions>();
  auto* cmd = app.add_subcommand(
      "explain",
      "Show whether a pod is (and should be) enrolled into ambient, and why. Live: explain -n NS "
      "[POD] reads the cluster; exit status 1 when a pod's state contradicts its decision. "
      "Offline: explain --pod pod.json [--namespace ns.json]");
  cmd->add_option("pod", opts->pod, "the pod's name (live; default: every pod of the namespace)");
  cmd->add_option("-n,--namespace", opts->namespace_,
                  "live: the namespace (default: the context's, else default); with --pod: the "
                  "Namespace JSON file (kubectl get ns -o json)");
  cmd->add_option("--pod", opts->pod_file, "offline: Pod JSON (kubectl get pod -o json)");
  cmd->add_option("--config", opts->config_file,
                  "conflist or ambient-cni plugin entry whose policy decides; default: live, the "
                  "DaemonSet's ConfigMap; offline, the built-in defaults");
  cmd->add_option("--output,-o", opts->output, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  cmd->add_option("--kubeconfig", opts->kubeconfig,
                  "kubeconfig (default: KUBECONFIG, ~/.kube/config, else in-cluster)");
  cmd->add_option("--context", opts->context, "the kubeconfig context to use");
  cmd->add_option("--agent", opts->agent,
                  "how the pod's node agent is asked what it holds: proxy (through the API "
                  "server's pods/proxy of the agent pod on the pod's node; needs get pods/proxy in "
                  "the agent's namespace), socket (this node's agent over <run-dir>/agent.sock; "
                  "root), none")
      ->check(CLI::IsMember({"proxy", "socket", "none"}))
      ->capture_default_str();
  cmd->add_option("--agent-namespace", opts->agent_namespace,
                  "namespace of the DaemonSet and its ConfigMap")
      ->capture_default_str();
  cmd->add_option("--configmap", opts->configmap, "the DaemonSet's ConfigMap (the node policy)")
      ->capture_default_str();
  add_run_dir_option(cmd, opts->run_dir);
  cmd->add_option("--timeout-ms", opts->timeout_ms, "budget of each API call")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  cmd->callback([opts] { exit_on_failure(explain(*opts)); });
}

}  // namespace ambient::node
