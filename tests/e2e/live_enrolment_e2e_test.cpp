// Label changes on running pods, as the user types them (kubectl 1.32 against the API stand-in):
// the agent's watch enrols and unenrols without restarts; drift and reboot races are repaired.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/pod_table.h"
#include "agent/reconciler.h"
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
  return testing::wait_until(condition, timeout, 10ms);
}

// CPU seconds this process (the in-process agent and the stand-ins) has used so far.
double process_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

class LiveEnrolment : public ::testing::Test {
 protected:
  void SetUp() override {
    testbed::sweep_leftover_namespaces();
    topo_ = std::make_unique<testbed::Topology>();
    env_ =
        std::make_unique<e2e::Env>(::testing::UnitTest::GetInstance()->current_test_info()->name(),
                                   testbed::Topology::path(topo_->host()));
    // P is a demo pod with a real network, for traffic checks.
    web_ = {"demo",       "web", "uid-web", testbed::Topology::path(topo_->pod()),
            "10.199.1.2", "",    "cweb"};
    auto& api = env_->api();
    api.put(e2e::ns_object("demo"));
    api.put(e2e::ns_object("legacy"));
    api.put(e2e::ns_object("kube-system"));
    api.put(e2e::pod_object(web_, json::object(), /*running=*/true));
  }
  void TearDown() override {
    if (HasFailure()) env_->keep_run_dir();
    env_.reset();
    for (const auto& n : extra_) testbed::sh("ip netns del " + n);
    topo_.reset();
  }

  // A running pod with its own (bare) netns, ADDed through the plugin as the runtime would.
  Pod make_pod(const std::string& ns, const std::string& name, json labels = json::object(),
               bool add = true) {
    const std::string netns_name = topo_->host() + "-" + name;
    testbed::must("ip netns add " + netns_name);
    testbed::must("ip -n " + netns_name + " link set lo up");
    extra_.push_back(netns_name);
    const int n = static_cast<int>(extra_.size());
    Pod p{ns,
          name,
          "uid-" + name,
          testbed::Topology::path(netns_name),
          "10.198." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 1),
          "",
          "c-" + name};
    // The pod's IP on an interface of its own netns, as its sandbox would have it: the agent
    // takes a netns it found itself only when it holds one of the pod's IPs.
    testbed::must("ip -n " + netns_name + " link add eth0 type veth peer name eth0p");
    testbed::must("ip -n " + netns_name + " addr add " + p.ip4 + "/32 dev eth0");
    testbed::must("ip -n " + netns_name + " link set eth0 up");
    env_->api().put(e2e::pod_object(p, std::move(labels), /*running=*/true));
    if (add) {
      const auto x = env_->cni("ADD", p);
      EXPECT_EQ(x.exit_code, 0) << name << x.out << x.err;
    }
    return p;
  }

  // The usual start: namespace demo labelled ambient, the agent running and ready.
  bool start_agent_with_demo_ambient() {
    env_->api().put(e2e::ns_object("demo", {{"istio.io/dataplane-mode", "ambient"}}));
    env_->start_agent();
    return env_->agent().wait_ready(20s);
  }

  bool enrolled(const Pod& p) {
    return env_->ztunnel().pods().contains(p.uid) && env_->annotation(p) == "enabled" &&
           e2e::Env::rules(p) == netns::RedirectStatus::Current;
  }
  bool clean(const Pod& p) {
    return !env_->ztunnel().pods().contains(p.uid) && env_->annotation(p).empty() &&
           e2e::Env::rules(p) == netns::RedirectStatus::Absent;
  }
  void kubectl(const std::vector<std::string>& args) {
    const auto x = env_->kubectl(args);
    ASSERT_EQ(x.exit_code, 0) << x.out << x.err;
  }
  std::size_t adds_for(const Pod& p) {
    std::size_t n = 0;
    for (const auto& r : env_->ztunnel().requests()) n += r.rfind("add " + p.uid + " ", 0) == 0;
    return n;
  }

  std::unique_ptr<testbed::Topology> topo_;
  std::unique_ptr<e2e::Env> env_;
  std::vector<std::string> extra_;
  Pod web_;
};

TEST_F(LiveEnrolment, LabelNamespaceEnrolsHundredRunningPodsAndRemovingItUnenrolsThem) {
  ASSERT_EQ(env_->cni("ADD", web_).exit_code, 0);
  std::vector<Pod> pods = {web_};
  for (int i = 0; i < 99; ++i) pods.push_back(make_pod("demo", "p" + std::to_string(i)));
  env_->start_agent();
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  EXPECT_EQ(env_->agent().pods().size(), 0u);  // nothing is labelled yet

  const auto t0 = std::chrono::steady_clock::now();
  kubectl({"label", "ns", "demo", "istio.io/dataplane-mode=ambient"});
  ASSERT_TRUE(eventually([&] { return env_->agent().pods().size() == 100; }, 30s))
      << env_->agent().pods().size() << " enrolled";
  const auto took = std::chrono::steady_clock::now() - t0;
  std::cout << "[ measure  ] kubectl label ns → 100 pods enrolled: "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
  for (const auto& p : pods) EXPECT_TRUE(eventually([&] { return enrolled(p); }, 5s)) << p.name;

  // Captured: web's outbound goes through its ztunnel proxy.
  testbed::TcpServer remote(topo_->remote(), AF_INET, 8080, "r");
  const auto r = testbed::tcp_exchange(topo_->pod(), testbed::Addr::kRemote4, 8080, "x");
  EXPECT_EQ(r.reply, "r:x") << r.error;
  ASSERT_FALSE(env_->ztunnel().connections(web_.uid).empty());
  EXPECT_EQ(env_->ztunnel().connections(web_.uid).back().direction, "outbound");

  // One pod opts out: it alone is unenrolled and uncaptured.
  kubectl({"label", "pod", "-n", "demo", "web", "istio.io/dataplane-mode=none"});
  ASSERT_TRUE(eventually([&] { return clean(web_); }));
  EXPECT_EQ(env_->agent().pods().size(), 99u);
  const auto r2 = testbed::tcp_exchange(topo_->pod(), testbed::Addr::kRemote4, 8080, "y");
  EXPECT_EQ(r2.reply, "r:y");
  EXPECT_EQ(remote.peers().back(), web_.ip4);  // straight from the pod, not via a proxy

  kubectl({"label", "ns", "demo", "istio.io/dataplane-mode-"});
  ASSERT_TRUE(eventually([&] { return env_->agent().pods().size() == 0; }, 30s));
  for (const auto& p : pods) EXPECT_TRUE(eventually([&] { return clean(p); }, 5s)) << p.name;
  // No duplicated enrolment: one add per pod outside snapshots (a ztunnel reconnect under load
  // legitimately re-sends every pod inside a snapshot).
  for (const auto& p : pods) {
    std::string seen;
    for (const auto& r : env_->ztunnel().requests()) {
      if (r.find(p.uid + " ") != std::string::npos) seen += r + "; ";
    }
    EXPECT_LE(adds_for(p), 1u) << p.name << ": " << seen;
  }
}

TEST_F(LiveEnrolment, PodLabelOutsideAmbientNamespacesAndExcludedNamespace) {
  const auto api_pod = make_pod("legacy", "api");
  const auto dns = make_pod("kube-system", "coredns", {{"istio.io/dataplane-mode", "ambient"}});
  env_->start_agent();
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  kubectl({"label", "pod", "-n", "legacy", "api", "istio.io/dataplane-mode=ambient"});
  ASSERT_TRUE(eventually([&] { return enrolled(api_pod); }));
  kubectl({"label", "ns", "kube-system", "istio.io/dataplane-mode=ambient"});
  std::this_thread::sleep_for(500ms);  // give a wrong enrolment every chance to happen
  ASSERT_TRUE(env_->agent().reconciler()->idle());
  EXPECT_TRUE(clean(dns));
  EXPECT_EQ(env_->agent().pods().size(), 1u);
}

TEST_F(LiveEnrolment, WatchDroppedOrExpiredMissesNothingAndDuplicatesNothing) {
  const auto a = make_pod("demo", "wa");
  const auto b = make_pod("demo", "wb");
  env_->start_agent();
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  auto& api = env_->api();

  api.drop_watches();  // the stream dies; changes made meanwhile must not be lost
  kubectl({"label", "ns", "demo", "istio.io/dataplane-mode=ambient"});
  ASSERT_TRUE(eventually([&] { return enrolled(a) && enrolled(b); }));

  api.compact_history();  // the next watch resumes from a compacted resourceVersion: 410
  api.drop_watches();
  kubectl({"label", "pod", "-n", "demo", "wa", "istio.io/dataplane-mode=none"});
  ASSERT_TRUE(eventually([&] { return clean(a); }));
  EXPECT_TRUE(enrolled(b));
  EXPECT_EQ(adds_for(a), 1u);
  EXPECT_EQ(adds_for(b), 1u);
  // A degraded mode: logged, counted.
  EXPECT_NE(env_->agent().metrics().render().find(
                R"(ambient_cni_degraded_total{what="api_watch_interrupted"})"),
            std::string::npos);
}

// A terminating pod's containers run for its whole grace period (preStop, draining): it leaves
// the mesh only when its sandbox's DEL comes, the object is gone, or its phase is final.
TEST_F(LiveEnrolment, TerminatingPodsStayEnrolledUntilTheirSandboxGoes) {
  ASSERT_TRUE(start_agent_with_demo_ambient());
  const auto a = make_pod("demo", "draining");
  const auto b = make_pod("demo", "finishing");
  ASSERT_TRUE(enrolled(a) && enrolled(b));
  for (const auto* p : {&a, &b}) {
    auto obj = *env_->api().get_object("Pod", p->ns, p->name);
    obj["metadata"]["deletionTimestamp"] = "2026-12-01T12:00:00Z";
    obj["metadata"]["deletionGracePeriodSeconds"] = 30;
    env_->api().put(obj);
  }
  // Given time to (wrongly) act on it, the agent must not.
  std::this_thread::sleep_for(1500ms);
  EXPECT_TRUE(enrolled(a)) << "unenrolled while its containers still run";
  EXPECT_TRUE(enrolled(b));
  // Its phase turns final: released. The other leaves with its sandbox's DEL.
  auto done = *env_->api().get_object("Pod", b.ns, b.name);
  done["status"]["phase"] = "Succeeded";
  env_->api().put(done);
  EXPECT_TRUE(eventually([&] { return !env_->ztunnel().pods().contains(b.uid); }));
  EXPECT_TRUE(enrolled(a));
  ASSERT_EQ(env_->cni("DEL", a).exit_code, 0);
  EXPECT_TRUE(eventually([&] { return !env_->ztunnel().pods().contains(a.uid); }));
}

TEST_F(LiveEnrolment, MalformedObjectsFromTheApiAreSkippedAndCounted) {
  const auto a = make_pod("demo", "good");
  env_->start_agent();
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  // Labels that are not a map: not a Pod this agent can read; the watch goes on.
  env_->api().put({{"apiVersion", "v1"},
                   {"kind", "Pod"},
                   {"metadata", {{"name", "bad"}, {"namespace", "demo"}, {"labels", "x=y"}}},
                   {"spec", {{"nodeName", "node-1"}}}});
  ASSERT_TRUE(eventually([&] {
    return env_->agent().metrics().render().find(
               R"(ambient_cni_degraded_total{what="malformed_api_object"})") != std::string::npos;
  }));
  // A running pod that should be enrolled but whose sandbox is nowhere to be found (no record,
  // no process): retried, counted, and it does not hold the others back.
  auto ghost = e2e::pod_object({"demo", "ghost", "uid-ghost", "", "10.199.9.9", "", ""}, {}, true);
  env_->api().put(ghost);
  kubectl({"label", "ns", "demo", "istio.io/dataplane-mode=ambient"});
  EXPECT_TRUE(eventually([&] { return enrolled(a); }));
  EXPECT_TRUE(eventually([&] {
    return env_->agent().metrics().render().find(
               R"(ambient_cni_degraded_total{what="netns_not_found"})") != std::string::npos;
  }));
  EXPECT_FALSE(env_->agent().pods().get("uid-ghost").has_value());
}

TEST_F(LiveEnrolment, DriftIsRepairedWithinOneInterval) {
  env_->api().put(e2e::ns_object("demo", {{"istio.io/dataplane-mode", "ambient"}}));
  auto o = env_->agent_options();
  o.drift_interval = 300ms;
  env_->start_agent(o);
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  const auto p = make_pod("demo", "drifty");  // enrolled at its ADD
  ASSERT_TRUE(enrolled(p));
  const std::string ns_name = fs::path(p.netns).filename();
  testbed::must("ip netns exec " + ns_name + " nft flush table inet istio-ambient-nat");
  EXPECT_EQ(e2e::Env::rules(p), netns::RedirectStatus::Drifted);
  EXPECT_TRUE(eventually([&] { return e2e::Env::rules(p) == netns::RedirectStatus::Current; }, 5s));
  // The host probe SNAT too (Istio never re-checked it, its issue 60607).
  testbed::must("ip netns exec " + topo_->host() + " nft flush table inet istio-ambient-nat");
  EXPECT_TRUE(eventually(
      [&] {
        return testbed::sh("ip netns exec " + topo_->host() +
                           " nft list chain inet istio-ambient-nat postrouting")
                   .out.find("snat") != std::string::npos;
      },
      5s));
  EXPECT_NE(
      env_->agent().metrics().render().find("ambient_cni_repairs_total{what=\"inpod_rules\"}"),
      std::string::npos);
}

// A "pause" process in the pod's netns and in a cgroup named by the pod UID, as the kubelet's
// runtime leaves it, with no run-dir record: the plugin was not installed when it started.
class PauseProcess {
 public:
  PauseProcess(const std::string& netns_name, const std::string& uid, const std::string& sandbox) {
    dir_ = "/sys/fs/cgroup/pids/ambient-e2e-" + std::to_string(::getpid()) + "/kubepods/pod" + uid +
           "/" + sandbox;
    fs::create_directories(dir_);
    proc_ = std::make_unique<testing::BackgroundProcess>(
        std::vector<std::string>{"/usr/bin/ip", "netns", "exec", netns_name, "/bin/sleep", "600"},
        "/dev/null");
    std::this_thread::sleep_for(50ms);  // ip exec()s sleep in place: same pid
    std::ofstream(dir_ + "/cgroup.procs") << proc_->pid();
  }
  ~PauseProcess() {
    proc_.reset();  // killed and reaped
    for (fs::path d = dir_; d.filename() != "pids"; d = d.parent_path()) ::rmdir(d.c_str());
  }

 private:
  std::string dir_;
  std::unique_ptr<testing::BackgroundProcess> proc_;
};

TEST_F(LiveEnrolment, PodsStartedWhileNoAgentRanAreEnrolledBeforeReady) {
  if (!fs::exists("/sys/fs/cgroup/pids/cgroup.procs"))
    GTEST_SKIP() << "no cgroup v1 pids hierarchy";
  env_->api().put(e2e::ns_object("demo", {{"istio.io/dataplane-mode", "ambient"}}));
  std::vector<Pod> pods;
  std::vector<std::unique_ptr<PauseProcess>> pauses;
  for (int i = 0; i < 3; ++i) {
    pods.push_back(make_pod("demo", "boot" + std::to_string(i), json::object(), /*add=*/false));
    pauses.push_back(std::make_unique<PauseProcess>(
        fs::path(pods.back().netns).filename(), pods.back().uid, "sandbox" + std::to_string(i)));
  }
  env_->start_agent();
  ASSERT_TRUE(env_->agent().wait_ready(20s));
  // Ready means: already enrolled, not "about to be".
  for (const auto& p : pods) EXPECT_TRUE(enrolled(p)) << p.name;
  const auto snap = env_->agent().pods().get(pods[0].uid);
  ASSERT_TRUE(snap.has_value());
  EXPECT_EQ(snap->pod().container_id, "sandbox0");  // the sandbox id, from the cgroup path
  // Its sandbox stops (the runtime kills its processes), then its DEL finds it by that id.
  pauses[0].reset();
  auto del = pods[0];
  del.container = "sandbox0";
  EXPECT_EQ(env_->cni("DEL", del, false, "").exit_code, 0);
  EXPECT_TRUE(eventually([&] { return !env_->ztunnel().pods().contains(pods[0].uid); }));
  pauses.clear();
}

TEST_F(LiveEnrolment, AnAnnotationAReleaseCouldNotRemoveIsRemovedLater) {
  // Found by the chaos soak: a DEL while the API answered 503 released the pod but left it
  // annotated "enabled" for good (istiod would keep sending it HBONE), and nothing retried.
  ASSERT_TRUE(start_agent_with_demo_ambient());
  const auto p = make_pod("demo", "restarting");
  ASSERT_TRUE(enrolled(p));
  env_->api().add_fault(testing::ApiFault{
      .path_prefix = "/api/v1/namespaces/demo/pods/restarting/status", .status = 503, .times = 40});
  ASSERT_EQ(env_->cni("DEL", p).exit_code, 0);  // the sandbox goes; the pod object stays
  EXPECT_FALSE(env_->ztunnel().pods().contains(p.uid));
  EXPECT_EQ(env_->annotation(p), "enabled");  // the patch could not be made…
  env_->api().clear_faults();
  EXPECT_TRUE(eventually([&] { return env_->annotation(p).empty(); }, 10s))  // …and is, later
      << env_->annotation(p);
  EXPECT_TRUE(eventually([&] {
    return env_->agent().metrics().render().find(
               R"(ambient_cni_repairs_total{what="stale_annotation"} 1)") != std::string::npos;
  }));
  EXPECT_TRUE(clean(p));
}

TEST_F(LiveEnrolment, TheAnnotationNeverLandsOnAPodThatReplacedOurs) {
  ASSERT_TRUE(start_agent_with_demo_ambient());
  const auto p = make_pod("demo", "db");
  ASSERT_TRUE(enrolled(p));
  // A StatefulSet replaces the pod under the same name (new uid, opted out), carrying an
  // annotation of its own ("pending", which no cleanup touches); the old sandbox's DEL comes
  // afterwards.
  auto replaced = *env_->api().get_object("Pod", "demo", "db");
  replaced["metadata"]["uid"] = "uid-db-2";
  replaced["metadata"]["labels"] = {{"istio.io/dataplane-mode", "none"}};
  replaced["metadata"]["annotations"] = {{"ambient.istio.io/redirection", "pending"}};
  env_->api().remove_object("Pod", "demo", "db");
  env_->api().put(replaced);
  ASSERT_EQ(env_->cni("DEL", p).exit_code, 0);
  EXPECT_TRUE(eventually([&] { return !env_->ztunnel().pods().contains(p.uid); }));
  // The release's patch named the old uid: refused for the new pod, whose annotation is not
  // ours to touch.
  std::this_thread::sleep_for(500ms);
  const auto now = *env_->api().get_object("Pod", "demo", "db");
  EXPECT_EQ(now["metadata"]["uid"], "uid-db-2");
  EXPECT_EQ(now["metadata"]["annotations"].value("ambient.istio.io/redirection", ""), "pending")
      << "the old pod's release touched the new pod";
  bool refused = false;
  for (const auto& r : env_->api().requests()) {
    if (r.method == "PATCH" && r.path == "/api/v1/namespaces/demo/pods/db/status" &&
        r.body.find("\"uid\":\"uid-db\"") != std::string::npos) {
      refused = true;
    }
  }
  EXPECT_TRUE(refused) << "the release's patch did not carry the old uid";
}

TEST_F(LiveEnrolment, AnEventDoesNotWaitBehindARetrysBackoff) {
  // The pod's labels change while the API refuses its fresh read: retried with a backoff that
  // grows to seconds. Then the pod is deleted: that event is acted on at once, not when the
  // backoff ends (the queue used to drop it as "already queued").
  ASSERT_TRUE(start_agent_with_demo_ambient());
  const auto p = make_pod("demo", "backoff");
  ASSERT_TRUE(enrolled(p));
  std::this_thread::sleep_for(1s);  // the reconciler has seen the ADD's events
  env_->api().add_fault(
      testing::ApiFault{.path_prefix = "/api/v1/namespaces/demo/pods/backoff", .status = 503});
  auto obj = *env_->api().get_object("Pod", "demo", "backoff");
  obj["metadata"]["labels"] = {{"istio.io/dataplane-mode", "none"}};
  env_->api().put(obj);
  const double cpu_before = process_cpu_seconds();
  std::this_thread::sleep_for(6500ms);  // retries at +0.2, 0.6, 1.4, 3.0, 6.2 s; next at 12.6 s
  // Waiting out a backoff costs nothing: the workers used to spin on a queue holding only a
  // future item (a whole core for as long as the backoff lasted).
  EXPECT_LT(process_cpu_seconds() - cpu_before, 1.5) << "the reconciler spun while waiting";
  EXPECT_TRUE(enrolled(p));  // it could not confirm the change: nothing done yet
  env_->api().clear_faults();
  env_->api().remove_object("Pod", "demo", "backoff");
  EXPECT_TRUE(eventually([&] { return !env_->ztunnel().pods().contains(p.uid); }, 2500ms))
      << "the deletion waited for the retry's backoff";
}

TEST_F(LiveEnrolment, APodWithoutASandboxYetCostsNoApiRead) {
  // Created in an ambient namespace, not yet started: nothing for the agent to do (the plugin's
  // ADD enrols it), so no fresh read of the pod and its namespace either — two per new pod on a
  // busy node, for nothing.
  ASSERT_TRUE(start_agent_with_demo_ambient());
  std::this_thread::sleep_for(500ms);
  env_->api().clear_requests();
  Pod p{"demo", "fresh", "uid-fresh", "", "10.198.9.9", "", "c-fresh"};
  env_->api().put(e2e::pod_object(p, json::object(), /*running=*/false));
  std::this_thread::sleep_for(1500ms);  // the reconciler has seen the pod's event
  for (const auto& r : env_->api().requests()) {
    EXPECT_FALSE(r.method == "GET" && r.path == "/api/v1/namespaces/demo/pods/fresh")
        << "the agent read " << r.path << "?" << r.query << " (" << r.user
        << ") for a pod without a sandbox";
  }
  EXPECT_TRUE(env_->ztunnel().pods().empty());
}

}  // namespace
}  // namespace ambient
