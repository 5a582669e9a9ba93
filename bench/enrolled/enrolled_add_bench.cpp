// The plugin's ADD for each kind of pod, timed as a runtime sees it (exec to exit), interleaved
// with Debian's Go portmap doing nothing: excluded namespace (no API), untouched pod (two API
// GETs), enrolled pod (GETs + agent: rules, host probe, ZDS ack, status patch). Between two
// enrolled ADDs the pod is DELeted (not timed). Runs the real agent in-process with the API and
// ztunnel stand-ins; needs root (network namespaces). Prints medians, p99 and ratios.
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "tests/standins/apiserver/apiserver.h"
#include "tests/standins/ztunnel/ztunnel_standin.h"
#include "tests/support/process.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

// A pod netns: unshared and bind-mounted on a file, as `ip netns add` does.
struct PodNetns {
  fs::path path;
  explicit PodNetns(fs::path p) : path(std::move(p)) {
    std::ofstream(path).close();
    bool ok = false;
    std::thread([&] {
      ok = ::unshare(CLONE_NEWNET) == 0 &&
           ::mount("/proc/thread-self/ns/net", path.c_str(), nullptr, MS_BIND, nullptr) == 0;
    }).join();
    if (!ok) throw std::runtime_error("cannot create a netns at " + path.string() + " (root?)");
  }
  ~PodNetns() {
    ::umount2(path.c_str(), MNT_DETACH);
    fs::remove(path);
  }
};

struct Subject {
  std::string name;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string input;
  std::vector<std::string> cleanup_env;  // run (untimed) after each sample, e.g. a DEL
  std::vector<double> ms;
};

json pod(const std::string& ns, const std::string& name, const std::string& uid) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"uid", uid}}},
          {"spec", {{"nodeName", "bench"}, {"serviceAccountName", "default"}}}};
}

std::vector<std::string> env_for(const std::string& verb, const std::string& netns,
                                 const std::string& ns, const std::string& name,
                                 const std::string& uid) {
  return {"CNI_COMMAND=" + verb,
          "CNI_CONTAINERID=bench-" + name,
          "CNI_NETNS=" + netns,
          "CNI_IFNAME=eth0",
          "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=" + ns + ";K8S_POD_NAME=" + name +
              ";K8S_POD_UID=" + uid,
          "CNI_PATH=/opt/cni/bin",
          "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ADD over the whole path vs Go portmap"};
  std::string plugin, portmap = "/usr/lib/cni/portmap", json_out;
  int runs = 100;
  app.add_option("--plugin", plugin, "ambient-cni binary")->required();
  app.add_option("--portmap", portmap, "Go reference plugin (no-op ADD)");
  app.add_option("--runs", runs, "samples per subject");
  app.add_option("--json", json_out, "write results as JSON");
  CLI11_PARSE(app, argc, argv);

  const fs::path dir = fs::temp_directory_path() / ("ambient-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  int rc = 0;
  {
    PodNetns host(dir / "host"), netns(dir / "pod");
    ambient::testing::ApiServerStandin api;
    api.start();
    api.put(
        {{"apiVersion", "v1"},
         {"kind", "Namespace"},
         {"metadata", {{"name", "demo"}, {"labels", {{"istio.io/dataplane-mode", "ambient"}}}}}});
    api.put({{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "legacy"}}}});
    api.put(pod("demo", "web", "uid-web"));
    api.put(pod("legacy", "batch", "uid-batch"));
    api.write_kubeconfig(dir / "kubeconfig");

    ambient::agent::AgentOptions o;
    o.run_dir = dir.string();
    o.ztunnel_socket = (dir / "ztunnel.sock").string();
    o.kubeconfig = (dir / "kubeconfig").string();
    o.host_netns = host.path.string();
    o.health_port = o.metrics_port = -1;
    auto quiet =
        std::make_shared<spdlog::logger>("bench", std::make_shared<spdlog::sinks::null_sink_mt>());
    ambient::agent::Agent agent(o, quiet);
    agent.start();
    ambient::standins::ZtunnelStandin ztunnel({o.ztunnel_socket, 100ms, /*run_proxies=*/true});
    ztunnel.start();
    ztunnel.wait_for([&] { return ztunnel.connected(); }, 10s);

    const json prev = {{"cniVersion", "1.0.0"},
                       {"interfaces", {{{"name", "eth0"}, {"sandbox", netns.path.string()}}}},
                       {"ips", {{{"address", "10.99.0.5/24"}, {"interface", 0}}}},
                       {"dns", json::object()}};
    json conf = {{"cniVersion", "1.0.0"},
                 {"name", "k8s"},
                 {"type", "ambient-cni"},
                 {"cni_agent_run_dir", dir.string()},
                 {"prevResult", prev}};
    json portmap_conf = {{"cniVersion", "1.0.0"},
                         {"name", "k8s"},
                         {"type", "portmap"},
                         {"capabilities", {{"portMappings", true}}},
                         {"prevResult", prev}};
    const std::string ns_path = netns.path.string();
    std::vector<Subject> subjects = {
        {"Go portmap ADD, no mappings (anchor)",
         {portmap},
         env_for("ADD", ns_path, "legacy", "batch", "uid-batch"),
         portmap_conf.dump(),
         {},
         {}},
        {"ambient-cni ADD, excluded namespace",
         {plugin},
         env_for("ADD", ns_path, "kube-system", "dns", "uid-dns"),
         conf.dump(),
         {},
         {}},
        {"ambient-cni ADD, untouched pod (API lookups)",
         {plugin},
         env_for("ADD", ns_path, "legacy", "batch", "uid-batch"),
         conf.dump(),
         {},
         {}},
        {"ambient-cni ADD, enrolled pod (whole path)",
         {plugin},
         env_for("ADD", ns_path, "demo", "web", "uid-web"),
         conf.dump(),
         env_for("DEL", ns_path, "demo", "web", "uid-web"),
         {}},
    };
    for (int i = -3; i < runs && rc == 0; ++i) {  // 3 warm-up rounds
      for (auto& s : subjects) {
        const auto x = ambient::testing::run(s.argv, s.env, s.input, 30s);
        if (x.exit_code != 0) {
          std::cerr << s.name << " failed: " << x.out << x.err << '\n';
          rc = 1;
          break;
        }
        if (i >= 0) s.ms.push_back(std::chrono::duration<double, std::milli>(x.elapsed).count());
        if (!s.cleanup_env.empty()) ambient::testing::run(s.argv, s.cleanup_env, s.input, 30s);
      }
    }
    if (rc == 0) {
      const double anchor = ambient::testing::median_ms(subjects[0].ms);
      json j = json::array();
      std::cout << "| subject | median ms | p99 ms | × Go portmap |\n|---|---|---|---|\n";
      for (const auto& s : subjects) {
        const double med = ambient::testing::median_ms(s.ms);
        const double p99 = ambient::testing::percentile_ms(s.ms, 99);
        std::printf("| %s | %.2f | %.2f | %.2f |\n", s.name.c_str(), med, p99, med / anchor);
        j.push_back({{"subject", s.name},
                     {"median_ms", med},
                     {"p99_ms", p99},
                     {"ratio_to_portmap", med / anchor},
                     {"runs", runs}});
      }
      if (!json_out.empty()) std::ofstream(json_out) << j.dump(2) << '\n';
    }
    ztunnel.stop();
    agent.stop();
    api.stop();
  }
  fs::remove_all(dir);
  return rc;
}
