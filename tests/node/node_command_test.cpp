// `ambient-cni-node install | uninstall | run` as processes, configured through the environment
// the way the DaemonSet's ConfigMap does, against temp node directories, network namespaces the
// tests create, the API stand-in and the ztunnel stand-in (root).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "agent/pod_table.h"
#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "netns/host_probe.h"
#include "netns/redirect.h"
#include "rundir/store.h"
#include "tests/install/install_fixture.h"
#include "tests/standins/apiserver/apiserver.h"
#include "tests/standins/ztunnel/ztunnel_standin.h"
#include "tests/support/local_http.h"
#include "tests/support/process.h"
#include "tests/support/testbed.h"

namespace ambient {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using testing::free_port;
using testing::http_status;
using testing::NodeDirs;
using testing::read_file;
using testing::snapshot;
using testing::spit;
using testing::wait_for;

const std::string kBridge = R"({
  "cniVersion": "1.0.0",
  "name": "k8s",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.199.1.0/24"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
)";

std::vector<std::string> types(const std::string& text) {
  std::vector<std::string> out;
  const auto doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.contains("plugins")) return out;
  for (const auto& p : doc["plugins"]) out.push_back(p.value("type", ""));
  return out;
}

bool ours_last(const fs::path& f) {
  const auto t = types(read_file(f));
  return !t.empty() && t.back() == "ambient-cni";
}

// Exited but not yet reaped (BackgroundProcess::stop then returns its exit status).
bool exited(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, comm, state;
  if (!(in >> pid_field >> comm >> state)) return true;
  return state == "Z";
}

// wait_for, but giving up at once when the process died.
bool wait_alive(const testing::BackgroundProcess& p, const std::function<bool()>& done,
                std::chrono::milliseconds limit) {
  bool died = false;
  wait_for(
      [&] {
        died = exited(p.pid());
        return died || done();
      },
      limit);
  return !died && done();
}

// What ctest would otherwise not show: the child's log.
std::string tail(const fs::path& log) {
  return "---- " + log.string() + "\n" + read_file(log);
}

class NodeCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    testbed::sweep_leftover_namespaces();
    api_.start();
    dirs_.write_token(api_.token(), api_.ca_pem());
    api_.write_kubeconfig(dirs_.root / "node-kubeconfig");
  }

  // The DaemonSet's environment: host paths and node config, as its ConfigMap would give them.
  std::vector<std::string> env(const std::vector<std::string>& extra = {}) const {
    return dirs_.daemonset_env(api_.port(), extra);
  }
  testing::Execution node(const std::vector<std::string>& args,
                          const std::vector<std::string>& extra_env = {}) const {
    std::vector<std::string> argv = {AMBIENT_NODE_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run(argv, env(extra_env), "", 60s);
  }
  std::unique_ptr<testing::BackgroundProcess> background(
      const std::vector<std::string>& args, const std::vector<std::string>& extra_env = {}) const {
    std::vector<std::string> argv = {"/usr/bin/env", "-i"};
    for (const auto& e : env(extra_env)) argv.push_back(e);
    argv.push_back(AMBIENT_NODE_BIN);
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<testing::BackgroundProcess>(argv, log_path().string());
  }
  fs::path log_path() const { return dirs_.root / "node.log"; }

  // What is ours on the node, for before/after comparisons.
  testing::Snapshot node_state() const {
    auto s = snapshot(dirs_.conf);
    for (const auto& [k, v] : snapshot(dirs_.bin)) s["bin/" + k] = v;
    if (fs::exists(dirs_.run / "kubeconfig"))
      s["run/kubeconfig"] = read_file(dirs_.run / "kubeconfig");
    return s;
  }

  NodeDirs dirs_{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  testing::ApiServerStandin api_;
};

TEST_F(NodeCommand, InstallFromTheEnvironmentThenUninstallRestoresTheNode) {
  spit(dirs_.conf / "10-k8s.conflist", kBridge);
  const auto before = node_state();
  const auto x = node(
      {"install"}, {"AMBIENT_EXCLUDE_NAMESPACES=kube-system, legacy,", "AMBIENT_DNS_CAPTURE=false",
                    "AMBIENT_FAILURE_POLICY=open", "AMBIENT_PLUGIN_LOG_LEVEL=debug"});
  ASSERT_EQ(x.exit_code, 0) << x.err;
  ASSERT_TRUE(ours_last(dirs_.conf / "10-k8s.conflist"));
  const auto entry = json::parse(read_file(dirs_.conf / "10-k8s.conflist"))["plugins"].back();
  EXPECT_EQ(entry["exclude_namespaces"], json({"kube-system", "legacy"}));
  EXPECT_EQ(entry["dns_capture"], false);
  EXPECT_EQ(entry["failure_policy"], "open");
  EXPECT_EQ(entry["plugin_log_level"], "debug");
  EXPECT_EQ(entry["cni_agent_run_dir"], dirs_.run.string());

  // The installed plugin runs from the bin dir (no CNI_COMMAND: its about text).
  const auto about =
      testing::run({(dirs_.bin / "ambient-cni").string()}, {"PATH=/usr/bin"}, "", 10s);
  EXPECT_EQ(about.exit_code, 0);
  EXPECT_TRUE(about.err.starts_with("ambient-cni ")) << about.err;

  // The plugin's kubeconfig really reaches the API with the service account's token and CA.
  const auto kubeconfig = kube::load_kubeconfig(entry["kubeconfig"].get<std::string>());
  kube::Client client(kubeconfig, {});
  EXPECT_EQ(client.get("/version")["major"], "1");

  // Nothing enrolled: uninstall needs no pod access, and leaves the node as it was.
  testbed::Topology topo;
  const auto u =
      node({"uninstall"}, {"AMBIENT_HOST_NETNS=" + testbed::Topology::path(topo.host())});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  EXPECT_EQ(node_state(), before);
}

TEST_F(NodeCommand, BadConfigurationIsNamedAndChangesNothing) {
  spit(dirs_.conf / "10-k8s.conflist", kBridge);
  const auto before = node_state();
  struct Bad {
    std::string env;
    std::string named;
  };
  for (const auto& bad :
       {Bad{"AMBIENT_FAILURE_POLICY=sometimes", "failure_policy"},
        Bad{"AMBIENT_PLUGIN_LOG_LEVEL=loud", "plugin_log_level"},
        Bad{"AMBIENT_API_TIMEOUT_MS=0", "api_timeout_ms"},
        Bad{R"(AMBIENT_ENABLEMENT_SELECTORS=[{"podSelector":{"matchLabels":{"a":1}}}])",
            "enablement_selectors[0].podSelector"},
        Bad{"AMBIENT_OWNED_CONFLIST_NAME=owned.json", "owned conflist name"},
        Bad{"AMBIENT_PLUGIN_BINARY=/nonexistent/ambient-cni", "/nonexistent/ambient-cni"},
        Bad{"AMBIENT_CNI_MODE=both", "--mode"}}) {
    const auto x = node({"install"}, {bad.env});
    EXPECT_NE(x.exit_code, 0) << bad.env;
    EXPECT_NE(x.err.find(bad.named), std::string::npos) << bad.env << "\n" << x.err;
    EXPECT_EQ(node_state(), before) << bad.env;
  }
  const auto no_sa = node({"install"}, {"KUBERNETES_SERVICE_HOST="});
  EXPECT_NE(no_sa.exit_code, 0);
  EXPECT_NE(no_sa.err.find("KUBERNETES_SERVICE_HOST"), std::string::npos) << no_sa.err;
  EXPECT_EQ(node_state(), before);
}

TEST_F(NodeCommand, InstallWaitsForAPrimaryConfiguration) {
  const auto timed_out = node({"install", "--wait-timeout", "1"});
  EXPECT_EQ(timed_out.exit_code, 1);
  EXPECT_NE(timed_out.err.find("no primary CNI configuration appeared"), std::string::npos)
      << timed_out.err;

  auto p = background({"install"});
  ASSERT_TRUE(wait_for(
      [&] { return read_file(log_path()).find("waiting for one") != std::string::npos; }, 10s))
      << tail(log_path());
  EXPECT_TRUE(p->running());
  spit(dirs_.conf / "10-mynet.conf", R"({"cniVersion":"1.0.0","name":"mynet","type":"bridge"})");
  ASSERT_TRUE(wait_for([&] { return exited(p->pid()); }, 5s)) << tail(log_path());
  EXPECT_EQ(p->stop(SIGKILL), 0) << tail(log_path());
  EXPECT_TRUE(ours_last(dirs_.conf / "10-mynet.conflist"));
}

// A DaemonSet API that answers the upgrade check (the API stand-in serves no apps/v1).
class DaemonSetApi {
 public:
  explicit DaemonSetApi(bool exists) {
    server_.Get(
        R"(/apis/apps/v1/namespaces/([^/]+)/daemonsets/([^/]+))",
        [this, exists](const httplib::Request& req, httplib::Response& res) {
          ++gets_;
          const json ds = {
              {"apiVersion", "apps/v1"},
              {"kind", "DaemonSet"},
              {"metadata", {{"name", req.matches[2].str()}, {"namespace", req.matches[1].str()}}}};
          res.status = exists ? 200 : 404;
          res.set_content(exists ? ds.dump() : json{{"kind", "Status"}, {"code", 404}}.dump(),
                          "application/json");
        });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~DaemonSetApi() {
    server_.stop();
    thread_.join();
  }
  void write_kubeconfig(const fs::path& path) const {
    spit(path,
         "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: "
         "http://127.0.0.1:" +
             std::to_string(port_) +
             "\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  "
             "context:\n    cluster: c\n    user: u\ncurrent-context: x\n");
  }
  int gets() const { return gets_; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> gets_{0};
};

std::string http_body(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  const auto r = c.Get(path);
  return r ? r->body : "";
}

TEST_F(NodeCommand, RunIsReadyOnlyOnceInstalledAndAnUpgradeStopLeavesEverything) {
  testbed::Topology topo;
  DaemonSetApi daemonset(/*exists=*/true);
  daemonset.write_kubeconfig(dirs_.root / "ds-kubeconfig");
  const int health = free_port();
  const int metrics = free_port();
  auto p = background(
      {"run", "--no-watch"},
      {"AMBIENT_KUBECONFIG=" + (dirs_.root / "ds-kubeconfig").string(),
       "AMBIENT_HOST_NETNS=" + testbed::Topology::path(topo.host()),
       "AMBIENT_LISTEN_ADDRESS=127.0.0.1", "AMBIENT_HEALTH_PORT=" + std::to_string(health),
       "AMBIENT_METRICS_PORT=" + std::to_string(metrics), "NODE_NAME=node-1"});
  ASSERT_TRUE(wait_alive(
      *p, [&] { return http_status(health, "/healthz") == 200; }, 15s))
      << tail(log_path());
  // Agent up, but no primary CNI config to chain into: not ready.
  // Agent serving (its plugin socket is up), installer waiting: not ready. The only change that
  // follows is the primary CNI's file, so the later 200 is the installation's doing.
  ASSERT_TRUE(wait_alive(
      *p,
      [&] {
        return fs::exists(dirs_.run / "agent.sock") &&
               read_file(log_path()).find("waiting for one") != std::string::npos;
      },
      15s))
      << tail(log_path());
  EXPECT_EQ(http_status(health, "/readyz"), 503);

  spit(dirs_.conf / "10-k8s.conflist", kBridge);
  ASSERT_TRUE(wait_alive(
      *p, [&] { return http_status(health, "/readyz") == 200; }, 5s))
      << tail(log_path());
  EXPECT_TRUE(ours_last(dirs_.conf / "10-k8s.conflist"));

  // The primary rewrites its file: put back, and counted in the agent's metrics.
  spit(dirs_.conf / "10-k8s.conflist", kBridge);
  ASSERT_TRUE(wait_for([&] { return ours_last(dirs_.conf / "10-k8s.conflist"); }, 1s));
  EXPECT_TRUE(wait_for(
      [&] {
        return http_body(metrics, "/metrics")
                   .find("ambient_cni_repairs_total{what=\"installer_cni_config\"} 1") !=
               std::string::npos;
      },
      2s))
      << http_body(metrics, "/metrics");

  const auto installed = node_state();
  EXPECT_EQ(p->stop(SIGTERM, 15s), 0) << tail(log_path());
  EXPECT_EQ(daemonset.gets(), 1);
  EXPECT_EQ(node_state(), installed);  // upgrade: plugin, entry and kubeconfig stay
  EXPECT_NE(read_file(log_path()).find("the DaemonSet still exists"), std::string::npos);
}

class RunRemoval : public NodeCommand {
 protected:
  // Drives the installed plugin binary with the installed conflist, as containerd does.
  testing::Execution cni_add(const std::string& conflist, const std::string& netns,
                             const std::string& ns, const std::string& name, const std::string& uid,
                             const std::string& ip) const {
    const auto list = json::parse(read_file(conflist));
    auto conf = list["plugins"].back();
    conf["cniVersion"] = list["cniVersion"];
    conf["name"] = list["name"];
    conf["prevResult"] = {{"cniVersion", "1.0.0"},
                          {"interfaces", {{{"name", "eth0"}, {"sandbox", netns}}}},
                          {"ips", {{{"address", ip + "/24"}, {"interface", 0}}}}};
    return testing::run(
        {(dirs_.bin / "ambient-cni").string()},
        {"CNI_COMMAND=ADD", "CNI_CONTAINERID=c-" + name, "CNI_NETNS=" + netns, "CNI_IFNAME=eth0",
         "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=" + ns + ";K8S_POD_NAME=" + name +
             ";K8S_POD_UID=" + uid + ";K8S_POD_INFRA_CONTAINER_ID=c-" + name,
         "CNI_PATH=" + dirs_.bin.string(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
        conf.dump(), 30s);
  }
  std::string annotation(const std::string& ns, const std::string& name) const {
    const auto obj = api_.get_object("Pod", ns, name);
    if (!obj) return "<no pod>";
    return (*obj)["metadata"]
        .value("annotations", json::object())
        .value("ambient.istio.io/redirection", "");
  }
  static bool host_table_exists(const std::string& host) {
    return testbed::sh("ip netns exec " + host + " nft list tables")
               .out.find("istio-ambient-nat") != std::string::npos;
  }
  void put_pod(const std::string& ns, const std::string& name, const std::string& uid,
               json annotations = json::object()) {
    api_.put({{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", name}, {"namespace", ns}, {"uid", uid}, {"annotations", annotations}}},
              {"spec", {{"nodeName", "node-1"}, {"serviceAccountName", "default"}}},
              {"status", {{"phase", "Running"}}}});
  }

  // `run` as the DaemonSet runs it, on a node with an ambient namespace, and pod demo/web started
  // through the installed plugin: enrolled, annotated, its rules and the host probe table in place.
  std::unique_ptr<testing::BackgroundProcess> run_with_an_enrolled_pod(
      testbed::Topology& topo, standins::ZtunnelStandin& ztunnel) {
    ztunnel.start();
    api_.put(
        {{"apiVersion", "v1"},
         {"kind", "Namespace"},
         {"metadata", {{"name", "demo"}, {"labels", {{"istio.io/dataplane-mode", "ambient"}}}}}});
    put_pod("demo", "web", "uid-web");
    spit(dirs_.conf / "10-k8s.conflist", kBridge);
    const int health = free_port();
    // The agent's label watch is on: removal must stop it before releasing the pods.
    auto p = background({"run"}, {"AMBIENT_KUBECONFIG=" + (dirs_.root / "node-kubeconfig").string(),
                                  "AMBIENT_HOST_NETNS=" + testbed::Topology::path(topo.host()),
                                  "AMBIENT_LISTEN_ADDRESS=127.0.0.1",
                                  "AMBIENT_HEALTH_PORT=" + std::to_string(health),
                                  "AMBIENT_METRICS_PORT=-1", "NODE_NAME=node-1"});
    EXPECT_TRUE(wait_alive(
        *p, [&] { return http_status(health, "/readyz") == 200; }, 15s))
        << tail(log_path());
    EXPECT_TRUE(ztunnel.wait_for([&] { return ztunnel.connected(); }, 10s));
    // A pod starts: the runtime calls the plugin it finds in the installed conflist.
    const auto add =
        cni_add((dirs_.conf / "10-k8s.conflist").string(), testbed::Topology::path(topo.pod()),
                "demo", "web", "uid-web", testbed::Addr::kPod4);
    EXPECT_EQ(add.exit_code, 0) << add.out << add.err << tail(log_path());
    EXPECT_TRUE(ztunnel.wait_for([&] { return ztunnel.pods().contains("uid-web"); }, 5s));
    EXPECT_EQ(annotation("demo", "web"), "enabled");
    EXPECT_EQ(rules_in(topo), netns::RedirectStatus::Current);
    EXPECT_TRUE(host_table_exists(topo.host()));
    return p;
  }
  static netns::RedirectStatus rules_in(testbed::Topology& topo) {
    return netns::inspect(netns::NetnsHandle::open(testbed::Topology::path(topo.pod())),
                          netns::RedirectPlan(netns::RedirectOptions{}))
        .status;
  }
};

TEST_F(RunRemoval, RemovalUnenrolsEveryPodFirstThenLeavesTheNodeAsItWas) {
  testbed::Topology topo;
  standins::ZtunnelStandin ztunnel({(dirs_.run / "ztunnel.sock").string(), 100ms});
  const auto before = [&] {
    spit(dirs_.conf / "10-k8s.conflist", kBridge);
    return node_state();
  }();
  auto p = run_with_an_enrolled_pod(topo, ztunnel);
  ASSERT_FALSE(::testing::Test::HasFailure());

  // The DaemonSet is gone (the stand-in has none: 404): SIGTERM means removal.
  EXPECT_EQ(p->stop(SIGTERM, 20s), 0) << tail(log_path());
  const auto log = read_file(log_path());
  EXPECT_NE(log.find("the DaemonSet no longer exists"), std::string::npos) << log;
  // The pod first: ztunnel was told, the rules are gone, the annotation removed…
  const auto reqs = ztunnel.requests();
  EXPECT_NE(std::find(reqs.begin(), reqs.end(), "del uid-web"), reqs.end());
  EXPECT_FALSE(ztunnel.pods().contains("uid-web"));
  EXPECT_EQ(rules_in(topo), netns::RedirectStatus::Absent);
  EXPECT_EQ(annotation("demo", "web"), "");
  EXPECT_FALSE(fs::exists(dirs_.run / "enrolled" / "uid-web.json"));
  EXPECT_LT(log.find("pod demo/web released"),
            log.find("CNI config dir: wrote 10-k8s.conflist (our entry removed)"))
      << log;
  // …then our files: the node is as it was before install, host probe table included.
  EXPECT_EQ(node_state(), before);
  EXPECT_FALSE(host_table_exists(topo.host()));
}

// `kubectl delete -k` deletes our ServiceAccount and RBAC together with the DaemonSet, so on
// SIGTERM the API refuses us (401 on a real kube-apiserver). The node goes back to the primary
// CNI — no plugin a new pod's ADD would fail closed on — and the enrolled pod keeps everything
// that matches its `enabled` annotation, which can no longer be cleared.
TEST_F(RunRemoval, RemovalWithOurIdentityGoneGivesTheNodeBackAndKeepsPodsConsistent) {
  testbed::Topology topo;
  standins::ZtunnelStandin ztunnel({(dirs_.run / "ztunnel.sock").string(), 100ms});
  const auto conflist_before = kBridge;
  auto p = run_with_an_enrolled_pod(topo, ztunnel);
  ASSERT_FALSE(::testing::Test::HasFailure());
  api_.add_fault(testing::ApiFault{.path_prefix = "/apis/apps/v1/", .status = 401});

  EXPECT_EQ(p->stop(SIGTERM, 20s), 0) << tail(log_path());
  const auto log = read_file(log_path());
  EXPECT_NE(log.find("the API refuses our own identity"), std::string::npos) << log;
  EXPECT_NE(log.find("1 enrolled pods keep their redirection"), std::string::npos) << log;
  EXPECT_EQ(read_file(dirs_.conf / "10-k8s.conflist"), conflist_before);
  EXPECT_FALSE(fs::exists(dirs_.bin / "ambient-cni"));
  EXPECT_FALSE(fs::exists(dirs_.run / "kubeconfig"));
  // The pod is as its annotation says: captured, known to ztunnel, probes SNATed, recorded (a
  // reinstall restores it).
  EXPECT_EQ(rules_in(topo), netns::RedirectStatus::Current);
  EXPECT_EQ(annotation("demo", "web"), "enabled");
  const auto reqs = ztunnel.requests();
  EXPECT_EQ(std::find(reqs.begin(), reqs.end(), "del uid-web"), reqs.end());
  EXPECT_TRUE(host_table_exists(topo.host()));
  EXPECT_TRUE(fs::exists(dirs_.run / "enrolled" / "uid-web.json"));
}

TEST_F(RunRemoval, UninstallReleasesThePodsAnEarlierAgentLeft) {
  testbed::Topology topo;
  const auto pod_netns = testbed::Topology::path(topo.pod());
  // What an agent that ran here left: rules in the pod, a probe entry on the host, its state.
  const netns::RedirectPlan plan(netns::RedirectOptions{});
  netns::apply(netns::NetnsHandle::open(pod_netns), plan);
  netns::HostProbeSnat probes(topo.open(topo.host()), {});
  probes.ensure();
  probes.set_pod("uid-db", {testbed::Addr::kPod4});
  rundir::Enrolment e;
  e.pod.uid = "uid-db";
  e.pod.name = "db";
  e.pod.namespace_ = "demo";
  e.pod.netns = pod_netns;
  e.pod.container_id = "c-db";
  e.pod.ips = {testbed::Addr::kPod4};
  e.service_account = "default";
  rundir::RunDir(dirs_.run.string()).write_enrolled(e);
  put_pod("demo", "db", "uid-db", {{"ambient.istio.io/redirection", "enabled"}});
  spit(dirs_.conf / "10-k8s.conflist", kBridge);
  ASSERT_EQ(node({"install"}).exit_code, 0);

  const auto u =
      node({"uninstall"}, {"AMBIENT_KUBECONFIG=" + (dirs_.root / "node-kubeconfig").string(),
                           "AMBIENT_HOST_NETNS=" + testbed::Topology::path(topo.host())});
  ASSERT_EQ(u.exit_code, 0) << u.err;
  EXPECT_EQ(netns::inspect(netns::NetnsHandle::open(pod_netns), plan).status,
            netns::RedirectStatus::Absent);
  EXPECT_EQ(annotation("demo", "db"), "");
  EXPECT_FALSE(fs::exists(dirs_.run / "enrolled" / "uid-db.json"));
  EXPECT_FALSE(host_table_exists(topo.host()));
  EXPECT_EQ(read_file(dirs_.conf / "10-k8s.conflist"), kBridge);
  EXPECT_FALSE(fs::exists(dirs_.bin / "ambient-cni"));
  EXPECT_FALSE(fs::exists(dirs_.run / "kubeconfig"));
  EXPECT_LT(u.err.find("pod demo/db released"),
            u.err.find("CNI config dir: wrote 10-k8s.conflist (our entry removed)"))
      << u.err;
}

// The plugin's kubeconfig carries a token of its own service account (TokenRequest, bound to this
// node), whose RBAC is get pods and namespaces: not the node component's token, which may patch
// pods/status and mint tokens (issue 11, item 15).
class PluginCredentials : public RunRemoval {
 protected:
  static constexpr const char* kPluginUser =
      "system:serviceaccount:istio-system:ambient-cni-plugin";

  // 403 from the API for what fn does, or a description of what happened instead.
  template <typename Fn>
  static std::string refusal(Fn&& fn) {
    try {
      fn();
      return "allowed";
    } catch (const kube::ApiError& e) {
      return e.http_status() == 403 ? "403" : std::to_string(e.http_status()) + " " + e.what();
    }
  }
};

TEST_F(PluginCredentials, ThePluginsTokenIsItsOwnAndCanOnlyGetPodsAndNamespaces) {
  api_.add_service_account("istio-system", "ambient-cni-plugin");
  api_.grant(kPluginUser, {"get"}, {"pods", "namespaces"});  // ClusterRole ambient-cni-plugin
  api_.add_node("node-a", "uid-node-a");
  api_.put({{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "legacy"}}}});
  put_pod("legacy", "old", "uid-old");
  spit(dirs_.conf / "10-k8s.conflist", kBridge);

  const auto x =
      node({"install"}, {"AMBIENT_PLUGIN_SERVICE_ACCOUNT=ambient-cni-plugin", "NODE_NAME=node-a"});
  ASSERT_EQ(x.exit_code, 0) << x.err;
  const auto issued = api_.issued_tokens();
  ASSERT_EQ(issued.size(), 1u);
  EXPECT_EQ(issued[0].user, kPluginUser);
  EXPECT_EQ(issued[0].expiration_seconds, 3600);
  EXPECT_EQ(issued[0].bound_kind, "Node");
  EXPECT_EQ(issued[0].bound_name, "node-a");
  EXPECT_EQ(issued[0].bound_uid, "uid-node-a");
  EXPECT_EQ(x.err.find(issued[0].token), std::string::npos) << "the token was logged";

  const auto kubeconfig = kube::load_kubeconfig(dirs_.run / "kubeconfig");
  EXPECT_EQ(kubeconfig.token, issued[0].token);
  EXPECT_NE(kubeconfig.token, api_.token());  // not the node component's own
  kube::Client client(kubeconfig, {});
  EXPECT_EQ(client.get("/api/v1/namespaces/legacy/pods/old")["metadata"]["uid"], "uid-old");
  EXPECT_EQ(client.get("/api/v1/namespaces/legacy")["metadata"]["name"], "legacy");
  EXPECT_EQ(refusal([&] {
              client.patch(
                  "/api/v1/namespaces/legacy/pods/old/status",
                  {{"metadata", {{"annotations", {{"ambient.istio.io/redirection", "enabled"}}}}}},
                  "application/merge-patch+json");
            }),
            "403");
  EXPECT_EQ(refusal([&] { client.list("/api/v1/pods"); }), "403");
  EXPECT_EQ(refusal([&] {
              client.create(
                  "/api/v1/namespaces/istio-system/serviceaccounts/ambient-cni-plugin/token",
                  {{"apiVersion", "authentication.k8s.io/v1"},
                   {"kind", "TokenRequest"},
                   {"spec", json::object()}});
            }),
            "403");

  // The runtime calls the installed plugin while no agent runs: its API lookup works under the
  // plugin's identity, and only that identity.
  testbed::Topology topo;
  api_.clear_requests();
  const auto add =
      cni_add((dirs_.conf / "10-k8s.conflist").string(), testbed::Topology::path(topo.pod()),
              "legacy", "old", "uid-old", testbed::Addr::kPod4);
  ASSERT_EQ(add.exit_code, 0) << add.out << add.err;
  const auto requests = api_.requests();
  ASSERT_FALSE(requests.empty());
  for (const auto& r : requests) {
    EXPECT_EQ(r.user, kPluginUser) << r.method << " " << r.path;
    EXPECT_EQ(r.method, "GET") << r.path;
  }

  // The node is gone (the token was bound to it): the token dies with it.
  api_.remove_node("node-a");
  EXPECT_EQ(refusal([&] { client.get("/api/v1/namespaces/legacy/pods/old"); }).substr(0, 3), "401");
}

TEST_F(PluginCredentials, WithoutTheTokenRequestNothingIsInstalled) {
  // The service account is not there (RBAC or chart out of step): install fails naming it, and
  // writes no kubeconfig that would carry the node component's own token instead.
  spit(dirs_.conf / "10-k8s.conflist", kBridge);
  const auto before = node_state();
  const auto x = node({"install"}, {"AMBIENT_PLUGIN_SERVICE_ACCOUNT=ambient-cni-plugin"});
  EXPECT_NE(x.exit_code, 0);
  EXPECT_NE(x.err.find("TokenRequest for serviceaccount istio-system/ambient-cni-plugin failed"),
            std::string::npos)
      << x.err;
  EXPECT_NE(x.err.find("not found"), std::string::npos) << x.err;
  EXPECT_EQ(node_state(), before);
}

}  // namespace
}  // namespace ambient
