// Where users look (issue 15), on the real node: scripts/cluster.sh's single-node cluster (a real
// kube-apiserver with RBAC, kubelet, containerd), this build's image applied with kubectl apply -k
// (overlays/testbed), Istio's real ztunnel. Three pods of an ambient namespace:
//   - web, enrolled;
//   - tool, opted out (istio.io/dataplane-mode=none);
//   - broken, created while ztunnel is down: its sandbox's ADD fails (no ztunnel takes it), the
//     kubelet retries — the commonest real "should be in the mesh and is not".
// `ambient-cni-node explain` (reading the cluster as an admin would, the agent through the real
// API server's pods/proxy) must say which is which, the broken one first; `status` (kubectl exec
// in the agent's pod, and on the node) what the agent holds; `kubectl describe pod` shows the
// agent's Events, also for a label change. Outputs are printed as transcripts ("[ transcript ]").
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <iostream>

#include "tests/cluster/cluster_support.h"
#include "tests/support/wait.h"

namespace ambient::testing {
namespace {

const std::string kWorkloads = R"(apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    istio.io/dataplane-mode: ambient
    istio.io/use-waypoint: shop-waypoint
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: docker.io/ambient-test/app:0.1.0
      imagePullPolicy: Never
      command: ["sleep", "100000"]
---
apiVersion: v1
kind: Pod
metadata:
  name: tool
  namespace: shop
  labels:
    istio.io/dataplane-mode: none
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: tool
      image: docker.io/ambient-test/app:0.1.0
      imagePullPolicy: Never
      command: ["sleep", "100000"]
)";

const std::string kBroken = R"(apiVersion: v1
kind: Pod
metadata:
  name: broken
  namespace: shop
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: broken
      image: docker.io/ambient-test/app:0.1.0
      imagePullPolicy: Never
      command: ["sleep", "100000"]
)";

void transcript(const std::string& command, const Execution& x) {
  std::cout << "[ transcript ] $ " << command << "\n"
            << x.out << x.err << "[ transcript ] (exit " << x.exit_code << ")\n"
            << std::flush;
}

// ambient-cni-node explain as an admin runs it: the admin kubeconfig, from the node's network
// (where the API is).
Execution explain(std::vector<std::string> args) {
  args.insert(args.begin(),
              {"/usr/bin/nsenter", "--net=/run/netns/ambient-node", "--", AMBIENT_NODE_BIN,
               "explain", "--kubeconfig", (kState / "admin.kubeconfig").string()});
  return run(args, kEnv, "", 120s);
}

std::string events_of(const std::string& ns, const std::string& pod) {
  return cluster({"kubectl", "-n", ns, "get", "events", "--field-selector",
                  "involvedObject.name=" + pod, "-o",
                  "jsonpath={range .items[*]}{.reason}|{.type}|{.count}|{.message}{\"\\n\"}{end}"})
      .out;
}

class Explain : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    problem_ = bring_up_cluster();
    if (!problem_.empty()) return;
    // This build's binaries as the manifests' image (up imports build/bin's, if any).
    if (const auto problem = import_node_image("0.1.0"); !problem.empty()) {
      problem_ = problem;
      return;
    }
    problem_ = install_overlay();
    if (!problem_.empty()) return;
    ztunnel_ = start_ztunnel_mesh();
    settle_ztunnel();
    std::ofstream(kState / "explain-workloads.yaml") << kWorkloads;
    const auto workloads =
        cluster({"kubectl", "apply", "-f", (kState / "explain-workloads.yaml").string()});
    const auto ready = cluster({"kubectl", "-n", "shop", "wait", "--for=condition=Ready", "pod",
                                "--all", "--timeout=180s"},
                               200s);
    if (workloads.exit_code != 0 || ready.exit_code != 0) {
      problem_ = "the workloads did not start:\n" + workloads.err + ready.err +
                 cluster({"kubectl", "get", "pods", "-A", "-o", "wide"}).out;
    }
  }

  static void TearDownTestSuite() {
    if (ztunnel_) ztunnel_->stop(SIGTERM, 15s);
    ztunnel_.reset();
    if (::geteuid() == 0) {
      const auto down = cluster({"down"}, 300s);
      if (down.exit_code != 0) std::cerr << "scripts/cluster.sh down: " << down.err;
    }
  }

  void SetUp() override { ASSERT_TRUE(problem_.empty()) << problem_; }

  static inline std::string problem_;
  static inline std::unique_ptr<BackgroundProcess> ztunnel_;
};

TEST_F(Explain, EnrolledOptedOutAndBrokenPodsOnTheRealNode) {
  ASSERT_TRUE(enrolled("shop", "web")) << annotation("shop", "web") << " " << rules("shop", "web");
  ASSERT_TRUE(untouched("shop", "tool"));

  auto x = explain({"-n", "shop", "web"});
  transcript("ambient-cni-node explain -n shop web", x);
  EXPECT_EQ(x.exit_code, 0);
  EXPECT_TRUE(x.out.starts_with("shop/web: enrolled, as decided\n")) << x.out;
  EXPECT_NE(x.out.find("rule: namespace label ambient"), std::string::npos);
  EXPECT_NE(x.out.find("waypoint:    shop-waypoint (namespace label istio.io/use-waypoint)"),
            std::string::npos);
  // The agent, through the real API server's pods/proxy of its pod on the node.
  EXPECT_NE(x.out.find("pods/proxy istio-system/ambient-cni-node-"), std::string::npos) << x.out;
  EXPECT_NE(x.out.find(":8000 on node ambient-node: holds the pod (enrolled) since "),
            std::string::npos)
      << x.out;
  EXPECT_NE(x.out.find("ztunnel acked it"), std::string::npos) << x.out;
  EXPECT_NE(x.out.find("policy:     ConfigMap istio-system/ambient-cni-config"), std::string::npos);

  x = explain({"-n", "shop", "tool"});
  transcript("ambient-cni-node explain -n shop tool", x);
  EXPECT_EQ(x.exit_code, 0);
  EXPECT_TRUE(x.out.starts_with("shop/tool: untouched, as decided\n")) << x.out;
  EXPECT_NE(x.out.find("rule: pod label none"), std::string::npos);

  // ztunnel goes down (its DaemonSet pod crashing, say); a new ambient pod is created meanwhile.
  ztunnel_->stop(SIGTERM, 15s);
  ztunnel_.reset();
  ASSERT_TRUE(wait_until(
      [] {
        const auto s = cluster({"node", AMBIENT_NODE_BIN, "status", "--run-dir",
                                "/var/run/ambient-cni", "-o", "json"});
        return s.exit_code == 0 && json::parse(s.out)["ztunnelConnections"] == 0;
      },
      30s, 500ms));
  transcript("ps (ztunnel after stop)", run({"/bin/sh", "-c",
                                             "ps -eo pid,ppid,etime,args | grep "
                                             "[z]tunnel"},
                                            kEnv, "", 10s));
  std::ofstream(kState / "explain-broken.yaml") << kBroken;
  kubectl({"apply", "-f", (kState / "explain-broken.yaml").string()});
  ASSERT_TRUE(wait_until([] { return annotation("shop", "broken") == "pending"; }, 90s, 1s))
      << annotation("shop", "broken");
  ASSERT_TRUE(wait_until(
      [] {
        return events_of("shop", "broken").find("AmbientEnrolmentPending") != std::string::npos;
      },
      60s, 1s))
      << events_of("shop", "broken");

  x = explain({"-n", "shop", "broken"});
  transcript("ambient-cni-node explain -n shop broken", x);
  EXPECT_EQ(x.exit_code, 1);
  EXPECT_TRUE(
      x.out.starts_with("MISMATCH shop/broken: should be enrolled (namespace label "
                        "ambient) but its enrolment is pending: ztunnel did not take pod "
                        "shop/broken: no ztunnel is connected"))
      << x.out;

  x = explain({"-n", "shop"});
  transcript("ambient-cni-node explain -n shop", x);
  EXPECT_EQ(x.exit_code, 1);
  EXPECT_TRUE(x.out.starts_with("MISMATCH shop/")) << x.out;
  EXPECT_NE(x.out.find("MISMATCH shop/broken: "), std::string::npos);
  // web is held but nobody acks it while ztunnel is down: said too.
  EXPECT_NE(x.out.find("MISMATCH shop/web: should be enrolled (namespace label ambient) and is "
                       "held by the node agent, but no live ztunnel has acked it"),
            std::string::npos)
      << x.out;
  x = explain({"-n", "shop", "-o", "json"});
  ASSERT_EQ(x.exit_code, 1) << x.err;
  EXPECT_EQ(json::parse(x.out)["mismatches"], 2);

  // What the agent holds: kubectl exec in its pod (the image has the command), and on the node.
  x = cluster({"kubectl", "-n", "istio-system", "exec", "ds/ambient-cni-node", "--",
               "ambient-cni-node", "status"});
  transcript("kubectl -n istio-system exec ds/ambient-cni-node -- ambient-cni-node status", x);
  EXPECT_EQ(x.exit_code, 0) << x.err;
  EXPECT_TRUE(x.out.starts_with("node agent on node ambient-node: ready; 0 ztunnel connections;"))
      << x.out;
  EXPECT_NE(x.out.find("no ztunnel is connected"), std::string::npos) << x.out;
  x = cluster(
      {"node", AMBIENT_NODE_BIN, "status", "--run-dir", "/var/run/ambient-cni", "-o", "json"});
  ASSERT_EQ(x.exit_code, 0) << x.err;
  const auto view = json::parse(x.out);
  EXPECT_EQ(view["node"], "ambient-node");
  bool web_held = false, broken_failed = false;
  for (const auto& p : view["pods"]) {
    if (p["name"] == "web") web_held = p["held"] == true && p["ztunnelAcked"] == false;
    // Not held and waiting, or held by the kubelet's next attempt, which waits for a ztunnel
    // ("enrolling") — never "enrolled".
    if (p["name"] == "broken") {
      broken_failed = (p["state"] == "waiting" || p["state"] == "enrolling") &&
                      p["ztunnelAcked"] == false && p.value("lastError", "") != "";
    }
  }
  EXPECT_TRUE(web_held) << view.dump(2);
  EXPECT_TRUE(broken_failed) << view.dump(2);
  transcript("agent log (ztunnel, broken)",
             run({"/bin/sh", "-c",
                  "'" + (kRepo / "scripts/cluster.sh").string() +
                      "' kubectl -n istio-system logs ds/ambient-cni-node --tail=400 | grep -i "
                      "'ztunnel\\|broken'"},
                 kEnv, "", 30s));

  x = cluster({"kubectl", "-n", "shop", "describe", "pod", "broken"});
  transcript("kubectl -n shop describe pod broken", x);
  EXPECT_NE(x.out.find("AmbientEnrolmentPending"), std::string::npos) << x.out;
  EXPECT_NE(x.out.find("ambient-cni-node"), std::string::npos);

  // ztunnel back: the kubelet's retry enrols the pod, and the pod says it is resolved.
  ztunnel_ = start_ztunnel_mesh();
  settle_ztunnel();
  ASSERT_TRUE(wait_until([] { return enrolled("shop", "broken"); }, 180s, 1s))
      << annotation("shop", "broken") << " " << rules("shop", "broken");
  ASSERT_TRUE(wait_until(
      [] { return events_of("shop", "broken").find("AmbientEnrolled") != std::string::npos; }, 60s,
      1s));
  ASSERT_TRUE(wait_until([] { return explain({"-n", "shop"}).exit_code == 0; }, 60s, 2s));
  x = explain({"-n", "shop"});
  transcript("ambient-cni-node explain -n shop", x);
  x = cluster({"kubectl", "-n", "shop", "describe", "pod", "broken"});
  transcript("kubectl -n shop describe pod broken", x);
  EXPECT_NE(x.out.find("the earlier problem is resolved"), std::string::npos) << x.out;
}

TEST_F(Explain, ALabelChangeIsAnEventOnThePod) {
  kubectl({"-n", "shop", "label", "pod", "web", "istio.io/dataplane-mode=none", "--overwrite"});
  ASSERT_TRUE(wait_until([] { return untouched("shop", "web"); }, 60s, 500ms));
  ASSERT_TRUE(wait_until(
      [] { return events_of("shop", "web").find("AmbientUnenrolled|Normal") != std::string::npos; },
      60s, 1s))
      << events_of("shop", "web");
  kubectl({"-n", "shop", "label", "pod", "web", "istio.io/dataplane-mode-"});
  ASSERT_TRUE(wait_until([] { return enrolled("shop", "web"); }, 60s, 500ms));
  ASSERT_TRUE(wait_until(
      [] { return events_of("shop", "web").find("AmbientEnrolled|Normal") != std::string::npos; },
      60s, 1s));
  const auto x = cluster({"kubectl", "-n", "shop", "describe", "pod", "web"});
  transcript("kubectl -n shop describe pod web", x);
  EXPECT_NE(x.out.find("no longer selected for ambient (pod label none)"), std::string::npos)
      << x.out;
  EXPECT_NE(x.out.find("enrolled by the node agent (namespace label ambient) while running"),
            std::string::npos)
      << x.out;
  // The agent posts with its own identity: nothing was refused or dropped.
  const auto metrics = cluster({"node", "curl", "-s", "-m", "2", "http://127.0.0.1:15014/metrics"});
  EXPECT_EQ(metrics.out.find("event_post_failed"), std::string::npos) << metrics.out;
  EXPECT_NE(
      metrics.out.find(R"(ambient_cni_events_total{reason="AmbientUnenrolled",result="posted"})"),
      std::string::npos)
      << metrics.out;
}

}  // namespace
}  // namespace ambient::testing
