// The seed's interop against Istio's real ztunnel (1.31, built by scripts/peers.sh ztunnel),
// unchanged: our plugin binary enrols pods on a bridge node, our agent hands their netns to
// ztunnel over ZDS, and real traffic between the pods' own network namespaces is judged by what
// ztunnel itself reports (its metrics, access log and config dump), not only by the apps.
//
// The testbed plays istiod: the local config ztunnel reads (LOCAL_XDS_PATH) is derived from the
// API's pods (HBONE once our agent marked a pod `enabled`, as istiod does) plus each test's
// services and L4 policies. ztunnel reads that file once, at start (xds.rs LocalClient::run), so
// a change restarts it; our agent's snapshot then restores every pod (docs/decisions/008).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "config/constants.h"
#include "tests/peers/ztunnel/ztunnel_peer.h"
#include "tests/support/files.h"
#include "tests/support/node_env.h"
#include "tests/support/testbed.h"

namespace ambient {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using e2e::Pod;
using nlohmann::json;
using peers::LocalPolicy;
using peers::ZtunnelPeer;

constexpr int kAppPort = 8080;
constexpr const char* kNode = "node-1";

class RealZtunnel : public ::testing::Test {
 protected:
  void SetUp() override {
    try {
      binary_ = peers::ztunnel_binary();
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }
    testbed::sweep_leftover_namespaces();
    node_ = std::make_unique<testbed::BridgeNode>();
    env_ =
        std::make_unique<e2e::Env>(::testing::UnitTest::GetInstance()->current_test_info()->name(),
                                   node_->node_path(), /*ztunnel_standin=*/false);
    auto& api = env_->api();
    api.put(e2e::ns_object("demo", {{"istio.io/dataplane-mode", "ambient"}}));
    api.put(e2e::ns_object("legacy"));
    ZtunnelPeer::Options o;
    o.netns_path = node_->node_path();
    o.dir = env_->run_dir() / "ztunnel";
    o.inpod_uds = env_->zds_socket();
    o.node_name = kNode;
    zt_ = std::make_unique<ZtunnelPeer>(o);
  }

  void TearDown() override {
    if (HasFailure() && env_) {
      env_->keep_run_dir();
      std::string report;
      if (zt_) report += zt_->report();
      for (auto& s : sidecars_) report += s->report(30);
      report += "---- agent log:\n" + testing::read_tail(env_->run_dir() / "agent.log", 40);
      std::cerr << report;
    }
    sidecars_.clear();
    zt_.reset();
    agent_process_.reset();
    env_.reset();
    node_.reset();
  }

  // The agent in-process, then ztunnel with the cluster's config; both ready.
  void start_mesh() {
    env_->start_agent();
    ASSERT_TRUE(env_->agent().wait_ready(20s));
    zt_->start(cluster_config());
    ASSERT_TRUE(zt_->wait_ready()) << "ztunnel not ready";
  }

  // A pod as the kubelet brings it up: the API object (Pending), the sandbox netns, the plugin's
  // ADD as containerd runs it, then the kubelet's status update with the pod's IPs.
  Pod add_pod(const std::string& ns, const std::string& name, json labels = json::object(),
              json annotations = json::object(), bool run_add = true) {
    const auto net = node_->add_pod(name);
    Pod p{ns, name, "uid-" + name, net.path, net.ip4, net.ip6, "sandbox-" + name};
    nets_[name] = net;
    json obj = e2e::pod_object(p, labels);
    if (!annotations.empty()) obj["metadata"]["annotations"] = annotations;
    env_->api().put(obj);
    if (run_add) {
      const auto x = env_->cni("ADD", p);
      EXPECT_EQ(x.exit_code, 0) << name << ": " << x.out << x.err;
    }
    mark_running(p);
    return p;
  }

  void mark_running(const Pod& p) {
    auto obj = *env_->api().get_object("Pod", p.ns, p.name);
    obj["status"] = e2e::pod_object(p, json::object(), /*running=*/true)["status"];
    env_->api().put(obj);
  }

  std::string netns_name(const Pod& p) const { return fs::path(p.netns).filename(); }

  // What istiod would push: every running pod, HBONE when our agent marked it enabled.
  peers::LocalConfig cluster_config() {
    peers::LocalConfig c;
    c.workloads = peers::workloads_from_pods(env_->api().list_objects("Pod"), kNode);
    c.services = services_;
    c.policies = policies_;
    return c;
  }

  // Brings ztunnel's config in step with the cluster (restarting it when something changed) and
  // waits until it is ready again with our snapshot.
  void sync_mesh() {
    if (zt_->apply(cluster_config())) {
      ASSERT_TRUE(zt_->wait_ready()) << "ztunnel not ready after a config change";
    }
  }

  bool enrolled(const Pod& p) {
    return env_->annotation(p) == contract::kRedirectionEnabled &&
           e2e::Env::rules(p) == netns::RedirectStatus::Current;
  }
  bool served(const Pod& p) {
    const auto up = zt_->proxies_up();
    return std::find(up.begin(), up.end(), p.uid) != up.end();
  }

  // Access-log lines of completed connections to dst (ip:port) in a direction.
  std::vector<peers::LogLine> completed(ZtunnelPeer& z, const std::string& direction,
                                        const std::string& dst_key, const std::string& dst) {
    return z.log_matching({{"scope", "access"},
                           {"message", "connection complete"},
                           {"direction", direction},
                           {dst_key, dst}});
  }

  // Every line at warn/error about ZDS, netns or the in-pod proxies, except those in `allowed`
  // (substrings of the message): what a test provoked on purpose.
  std::vector<std::string> inpod_problems(ZtunnelPeer& z,
                                          const std::vector<std::string>& allowed = {}) {
    std::vector<std::string> out;
    for (auto& l : z.problems()) {
      const std::string& scope = l["scope"];
      const std::string& msg = l["message"];
      if (scope.find("inpod") == std::string::npos && msg.find("netns") == std::string::npos &&
          msg.find("rotocol") == std::string::npos) {
        continue;
      }
      if (std::any_of(allowed.begin(), allowed.end(),
                      [&](const std::string& a) { return msg.find(a) != std::string::npos; })) {
        continue;
      }
      out.push_back(scope + ": " + msg + " " + l["error"]);
    }
    return out;
  }

  static std::string principal(const Pod& p) {
    return peers::spiffe_identity(p.ns, p.name + "-sa");
  }

  std::string binary_;
  std::unique_ptr<testbed::BridgeNode> node_;
  std::unique_ptr<e2e::Env> env_;
  std::unique_ptr<ZtunnelPeer> zt_;
  std::vector<std::unique_ptr<ZtunnelPeer>> sidecars_;
  std::unique_ptr<testing::BackgroundProcess> agent_process_;
  std::map<std::string, testbed::BridgeNode::PodNet> nets_;
  std::vector<peers::LocalService> services_;
  std::vector<peers::LocalPolicy> policies_;
};

// 1. Mesh → mesh: A's connection leaves through ztunnel's outbound listener, crosses as HBONE
// (mTLS with both pods' identities) to B's 15008 and reaches B's app from A's own address.
TEST_F(RealZtunnel, MeshToMeshIsHboneWithBothIdentities) {
  start_mesh();
  const Pod a = add_pod("demo", "a");
  const Pod b = add_pod("demo", "b");
  ASSERT_TRUE(enrolled(a));
  ASSERT_TRUE(enrolled(b));
  sync_mesh();
  ASSERT_TRUE(served(a) && served(b));

  testbed::TcpServer app(netns_name(b), AF_INET, kAppPort, "app-b");
  const auto r = testbed::tcp_exchange(netns_name(a), b.ip4, kAppPort, "hello");
  ASSERT_TRUE(r.connected) << r.error;
  EXPECT_EQ(r.reply, "app-b:hello");
  EXPECT_EQ(app.peers(), std::vector<std::string>{a.ip4});  // transparent inbound leg

  // ztunnel's own account: outbound on A's side to B's 15008 carrying B:8080, inbound on B's.
  // Both ends log "connection complete" when their side closes, shortly after the app's reply.
  ASSERT_TRUE(ZtunnelPeer::wait_for([&] {
    return !completed(*zt_, "inbound", "dst.hbone_addr", b.ip4 + ":8080").empty() &&
           !completed(*zt_, "outbound", "dst.hbone_addr", b.ip4 + ":8080").empty();
  }));
  const auto out = completed(*zt_, "outbound", "dst.hbone_addr", b.ip4 + ":8080");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].at("dst.addr"), b.ip4 + ":15008");
  EXPECT_EQ(out[0].at("src.identity"), principal(a));
  EXPECT_EQ(out[0].at("dst.identity"), principal(b));
  const auto in = completed(*zt_, "inbound", "dst.hbone_addr", b.ip4 + ":8080");
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0].at("src.identity"), principal(a));
  EXPECT_EQ(in[0].at("dst.identity"), principal(b));
  EXPECT_EQ(in[0].count("error"), 0u);
  // And in its metrics, from the destination's side: mutual TLS, A's certificate.
  EXPECT_GE(zt_->metric("istio_tcp_connections_opened_total",
                        {{"reporter", "destination"},
                         {"connection_security_policy", "mutual_tls"},
                         {"source_principal", principal(a)},
                         {"destination_principal", principal(b)}}),
            1);
  EXPECT_TRUE(inpod_problems(*zt_).empty());
}

// 2. Outside the mesh → mesh: plaintext from an untouched pod is captured on B's 15006, where
// B's L4 policy decides; untouched → untouched never reaches ztunnel.
TEST_F(RealZtunnel, OutsideMeshToMeshIsPlaintextJudgedByTheDestinationsPolicy) {
  start_mesh();
  const Pod a = add_pod("demo", "a");
  const Pod b = add_pod("demo", "b");
  const Pod c = add_pod("legacy", "c");
  const Pod d = add_pod("legacy", "d");
  ASSERT_TRUE(enrolled(b));
  ASSERT_EQ(e2e::Env::rules(c), netns::RedirectStatus::Absent);
  policies_ = {peers::namespace_policy("allow-8080", "demo", LocalPolicy::Action::kAllow,
                                       {peers::to_ports({kAppPort})})};
  sync_mesh();

  testbed::TcpServer app_b(netns_name(b), AF_INET, kAppPort, "app-b");
  testbed::TcpServer app_d(netns_name(d), AF_INET, kAppPort, "app-d");
  // ALLOW: through, captured on B's side only (no identity: plaintext).
  EXPECT_EQ(testbed::tcp_exchange(netns_name(c), b.ip4, kAppPort, "plain").reply, "app-b:plain");
  EXPECT_EQ(app_b.peers().back(), c.ip4);
  bool seen = ZtunnelPeer::wait_for([&] {
    for (auto& l : zt_->log_matching({{"scope", "access"},
                                      {"message", "connection complete"},
                                      {"direction", "inbound"},
                                      {"dst.addr", b.ip4 + ":8080"}})) {
      if (l["src.addr"].rfind(c.ip4 + ":", 0) == 0 && l.count("src.identity") == 0 &&
          l.count("error") == 0)
        return true;
    }
    return false;
  });
  EXPECT_TRUE(seen) << "no plaintext inbound connection from c in ztunnel's access log";

  // Untouched → untouched: direct, from c's own address, and ztunnel never sees it.
  EXPECT_EQ(testbed::tcp_exchange(netns_name(c), d.ip4, kAppPort, "direct").reply, "app-d:direct");
  EXPECT_EQ(app_d.peers(), std::vector<std::string>{c.ip4});

  // DENY by source namespace: plaintext has none, so everything outside demo is refused.
  policies_ = {peers::namespace_policy("deny-outside", "demo", LocalPolicy::Action::kDeny,
                                       {peers::not_from_namespaces({"demo"})})};
  sync_mesh();
  const auto denied = testbed::tcp_exchange(netns_name(c), b.ip4, kAppPort, "plain again");
  EXPECT_EQ(denied.reply, "");
  EXPECT_EQ(app_b.peers().size(), 1u) << "the denied connection reached B's app";
  EXPECT_TRUE(ZtunnelPeer::wait_for([&] {
    for (auto& l : zt_->log_matching({{"scope", "access"}, {"direction", "inbound"}})) {
      if (l["error"].find("explicitly denied by: demo/deny-outside") != std::string::npos)
        return true;
    }
    return false;
  })) << "ztunnel did not log the denial";
  EXPECT_GE(zt_->metric("istio_tcp_connections_failed_total",
                        {{"reporter", "destination"}, {"response_flags", "DENY"}}) +
                zt_->metric("istio_tcp_connections_closed_total",
                            {{"reporter", "destination"}, {"response_flags", "DENY"}}),
            1);
  // The same policy lets the mesh's own namespace in, over HBONE.
  EXPECT_EQ(testbed::tcp_exchange(netns_name(a), b.ip4, kAppPort, "mesh").reply, "app-b:mesh");

  // Nothing of c → d in ztunnel's log, before or after.
  for (auto& l : zt_->log_matching({{"scope", "access"}})) {
    EXPECT_EQ(l["dst.addr"].rfind(d.ip4 + ":", 0), std::string::npos) << l["dst.addr"];
  }
  EXPECT_TRUE(inpod_problems(*zt_).empty());
}

// 3. Sidecar → ambient: a pod that is not enrolled runs its own HBONE proxy (a dedicated-mode
// ztunnel in its netns, standing in for a sidecar) and reaches B directly on 15008; B's 15008
// is not redirected, and B's policy applies to the client's identity.
TEST_F(RealZtunnel, SidecarSpeaksHboneStraightToTheDestination) {
  start_mesh();
  const Pod b = add_pod("demo", "b");
  const Pod s = add_pod(
      "demo", "s", json::object(),
      {{std::string(contract::kSidecarStatusAnnotation), "{\"containers\":[\"istio-proxy\"]}"}});
  ASSERT_TRUE(enrolled(b));
  ASSERT_EQ(e2e::Env::rules(s), netns::RedirectStatus::Absent);
  sync_mesh();
  ZtunnelPeer::Options so;
  so.netns_path = s.netns;
  so.dir = env_->run_dir() / "sidecar";
  so.dedicated = true;
  so.workload_info = "demo/s/s-sa";
  so.socks5 = true;
  so.name = "sidecar-s";
  auto& sidecar = *sidecars_.emplace_back(std::make_unique<ZtunnelPeer>(so));
  sidecar.start(cluster_config());
  ASSERT_TRUE(sidecar.wait_ready());

  testbed::TcpServer app(netns_name(b), AF_INET, kAppPort, "app-b");
  const auto r = testbed::socks5_exchange(netns_name(s), 15080, b.ip4, kAppPort, "from sidecar");
  ASSERT_TRUE(r.connected) << r.error;
  EXPECT_EQ(r.reply, "app-b:from sidecar");
  EXPECT_EQ(app.peers(), std::vector<std::string>{s.ip4});
  // B's ztunnel took it on 15008 (HBONE, not the plaintext capture) with the sidecar's identity.
  ASSERT_TRUE(ZtunnelPeer::wait_for(
      [&] { return !completed(*zt_, "inbound", "dst.hbone_addr", b.ip4 + ":8080").empty(); }));
  const auto in = completed(*zt_, "inbound", "dst.hbone_addr", b.ip4 + ":8080");
  EXPECT_EQ(in.back().at("dst.addr"), b.ip4 + ":15008");
  EXPECT_EQ(in.back().at("src.identity"), principal(s));
  EXPECT_EQ(in.back().at("dst.identity"), principal(b));
  // The client's side: its own proxy sent HBONE; our node ztunnel holds no proxy for it.
  EXPECT_TRUE(ZtunnelPeer::wait_for(
      [&] { return !completed(sidecar, "outbound", "dst.hbone_addr", b.ip4 + ":8080").empty(); }));
  EXPECT_FALSE(served(s));

  // B's policy applies to that identity: denied by principal.
  policies_ = {
      peers::namespace_policy("deny-s", "demo", LocalPolicy::Action::kDeny,
                              {peers::from_principals({"cluster.local/ns/demo/sa/s-sa"})})};
  sync_mesh();
  const auto denied = testbed::socks5_exchange(netns_name(s), 15080, b.ip4, kAppPort, "again");
  EXPECT_EQ(denied.reply, "");
  EXPECT_EQ(app.peers().size(), 1u);
  EXPECT_TRUE(ZtunnelPeer::wait_for([&] {
    for (auto& l : zt_->log_matching({{"scope", "access"}, {"direction", "inbound"}})) {
      if (l["error"].find("explicitly denied by: demo/deny-s") != std::string::npos) return true;
    }
    return false;
  }));
  // The sidecar's CONNECT was answered 401 by B's ztunnel.
  EXPECT_TRUE(ZtunnelPeer::wait_for([&] {
    for (auto& l : completed(sidecar, "outbound", "dst.hbone_addr", b.ip4 + ":8080")) {
      if (l["error"] == "http status: 401 Unauthorized") return true;
    }
    return false;
  }));
  EXPECT_TRUE(inpod_problems(*zt_).empty());
}

// 4. Co-existence: a sidecar pod in an ambient namespace is never handed to ztunnel and its
// traffic is left as the primary CNI made it.
TEST_F(RealZtunnel, SidecarPodInAmbientNamespaceIsNeverGivenToZtunnel) {
  start_mesh();
  const Pod sc = add_pod("demo", "sc", json::object(),
                         {{std::string(contract::kSidecarStatusAnnotation), "{}"}});
  const Pod c = add_pod("legacy", "c");
  sync_mesh();
  const json dump = zt_->config_dump();
  ASSERT_TRUE(dump.is_object());
  EXPECT_FALSE(dump.value("workloadState", json::object()).contains(sc.uid));
  EXPECT_EQ(e2e::Env::rules(sc), netns::RedirectStatus::Absent);
  EXPECT_EQ(env_->annotation(sc), "");

  testbed::TcpServer app_c(netns_name(c), AF_INET, kAppPort, "app-c");
  testbed::TcpServer app_sc(netns_name(sc), AF_INET, kAppPort, "app-sc");
  EXPECT_EQ(testbed::tcp_exchange(netns_name(sc), c.ip4, kAppPort, "out").reply, "app-c:out");
  EXPECT_EQ(app_c.peers(), std::vector<std::string>{sc.ip4});
  EXPECT_EQ(testbed::tcp_exchange(netns_name(c), sc.ip4, kAppPort, "in").reply, "app-sc:in");
  EXPECT_EQ(app_sc.peers(), std::vector<std::string>{c.ip4});
  for (auto& l : zt_->log_matching({{"scope", "access"}})) {
    EXPECT_EQ(l["src.addr"].rfind(sc.ip4 + ":", 0), std::string::npos);
    EXPECT_EQ(l["dst.addr"].rfind(sc.ip4 + ":", 0), std::string::npos);
  }
}

// 5. DNS capture: an enrolled pod's UDP and TCP queries to its resolver are answered by
// ztunnel's DNS proxy (a service of the local config); with dns-capture=false they are not.
TEST_F(RealZtunnel, DnsQueriesOfEnrolledPodsReachZtunnelsDnsProxy) {
  start_mesh();
  const Pod a = add_pod("demo", "a");
  const Pod b = add_pod("demo", "b");
  const Pod n = add_pod("demo", "n", json::object(),
                        {{std::string(contract::kDnsCaptureAnnotation), "false"}});
  ASSERT_TRUE(enrolled(a));
  ASSERT_EQ(env_->annotation(n), contract::kRedirectionEnabled);
  peers::LocalService web;
  web.name = "web";
  web.namespace_ = "demo";
  web.hostname = "web.demo.svc.cluster.local";
  web.vips = {"10.96.0.10"};
  web.ports = {{80, kAppPort}};
  web.endpoints = {"demo/b"};
  services_ = {web};
  sync_mesh();
  // The node's resolver (what the pods' resolv.conf names) answers everything with 10.9.9.9.
  testbed::UdpResolver resolver(node_->node(), "10.9.9.9");
  const std::string gw = testbed::BridgeNode::kGateway4;

  EXPECT_EQ(testbed::dns_query_udp(netns_name(a), gw, "web.demo.svc.cluster.local"), "10.96.0.10");
  EXPECT_EQ(testbed::dns_query_tcp(netns_name(a), gw, "web.demo.svc.cluster.local"), "10.96.0.10");
  // Short names are expanded in the client's namespace, as ztunnel does for Kubernetes.
  EXPECT_EQ(testbed::dns_query_udp(netns_name(a), gw, "web"), "10.96.0.10");
  EXPECT_GE(zt_->metric("istio_dns_requests_total"), 3);

  // Opted out of DNS capture: the query reaches the node's resolver, not ztunnel.
  const double before = zt_->metric("istio_dns_requests_total");
  EXPECT_EQ(testbed::dns_query_udp(netns_name(n), gw, "web.demo.svc.cluster.local"), "10.9.9.9");
  EXPECT_EQ(zt_->metric("istio_dns_requests_total"), before);

  // And the VIP it answered is served: a → web:80 → b:8080 over HBONE.
  testbed::TcpServer app(netns_name(b), AF_INET, kAppPort, "app-b");
  EXPECT_EQ(testbed::tcp_exchange(netns_name(a), "10.96.0.10", 80, "vip").reply, "app-b:vip");
  EXPECT_TRUE(inpod_problems(*zt_).empty());
}

// 6. Ingress mode (bypass-inbound-capture): plaintext arrives at the app directly, while HBONE
// from an enrolled client still works both ways — the reply of ztunnel's spoofed inbound leg
// needs the connmark rule this mode keeps (ambient-contract.md §4).
TEST_F(RealZtunnel, IngressModeTakesPlaintextDirectAndHboneBothWays) {
  start_mesh();
  const Pod a = add_pod("demo", "a");
  const Pod i = add_pod("demo", "i", json::object(),
                        {{std::string(contract::kBypassInboundCaptureAnnotation), "true"}});
  const Pod c = add_pod("legacy", "c");
  ASSERT_EQ(env_->annotation(i), contract::kRedirectionEnabled);
  sync_mesh();
  ASSERT_TRUE(served(i));
  testbed::TcpServer app_i(netns_name(i), AF_INET, kAppPort, "app-i");
  testbed::TcpServer app_a(netns_name(a), AF_INET, kAppPort, "app-a");

  // Plaintext from outside the mesh: straight to the app, no 15006 capture.
  EXPECT_EQ(testbed::tcp_exchange(netns_name(c), i.ip4, kAppPort, "plain").reply, "app-i:plain");
  EXPECT_EQ(app_i.peers().back(), c.ip4);
  for (auto& l : zt_->log_matching({{"scope", "access"}})) {
    EXPECT_EQ(l["src.addr"].rfind(c.ip4 + ":", 0), std::string::npos) << "ztunnel saw c";
  }
  // HBONE in: a → i over 15008, the app sees a's address, and its reply finds its way back.
  EXPECT_EQ(testbed::tcp_exchange(netns_name(a), i.ip4, kAppPort, "hbone in").reply,
            "app-i:hbone in");
  EXPECT_EQ(app_i.peers().back(), a.ip4);
  EXPECT_TRUE(ZtunnelPeer::wait_for(
      [&] { return !completed(*zt_, "inbound", "dst.hbone_addr", i.ip4 + ":8080").empty(); }));
  // Outbound from i is still captured: HBONE to a.
  EXPECT_EQ(testbed::tcp_exchange(netns_name(i), a.ip4, kAppPort, "hbone out").reply,
            "app-a:hbone out");
  ASSERT_TRUE(ZtunnelPeer::wait_for(
      [&] { return !completed(*zt_, "outbound", "dst.hbone_addr", a.ip4 + ":8080").empty(); }));
  EXPECT_EQ(
      completed(*zt_, "outbound", "dst.hbone_addr", a.ip4 + ":8080").back().at("src.identity"),
      principal(i));
  EXPECT_TRUE(inpod_problems(*zt_).empty());
}

// 7a. The seed's commands on running pods: label ns → ztunnel serves them; label pod none →
// that pod alone leaves; unlabel → ztunnel drops them and traffic goes direct.
TEST_F(RealZtunnel, LabelsMovePodsInAndOutOfZtunnel) {
  start_mesh();
  env_->api().put(e2e::ns_object("late"));
  const Pod a = add_pod("demo", "a");
  const Pod p = add_pod("late", "p");
  const Pod q = add_pod("late", "q");
  const Pod c = add_pod("legacy", "c");
  sync_mesh();
  ASSERT_FALSE(served(p));
  testbed::TcpServer app_p(netns_name(p), AF_INET, kAppPort, "app-p");

  ASSERT_EQ(env_->kubectl({"label", "ns", "late", "istio.io/dataplane-mode=ambient"}).exit_code, 0);
  ASSERT_TRUE(ZtunnelPeer::wait_for([&] { return enrolled(p) && enrolled(q); }, 15s));
  sync_mesh();
  EXPECT_TRUE(served(p));
  EXPECT_TRUE(served(q));
  EXPECT_EQ(testbed::tcp_exchange(netns_name(a), p.ip4, kAppPort, "in mesh").reply,
            "app-p:in mesh");
  EXPECT_TRUE(ZtunnelPeer::wait_for(
      [&] { return !completed(*zt_, "inbound", "dst.hbone_addr", p.ip4 + ":8080").empty(); }));

  ASSERT_EQ(
      env_->kubectl({"label", "pod", "-n", "late", "q", "istio.io/dataplane-mode=none"}).exit_code,
      0);
  // Released: ztunnel's del first, then the rules (a look in between sees them half gone).
  ASSERT_TRUE(ZtunnelPeer::wait_for(
      [&] { return !served(q) && e2e::Env::rules(q) == netns::RedirectStatus::Absent; }, 15s));
  EXPECT_TRUE(served(p));
  sync_mesh();
  EXPECT_TRUE(served(p));
  EXPECT_FALSE(served(q));

  ASSERT_EQ(env_->kubectl({"label", "ns", "late", "istio.io/dataplane-mode-"}).exit_code, 0);
  // Released: ztunnel's del first, then the rules (a look in between sees them half gone).
  ASSERT_TRUE(ZtunnelPeer::wait_for(
      [&] { return !served(p) && e2e::Env::rules(p) == netns::RedirectStatus::Absent; }, 15s));
  sync_mesh();
  // Direct now: from outside the mesh straight to p's app, nothing in ztunnel's log.
  const auto before = zt_->log_matching({{"scope", "access"}}).size();
  EXPECT_EQ(testbed::tcp_exchange(netns_name(c), p.ip4, kAppPort, "direct").reply, "app-p:direct");
  EXPECT_EQ(app_p.peers().back(), c.ip4);
  EXPECT_EQ(zt_->log_matching({{"scope", "access"}}).size(), before);
  EXPECT_TRUE(served(a));
  EXPECT_TRUE(inpod_problems(*zt_).empty());
}

// 7b. ztunnel killed and restarted: our snapshot restores every pod and traffic resumes. DEL
// then drops the pod from ztunnel.
TEST_F(RealZtunnel, ZtunnelRestartGetsEveryPodBackAndDelDropsOne) {
  start_mesh();
  const Pod a = add_pod("demo", "a");
  const Pod b = add_pod("demo", "b");
  sync_mesh();
  testbed::TcpServer app(netns_name(b), AF_INET, kAppPort, "app-b");
  EXPECT_EQ(testbed::tcp_exchange(netns_name(a), b.ip4, kAppPort, "1").reply, "app-b:1");

  zt_->kill();
  zt_->start(cluster_config());
  ASSERT_TRUE(zt_->wait_ready());
  EXPECT_TRUE(served(a));
  EXPECT_TRUE(served(b));
  EXPECT_EQ(testbed::tcp_exchange(netns_name(a), b.ip4, kAppPort, "2").reply, "app-b:2");
  EXPECT_GE(zt_->metric("istio_tcp_connections_opened_total",
                        {{"reporter", "destination"}, {"source_principal", principal(a)}}),
            1);

  ASSERT_EQ(env_->cni("DEL", b).exit_code, 0);
  EXPECT_TRUE(ZtunnelPeer::wait_for([&] { return !served(b); }));
  EXPECT_FALSE(zt_->log_matching({{"message", "pod delete request, shutting down proxy"}}).empty());
  EXPECT_TRUE(served(a));
  EXPECT_TRUE(inpod_problems(*zt_).empty());
}

// 7c. The agent kill -9ed: ztunnel keeps serving; the restarted agent's snapshot reconciles it
// (a pod deleted meanwhile is drained on SnapshotSent).
TEST_F(RealZtunnel, AgentKilledZtunnelKeepsServingAndReconciles) {
  const auto o = env_->agent_options();
  const std::vector<std::string> argv = {AMBIENT_NODE_BIN,   "agent",
                                         "--run-dir",        o.run_dir,
                                         "--ztunnel-socket", o.ztunnel_socket,
                                         "--kubeconfig",     o.kubeconfig,
                                         "--node-name",      kNode,
                                         "--host-netns",     o.host_netns,
                                         "--health-port",    "-1",
                                         "--metrics-port",   "-1"};
  const auto log = (env_->run_dir() / "agent.log").string();
  agent_process_ = std::make_unique<testing::BackgroundProcess>(argv, log);
  ASSERT_TRUE(ZtunnelPeer::wait_for([&] { return fs::exists(env_->run_dir() / "agent.sock"); }));
  zt_->start(cluster_config());
  ASSERT_TRUE(zt_->wait_ready());
  const Pod a = add_pod("demo", "a");
  const Pod b = add_pod("demo", "b");
  const Pod d = add_pod("demo", "d");
  sync_mesh();
  ASSERT_TRUE(served(a) && served(b) && served(d));
  testbed::TcpServer app(netns_name(b), AF_INET, kAppPort, "app-b");

  EXPECT_EQ(agent_process_->stop(SIGKILL), 128 + SIGKILL);
  ASSERT_TRUE(ZtunnelPeer::wait_for([&] { return !zt_->ready(); }))
      << "ztunnel did not notice the agent went away";
  // Still serving: running proxies are not drained on disconnect.
  EXPECT_EQ(testbed::tcp_exchange(netns_name(a), b.ip4, kAppPort, "agent down").reply,
            "app-b:agent down");
  // d's sandbox goes away while no agent runs: the plugin leaves a tombstone.
  ASSERT_EQ(env_->cni("DEL", d).exit_code, 0);
  EXPECT_TRUE(served(d));

  agent_process_ = std::make_unique<testing::BackgroundProcess>(argv, log);
  ASSERT_TRUE(zt_->wait_ready()) << "no snapshot from the restarted agent";
  EXPECT_TRUE(served(a));
  EXPECT_TRUE(served(b));
  EXPECT_TRUE(ZtunnelPeer::wait_for([&] { return !served(d); }));
  EXPECT_EQ(testbed::tcp_exchange(netns_name(a), b.ip4, kAppPort, "agent back").reply,
            "app-b:agent back");
  // What losing the agent looks like from ztunnel's side, and nothing else.
  const auto problems = inpod_problems(
      *zt_, {"failed to read message: Connection reset by peer", "process stream ended",
             "failed to connect to the Istio CNI node agent"});
  EXPECT_TRUE(problems.empty()) << problems.front();
  EXPECT_GE(zt_->metric("workload_manager_proxies_stopped_total"), 1);
}

// 7d. 50 pods churned (created, labelled out and back in, deleted, recreated) against one
// ztunnel: it logs no ZDS protocol or netns error and ends holding exactly the live pods.
TEST_F(RealZtunnel, FiftyPodsChurnedWithoutProtocolOrNetnsErrors) {
  constexpr int kPods = 50;
  env_->start_agent();
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  // istiod knows every pod that will exist (their IPs are fixed up front): one ztunnel config
  // for the whole run, so nothing restarts it while the churn goes on.
  std::vector<Pod> pods;
  for (int k = 0; k < kPods; ++k) {
    const std::string name = "w" + std::to_string(k);
    const auto net = node_->add_pod(name);
    pods.push_back({"demo", name, "uid-" + name, net.path, net.ip4, "", "sandbox-" + name});
  }
  peers::LocalConfig config;
  for (const auto& p : pods) {
    peers::LocalWorkload w;
    w.uid = "Kubernetes//Pod/demo/" + p.name;
    w.name = p.name;
    w.namespace_ = "demo";
    w.service_account = p.name + "-sa";
    w.ips = {p.ip4};
    w.hbone = true;
    w.node = kNode;
    config.workloads.push_back(w);
  }
  zt_->start(config);
  ASSERT_TRUE(zt_->wait_ready());

  for (const auto& p : pods) {
    env_->api().put(e2e::pod_object(p));
    ASSERT_EQ(env_->cni("ADD", p).exit_code, 0) << p.name;
    mark_running(p);
  }
  ASSERT_TRUE(ZtunnelPeer::wait_for([&] { return zt_->proxies_up().size() == kPods; }, 20s));
  // Every fifth pod opts out and back in; every third is deleted; every sixth comes back with a
  // new sandbox (same netns, as a restarted sandbox would have a new one: a new container id).
  for (int k = 0; k < kPods; k += 5) {
    ASSERT_EQ(
        env_->kubectl({"label", "pod", "-n", "demo", pods[k].name, "istio.io/dataplane-mode=none"})
            .exit_code,
        0);
  }
  ASSERT_TRUE(ZtunnelPeer::wait_for([&] { return zt_->proxies_up().size() == kPods - 10; }, 20s));
  for (int k = 0; k < kPods; k += 5) {
    ASSERT_EQ(
        env_->kubectl({"label", "pod", "-n", "demo", pods[k].name, "istio.io/dataplane-mode-"})
            .exit_code,
        0);
  }
  ASSERT_TRUE(ZtunnelPeer::wait_for([&] { return zt_->proxies_up().size() == kPods; }, 20s));
  std::set<std::string> live;
  for (int k = 0; k < kPods; ++k) {
    auto& p = pods[k];
    if (k % 3 == 0) {
      ASSERT_EQ(env_->cni("DEL", p).exit_code, 0);
      env_->api().remove_object("Pod", p.ns, p.name);
      if (k % 6 == 0) {
        p.container = "sandbox2-" + p.name;
        p.uid = "uid2-" + p.name;
        env_->api().put(e2e::pod_object(p));
        ASSERT_EQ(env_->cni("ADD", p).exit_code, 0) << p.name;
        mark_running(p);
        live.insert(p.uid);
      }
    } else {
      live.insert(p.uid);
    }
  }
  ASSERT_TRUE(ZtunnelPeer::wait_for(
      [&] {
        const auto up = zt_->proxies_up();
        return std::set<std::string>(up.begin(), up.end()) == live;
      },
      20s));
  EXPECT_TRUE(zt_->running());
  const auto problems = inpod_problems(*zt_);
  EXPECT_TRUE(problems.empty()) << problems.size() << " problems, first: " << problems.front();
  for (const auto& p : pods) (void)env_->cni("DEL", p);
}

}  // namespace
}  // namespace ambient
