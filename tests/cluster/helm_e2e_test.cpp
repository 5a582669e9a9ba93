// Helm on the real node (issue 15): scripts/cluster.sh's single-node cluster, our image, Istio's
// real ztunnel — and the chart install/helm/ambient-cni installed, upgraded and uninstalled with
// the helm of scripts/peers.sh helm, from the values an Istio ambient user gives istio/cni (the
// node's own needs — the API address, as there is no kube-proxy, and images never pulled — in
// Istio's keys `env` and `pullPolicy`).
//  1. `helm install`: the release deployed, ambient pods enrolled and the others untouched by the
//     precedence rules, mesh traffic through ztunnel;
//  2. `helm upgrade` to a new image tag: no enrolled pod loses its rules during the rollout, a pod
//     created meanwhile runs enrolled;
//  3. `helm uninstall`: its pre-delete hook (Kubernetes' kubectl image, built here from the
//     kubectl of scripts/peers.sh kubernetes and imported as registry.k8s.io/kubectl:v1.34.4)
//     removes the DaemonSet first, so by the time helm returns every pod is unenrolled
//     (annotation cleared, rules gone), the CNI directories are byte-identical to before, and
//     nothing of the release is left.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include "tests/cluster/cluster_support.h"
#include "tests/support/wait.h"

namespace ambient::testing {
namespace {

const fs::path kChart = kRepo / "install/helm/ambient-cni";
const fs::path kHelmHome = kState / "helm";

// What an Istio ambient user passes to `helm install istio-cni istio/cni -f`, plus this node's
// two needs in Istio's keys.
const std::string kValues = R"(profile: ambient
global:
  logging:
    level: "default:info"
excludeNamespaces:
  - kube-system
ambient:
  dnsCapture: true
  ipv6: true
repair:
  enabled: false
# The node: no kube-proxy (the API at the node's address), no registry (images imported).
pullPolicy: Never
env:
  KUBERNETES_SERVICE_HOST: "10.77.0.1"
  KUBERNETES_SERVICE_PORT: "6443"
)";

std::string peer(const std::string& name) {
  const auto x = run({(kRepo / "scripts/peers.sh").string(), "path", name}, kEnv, "", 30s);
  std::string out = x.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return x.exit_code == 0 ? out : "";
}

// helm in the node's network namespace (where the API is), as cluster-admin.
Execution helm(std::vector<std::string> args, std::chrono::milliseconds timeout = 120s) {
  static const std::string bin = peer("helm") + "/helm";
  args.insert(args.begin(), {"/usr/bin/nsenter", "--net=/run/netns/ambient-node", "--", bin});
  const auto home = kHelmHome.string();
  return run(
      args,
      {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home,
       "KUBECONFIG=" + (kState / "admin.kubeconfig").string(), "HELM_CACHE_HOME=" + home + "/cache",
       "HELM_CONFIG_HOME=" + home + "/config", "HELM_DATA_HOME=" + home + "/data"},
      "", timeout);
}

std::string dump(const Execution& x) {
  return "exit " + std::to_string(x.exit_code) + "\n" + x.out + x.err;
}

class Helm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (peer("helm").empty()) {
      problem_ = "helm is missing: run scripts/peers.sh helm";
      return;
    }
    problem_ = bring_up_cluster();
    if (!problem_.empty()) return;
    // This build's binaries as the release's image (up imports build/bin's, if any).
    if (const auto problem = import_node_image("0.1.0"); !problem.empty()) {
      problem_ = problem;
      return;
    }
    cni_conf_before_ = contents(kNodeCniConf);
    cni_bin_before_ = contents(kNodeCniBin);
    fs::create_directories(kHelmHome);
    std::ofstream(values_) << kValues;
    wait_istio_system_gone_if_terminating();
    install_ =
        helm({"install", "ambient-cni", kChart.string(), "--namespace", "istio-system",
              "--create-namespace", "--values", values_.string(), "--wait", "--timeout", "5m"},
             400s);
    if (install_.exit_code != 0) {
      problem_ = "helm install failed:\n" + dump(install_) +
                 cluster({"kubectl", "-n", "istio-system", "logs", "ds/ambient-cni-node"}).out;
      return;
    }
    ztunnel_ = start_ztunnel_mesh();
    settle_ztunnel();
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
    if (::geteuid() == 0 && !peer("helm").empty()) {
      const auto down = cluster({"down"}, 300s);
      if (down.exit_code != 0) std::cerr << "scripts/cluster.sh down: " << down.err;
    }
  }

  void SetUp() override { ASSERT_TRUE(problem_.empty()) << problem_; }

  static inline std::string problem_;
  static inline Execution install_;
  static inline const fs::path values_ = kHelmHome / "istio-cni-values.yaml";
  static inline std::map<std::string, std::string> cni_conf_before_, cni_bin_before_;
  static inline std::unique_ptr<BackgroundProcess> ztunnel_;
};

// 1. helm install with the Istio values file.
TEST_F(Helm, InstallEnrolsByThePrecedenceRules) {
  EXPECT_NE(install_.out.find("STATUS: deployed"), std::string::npos) << install_.out;
  // NOTES.txt: what was installed, in the values' terms.
  EXPECT_NE(install_.out.find("ambient-cni 0.1.0 (ambient-cni-node:0.1.0) in namespace "
                              "istio-system: chained mode into /etc/cni/net.d"),
            std::string::npos)
      << install_.out;
  const auto ds = object("ds", "istio-system", "ambient-cni-node");
  EXPECT_EQ(ds["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm");
  EXPECT_EQ(ds["metadata"]["annotations"]["meta.helm.sh/release-name"], "ambient-cni");
  const auto cm = object("cm", "istio-system", "ambient-cni-config")["data"];
  EXPECT_EQ(cm["AMBIENT_ENABLED"], "true");  // profile: ambient
  EXPECT_EQ(cm["AMBIENT_LOG_LEVEL"], "info");

  EXPECT_TRUE(enrolled("demo", "web")) << annotation("demo", "web") << " " << rules("demo", "web");
  EXPECT_TRUE(enrolled("demo", "client"));
  EXPECT_TRUE(untouched("legacy", "web")) << annotation("legacy", "web") << rules("legacy", "web");
  EXPECT_TRUE(untouched("legacy", "client"));
  EXPECT_TRUE(untouched("kube-system", "tool")) << rules("kube-system", "tool");
  const auto conflist = json::parse(read_file(kNodeCniConf / "10-bridge.conflist"));
  ASSERT_FALSE(conflist["plugins"].empty());
  EXPECT_EQ(conflist["plugins"].back()["type"], "ambient-cni");

  settle_ztunnel();
  const auto from = ztunnel_log_size();
  const auto web = pod_ip("demo", "web");
  EXPECT_EQ(http_from("demo", "client", web), "web-demo");
  EXPECT_TRUE(wait_until(
      [&] {
        for (const auto& e : ztunnel_access(from)) {
          if (e.value("dst.hbone_addr", "") == web + ":8080" &&
              e.value("src.identity", "") == "spiffe://cluster.local/ns/demo/sa/default") {
            return true;
          }
        }
        return false;
      },
      20s, 200ms))
      << "no HBONE demo/client → demo/web in ztunnel's access log";
}

// 2. helm upgrade to a new image tag: the rolling update keeps every enrolled pod captured, and a
// pod created meanwhile waits for the new agent and runs enrolled.
TEST_F(Helm, UpgradeToANewTagNeverLeavesAPodOutsideTheMesh) {
  ASSERT_EQ(import_node_image("0.1.1"), "");
  const auto upgrade = helm({"upgrade", "ambient-cni", kChart.string(), "--namespace",
                             "istio-system", "--values", values_.string(), "--set", "tag=0.1.1"});
  ASSERT_EQ(upgrade.exit_code, 0) << dump(upgrade);
  ASSERT_NO_FATAL_FAILURE(expect_rollout_keeps_the_mesh());
  EXPECT_TRUE(enrolled("demo", "web"));
  EXPECT_TRUE(enrolled("demo", "client"));
  const auto ds = object("ds", "istio-system", "ambient-cni-node");
  EXPECT_EQ(ds["spec"]["template"]["spec"]["containers"][0]["image"], "ambient-cni-node:0.1.1");
  const auto history =
      helm({"history", "ambient-cni", "--namespace", "istio-system", "-o", "json"});
  ASSERT_EQ(history.exit_code, 0) << dump(history);
  const auto revisions = json::parse(history.out);
  ASSERT_EQ(revisions.size(), 2u) << history.out;
  EXPECT_EQ(revisions[1]["status"], "deployed");
  kubectl({"-n", "demo", "delete", "pod", "newcomer", "--wait=true"}, 90s);
}

// 3. helm uninstall: every pod unenrolled before helm returns, the CNI directories as they were,
// nothing of the release left; new pods start normally.
TEST_F(Helm, UninstallUnenrolsEveryPodFirstAndLeavesTheNodeAsItWas) {
  ASSERT_TRUE(enrolled("demo", "web"));
  ASSERT_TRUE(enrolled("demo", "client"));
  const auto uninstall =
      helm({"uninstall", "ambient-cni", "--namespace", "istio-system", "--timeout", "5m"}, 400s);
  ASSERT_EQ(uninstall.exit_code, 0) << dump(uninstall);
  // Right when helm returns: the hook waited for the agents' removal.
  const auto agents = cluster({"kubectl", "-n", "istio-system", "get", "pods", "-l",
                               "app.kubernetes.io/name=ambient-cni-node", "-o", "name"});
  EXPECT_EQ(agents.exit_code, 0) << agents.err;
  EXPECT_EQ(agents.out, "") << "agent pods still there when helm uninstall returned";
  for (const char* pod : {"web", "client"}) {
    EXPECT_TRUE(untouched("demo", pod))
        << "demo/" << pod << ": annotation '" << annotation("demo", pod) << "', rules "
        << rules("demo", pod);
  }
  EXPECT_EQ(contents(kNodeCniConf), cni_conf_before_);
  EXPECT_EQ(contents(kNodeCniBin), cni_bin_before_);
  // Nothing of the release left, the hook's own objects included.
  const auto left =
      cluster({"kubectl", "get", "ds,cm,sa,role,rolebinding,job,clusterrole,clusterrolebinding",
               "-A", "-l", "app.kubernetes.io/part-of=ambient-cni", "-o", "name"});
  EXPECT_EQ(left.exit_code, 0) << left.err;
  EXPECT_EQ(left.out, "");
  EXPECT_NE(helm({"status", "ambient-cni", "--namespace", "istio-system"}).exit_code, 0);

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
