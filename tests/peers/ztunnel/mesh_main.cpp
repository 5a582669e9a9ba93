// ztunnel-mesh: runs the real ztunnel for the demo and plays istiod's part for it. It reads the
// cluster's pods from the API, derives ztunnel's local config (HBONE once our agent marked a pod
// `enabled`, plus the services and policies of --extras) and restarts ztunnel whenever that
// config changes: ztunnel reads LOCAL_XDS_PATH once, at start. Our agent's snapshot restores
// every pod after each restart.
//
//   ztunnel-mesh run  --kubeconfig K [--netns PATH] --inpod-uds SOCK --dir D [--node-name N]
//                     [--extras extras.json] [--frozen]            (until SIGTERM)
//                     --frozen: the config of the pods at start, never restarted after (the
//                     benchmark: ZDS adds are acked without a workload entry, and a restart
//                     would land in the middle of what is measured)
//   ztunnel-mesh wait --kubeconfig K --dir D [--timeout-ms 30000] [--settle-ms 300]
//                     returns once the API's pods stopped changing and ztunnel runs their config
//                     and is ready
//
// `run` keeps D/status ({"resourceVersion", "ready", "restarts"}) current; ztunnel's JSON log is
// D/ztunnel.log.
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "tests/peers/ztunnel/ztunnel_peer.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using ambient::peers::LocalConfig;
using ambient::peers::ZtunnelPeer;

volatile sig_atomic_t g_stop = 0;

ambient::kube::Client client(const std::string& kubeconfig) {
  return ambient::kube::Client(ambient::kube::load_kubeconfig(kubeconfig),
                               ambient::kube::ClientOptions{});
}

// The pods and the list's resourceVersion: the point in the API's history the config reflects.
std::pair<std::vector<json>, std::string> pods(ambient::kube::Client& c) {
  const json list = c.list("/api/v1/pods");
  std::vector<json> items(list["items"].begin(), list["items"].end());
  return {items, list["metadata"].value("resourceVersion", "")};
}

void write_status(const fs::path& dir, const std::string& rv, bool ready, int restarts) {
  const fs::path tmp = dir / "status.tmp";
  std::ofstream(tmp) << json{{"resourceVersion", rv}, {"ready", ready}, {"restarts", restarts}};
  fs::rename(tmp, dir / "status");
}

int run(const std::string& kubeconfig, const std::string& netns, const std::string& uds,
        const fs::path& dir, const std::string& node, const std::string& extras_path, bool frozen) {
  LocalConfig extras;
  if (!extras_path.empty()) {
    std::ifstream in(extras_path);
    extras = ambient::peers::extras_from_json(json::parse(in));
  }
  signal(SIGTERM, [](int) { g_stop = 1; });
  signal(SIGINT, [](int) { g_stop = 1; });
  ZtunnelPeer::Options o;
  o.netns_path = netns;
  o.dir = dir;
  o.inpod_uds = uds;
  o.node_name = node;
  ZtunnelPeer zt(o);
  auto api = client(kubeconfig);
  int restarts = 0;
  std::string last_rv;
  bool applied = false;
  while (!g_stop) {
    try {
      auto [items, rv] = pods(api);
      LocalConfig config = extras;
      config.workloads = ambient::peers::workloads_from_pods(items, node);
      if ((!frozen || !applied) && zt.apply(config)) {
        applied = true;
        ++restarts;
        write_status(dir, rv, false, restarts);
        if (!zt.wait_ready(30s)) std::cerr << "ztunnel-mesh: ztunnel not ready\n" << zt.report(20);
      }
      // Frozen: "caught up" means ready, whatever the API says since.
      if (rv != last_rv || !zt.ready()) write_status(dir, rv, zt.ready(), restarts);
      last_rv = rv;
    } catch (const std::exception& e) {
      std::cerr << "ztunnel-mesh: " << e.what() << "\n";
    }
    for (int i = 0; i < 4 && !g_stop; ++i) std::this_thread::sleep_for(50ms);
  }
  zt.stop();
  return 0;
}

// Settled: the pods' resourceVersion has not moved for `settle` (the agent's patches after a
// label change have landed) and ztunnel runs that version's config and is ready.
int wait(const std::string& kubeconfig, const fs::path& dir, std::chrono::milliseconds timeout,
         std::chrono::milliseconds settle) {
  auto api = client(kubeconfig);
  const auto until = std::chrono::steady_clock::now() + timeout;
  std::string seen;
  auto since = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < until) {
    const std::string rv = pods(api).second;
    const auto now = std::chrono::steady_clock::now();
    if (rv != seen) {
      seen = rv;
      since = now;
    }
    std::ifstream in(dir / "status");
    const json st = json::parse(in, nullptr, false);
    if (now - since >= settle && st.is_object() && st.value("resourceVersion", "") == rv &&
        st.value("ready", false)) {
      return 0;
    }
    std::this_thread::sleep_for(50ms);
  }
  std::cerr << "ztunnel-mesh: ztunnel did not catch up with the API within " << timeout.count()
            << " ms\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"the real ztunnel for the demo, with its local config kept in step with the API"};
  app.require_subcommand(1);
  std::string kubeconfig, netns, uds, dir, node = "demo-node", extras;
  bool frozen = false;
  int timeout_ms = 30000, settle_ms = 300;
  auto* r = app.add_subcommand("run", "run ztunnel and keep its config in step");
  r->add_option("--kubeconfig", kubeconfig)->required();
  r->add_option("--netns", netns,
                "network namespace ztunnel runs in (default: the one ztunnel-mesh runs in)");
  r->add_option("--inpod-uds", uds, "the node agent's ZDS socket")->required();
  r->add_option("--dir", dir, "config, log and status")->required();
  r->add_option("--node-name", node)->capture_default_str();
  r->add_option("--extras", extras, "services and policies (JSON)");
  r->add_flag("--frozen", frozen, "the pods' config at start only: never restart ztunnel");
  auto* w = app.add_subcommand("wait", "wait until ztunnel runs the API's current pods");
  w->add_option("--kubeconfig", kubeconfig)->required();
  w->add_option("--dir", dir)->required();
  w->add_option("--timeout-ms", timeout_ms)->capture_default_str();
  w->add_option("--settle-ms", settle_ms, "how long the API must stay unchanged")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    if (r->parsed()) return run(kubeconfig, netns, uds, dir, node, extras, frozen);
    return wait(kubeconfig, dir, std::chrono::milliseconds(timeout_ms),
                std::chrono::milliseconds(settle_ms));
  } catch (const std::exception& e) {
    std::cerr << "ztunnel-mesh: " << e.what() << "\n";
    return 1;
  }
}
