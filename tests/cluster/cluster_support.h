// What the real-node tests (cluster_e2e_test.cpp, helm_e2e_test.cpp) share: scripts/cluster.sh's
// node and its state dir, kubectl as cluster-admin, a pod's status annotation and in-pod rules as
// ambient-cni-node reads them from the pod's own netns, traffic between pods, ztunnel's access log,
// and Istio's real ztunnel in the node's namespaces (ztunnel-mesh plays istiod).
// Each test binary includes it once; it needs AMBIENT_SOURCE_DIR, AMBIENT_NODE_BIN (the support
// library's) and AMBIENT_MESH_BIN.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/support/files.h"
#include "tests/support/process.h"

namespace ambient::testing {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using namespace nlohmann::literals;

inline const fs::path kRepo = AMBIENT_SOURCE_DIR;
inline const fs::path kState = "/var/lib/ambient-cni/cluster";
inline const fs::path kNodeCniConf = kState / "node/etc-cni-net.d";  // the node's /etc/cni/net.d
inline const fs::path kNodeCniBin = kState / "node/opt-cni-bin";     // the node's /opt/cni/bin
inline const fs::path kZtunnelDir = kState / "ztunnel";
inline const std::vector<std::string> kEnv = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C"};

inline Execution cluster(std::vector<std::string> args, std::chrono::milliseconds timeout = 120s) {
  args.insert(args.begin(), (kRepo / "scripts/cluster.sh").string());
  return run(args, kEnv, "", timeout);
}

// scripts/cluster.sh up, after taking down what an earlier run left (a run killed by a timeout
// leaves the node up, and up refuses to start over it); "" or what went wrong. The cluster tests
// hold CTest's ambient-node resource lock, so nothing else owns that node meanwhile.
inline std::string bring_up_cluster() {
  if (::geteuid() != 0) return "needs root (namespaces, mounts, cgroups)";
  const auto status = cluster({"status"});
  if (status.out.find("cluster is down") == std::string::npos) {
    std::cerr << "scripts/cluster.sh: leftovers of an earlier run; taking them down first\n"
              << status.out;
    const auto down = cluster({"down"}, 300s);
    if (down.exit_code != 0) return "scripts/cluster.sh down (leftovers) failed:\n" + down.err;
  }
  const auto up = cluster({"up"}, 1800s);  // builds Kubernetes and etcd on a fresh machine
  return up.exit_code == 0 ? "" : "scripts/cluster.sh up failed:\n" + up.err;
}

// kubectl as cluster-admin; a failure is reported (with what kubectl said) and "" returned.
inline std::string kubectl(std::vector<std::string> args, std::chrono::milliseconds timeout = 60s) {
  args.insert(args.begin(), "kubectl");
  const auto x = cluster(args, timeout);
  if (x.exit_code != 0) {
    ADD_FAILURE() << "kubectl " << ::testing::PrintToString(args) << ": " << x.err << x.out;
    return "";
  }
  return x.out;
}

inline json object(const std::string& kind, const std::string& ns, const std::string& name) {
  const auto out = kubectl({"-n", ns, "get", kind, name, "-o", "json"});
  return out.empty() ? json::object() : json::parse(out);
}

inline std::string annotation(const std::string& ns, const std::string& pod) {
  const auto x = cluster({"kubectl", "-n", ns, "get", "pod", pod, "-o",
                          R"(jsonpath={.metadata.annotations.ambient\.istio\.io/redirection})"});
  return x.exit_code == 0 ? x.out : "<" + x.err + ">";
}

// The netns of a running pod: its first container's pid, as containerd reports it.
inline std::string netns_of(const std::string& ns, const std::string& pod) {
  const auto p = object("pod", ns, pod);
  const auto statuses = p.value("/status/containerStatuses"_json_pointer, json::array());
  if (statuses.empty() || !statuses[0].contains("containerID")) return "";
  std::string id = statuses[0]["containerID"];
  id = id.substr(id.find("://") + 3);
  const auto tasks = cluster({"node", "ctr", "-n", "k8s.io", "task", "ls"});
  std::istringstream lines(tasks.out);
  std::string task, pid;
  while (lines >> task >> pid) {
    std::string status;
    lines >> status;
    if (task == id) return "/proc/" + pid + "/ns/net";
  }
  return "";
}

// "current", "absent" or "drifted": our redirection inside the pod, as ambient-cni-node reads it.
inline std::string rules(const std::string& ns, const std::string& pod) {
  const auto netns = netns_of(ns, pod);
  if (netns.empty()) return "<no running container>";
  const auto x = run({AMBIENT_NODE_BIN, "redirect", "inspect", "--netns", netns}, kEnv, "", 20s);
  std::string out = x.out;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out.empty() ? "<" + x.err + ">" : out.substr(0, out.find('\n'));
}

inline bool enrolled(const std::string& ns, const std::string& pod) {
  return annotation(ns, pod) == "enabled" && rules(ns, pod) == "current";
}
inline bool untouched(const std::string& ns, const std::string& pod) {
  return annotation(ns, pod).empty() && rules(ns, pod) == "absent";
}

inline std::string pod_ip(const std::string& ns, const std::string& pod) {
  return object("pod", ns, pod).value("/status/podIP"_json_pointer, std::string());
}

// One HTTP GET from a pod's container to ip:8080 with busybox nc; the body's last line.
inline std::string http_from(const std::string& ns, const std::string& pod, const std::string& ip) {
  const auto x = cluster({"kubectl", "-n", ns, "exec", pod, "--", "sh", "-c",
                          "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 " + ip + " 8080"},
                         30s);
  std::string body = x.out;
  while (!body.empty() && body.back() == '\n') body.pop_back();
  return body.substr(body.rfind('\n') + 1);
}

inline int restarts(const std::string& ns, const std::string& pod) {
  const auto p = object("pod", ns, pod);
  int n = 0;
  for (const auto& c : p.value("/status/containerStatuses"_json_pointer, json::array())) {
    n += c.value("restartCount", 0);
  }
  return n;
}

// ztunnel's access-log entries ("connection complete") written since `from` (a byte offset).
inline std::vector<json> ztunnel_access(std::uintmax_t from) {
  std::ifstream in(kZtunnelDir / "ztunnel.log");
  in.seekg(static_cast<std::streamoff>(from));
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = json::parse(line, nullptr, false);
    if (j.is_object() && j.value("message", "") == "connection complete") out.push_back(j);
  }
  return out;
}
inline std::uintmax_t ztunnel_log_size() {
  std::error_code ec;
  const auto n = fs::file_size(kZtunnelDir / "ztunnel.log", ec);
  return ec ? 0 : n;
}

inline bool no_agent_pod() {
  const auto x = cluster({"kubectl", "-n", "istio-system", "get", "pods", "-o", "name"});
  return x.exit_code == 0 ? x.out.empty() : x.err.find("not found") != std::string::npos;
}

// Every file of a directory with its bytes (the node's CNI dirs before and after).
inline std::map<std::string, std::string> contents(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    out[e.path().filename().string()] = e.is_regular_file() ? read_file(e.path()) : "<dir>";
  }
  return out;
}

// Istio's ztunnel in the node's namespaces, on our agent's ZDS socket (the DaemonSet's hostPath
// /var/run/ztunnel); ztunnel-mesh restarts it whenever the pods' config changes.
inline std::unique_ptr<BackgroundProcess> start_ztunnel_mesh() {
  fs::create_directories(kZtunnelDir);
  return std::make_unique<BackgroundProcess>(
      std::vector<std::string>{"/usr/bin/nsenter", "--mount=" + (kState / "ns/mnt").string(),
                               "--net=/run/netns/ambient-node", "--", AMBIENT_MESH_BIN, "run",
                               "--kubeconfig", (kState / "admin.kubeconfig").string(),
                               "--inpod-uds", "/var/run/ztunnel/ztunnel.sock", "--dir",
                               kZtunnelDir.string(), "--node-name", "ambient-node"},
      (kZtunnelDir / "mesh.log").string());
}

// Until ztunnel runs the config of the API's current pods.
inline void settle_ztunnel() {
  run({"/usr/bin/nsenter", "--mount=" + (kState / "ns/mnt").string(),
       "--net=/run/netns/ambient-node", "--", AMBIENT_MESH_BIN, "wait", "--kubeconfig",
       (kState / "admin.kubeconfig").string(), "--dir", kZtunnelDir.string(), "--timeout-ms",
       "60000"},
      kEnv, "", 90s);
}

// ambient-cni-node:<tag> built from this build's binaries and imported into the node's
// containerd; "" or what went wrong.
inline std::string import_node_image(const std::string& tag) {
  const fs::path out = kState / ("images-" + tag);
  const auto build =
      run({(kRepo / "scripts/images.sh").string(), "build", "--tag", tag, "--out", out.string(),
           "--bin-dir", fs::path(AMBIENT_NODE_BIN).parent_path().string()},
          kEnv, "", 300s);
  if (build.exit_code != 0) return "scripts/images.sh build --tag " + tag + ": " + build.err;
  const auto import = run({(kRepo / "scripts/images.sh").string(), "import", "--out", out.string(),
                           "--address", (kState / "node/run-containerd/containerd.sock").string()},
                          kEnv, "", 120s);
  if (import.exit_code != 0) return "scripts/images.sh import: " + import.err;
  return "";
}

inline const std::string kOverlay = (kRepo / "install/manifests/overlays/testbed").string();

// A namespace still terminating from an earlier uninstall would refuse the new objects.
inline void wait_istio_system_gone_if_terminating() {
  if (cluster({"kubectl", "get", "ns", "istio-system", "-o", "jsonpath={.status.phase}"}).out ==
      "Terminating") {
    cluster({"kubectl", "wait", "--for=delete", "namespace/istio-system", "--timeout=120s"}, 150s);
  }
}

// kubectl apply -k of the testbed overlay, until the DaemonSet's pod is ready; "" or what went
// wrong.
inline std::string install_overlay() {
  wait_istio_system_gone_if_terminating();
  const auto apply = cluster({"kubectl", "apply", "-k", kOverlay});
  const auto rollout = cluster({"kubectl", "-n", "istio-system", "rollout", "status",
                                "ds/ambient-cni-node", "--timeout=180s"},
                               200s);
  if (apply.exit_code == 0 && rollout.exit_code == 0) return "";
  return "the DaemonSet did not become ready:\n" + apply.err + rollout.out + rollout.err +
         cluster({"kubectl", "-n", "istio-system", "logs", "ds/ambient-cni-node"}).out;
}

// While the DaemonSet rolls out (its update already started): demo/web and demo/client keep
// their rules throughout, and a pod created mid-rollout (demo/newcomer, left running) never runs
// outside the mesh and ends enrolled.
inline void expect_rollout_keeps_the_mesh() {
  bool created = false;
  std::vector<std::string> seen;  // what the new pod was seen as, each time it ran
  const auto done = [&] {
    const auto x = cluster({"kubectl", "-n", "istio-system", "rollout", "status",
                            "ds/ambient-cni-node", "--watch=false"});
    return x.exit_code == 0 && x.out.find("successfully rolled out") != std::string::npos;
  };
  int checks = 0;
  while (!done() || checks < 3) {
    ++checks;
    EXPECT_EQ(rules("demo", "web"), "current") << "during the rollout";
    EXPECT_EQ(rules("demo", "client"), "current") << "during the rollout";
    if (!created) {
      kubectl({"-n", "demo", "run", "newcomer", "--image=docker.io/ambient-test/app:0.1.0",
               "--image-pull-policy=Never", "--restart=Never", "--", "sleep", "100000"});
      created = true;
    }
    const auto phase =
        object("pod", "demo", "newcomer").value("/status/phase"_json_pointer, std::string());
    if (phase == "Running") seen.push_back(rules("demo", "newcomer"));
    ASSERT_LT(checks, 200) << "the rollout did not finish";
  }
  ASSERT_EQ(cluster({"kubectl", "-n", "demo", "wait", "--for=condition=Ready", "pod/newcomer",
                     "--timeout=120s"},
                    150s)
                .exit_code,
            0);
  EXPECT_TRUE(enrolled("demo", "newcomer"));
  for (const auto& s : seen) EXPECT_EQ(s, "current") << "the new pod ran outside the mesh";
}

}  // namespace ambient::testing
