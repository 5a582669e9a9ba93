// Where users look (issue 15), end to end against the API stand-in: `ambient-cni-node explain`
// on a "live cluster" (the stand-in, with the real agent reached through the stand-in's
// pods/proxy), `ambient-cni-node status` over the agent's socket, and the Events the agent puts
// on pods — as kubectl describe shows them — including when the API refuses or hangs on them.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "kube/client.h"
#include "tests/support/local_http.h"
#include "tests/support/node_env.h"
#include "tests/support/testbed.h"
#include "tests/support/wait.h"

namespace ambient {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using e2e::Pod;
using nlohmann::json;

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 15s) {
  return testing::wait_until(condition, timeout, 20ms);
}

class Explain : public ::testing::Test {
 protected:
  void SetUp() override {
    testbed::sweep_leftover_namespaces();
    topo_ = std::make_unique<testbed::Topology>();
    env_ =
        std::make_unique<e2e::Env>(::testing::UnitTest::GetInstance()->current_test_info()->name(),
                                   testbed::Topology::path(topo_->host()));
    kubeconfig_ = (env_->run_dir() / "kubeconfig").string();
    auto& api = env_->api();
    api.put(e2e::ns_object("demo", {{"istio.io/dataplane-mode", "ambient"},
                                    {"istio.io/use-waypoint", "demo-waypoint"}}));
    api.put(e2e::ns_object("legacy"));
    api.put(e2e::ns_object("istio-system"));
    // The node policy, as the DaemonSet's ConfigMap gives it: one more excluded namespace.
    api.put({{"kind", "ConfigMap"},
             {"metadata", {{"name", "ambient-cni-config"}, {"namespace", "istio-system"}}},
             {"data",
              {{"AMBIENT_EXCLUDE_NAMESPACES", "kube-system,quarantine"},
               {"AMBIENT_ENABLED", "true"},
               {"AMBIENT_DAEMONSET_NAME", "ambient-cni-node"}}}});
  }
  void TearDown() override {
    if (HasFailure()) env_->keep_run_dir();
    env_.reset();
    for (const auto& n : extra_) testbed::sh("ip netns del " + n);
    topo_.reset();
  }

  // The agent, with its health port (where /debug/pods is) on loopback, and its pod in the API
  // as the DaemonSet's pod on node-1 (host network: its pod IP is the node's, here 127.0.0.1).
  void start_agent(agent::AgentOptions o) {
    o.listen_address = "127.0.0.1";
    o.health_port = 0;
    env_->start_agent(o);
    ASSERT_TRUE(env_->agent().wait_ready(20s));
    env_->api().put({{"kind", "Pod"},
                     {"metadata",
                      {{"name", "ambient-cni-node-x7k2p"},
                       {"namespace", "istio-system"},
                       {"labels", {{"app.kubernetes.io/name", "ambient-cni-node"}}}}},
                     {"spec",
                      {{"nodeName", "node-1"},
                       {"hostNetwork", true},
                       {"containers",
                        {{{"name", "node"},
                          {"ports",
                           {{{"name", "health"}, {"containerPort", env_->agent().health_port()}},
                            {{"name", "metrics"}, {"containerPort", 15014}}}}}}}}},
                     {"status", {{"phase", "Running"}, {"podIP", "127.0.0.1"}}}});
  }
  void start_agent() { start_agent(env_->agent_options()); }

  // A pod with its own netns holding its IP; in the API it is Pending (no IP) until run() — as
  // on a node, where the pod gets its IP once its sandbox's ADD succeeded.
  Pod make_pod(const std::string& ns, const std::string& name, json labels = json::object()) {
    const std::string netns_name = topo_->host() + "-" + name;
    testbed::must("ip netns add " + netns_name);
    testbed::must("ip -n " + netns_name + " link set lo up");
    extra_.push_back(netns_name);
    const int n = static_cast<int>(extra_.size());
    Pod p{ns,
          name,
          "uid-" + name,
          testbed::Topology::path(netns_name),
          "10.198.0." + std::to_string(n + 1),
          "",
          "c-" + name};
    testbed::must("ip -n " + netns_name + " link add eth0 type veth peer name eth0p");
    testbed::must("ip -n " + netns_name + " addr add " + p.ip4 + "/32 dev eth0");
    testbed::must("ip -n " + netns_name + " link set eth0 up");
    env_->api().put(e2e::pod_object(p, std::move(labels), /*running=*/false));
    return p;
  }
  // The runtime's ADD, then the kubelet reports the pod running with its IP.
  void add_and_run(const Pod& p) {
    const auto x = env_->cni("ADD", p);
    ASSERT_EQ(x.exit_code, 0) << p.name << x.out << x.err;
    const auto running = e2e::pod_object(p, json::object(), /*running=*/true);
    env_->api().update("Pod", p.ns, p.name, [&](json& o) { o["status"] = running["status"]; });
  }

  testing::Execution node(std::vector<std::string> args, std::vector<std::string> env = {}) const {
    args.insert(args.begin(), AMBIENT_NODE_BIN);
    env.push_back("PATH=/usr/bin:/bin");
    env.push_back("HOME=" + env_->run_dir().string());  // no ~/.kube/config there
    return testing::run(args, env, "", 60s);
  }
  testing::Execution explain(std::vector<std::string> args) const {
    args.insert(args.begin(), {"explain", "--kubeconfig", kubeconfig_});
    return node(args);
  }

  std::vector<json> events_of(const Pod& p, const std::string& reason = "") const {
    std::vector<json> out;
    for (const auto& e : env_->api().list_objects("Event")) {
      if (e["involvedObject"].value("uid", "") != p.uid) continue;
      if (!reason.empty() && e.value("reason", "") != reason) continue;
      out.push_back(e);
    }
    return out;
  }

  // The three pods of the scenario: enrolled, opted out, and broken (ztunnel refuses it).
  void three_pods() {
    web_ = make_pod("demo", "web");
    optout_ = make_pod("demo", "optout",
                       {{"istio.io/dataplane-mode", "none"}, {"istio.io/use-waypoint", "none"}});
    broken_ = make_pod("demo", "broken");
    add_and_run(web_);
    add_and_run(optout_);
    // ztunnel refuses this one: its sandbox never starts (the kubelet retries it).
    env_->ztunnel().set_nack("no capacity for this workload");
    const auto x = env_->cni("ADD", broken_);
    ASSERT_EQ(x.exit_code, 1) << x.out << x.err;
  }

  std::unique_ptr<testbed::Topology> topo_;
  std::unique_ptr<e2e::Env> env_;
  std::vector<std::string> extra_;
  std::string kubeconfig_;
  Pod web_, optout_, broken_;
};

TEST_F(Explain, EnrolledOptedOutAndBrokenPodsAreExplainedWithTheMismatchFirst) {
  start_agent();
  three_pods();

  auto x = explain({"-n", "demo", "web"});
  EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
  EXPECT_TRUE(x.out.starts_with("demo/web: enrolled, as decided\n")) << x.out;
  EXPECT_NE(x.out.find("decision:    enrol — rule: namespace label ambient"), std::string::npos)
      << x.out;
  EXPECT_NE(x.out.find("pod istio.io/dataplane-mode=(unset); namespace demo "
                       "istio.io/dataplane-mode=ambient"),
            std::string::npos)
      << x.out;
  EXPECT_NE(x.out.find("ambient.istio.io/redirection=enabled"), std::string::npos);
  EXPECT_NE(x.out.find("waypoint:    demo-waypoint (namespace label istio.io/use-waypoint)"),
            std::string::npos)
      << x.out;
  EXPECT_NE(x.out.find("pods/proxy istio-system/ambient-cni-node-x7k2p:" +
                       std::to_string(env_->agent().health_port()) +
                       " on node node-1: holds "
                       "the pod (enrolled) since "),
            std::string::npos)
      << x.out;
  EXPECT_NE(x.out.find("ztunnel acked it (connection "), std::string::npos) << x.out;
  EXPECT_NE(x.out.find("policy:     ConfigMap istio-system/ambient-cni-config"), std::string::npos);

  x = explain({"-n", "demo", "optout"});
  EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
  EXPECT_TRUE(x.out.starts_with("demo/optout: untouched, as decided\n")) << x.out;
  EXPECT_NE(x.out.find("leave untouched — rule: pod label none"), std::string::npos) << x.out;
  EXPECT_NE(x.out.find("pod istio.io/dataplane-mode=none"), std::string::npos);
  EXPECT_NE(x.out.find("the pod's label istio.io/use-waypoint=none opts out of its namespace's "
                       "waypoint demo-waypoint"),
            std::string::npos)
      << x.out;
  EXPECT_NE(x.out.find("does not hold the pod"), std::string::npos) << x.out;

  x = explain({"-n", "demo", "broken"});
  EXPECT_EQ(x.exit_code, 1) << x.out << x.err;
  EXPECT_TRUE(x.out.starts_with(
      "MISMATCH demo/broken: should be enrolled (namespace label ambient) but its enrolment is "
      "pending: ztunnel did not take pod demo/broken: ztunnel refused add uid-broken: no "
      "capacity for this workload"))
      << x.out;
  EXPECT_NE(x.out.find("ambient.istio.io/redirection=pending"), std::string::npos);
  EXPECT_NE(x.out.find("does not hold the pod (waiting); last error "), std::string::npos) << x.out;

  // The namespace: the mismatch first, then a row per pod.
  x = explain({"-n", "demo"});
  EXPECT_EQ(x.exit_code, 1);
  EXPECT_TRUE(x.out.starts_with("MISMATCH demo/broken: ")) << x.out;
  const auto table = x.out.substr(x.out.find("\n\n") + 2);
  EXPECT_TRUE(table.starts_with("POD ")) << x.out;
  for (const char* row : {"broken  ", "optout  ", "web  "}) {
    EXPECT_NE(table.find(std::string("\n") + row), std::string::npos) << row << x.out;
  }
  EXPECT_NE(table.find("MISMATCH (pending)"), std::string::npos) << x.out;

  x = explain({"-n", "demo", "-o", "json"});
  EXPECT_EQ(x.exit_code, 1);
  const auto j = json::parse(x.out);
  EXPECT_EQ(j["namespace"], "demo");
  EXPECT_EQ(j["mismatches"], 1);
  ASSERT_EQ(j["pods"].size(), 3u);
  std::map<std::string, json> by_name;
  for (const auto& p : j["pods"]) by_name[p["name"]] = p;
  EXPECT_EQ(by_name["web"]["state"], "enrolled");
  EXPECT_EQ(by_name["web"]["decision"]["reason"], "namespace label ambient");
  EXPECT_EQ(by_name["web"]["agent"]["pod"]["ztunnelAcked"], true);
  EXPECT_FALSE(by_name["web"]["agent"]["pod"].contains("netns"));  // not over HTTP
  EXPECT_EQ(by_name["web"]["waypoint"]["name"], "demo-waypoint");
  EXPECT_EQ(by_name["optout"]["labels"]["pod"]["istio.io/dataplane-mode"], "none");
  EXPECT_EQ(by_name["optout"]["waypoint"], nullptr);
  EXPECT_EQ(by_name["broken"]["consistent"], false);
  EXPECT_EQ(by_name["broken"]["annotation"], "pending");

  // Once ztunnel takes it (the kubelet's retry), all agree.
  env_->ztunnel().set_nack("");
  add_and_run(broken_);
  x = explain({"-n", "demo"});
  EXPECT_EQ(x.exit_code, 0) << x.out;
}

TEST_F(Explain, ThePolicyComesFromTheDaemonSetsConfigMap) {
  start_agent();
  env_->api().put(e2e::ns_object("quarantine", {{"istio.io/dataplane-mode", "ambient"}}));
  const auto p = make_pod("quarantine", "held");
  auto x = explain({"-n", "quarantine", "held"});
  EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
  EXPECT_NE(x.out.find("rule: excluded namespace quarantine"), std::string::npos) << x.out;
  // Without the ConfigMap: the built-in defaults, said so — and the pod should then be enrolled.
  env_->api().remove_object("ConfigMap", "istio-system", "ambient-cni-config");
  x = explain({"-n", "quarantine", "held"});
  EXPECT_EQ(x.exit_code, 1) << x.out;
  EXPECT_NE(x.out.find("policy:     built-in defaults (ConfigMap "
                       "istio-system/ambient-cni-config: GET "),
            std::string::npos)
      << x.out;
  // --config overrides both.
  const auto conflist = env_->run_dir() / "conflist.json";
  std::ofstream(conflist) << R"({"type":"ambient-cni","exclude_namespaces":["quarantine"]})";
  x = explain({"-n", "quarantine", "held", "--config", conflist.string()});
  EXPECT_EQ(x.exit_code, 0) << x.out;
  // A ConfigMap whose values the node would refuse is an error naming the key.
  env_->api().put({{"kind", "ConfigMap"},
                   {"metadata", {{"name", "ambient-cni-config"}, {"namespace", "istio-system"}}},
                   {"data", {{"AMBIENT_ENABLEMENT_SELECTORS", "[not json"}}}});
  x = explain({"-n", "quarantine", "held"});
  EXPECT_EQ(x.exit_code, 2);
  EXPECT_NE(x.err.find("ConfigMap istio-system/ambient-cni-config: "), std::string::npos) << x.err;
  EXPECT_NE(x.err.find("enablement_selectors"), std::string::npos) << x.err;
}

TEST_F(Explain, WithoutPodsProxyRightsTheAgentIsNotAskedAndItSaysWhy) {
  start_agent();
  three_pods();
  // A user who may read pods, namespaces and the ConfigMap, but not pods/proxy.
  auto& api = env_->api();
  api.add_service_account("demo", "viewer");
  api.grant("system:serviceaccount:demo:viewer", {"get", "list"},
            {"pods", "namespaces", "configmaps"});
  kube::Client admin(kube::load_kubeconfig(kubeconfig_), {});
  const auto token = admin.create("/api/v1/namespaces/demo/serviceaccounts/viewer/token",
                                  {{"apiVersion", "authentication.k8s.io/v1"},
                                   {"kind", "TokenRequest"},
                                   {"spec", {{"expirationSeconds", 3600}}}});
  const auto viewer = env_->run_dir() / "viewer.kubeconfig";
  {
    std::ofstream out(viewer);
    out << "apiVersion: v1\nkind: Config\ncurrent-context: v\nclusters:\n- name: c\n  cluster:\n"
           "    server: "
        << api.url()
        << "\n    insecure-skip-tls-verify: true\ncontexts:\n- name: v\n  context: {cluster: c, "
           "user: u}\nusers:\n- name: u\n  user:\n    token: "
        << token["status"]["token"].get<std::string>() << "\n";
  }
  const auto x = node({"explain", "--kubeconfig", viewer.string(), "-n", "demo", "web"});
  EXPECT_EQ(x.exit_code, 0) << x.out << x.err;  // enrolled, by its annotation
  EXPECT_NE(x.out.find("unreachable via pods/proxy"), std::string::npos) << x.out;
  EXPECT_NE(x.out.find("you may not get pods/proxy in namespace istio-system"), std::string::npos)
      << x.out;
  EXPECT_NE(x.out.find("cannot get resource \"pods/proxy\""), std::string::npos) << x.out;
}

TEST_F(Explain, ContextsKubeconfigEnvironmentAndBadInput) {
  start_agent();
  web_ = make_pod("demo", "web");
  add_and_run(web_);
  // A kubeconfig whose current context is unusable, and another context that works and brings
  // its namespace.
  const auto good = kube::load_kubeconfig(kubeconfig_);
  const auto two = env_->run_dir() / "two.kubeconfig";
  {
    std::ofstream out(two);
    out << "apiVersion: v1\nkind: Config\ncurrent-context: dead\nclusters:\n"
           "- name: dead\n  cluster: {server: 'https://127.0.0.1:1'}\n"
           "- name: standin\n  cluster:\n    server: "
        << good.server
        << "\n    insecure-skip-tls-verify: true\ncontexts:\n"
           "- name: dead\n  context: {cluster: dead, user: u}\n"
           "- name: standin\n  context: {cluster: standin, user: u, namespace: demo}\n"
           "users:\n- name: u\n  user: {token: "
        << good.token << "}\n";
  }
  auto x = node({"explain", "--kubeconfig", two.string(), "--context", "standin", "web"});
  EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
  EXPECT_TRUE(x.out.starts_with("demo/web: enrolled")) << x.out;
  // $KUBECONFIG: its first file that exists.
  x = node({"explain", "--context", "standin", "web"},
           {"KUBECONFIG=/nonexistent/config:" + two.string()});
  EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
  x = node({"explain", "web"}, {"KUBECONFIG=" + two.string()});  // the dead current context
  EXPECT_EQ(x.exit_code, 2);
  EXPECT_NE(x.err.find("cannot reach https://127.0.0.1:1"), std::string::npos) << x.err;
  // A cloud's credential plugin in the kubeconfig: run as kubectl runs it.
  const auto plugin = env_->run_dir() / "auth-plugin";
  std::ofstream(plugin) << "#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1\","
                           "\"kind\":\"ExecCredential\",\"status\":{\"token\":\""
                        << good.token << "\"}}'\n";
  fs::permissions(plugin, fs::perms::owner_all);
  const auto exec = env_->run_dir() / "exec.kubeconfig";
  std::ofstream(exec) << "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n"
                         "- name: c\n  cluster:\n    server: "
                      << good.server
                      << "\n    insecure-skip-tls-verify: true\ncontexts:\n"
                         "- name: c\n  context: {cluster: c, user: u, namespace: demo}\n"
                         "users:\n- name: u\n  user:\n    exec:\n"
                         "      apiVersion: client.authentication.k8s.io/v1\n"
                         "      command: ./auth-plugin\n";
  x = node({"explain", "--kubeconfig", exec.string(), "web"});
  EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
  EXPECT_TRUE(x.out.starts_with("demo/web: enrolled")) << x.out;
  x = node({"explain", "--kubeconfig", two.string(), "--context", "nope", "web"});
  EXPECT_EQ(x.exit_code, 2);
  EXPECT_NE(x.err.find("contexts: no entry named \"nope\""), std::string::npos) << x.err;
  x = explain({"-n", "demo", "nothere"});
  EXPECT_EQ(x.exit_code, 2);
  EXPECT_NE(x.err.find("pods \"nothere\" not found"), std::string::npos) << x.err;
  x = explain({"-n", "nowhere"});
  EXPECT_EQ(x.exit_code, 2);
  EXPECT_NE(x.err.find("namespaces \"nowhere\" not found"), std::string::npos) << x.err;
  x = explain({"-n", "demo", "web", "--agent", "none"});
  EXPECT_EQ(x.exit_code, 0);
  EXPECT_NE(x.out.find("node agent:  not asked (--agent none)"), std::string::npos) << x.out;
  // The offline form still works as before.
  const auto pod_file = env_->run_dir() / "pod.json";
  const auto ns_file = env_->run_dir() / "ns.json";
  std::ofstream(pod_file) << env_->api().get_object("Pod", "demo", "web")->dump();
  std::ofstream(ns_file) << env_->api().get_object("Namespace", "", "demo")->dump();
  x = node({"explain", "--pod", pod_file.string(), "--namespace", ns_file.string(), "-o", "json"});
  EXPECT_EQ(x.exit_code, 0) << x.err;
  EXPECT_EQ(json::parse(x.out),
            json::parse(R"({"enrol":true,"reason":"namespace label ambient"})"));
}

TEST_F(Explain, OnTheNodeTheAgentSocketIsAskedAndStatusListsWhatItHolds) {
  start_agent();
  three_pods();
  const std::string run_dir = env_->run_dir().string();
  auto x = explain({"-n", "demo", "web", "--agent", "socket", "--run-dir", run_dir});
  EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
  EXPECT_NE(x.out.find("socket " + run_dir + "/agent.sock: holds the pod (enrolled)"),
            std::string::npos)
      << x.out;

  x = node({"status", "--run-dir", run_dir});
  EXPECT_EQ(x.exit_code, 0) << x.err;
  EXPECT_TRUE(
      x.out.starts_with("node agent on node node-1: ready; 1 ztunnel connection; 1 pod "
                        "held, 1 not held after a failed enrolment\n"))
      << x.out;
  EXPECT_NE(x.out.find("NAMESPACE  POD     UID         STATE     ZTUNNEL"), std::string::npos)
      << x.out;
  EXPECT_NE(x.out.find("ztunnel refused add uid-broken: no capacity for this workload"),
            std::string::npos)
      << x.out;
  EXPECT_NE(x.out.find(web_.netns), std::string::npos) << x.out;  // node-local: the netns

  x = node({"status", "--run-dir", run_dir, "-o", "json"});
  ASSERT_EQ(x.exit_code, 0) << x.err;
  const auto j = json::parse(x.out);
  EXPECT_EQ(j["node"], "node-1");
  EXPECT_EQ(j["ready"], true);
  ASSERT_EQ(j["pods"].size(), 2u);
  EXPECT_EQ(j["pods"][0]["name"], "broken");
  EXPECT_EQ(j["pods"][0]["held"], false);
  EXPECT_EQ(j["pods"][0]["state"], "waiting");
  EXPECT_EQ(j["pods"][1]["name"], "web");
  EXPECT_EQ(j["pods"][1]["state"], "enrolled");
  EXPECT_EQ(j["pods"][1]["ztunnelAcked"], true);
  EXPECT_EQ(j["pods"][1]["netns"], web_.netns);
  EXPECT_GT(j["pods"][1]["since"].get<std::int64_t>(), 0);

  // ztunnel goes away: the pod is still held, but nobody acked it any more.
  env_->stop_ztunnel();
  ASSERT_TRUE(eventually([&] {
    return json::parse(node({"status", "--run-dir", run_dir, "-o", "json"})
                           .out)["pods"][1]["ztunnelAcked"] == false;
  }));
  x = explain({"-n", "demo", "web"});
  EXPECT_EQ(x.exit_code, 1);
  EXPECT_TRUE(
      x.out.starts_with("MISMATCH demo/web: should be enrolled (namespace label ambient) "
                        "and is held by the node agent, but no live ztunnel has acked it"))
      << x.out;

  x = node({"status", "--run-dir", "/nonexistent"});
  EXPECT_EQ(x.exit_code, 2);
  EXPECT_NE(x.err.find("cannot reach the node agent: "), std::string::npos) << x.err;
  EXPECT_NE(x.err.find("/nonexistent/agent.sock"), std::string::npos) << x.err;
  env_->start_ztunnel();
}

TEST_F(Explain, TheDebugRouteAnswersOnlyAboutPodsWhoseUidIsGiven) {
  start_agent();
  three_pods();
  const int port = env_->agent().health_port();
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/debug/pods");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("uid=<pod uid>"), std::string::npos) << r->body;
  std::string many = "/debug/pods?uid=";
  for (int i = 0; i < 101; ++i) many += (i ? "," : "") + std::string("u") + std::to_string(i);
  r = c.Get(many);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  r = c.Get("/debug/pods?uid=../../etc");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  r = c.Get("/debug/pods?uid=uid-web%2Cuid-nobody");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto j = json::parse(r->body);
  ASSERT_EQ(j["pods"].size(), 2u);
  EXPECT_EQ(j["pods"][0]["state"], "enrolled");
  EXPECT_FALSE(j["pods"][0].contains("netns"));
  EXPECT_FALSE(j["pods"][0].contains("ips"));
  EXPECT_EQ(j["pods"][1]["state"], "not held");
  EXPECT_EQ(testing::http_status(port, "/readyz"), 200);
}

// Events: what kubectl describe pod shows for a failed, a recovered and a relabelled pod.
TEST_F(Explain, EventsOnThePodAreWhatKubectlDescribeShows) {
  start_agent();
  three_pods();
  ASSERT_TRUE(eventually([&] { return !events_of(broken_, "AmbientEnrolmentPending").empty(); }));
  const auto pending = events_of(broken_, "AmbientEnrolmentPending")[0];
  EXPECT_EQ(pending["type"], "Warning");
  EXPECT_EQ(pending["source"]["component"], "ambient-cni-node");
  EXPECT_EQ(pending["source"]["host"], "node-1");
  EXPECT_NE(pending["message"].get<std::string>().find(
                "ztunnel did not take pod demo/broken: ztunnel refused add uid-broken: no capacity "
                "for this workload; the kubelet retries the pod's sandbox"),
            std::string::npos)
      << pending;
  auto d = env_->kubectl({"describe", "pod", "-n", "demo", "broken"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_NE(d.out.find("Warning  AmbientEnrolmentPending"), std::string::npos) << d.out;
  EXPECT_NE(d.out.find("ambient-cni-node"), std::string::npos) << d.out;

  // The kubelet's retry succeeds: the pod says so.
  env_->ztunnel().set_nack("");
  add_and_run(broken_);
  ASSERT_TRUE(eventually([&] { return !events_of(broken_, "AmbientEnrolled").empty(); }));
  EXPECT_NE(events_of(broken_, "AmbientEnrolled")[0]["message"].get<std::string>().find(
                "the earlier problem is resolved"),
            std::string::npos);
  // Pods that never had a problem get no Event for their ordinary enrolment.
  EXPECT_TRUE(events_of(web_).empty());

  // A label change takes a running pod out, another puts one in.
  ASSERT_EQ(env_->kubectl({"label", "pod", "-n", "demo", "web", "istio.io/dataplane-mode=none"})
                .exit_code,
            0);
  ASSERT_TRUE(eventually([&] { return !events_of(web_, "AmbientUnenrolled").empty(); }));
  const auto out = events_of(web_, "AmbientUnenrolled")[0];
  EXPECT_EQ(out["type"], "Normal");
  EXPECT_NE(out["message"].get<std::string>().find(
                "no longer selected for ambient (pod label none): its in-pod redirection was "
                "removed and ztunnel released it"),
            std::string::npos)
      << out;
  ASSERT_EQ(
      env_->kubectl({"label", "pod", "-n", "demo", "optout", "istio.io/dataplane-mode-"}).exit_code,
      0);
  ASSERT_TRUE(eventually([&] { return !events_of(optout_, "AmbientEnrolled").empty(); }));
  EXPECT_NE(events_of(optout_, "AmbientEnrolled")[0]["message"].get<std::string>().find(
                "enrolled by the node agent (namespace label ambient) while running"),
            std::string::npos);
  d = env_->kubectl({"describe", "pod", "-n", "demo", "web"});
  const auto line = d.out.substr(d.out.rfind('\n', d.out.find("AmbientUnenrolled")) + 1);
  EXPECT_TRUE(line.starts_with("  Normal ")) << d.out;
}

TEST_F(Explain, AFailureLoopMakesOneEventWithACountNotAFlood) {
  start_agent();
  broken_ = make_pod("demo", "broken");
  env_->ztunnel().set_nack("refused");
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(env_->cni("ADD", broken_).exit_code, 1);
    env_->cni("DEL", broken_);
  }
  ASSERT_TRUE(env_->agent().reporter().wait_idle(10s));
  // The first went at once; the seven others are folded until the window (60 s) ends.
  const auto events = events_of(broken_);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["count"], 1);
  EXPECT_NE(env_->agent().metrics().render().find(
                R"(ambient_cni_events_total{reason="AmbientEnrolmentPending",result="posted"} 1)"),
            std::string::npos);
}

TEST_F(Explain, AnApiThatRefusesOrHangsOnEventsNeverHoldsAnEnrolmentBack) {
  auto o = env_->agent_options();
  // Longer than the plugin waits for the agent (agent_timeout_ms 8000): an Event posted in the
  // enrolment's path would make the plugin give up on the agent.
  o.api_timeout = 20s;
  start_agent(o);
  // Every Event POST fails: counted, and the pods are enrolled or refused as before.
  env_->api().add_fault({.path_prefix = "/api/v1/namespaces/demo/events", .status = 503});
  broken_ = make_pod("demo", "broken");
  env_->ztunnel().set_nack("refused");
  auto x = env_->cni("ADD", broken_);
  EXPECT_EQ(x.exit_code, 1);
  EXPECT_NE(x.out.find("ztunnel did not take pod demo/broken"), std::string::npos) << x.out;
  ASSERT_TRUE(eventually([&] {
    return env_->agent().metrics().render().find(
               R"(ambient_cni_degraded_total{what="event_post_failed"} 1)") != std::string::npos;
  }));
  EXPECT_TRUE(events_of(broken_).empty());
  env_->ztunnel().set_nack("");
  EXPECT_EQ(env_->cni("ADD", broken_).exit_code, 0);

  // The API hangs on Events far longer than the plugin waits for the agent (8 s): the failing
  // ADD still gets its own answer, not "no answer within 8000 ms".
  env_->api().clear_faults();
  env_->api().add_fault({.path_prefix = "/api/v1/namespaces/demo/events", .delay_ms = 30000});
  const auto other = make_pod("demo", "other");
  env_->ztunnel().set_nack("refused again");
  for (int i = 0; i < 3; ++i) {
    x = env_->cni("ADD", other);
    EXPECT_EQ(x.exit_code, 1);
    EXPECT_NE(x.out.find("ztunnel refused add uid-other: refused again"), std::string::npos)
        << x.out;
    env_->cni("DEL", other);
  }
  env_->ztunnel().set_nack("");
  EXPECT_EQ(env_->cni("ADD", other).exit_code, 0) << "an enrolment behind a hung Event post";
  env_->api().clear_faults();
}

}  // namespace
}  // namespace ambient
