// Pods created the way the kubelet creates them: CRI RunPodSandbox / StopPodSandbox /
// RemovePodSandbox on a private containerd, whose CNI chain is bridge + host-local + ambient-cni,
// with the API stand-in, the real agent and the ztunnel stand-in around it.
#include <gtest/gtest.h>

#include <sys/socket.h>

#include "agent/agent.h"
#include "agent/pod_table.h"
#include "tests/runtime/containerd_harness.h"
#include "tests/runtime/mesh.h"

namespace ambient::runtime_test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kAmbientLabel = "istio.io/dataplane-mode";

class Containerd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!skip_reason().empty()) return;
    try {
      mesh_ = std::make_unique<Mesh>(owned_dir(owned_tag("mesh")));
      mesh_->start();
      ContainerdOptions o;
      o.plugin_binary = AMBIENT_PLUGIN_BIN;
      o.plugin_entry = mesh_->plugin_entry();
      containerd_ = std::make_unique<PrivateContainerd>(o);
      containerd_->start();
    } catch (const std::exception& e) {
      suite_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    containerd_.reset();  // removes every sandbox first: the agent still answers the DELs
    mesh_.reset();
    release_owned(owned_tag("mesh"));
  }

  void SetUp() override {
    if (!skip_reason().empty()) GTEST_SKIP() << skip_reason();
    ASSERT_TRUE(suite_error_.empty()) << suite_error_;
    mesh_->start_agent();  // an earlier test may have stopped it
  }
  void TearDown() override {
    for (const auto& id : sandboxes_) {
      try {
        cri().stop_pod_sandbox(id);
        cri().remove_pod_sandbox(id);
      } catch (const CriError&) {
      }
    }
    if (HasFailure() && containerd_) {
      std::fprintf(stderr, "--- containerd log (end) ---\n%s\n--- agent log (end) ---\n%s\n",
                   containerd_->log_tail().c_str(), mesh_->agent_log_tail().c_str());
    }
  }

  static Mesh& mesh() { return *mesh_; }
  static CriClient& cri() { return containerd_->cri(); }

  // A pod as the API knows it (same uid as its sandbox metadata).
  PodRef pod(const std::string& ns, const std::string& name,
             std::map<std::string, std::string> labels = {}) {
    PodRef p{ns, name, random_uid(), std::move(labels), {}};
    mesh().put_pod(p);
    return p;
  }
  // RunPodSandbox as the kubelet calls it; the sandbox is removed at the end of the test.
  std::string run(const PodRef& p) {
    auto spec = containerd_->sandbox(p.ns, p.name, p.uid);
    for (const auto& [k, v] : p.labels) spec.labels[k] = v;
    spec.annotations = p.annotations;
    const auto id = cri().run_pod_sandbox(spec);
    sandboxes_.push_back(id);
    return id;
  }
  // The kubelet's status update once the sandbox runs (podIP). Until then the agent leaves the
  // pod to the plugin, so whatever is enrolled before it was enrolled by the plugin's ADD.
  void report_running(const PodRef& p, const SandboxStatus& s) { mesh().set_pod_running(p, s.ip); }
  void stop_and_remove(const std::string& id) {
    cri().stop_pod_sandbox(id);
    cri().remove_pod_sandbox(id);
    std::erase(sandboxes_, id);
  }
  SandboxStatus status(const std::string& id) {
    auto s = cri().pod_sandbox_status(id);
    EXPECT_TRUE(s.ready) << id;
    EXPECT_FALSE(s.ip.empty()) << id;
    EXPECT_FALSE(s.netns.empty()) << id;
    return s;
  }
  bool in_ztunnel(const PodRef& p) { return mesh().ztunnel().pods().contains(p.uid); }
  std::vector<CniCall> calls(const std::string& id, const std::string& verb = "") {
    return cni_calls_for(containerd_->calls_log(), id, verb);
  }
  void expect_enrolled(const PodRef& p, const SandboxStatus& s) {
    EXPECT_TRUE(in_ztunnel(p)) << p.name;
    EXPECT_EQ(mesh().redirection(p), "enabled") << p.name;
    EXPECT_TRUE(mesh().enrolled_record(p.uid)) << p.name;
    EXPECT_TRUE(has_ambient_tables(s.netns)) << p.name;
  }
  void expect_untouched(const PodRef& p, const SandboxStatus& s) {
    EXPECT_FALSE(in_ztunnel(p)) << p.name;
    EXPECT_EQ(mesh().redirection(p), "") << p.name;
    EXPECT_FALSE(mesh().enrolled_record(p.uid)) << p.name;
    EXPECT_EQ(nft_tables(s.netns), std::vector<std::string>{}) << p.name;
  }

  static std::unique_ptr<Mesh> mesh_;
  static std::unique_ptr<PrivateContainerd> containerd_;
  static std::string suite_error_;
  std::vector<std::string> sandboxes_;
};

std::unique_ptr<Mesh> Containerd::mesh_;
std::unique_ptr<PrivateContainerd> Containerd::containerd_;
std::string Containerd::suite_error_;

// (a) Ambient namespace: enrolled at RunPodSandbox, and its outbound traffic goes through the
// ztunnel stand-in's proxy inside the sandbox's netns.
TEST_F(Containerd, AmbientPodIsEnrolledAndItsTrafficCaptured) {
  mesh().put_namespace("shop", {{kAmbientLabel, "ambient"}});
  mesh().put_namespace("legacy");
  const auto web = pod("shop", "web");
  const auto db = pod("legacy", "db");
  const auto web_id = run(web);
  const auto db_id = run(db);
  const auto web_s = status(web_id);
  const auto db_s = status(db_id);

  expect_enrolled(web, web_s);
  expect_untouched(db, db_s);
  const auto reqs = mesh().ztunnel().requests();
  EXPECT_NE(std::find(reqs.begin(), reqs.end(), "add " + web.uid + " web shop web-sa fd=1"),
            reqs.end());
  // What containerd handed the plugin: the Kubernetes keys and the sandbox's netns.
  const auto adds = calls(web_id, "ADD");
  ASSERT_EQ(adds.size(), 1u);
  EXPECT_EQ(adds[0].rc, 0) << adds[0].out;
  EXPECT_EQ(adds[0].netns, web_s.netns);
  for (const auto& kv : {"K8S_POD_NAMESPACE=shop", "K8S_POD_NAME=web", "IgnoreUnknown=1"}) {
    EXPECT_NE(adds[0].args.find(kv), std::string::npos) << adds[0].args;
  }
  EXPECT_NE(adds[0].args.find("K8S_POD_UID=" + web.uid), std::string::npos) << adds[0].args;
  EXPECT_NE(adds[0].args.find("K8S_POD_INFRA_CONTAINER_ID=" + web_id), std::string::npos);
  // The plugin printed bridge's result back (the sandbox IP containerd reports comes from it).
  EXPECT_NE(adds[0].out.find(web_s.ip), std::string::npos) << adds[0].out;

  report_running(web, web_s);
  report_running(db, db_s);
  testbed::TcpServer app(db_s.netns, AF_INET, 8080, "db");
  const auto r = testbed::tcp_exchange(web_s.netns, db_s.ip, 8080, "hello");
  ASSERT_TRUE(r.connected) << r.error;
  EXPECT_EQ(r.reply, "db:hello") << r.error;
  const auto out = mesh().ztunnel().connections(web.uid);
  ASSERT_FALSE(out.empty()) << "web's outbound connection did not reach ztunnel";
  EXPECT_EQ(out.back().direction, "outbound");
  EXPECT_EQ(out.back().original_dst, db_s.ip + ":8080");
  ASSERT_FALSE(app.peers().empty());
  EXPECT_EQ(app.peers().back(), web_s.ip);
}

// (b) Pod labelled none in an ambient namespace: untouched, and its traffic is not captured.
TEST_F(Containerd, PodLabelledNoneIsUntouched) {
  mesh().put_namespace("shop", {{kAmbientLabel, "ambient"}});
  mesh().put_namespace("legacy");
  const auto batch = pod("shop", "batch", {{kAmbientLabel, "none"}});
  const auto db = pod("legacy", "db2");
  const auto batch_id = run(batch);
  const auto db_id = run(db);
  const auto batch_s = status(batch_id);
  const auto db_s = status(db_id);

  expect_untouched(batch, batch_s);
  const auto adds = calls(batch_id, "ADD");
  ASSERT_EQ(adds.size(), 1u);
  EXPECT_EQ(adds[0].rc, 0) << adds[0].out;
  // Recorded (a later label change can enrol it without scanning /proc), but not enrolled.
  EXPECT_TRUE(mesh().pod_record(batch_id));

  testbed::TcpServer app(db_s.netns, AF_INET, 8080, "db2");
  const auto r = testbed::tcp_exchange(batch_s.netns, db_s.ip, 8080, "direct");
  EXPECT_EQ(r.reply, "db2:direct") << r.error;
  EXPECT_TRUE(mesh().ztunnel().connections(batch.uid).empty());
  ASSERT_FALSE(app.peers().empty());
  EXPECT_EQ(app.peers().back(), batch_s.ip);
}

// (c) Excluded namespace: untouched without a single API request naming it, even when that
// namespace is labelled ambient.
TEST_F(Containerd, ExcludedNamespaceIsUntouchedWithoutApiCall) {
  mesh().put_namespace("kube-system", {{kAmbientLabel, "ambient"}});
  const auto dns = pod("kube-system", "coredns");
  mesh().api().clear_requests();
  const auto id = run(dns);
  const auto s = status(id);

  EXPECT_TRUE(mesh().requests_naming("kube-system").empty())
      << mesh().requests_naming("kube-system").front().path;
  expect_untouched(dns, s);
  EXPECT_FALSE(mesh().pod_record(id));
  const auto adds = calls(id, "ADD");
  ASSERT_EQ(adds.size(), 1u);
  EXPECT_EQ(adds[0].rc, 0) << adds[0].out;

  // The same request log does see the lookups of a namespace that is not excluded.
  mesh().put_namespace("shop", {{kAmbientLabel, "ambient"}});
  run(pod("shop", "checkout"));
  EXPECT_FALSE(mesh().requests_naming("shop").empty());
}

// (d) StopPodSandbox (twice, as the kubelet may) + RemovePodSandbox: every DEL containerd sends
// succeeds and nothing of the pod is left in the agent, its run dir or ztunnel.
TEST_F(Containerd, StopAndRemoveReleaseEverything) {
  mesh().put_namespace("shop", {{kAmbientLabel, "ambient"}});
  const auto cart = pod("shop", "cart");
  const auto id = run(cart);
  expect_enrolled(cart, status(id));

  cri().stop_pod_sandbox(id);
  const auto after_stop = calls(id, "DEL");
  EXPECT_FALSE(after_stop.empty()) << "StopPodSandbox sent no DEL";
  EXPECT_FALSE(in_ztunnel(cart));
  cri().stop_pod_sandbox(id);  // the kubelet may stop a sandbox more than once
  cri().remove_pod_sandbox(id);
  std::erase(sandboxes_, id);

  const auto dels = calls(id, "DEL");
  // containerd 1.6: one per Stop and one at Remove; the later ones without a netns (it is gone).
  EXPECT_GE(dels.size(), 3u);
  EXPECT_TRUE(std::any_of(dels.begin(), dels.end(), [](const auto& d) { return d.netns.empty(); }));
  std::printf("containerd sent %zu DELs for Stop, Stop, Remove\n", dels.size());
  for (const auto& d : dels) {
    EXPECT_EQ(d.rc, 0) << d.out;
    std::printf("  DEL netns=\"%s\"\n", d.netns.c_str());
  }
  EXPECT_FALSE(in_ztunnel(cart));
  const auto reqs = mesh().ztunnel().requests();
  EXPECT_NE(std::find(reqs.begin(), reqs.end(), "del " + cart.uid), reqs.end());
  EXPECT_FALSE(mesh().enrolled_record(cart.uid));
  EXPECT_FALSE(mesh().pod_record(id));
  EXPECT_FALSE(mesh().agent().pods().get(cart.uid).has_value());
  EXPECT_EQ(mesh().redirection(cart), "");
  EXPECT_TRUE(cri().list_pod_sandboxes().empty());
}

// (e) Agent down: RunPodSandbox fails with the plugin's error 11 (what the kubelet reports as a
// FailedCreatePodSandBox event); the kubelet's retry succeeds once the agent is back.
TEST_F(Containerd, AgentDownFailsSandboxUntilTheAgentReturns) {
  mesh().put_namespace("shop", {{kAmbientLabel, "ambient"}});
  const auto pay = pod("shop", "pay");
  mesh().stop_agent();

  std::string error;
  try {
    run(pay);
  } catch (const CriError& e) {
    error = e.what();
  }
  ASSERT_FALSE(error.empty()) << "RunPodSandbox succeeded without the agent";
  std::printf("CRI error: %s\n", error.c_str());
  EXPECT_NE(error.find("node agent unavailable"), std::string::npos) << error;
  const auto all = read_cni_calls(containerd_->calls_log());
  std::vector<CniCall> failed;
  for (const auto& c : all) {
    if (c.verb == "ADD" && c.rc != 0 &&
        c.args.find("K8S_POD_UID=" + pay.uid) != std::string::npos) {
      failed.push_back(c);
    }
  }
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_NE(failed[0].out.find("\"code\":11"), std::string::npos) << failed[0].out;
  // containerd's cleanup DEL after the failed ADD succeeded too.
  const auto dels = calls(failed[0].container_id, "DEL");
  ASSERT_FALSE(dels.empty());
  for (const auto& d : dels) EXPECT_EQ(d.rc, 0) << d.out;
  EXPECT_FALSE(in_ztunnel(pay));
  EXPECT_FALSE(mesh().pod_record(failed[0].container_id));
  EXPECT_TRUE(cri().list_pod_sandboxes().empty());

  mesh().start_agent();
  const auto id = run(pay);  // the kubelet's next sync: same pod, same attempt
  expect_enrolled(pay, status(id));
}

// (f) kubectl label ns on a namespace with running sandboxes enrols them (the agent's watch),
// and removing the label releases them.
TEST_F(Containerd, KubectlLabelNamespaceEnrolsRunningSandboxes) {
  mesh().put_namespace("late");
  const auto a = pod("late", "a");
  const auto b = pod("late", "b");
  const auto a_id = run(a);
  const auto b_id = run(b);
  const auto a_s = status(a_id);
  const auto b_s = status(b_id);
  report_running(a, a_s);
  report_running(b, b_s);
  expect_untouched(a, a_s);
  expect_untouched(b, b_s);
  ASSERT_TRUE(wait_until([] { return mesh().agent_watches(); }, 3s))
      << "the node agent is not watching pods and namespaces";

  const auto labelled = mesh().kubectl({"label", "ns", "late", "istio.io/dataplane-mode=ambient"});
  ASSERT_EQ(labelled.exit_code, 0) << labelled.out;
  ASSERT_TRUE(wait_until([&] { return in_ztunnel(a) && in_ztunnel(b); }, 15s))
      << "running sandboxes were not enrolled after kubectl label ns";
  ASSERT_TRUE(wait_until(
      [&] { return mesh().redirection(a) == "enabled" && mesh().redirection(b) == "enabled"; },
      5s));
  expect_enrolled(a, a_s);
  expect_enrolled(b, b_s);

  testbed::TcpServer app(b_s.netns, AF_INET, 9090, "b");
  const auto r = testbed::tcp_exchange(a_s.netns, b_s.ip, 9090, "after label");
  EXPECT_EQ(r.reply, "b:after label") << r.error;
  const auto out = mesh().ztunnel().connections(a.uid);
  const auto in = mesh().ztunnel().connections(b.uid);
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back().direction, "outbound");
  ASSERT_FALSE(in.empty());
  EXPECT_EQ(in.back().direction, "inbound");
  ASSERT_FALSE(app.peers().empty());
  EXPECT_EQ(app.peers().back(), a_s.ip);  // transparent: b's app sees a's own address

  const auto removed = mesh().kubectl({"label", "ns", "late", "istio.io/dataplane-mode-"});
  ASSERT_EQ(removed.exit_code, 0) << removed.out;
  ASSERT_TRUE(wait_until([&] { return !in_ztunnel(a) && !in_ztunnel(b); }, 15s))
      << "sandboxes stayed enrolled after the label was removed";
  ASSERT_TRUE(wait_until(
      [&] { return mesh().redirection(a).empty() && mesh().redirection(b).empty(); }, 5s));
  expect_untouched(a, a_s);
  expect_untouched(b, b_s);
}

}  // namespace
}  // namespace ambient::runtime_test
