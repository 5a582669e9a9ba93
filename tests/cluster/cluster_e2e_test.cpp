// A real Kubernetes node (issue 13): scripts/cluster.sh's single-node cluster — kube-apiserver
// with Node,RBAC and service-account tokens, controller manager, scheduler, kubelet, Debian's
// containerd, bridge + host-local as the primary CNI — our image from scripts/images.sh, the
// DaemonSet applied with `kubectl apply -k install/manifests/overlays/testbed`, and Istio's real
// ztunnel on the node (ztunnel-mesh plays istiod: its local config follows the API's pods).
//
// One cluster for the whole suite (bringing it up costs ~15 s, the DaemonSet and pods ~20 s
// more); the scenarios run in the order written and each leaves the workloads as it found them.
// Rules inside a pod are read from the pod's own netns (/proc/<pid of its container>/ns/net, the
// pid from containerd) with `ambient-cni-node redirect inspect`; traffic is busybox nc between
// pods, and ztunnel's access log says how it went.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/cluster/cluster_support.h"
#include "tests/support/files.h"
#include "tests/support/process.h"
#include "tests/support/wait.h"

namespace ambient::testing {
namespace {

class RealNode : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    problem_ = bring_up_cluster();
    if (!problem_.empty()) return;
    cni_conf_before_ = contents(kNodeCniConf);
    cni_bin_before_ = contents(kNodeCniBin);
    problem_ = install_overlay();
    if (!problem_.empty()) return;
    start_ztunnel();
    const auto workloads =
        cluster({"kubectl", "apply", "-f", (kRepo / "tests/cluster/workloads.yaml").string()});
    const auto ready = cluster(
        {"kubectl", "wait", "--for=condition=Ready", "pod", "--all", "-A", "--timeout=180s"}, 200s);
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

  static void start_ztunnel() {
    ztunnel_ = start_ztunnel_mesh();
    settle();
  }

  static void settle() { settle_ztunnel(); }

  void SetUp() override { ASSERT_TRUE(problem_.empty()) << problem_; }

  void label(const std::string& kind, const std::string& ns, const std::string& name,
             const std::string& value) {
    const std::string arg =
        value.empty() ? "istio.io/dataplane-mode-" : "istio.io/dataplane-mode=" + value;
    if (kind == "ns") {
      kubectl({"label", "ns", name, arg, "--overwrite"});
    } else {
      kubectl({"-n", ns, "label", "pod", name, arg, "--overwrite"});
    }
  }

  static inline std::string problem_;
  static inline std::map<std::string, std::string> cni_conf_before_, cni_bin_before_;
  static inline std::unique_ptr<BackgroundProcess> ztunnel_;
};

// Scenario 1: pods created with kubectl in an ambient namespace, an unlabelled one and an
// excluded one, enrolled or untouched by the precedence rules.
TEST_F(RealNode, PodsAreEnrolledOrUntouchedByThePrecedenceRules) {
  EXPECT_TRUE(enrolled("demo", "web")) << annotation("demo", "web") << " " << rules("demo", "web");
  EXPECT_TRUE(enrolled("demo", "client"));
  EXPECT_TRUE(untouched("legacy", "web")) << annotation("legacy", "web") << rules("legacy", "web");
  EXPECT_TRUE(untouched("legacy", "client"));
  // kube-system is excluded: its pod's own ambient label is not looked at.
  EXPECT_TRUE(untouched("kube-system", "tool")) << rules("kube-system", "tool");
  // The plugin runs last in the node's conflist, as the installer wrote it.
  const auto conflist = json::parse(read_file(kNodeCniConf / "10-bridge.conflist"));
  ASSERT_FALSE(conflist["plugins"].empty());
  EXPECT_EQ(conflist["plugins"].back()["type"], "ambient-cni");
  // The kubelet started our container with exactly the manifest's securityContext.
  const auto ds_pod =
      json::parse(kubectl({"-n", "istio-system", "get", "pod", "-l",
                           "app.kubernetes.io/name=ambient-cni-node", "-o", "json"}))["items"][0];
  const auto& sc = ds_pod["spec"]["containers"][0]["securityContext"];
  EXPECT_EQ(sc["privileged"], false);
  EXPECT_EQ(sc["capabilities"]["add"],
            json({"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE", "DAC_OVERRIDE"}));
  EXPECT_EQ(ds_pod["spec"]["serviceAccountName"], "ambient-cni-node");
}

TEST_F(RealNode, MeshTrafficGoesThroughZtunnelAsHbone) {
  settle();
  const auto web = pod_ip("demo", "web");
  const auto legacy_web = pod_ip("legacy", "web");
  const auto from = ztunnel_log_size();
  EXPECT_EQ(http_from("demo", "client", web), "web-demo");
  EXPECT_EQ(http_from("legacy", "client", web), "web-demo");  // outside → mesh: plaintext in
  EXPECT_EQ(http_from("legacy", "client", legacy_web), "web-legacy");
  bool hbone = false, plaintext_in = false, legacy_seen = false;
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& e : ztunnel_access(from)) {
          const auto src_ns = e.value("src.namespace", "");
          if (e.value("dst.hbone_addr", "") == web + ":8080" && src_ns == "demo" &&
              e.value("src.identity", "") == "spiffe://cluster.local/ns/demo/sa/default" &&
              e.value("dst.identity", "") == "spiffe://cluster.local/ns/demo/sa/default") {
            hbone = true;
          }
          if (src_ns == "legacy" && e.value("dst.addr", "") == web + ":8080" &&
              e.value("direction", "") == "inbound" && !e.contains("src.identity")) {
            plaintext_in = true;
          }
          if (e.value("dst.addr", "").starts_with(legacy_web + ":")) legacy_seen = true;
        }
        return hbone && plaintext_in;
      },
      20s, 200ms))
      << "HBONE demo→demo seen: " << hbone << ", plaintext legacy→demo seen: " << plaintext_in;
  EXPECT_FALSE(legacy_seen) << "traffic between untouched pods went through ztunnel";
}

// Scenario 2: the seed's four commands on running pods, no restarts.
TEST_F(RealNode, TheSeedsLabelCommandsMoveRunningPodsInAndOut) {
  const int before = restarts("legacy", "web") + restarts("demo", "web");
  label("ns", "", "legacy", "ambient");
  EXPECT_TRUE(wait_until([] { return enrolled("legacy", "web") && enrolled("legacy", "client"); },
                         30s, 300ms))
      << annotation("legacy", "web") << " " << rules("legacy", "web");
  label("ns", "", "legacy", "");
  EXPECT_TRUE(wait_until([] { return untouched("legacy", "web") && untouched("legacy", "client"); },
                         30s, 300ms))
      << annotation("legacy", "web") << " " << rules("legacy", "web");

  label("pod", "legacy", "web", "ambient");  // one pod opts in anywhere
  EXPECT_TRUE(wait_until([] { return enrolled("legacy", "web"); }, 30s, 300ms));
  EXPECT_TRUE(untouched("legacy", "client"));
  label("pod", "legacy", "web", "");
  EXPECT_TRUE(wait_until([] { return untouched("legacy", "web"); }, 30s, 300ms));

  label("pod", "demo", "web", "none");  // one pod opts out of an ambient namespace
  EXPECT_TRUE(wait_until([] { return untouched("demo", "web"); }, 30s, 300ms));
  EXPECT_TRUE(enrolled("demo", "client"));
  label("pod", "demo", "web", "");
  EXPECT_TRUE(wait_until([] { return enrolled("demo", "web"); }, 30s, 300ms));

  EXPECT_EQ(restarts("legacy", "web") + restarts("demo", "web"), before);
  settle();
  EXPECT_EQ(http_from("demo", "client", pod_ip("demo", "web")), "web-demo");
}

// Scenario 6: one verb removed from our ClusterRole. The agent says so, loudly: /readyz 503 (so
// the kubelet keeps its pod unready) and an error naming what the API refused.
TEST_F(RealNode, AVerbMissingFromTheClusterRoleIsReportedNotHidden) {
  kubectl({"patch", "clusterrole", "ambient-cni-node", "--type=json", "-p",
           R"([{"op":"replace","path":"/rules/0/verbs","value":["get","list"]}])"});
  kubectl({"-n", "istio-system", "delete", "pod", "-l", "app.kubernetes.io/name=ambient-cni-node",
           "--wait=true"},
          120s);
  // (the new agent pod's log: until its container has started and met the refusal; kubectl logs
  // of a pod still in ContainerCreating is an error, not an empty log)
  std::string readyz;
  Execution got;
  EXPECT_TRUE(wait_until(
      [&] {
        readyz = cluster({"node", "curl", "-s", "-m", "2", "http://127.0.0.1:8000/readyz"}).out;
        got = cluster({"kubectl", "-n", "istio-system", "logs", "ds/ambient-cni-node"});
        return readyz.find("the API refuses the node agent") != std::string::npos &&
               got.out.find("cannot watch resource \"pods\"") != std::string::npos;
      },
      60s, 500ms))
      << readyz << got.out << got.err;
  EXPECT_NE(readyz.find("cannot watch resource"), std::string::npos) << readyz;
  const auto& logs = got.out;
  EXPECT_NE(logs.find(" error "), std::string::npos) << got.err;
  EXPECT_NE(logs.find("cannot watch resource \"pods\""), std::string::npos) << logs << got.err;
  // The enrolled pods were never touched meanwhile (an upgrade-like restart).
  EXPECT_EQ(rules("demo", "web"), "current");
  // The ClusterRole back as the manifests have it: ready again, with no restart, once a watch
  // delivers (a namespace and a pod change here; on a live cluster pods change all the time).
  kubectl({"apply", "-k", kOverlay});
  EXPECT_TRUE(wait_until(
      [] {
        cluster({"kubectl", "label", "ns", "legacy",
                 "e2e.ambient-cni/poke=" + std::to_string(::time(nullptr)), "--overwrite"});
        cluster({"kubectl", "-n", "demo", "annotate", "pod", "client",
                 "e2e.ambient-cni/poke=" + std::to_string(::time(nullptr)), "--overwrite"});
        return cluster({"node", "curl", "-s", "-m", "2", "http://127.0.0.1:8000/readyz"}).out ==
               "ready\n";
      },
      60s, 2s));
  EXPECT_EQ(install_overlay(), "");
  EXPECT_TRUE(wait_until([] { return enrolled("demo", "web"); }, 30s, 500ms));
}

// Scenario 7: what the cluster may hold — a 200 KiB annotation, a namespace with 300 labels.
TEST_F(RealNode, BigAnnotationsAndManyLabelsAreHandled) {
  const std::string big(200 * 1024, 'a');
  const std::string manifest =
      "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: crowded\n  labels:\n"
      "    istio.io/dataplane-mode: ambient\n" +
      [&] {
        std::string out;
        for (int i = 0; i < 300; ++i) out += "    team-" + std::to_string(i) + ": x\n";
        return out;
      }() +
      "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: heavy\n  namespace: crowded\n"
      "  annotations:\n    example.com/blob: " +
      big +
      "\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n"
      "    image: docker.io/ambient-test/app:0.1.0\n    imagePullPolicy: Never\n"
      "    command: [sleep, '100000']\n";
  const fs::path file = kState / "crowded.yaml";
  std::ofstream(file) << manifest;
  kubectl({"create", "-f", file.string()});  // apply would copy it into last-applied (> 256 KiB)
  EXPECT_EQ(cluster({"kubectl", "-n", "crowded", "wait", "--for=condition=Ready", "pod/heavy",
                     "--timeout=120s"},
                    150s)
                .exit_code,
            0);
  EXPECT_TRUE(enrolled("crowded", "heavy"))
      << annotation("crowded", "heavy") << " " << rules("crowded", "heavy");
  kubectl({"delete", "ns", "crowded", "--wait=true"}, 120s);
  // The agent is still the same process.
  const auto ds_pod =
      json::parse(kubectl({"-n", "istio-system", "get", "pod", "-l",
                           "app.kubernetes.io/name=ambient-cni-node", "-o", "json"}))["items"][0];
  EXPECT_EQ(ds_pod["status"]["containerStatuses"][0]["restartCount"], 0);
}

// Scenario 3: a rolling update to a new image tag. Enrolled pods stay captured throughout; a pod
// created meanwhile waits and then runs enrolled, never outside the mesh.
TEST_F(RealNode, ARollingUpdateNeverLeavesAPodOutsideTheMesh) {
  ASSERT_EQ(import_node_image("0.1.1"), "");
  kubectl(
      {"-n", "istio-system", "set", "image", "ds/ambient-cni-node", "node=ambient-cni-node:0.1.1"});
  ASSERT_NO_FATAL_FAILURE(expect_rollout_keeps_the_mesh());
  EXPECT_EQ(restarts("demo", "newcomer"), 0);
  const auto ds = object("ds", "istio-system", "ambient-cni-node");
  EXPECT_EQ(ds["spec"]["template"]["spec"]["containers"][0]["image"], "ambient-cni-node:0.1.1");
  kubectl({"-n", "demo", "delete", "pod", "newcomer", "--wait=true"}, 90s);
}

// Scenario 4: the node reboots (kubelet, containerd, every pod, our pod and ztunnel stop; /run
// and the firewall are wiped). Every pod comes back in a new sandbox; no container of an ambient
// pod ever runs before its netns is captured.
TEST_F(RealNode, ANodeRebootNeverRunsAnAmbientPodUncaptured) {
  ASSERT_TRUE(enrolled("demo", "web"));
  const auto first_container = [](const std::string& ns, const std::string& pod) {
    const auto statuses =
        object("pod", ns, pod).value("/status/containerStatuses"_json_pointer, json::array());
    return statuses.empty() ? std::string() : statuses[0].value("containerID", std::string());
  };
  const std::map<std::string, std::string> before = {{"web", first_container("demo", "web")},
                                                     {"client", first_container("demo", "client")}};
  ztunnel_->stop(SIGTERM, 15s);  // ztunnel's own pod stops with the node
  ztunnel_.reset();
  const auto reboot = cluster({"reboot"}, 300s);
  ASSERT_EQ(reboot.exit_code, 0) << reboot.err;
  start_ztunnel();
  // Until both are Ready in new containers: whenever a new container runs, it is captured.
  std::map<std::string, int> checked;
  ASSERT_TRUE(wait_until(
      [&] {
        bool all_new_and_ready = true;
        for (const auto& [pod, old_id] : before) {
          const auto id = first_container("demo", pod);
          const auto p = object("pod", "demo", pod);
          const bool running =
              p.value("/status/containerStatuses/0/state"_json_pointer, json::object())
                  .contains("running");
          if (!id.empty() && id != old_id && running) {
            const auto r = rules("demo", pod);
            if (r != "<no running container>") {
              EXPECT_EQ(r, "current") << "demo/" << pod << " runs uncaptured after the reboot";
              ++checked[pod];
            }
          }
          const bool ready = cluster({"kubectl", "-n", "demo", "wait", "--for=condition=Ready",
                                      "pod/" + pod, "--timeout=1s"})
                                 .exit_code == 0;
          all_new_and_ready = all_new_and_ready && id != old_id && ready;
        }
        return all_new_and_ready;
      },
      240s, 500ms))
      << cluster({"kubectl", "get", "pods", "-A", "-o", "wide"}).out;
  EXPECT_GT(checked["web"], 0);
  EXPECT_GT(checked["client"], 0);
  EXPECT_TRUE(enrolled("demo", "web"));
  EXPECT_TRUE(enrolled("demo", "client"));
  EXPECT_TRUE(wait_until([] { return untouched("legacy", "web"); }, 120s, 1s));
  settle();
  EXPECT_EQ(http_from("demo", "client", pod_ip("demo", "web")), "web-demo");
}

// Scenario 5, the order that unenrols every pod first: the DaemonSet goes while its
// ServiceAccount and RBAC still exist (README: Uninstall), then the rest. The node's CNI
// directories are as they were before the install.
TEST_F(RealNode, DeletingTheDaemonSetFirstUnenrolsEveryPodAndRestoresTheCniDirectories) {
  ASSERT_TRUE(enrolled("demo", "web"));
  kubectl({"-n", "istio-system", "delete", "ds", "ambient-cni-node", "--wait=true"}, 180s);
  EXPECT_TRUE(wait_until([] { return no_agent_pod(); }, 90s, 500ms));
  EXPECT_TRUE(untouched("demo", "web")) << annotation("demo", "web") << " " << rules("demo", "web");
  EXPECT_TRUE(untouched("demo", "client"));
  EXPECT_EQ(contents(kNodeCniConf), cni_conf_before_);
  EXPECT_EQ(contents(kNodeCniBin), cni_bin_before_);
  kubectl({"delete", "-k", kOverlay, "--wait=true", "--ignore-not-found"}, 180s);

  // Installed again: the running pods of the ambient namespace are enrolled again.
  ASSERT_EQ(install_overlay(), "");
  EXPECT_TRUE(
      wait_until([] { return enrolled("demo", "web") && enrolled("demo", "client"); }, 60s, 500ms))
      << annotation("demo", "web") << " " << rules("demo", "web");
}

// Scenario 5 as users type it: `kubectl delete -k` deletes our ServiceAccount and RBAC together
// with the DaemonSet, so the agent is refused by the API when its SIGTERM comes. It gives the
// node back — CNI directories as before, so new pods start normally — and every enrolled pod
// stays exactly as its `enabled` annotation says (captured, served by ztunnel) until it restarts.
TEST_F(RealNode, DeleteKGivesTheNodeBackAndLeavesNoPodHalfEnrolled) {
  ASSERT_TRUE(enrolled("demo", "web"));
  kubectl({"delete", "-k", kOverlay, "--wait=true"}, 180s);
  EXPECT_TRUE(wait_until([] { return no_agent_pod(); }, 90s, 500ms));
  EXPECT_EQ(contents(kNodeCniConf), cni_conf_before_);
  EXPECT_EQ(contents(kNodeCniBin), cni_bin_before_);
  for (const char* pod : {"web", "client"}) {
    const auto a = annotation("demo", pod);
    const auto r = rules("demo", pod);
    EXPECT_TRUE((a == "enabled" && r == "current") || (a.empty() && r == "absent"))
        << "demo/" << pod << " is half enrolled: annotation '" << a << "', rules " << r;
  }
  kubectl({"-n", "demo", "run", "after", "--image=docker.io/ambient-test/app:0.1.0",
           "--image-pull-policy=Never", "--restart=Never", "--", "sleep", "100000"});
  EXPECT_EQ(cluster({"kubectl", "-n", "demo", "wait", "--for=condition=Ready", "pod/after",
                     "--timeout=120s"},
                    150s)
                .exit_code,
            0)
      << "a pod could not start after the uninstall";
  EXPECT_TRUE(untouched("demo", "after"));
}

}  // namespace
}  // namespace ambient::testing
