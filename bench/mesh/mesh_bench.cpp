// One CNI system on the real node (scripts/cluster.sh: kube-apiserver, kubelet, containerd, Istio's
// real ztunnel), measured the way issue 14 asks, so that bench/mesh/run.sh can put ours and
// Istio's istio-cni side by side from one run. Runs inside the node's network and mount
// namespaces; execs the plugin the node has installed, with the conflist entry its installer
// wrote, as containerd would. Medians and percentiles; nothing here passes or fails on a number.
//
//   mesh_bench exec    ...   the plugin exec'd directly (the kubelet stopped, so that nothing
//                            else runs the bench's pods and its 110-pod limit does not apply):
//                            excluded / untouched / enrolled ADD (enrolled: until the ADD
//                            returned *and* the pod's `enabled` annotation was seen), a burst of
//                            N concurrent enrolled ADDs, the agent's RSS with R enrolled pods,
//                            and its CPU seconds over C pod create → ADD → DEL → delete cycles
//   mesh_bench kubelet ...   through the real kubelet: pod created → sandbox ready (containerd's
//                            RunPodSandbox, which runs the CNI chain) for enrolled and plain pods,
//                            and `label ns` → M running pods served by ztunnel (its admin
//                            config_dump lists each pod Up)
//
// Pods for the exec phase are API objects bound to the node (so both agents' informers hold them)
// with a netns of their own (lo up, the pod IP on lo).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kube/client.h"
#include "kube/kubeconfig.h"
#include "tests/support/process.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using namespace nlohmann::literals;
using Clock = std::chrono::steady_clock;
using ambient::testing::median_ms;
using ambient::testing::percentile_ms;

const char* kNode = "ambient-node";
const char* kApp = "docker.io/ambient-test/app:0.1.0";

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void sh(const std::string& cmd) {
  if (std::system((cmd + " >/dev/null 2>&1").c_str()) != 0) {
    throw std::runtime_error("failed: " + cmd);
  }
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Options {
  std::string system, plugin, conflist, kubeconfig, agent_comm, floor, ztunnel_admin;
  std::string containerd_log, json_out;
  int runs = 40, burst = 110, rss_pods = 250, churn = 1000, churn_workers = 4;
  int kubelet_pods = 20, label_pods = 100;
  std::set<std::string> rows;  // empty: all of the phase's rows
  bool wants(const std::string& row) const { return rows.empty() || rows.count(row) > 0; }
};

ambient::kube::Client api_client(const std::string& kubeconfig) {
  ambient::kube::ClientOptions o;
  o.deadline = 30s;
  return ambient::kube::Client(ambient::kube::load_kubeconfig(kubeconfig), o);
}

// The API, one client per thread (a Client is single-threaded).
class Api {
 public:
  explicit Api(std::string kubeconfig) : kubeconfig_(std::move(kubeconfig)) {}
  ambient::kube::Client& c() {
    thread_local std::map<const Api*, std::unique_ptr<ambient::kube::Client>> clients;
    auto& slot = clients[this];
    if (!slot) slot = std::make_unique<ambient::kube::Client>(api_client(kubeconfig_));
    return *slot;
  }
  void ensure_namespace(const std::string& name, bool ambient) {
    json labels = json::object();
    if (ambient) labels["istio.io/dataplane-mode"] = "ambient";
    try {
      c().create("/api/v1/namespaces", {{"apiVersion", "v1"},
                                        {"kind", "Namespace"},
                                        {"metadata", {{"name", name}, {"labels", labels}}}});
    } catch (const ambient::kube::ApiError& e) {
      if (e.kind() != ambient::kube::ApiError::Kind::kConflict) throw;
    }
  }
  // A pod bound to the node; `tolerate` keeps it when the node turns NotReady (kubelet stopped).
  std::string create_pod(const std::string& ns, const std::string& name, bool running_spec) {
    json spec = {{"nodeName", kNode},
                 {"terminationGracePeriodSeconds", 0},
                 {"enableServiceLinks", false},
                 {"automountServiceAccountToken", false},
                 {"containers",
                  {{{"name", "app"},
                    {"image", kApp},
                    {"imagePullPolicy", "Never"},
                    {"command", {"sleep", "100000"}}}}}};
    if (!running_spec) {
      spec["tolerations"] = {{{"operator", "Exists"}, {"effect", "NoExecute"}},
                             {{"operator", "Exists"}, {"effect", "NoSchedule"}}};
    }
    const json pod = c().create("/api/v1/namespaces/" + ns + "/pods",
                                {{"apiVersion", "v1"},
                                 {"kind", "Pod"},
                                 {"metadata", {{"name", name}, {"namespace", ns}}},
                                 {"spec", spec}});
    return pod["metadata"]["uid"];
  }
  void delete_pod(const std::string& ns, const std::string& name) {
    try {
      c().remove("/api/v1/namespaces/" + ns + "/pods/" + name, {{"gracePeriodSeconds", 0}});
    } catch (const ambient::kube::ApiError& e) {
      if (e.kind() != ambient::kube::ApiError::Kind::kNotFound) throw;
    }
  }
  void label_namespace(const std::string& ns, bool ambient) {
    c().patch(
        "/api/v1/namespaces/" + ns,
        {{"metadata",
          {{"labels", {{"istio.io/dataplane-mode", ambient ? json("ambient") : json(nullptr)}}}}}},
        "application/merge-patch+json");
  }
  // Deletes every pod of ns (grace 0) and waits until the API has none left.
  void clear_namespace(const std::string& ns) {
    const auto list = c().list("/api/v1/namespaces/" + ns + "/pods");
    for (const auto& p : list["items"]) delete_pod(ns, p["metadata"]["name"]);
    const auto until = Clock::now() + 120s;
    while (!c().list("/api/v1/namespaces/" + ns + "/pods")["items"].empty()) {
      if (Clock::now() > until) throw std::runtime_error("pods of " + ns + " do not go away");
      std::this_thread::sleep_for(200ms);
    }
  }

 private:
  std::string kubeconfig_;
};

// When each pod (ns/name) was first seen with ambient.istio.io/redirection=enabled, and when it
// was last seen without it, from a watch of the node's pods.
class AnnotationWatch {
 public:
  explicit AnnotationWatch(std::string kubeconfig) : kubeconfig_(std::move(kubeconfig)) {
    thread_ = std::thread([this] { loop(); });
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 30s, [this] { return started_; });
  }
  ~AnnotationWatch() {
    stop_ = true;
    thread_.join();
  }
  // Waits for ns/name to be `enabled`; its first time, or nullopt after the timeout.
  std::optional<Clock::time_point> enabled(const std::string& key, std::chrono::milliseconds t) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, t, [&] { return enabled_.count(key) > 0; })) return std::nullopt;
    return enabled_[key];
  }

 private:
  void loop() {
    auto c = api_client(kubeconfig_);
    const std::string base = "/api/v1/pods?fieldSelector=spec.nodeName%3D" + std::string(kNode);
    while (!stop_) {
      try {
        const auto list = c.list(base);
        for (const auto& p : list["items"]) note(p);
        {
          std::lock_guard lock(mu_);
          started_ = true;
        }
        cv_.notify_all();
        const std::string rv = list["metadata"]["resourceVersion"];
        c.watch(
            base + "&allowWatchBookmarks=true&resourceVersion=" + rv,
            [&](const json& ev) {
              if (ev.value("type", "") != "BOOKMARK" && ev.contains("object")) note(ev["object"]);
              return !stop_.load();
            },
            300s, &stop_);
      } catch (const std::exception& e) {
        if (!stop_) std::this_thread::sleep_for(100ms);
      }
    }
  }
  void note(const json& pod) {
    const auto now = Clock::now();
    const auto& md = pod["metadata"];
    const std::string key = md.value("namespace", "") + "/" + md.value("name", "");
    const auto ann = md.value("annotations", json::object());
    const bool on = ann.value("ambient.istio.io/redirection", "") == "enabled";
    std::lock_guard lock(mu_);
    if (on && !enabled_.count(key)) {
      enabled_[key] = now;
      cv_.notify_all();
    }
  }

  std::string kubeconfig_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  std::map<std::string, Clock::time_point> enabled_;
};

// A pod's network namespace, as a runtime makes one: lo up, the pod's IP (on lo: no veth needed
// for ztunnel's in-pod listeners, and the agents only read it).
struct PodNetns {
  std::string name, ip;
  PodNetns(std::string n, std::string address) : name(std::move(n)), ip(std::move(address)) {
    sh("ip netns add " + name);
    sh("ip -n " + name + " link set lo up");
    sh("ip -n " + name + " addr add " + ip + "/32 dev lo");
  }
  ~PodNetns() { std::system(("ip netns del " + name + " >/dev/null 2>&1").c_str()); }
  PodNetns(const PodNetns&) = delete;
  PodNetns& operator=(const PodNetns&) = delete;
  std::string path() const { return "/var/run/netns/" + name; }
};

std::string bench_ip(int n) {
  return "10.98." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 1);
}

// The plugin as the node has it: the last entry of the node's conflist must be the system's.
class Plugin {
 public:
  explicit Plugin(const Options& o) : binary_(o.plugin) {
    const json list = json::parse(slurp(o.conflist));
    const auto& entry = list.at("plugins").back();
    const std::string want = fs::path(o.plugin).filename();
    if (entry.value("type", "") != want) {
      throw std::runtime_error(o.conflist + ": last plugin is '" + entry.value("type", "") +
                               "', not " + want + " (is the system installed?)");
    }
    base_ = entry;
    base_["cniVersion"] = list.value("cniVersion", "1.0.0");
    base_["name"] = list.value("name", "k8s");
  }
  ambient::testing::Execution call(const std::string& verb, const PodNetns& n,
                                   const std::string& ns, const std::string& pod,
                                   const std::string& uid, const std::string& id) const {
    json conf = base_;
    conf["prevResult"] = {{"cniVersion", base_["cniVersion"]},
                          {"interfaces", {{{"name", "eth0"}, {"sandbox", n.path()}}}},
                          {"ips", {{{"address", n.ip + "/32"}, {"interface", 0}}}},
                          {"dns", json::object()}};
    const std::vector<std::string> env = {
        "CNI_COMMAND=" + verb,
        "CNI_CONTAINERID=" + id,
        "CNI_NETNS=" + n.path(),
        "CNI_IFNAME=eth0",
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=" + ns + ";K8S_POD_NAME=" + pod +
            ";K8S_POD_INFRA_CONTAINER_ID=" + id + ";K8S_POD_UID=" + uid,
        "CNI_PATH=/opt/cni/bin",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    return ambient::testing::run({binary_}, env, conf.dump(), 120s);
  }

 private:
  std::string binary_;
  json base_;
};

// The node agent's process (by its command name: the oldest such process, the container's main
// one) and what it uses.
struct AgentUsage {
  int pid = 0;
  long rss_kb = 0, anon_kb = 0;
  double cpu_s = 0;
};
std::optional<AgentUsage> agent_usage(const std::string& comm) {
  std::optional<AgentUsage> best;
  unsigned long long best_start = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const auto pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string c = slurp(e.path() / "comm");
    while (!c.empty() && c.back() == '\n') c.pop_back();
    if (c != comm) continue;
    // /proc/<pid>/stat after the comm (in parentheses, may hold spaces): fields 14 to 17 are
    // utime, stime, cutime and cstime, 22 the start time, in clock ticks.
    const std::string stat = slurp(e.path() / "stat");
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));
    std::vector<std::string> f{std::istream_iterator<std::string>(rest), {}};
    if (f.size() < 20) continue;
    const unsigned long long start = std::stoull(f[19]);
    if (best && start >= best_start) continue;
    AgentUsage u;
    u.pid = std::stoi(pid);
    // utime + stime + cutime + cstime: the programs an agent runs for its work (Istio's runs nft
    // or iptables-restore per pod) are part of what it costs.
    u.cpu_s = (std::stod(f[11]) + std::stod(f[12]) + std::stod(f[13]) + std::stod(f[14])) /
              static_cast<double>(sysconf(_SC_CLK_TCK));
    std::istringstream status(slurp(e.path() / "status"));
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmRSS:", 0) == 0) u.rss_kb = std::stol(line.substr(6));
      if (line.rfind("RssAnon:", 0) == 0) u.anon_kb = std::stol(line.substr(8));
    }
    best = u;
    best_start = start;
  }
  return best;
}

// The agent before and after a measure must be the same process.
AgentUsage same_agent(const std::string& comm, const AgentUsage& before) {
  const auto now = agent_usage(comm);
  if (!now) throw std::runtime_error("no process named " + comm + " any more");
  if (now->pid != before.pid) {
    throw std::runtime_error("the agent restarted during the measure (pid " +
                             std::to_string(before.pid) + " → " + std::to_string(now->pid) + ")");
  }
  return *now;
}

json stats(const std::vector<double>& ms) {
  if (ms.empty()) return {{"n", 0}};
  return {{"n", ms.size()},
          {"median_ms", median_ms(ms)},
          {"p10_ms", percentile_ms(ms, 10)},
          {"p90_ms", percentile_ms(ms, 90)},
          {"p99_ms", percentile_ms(ms, 99)}};
}

void say(const std::string& what) {
  std::cerr << "mesh_bench: " << what << std::endl;
}

// --- exec phase ---------------------------------------------------------------------------------

json excluded_add(const Options& o, const Plugin& plugin) {
  PodNetns n("mb-excl", bench_ip(0));
  std::vector<double> ours, floor;
  for (int i = -3; i < o.runs; ++i) {
    const auto x = plugin.call("ADD", n, "kube-system", "excluded", "uid-excluded", "excl");
    if (x.exit_code != 0) throw std::runtime_error("excluded ADD failed: " + x.out + x.err);
    const auto f = ambient::testing::run({o.floor}, {}, "{}", 10s);
    if (i < 0) continue;
    ours.push_back(std::chrono::duration<double, std::milli>(x.elapsed).count());
    floor.push_back(std::chrono::duration<double, std::milli>(f.elapsed).count());
  }
  return {{"add", stats(ours)}, {"exec_floor", stats(floor)}};
}

json untouched_add(const Options& o, Api& api, const Plugin& plugin) {
  api.ensure_namespace("bench-plain", false);
  const std::string uid = api.create_pod("bench-plain", "plain", false);
  std::this_thread::sleep_for(500ms);
  PodNetns n("mb-plain", bench_ip(1));
  std::vector<double> ms;
  for (int i = -3; i < o.runs; ++i) {
    const auto x = plugin.call("ADD", n, "bench-plain", "plain", uid, "plain");
    if (x.exit_code != 0) throw std::runtime_error("untouched ADD failed: " + x.out + x.err);
    if (i >= 0) ms.push_back(std::chrono::duration<double, std::milli>(x.elapsed).count());
    plugin.call("DEL", n, "bench-plain", "plain", uid, "plain");
  }
  api.clear_namespace("bench-plain");
  return stats(ms);
}

// Each sample: a new pod object (given 300 ms to reach the agents' informers, as a kubelet's ADD
// comes long after the pod's creation), then ADD, timed until it returned and the `enabled`
// annotation was seen; then DEL and delete, untimed.
json enrolled_add(const Options& o, Api& api, AnnotationWatch& watch, const Plugin& plugin) {
  api.ensure_namespace("bench-mesh", true);
  std::vector<double> exec_ms, whole_ms;
  int failures = 0;
  for (int i = -3; i < o.runs; ++i) {
    const std::string name = "e" + std::to_string(i + 3);
    const std::string uid = api.create_pod("bench-mesh", name, false);
    PodNetns n("mb-" + name, bench_ip(10 + i + 3));
    std::this_thread::sleep_for(300ms);
    const auto t0 = Clock::now();
    const auto x = plugin.call("ADD", n, "bench-mesh", name, uid, "c-" + name);
    const auto t1 = Clock::now();
    const auto seen = watch.enabled("bench-mesh/" + name, 15s);
    if (x.exit_code != 0 || !seen) {
      ++failures;
      say("enrolled ADD " + name + " failed (exit " + std::to_string(x.exit_code) +
          (seen ? "" : ", no annotation") + "): " + x.out + x.err);
    } else if (i >= 0) {
      exec_ms.push_back(ms_between(t0, t1));
      whole_ms.push_back(ms_between(t0, std::max(t1, *seen)));
    }
    plugin.call("DEL", n, "bench-mesh", name, uid, "c-" + name);
    api.delete_pod("bench-mesh", name);
    std::this_thread::sleep_for(200ms);
  }
  api.clear_namespace("bench-mesh");
  return {{"exec", stats(exec_ms)}, {"whole", stats(whole_ms)}, {"failures", failures}};
}

struct BenchPod {
  std::string name, uid;
  std::unique_ptr<PodNetns> netns;
};

std::vector<BenchPod> make_pods(Api& api, const std::string& ns, const std::string& prefix,
                                int count, int ip_base) {
  std::vector<BenchPod> pods;
  for (int i = 0; i < count; ++i) {
    BenchPod p;
    p.name = prefix + std::to_string(i);
    p.uid = api.create_pod(ns, p.name, false);
    p.netns = std::make_unique<PodNetns>("mb-" + p.name, bench_ip(ip_base + i));
    pods.push_back(std::move(p));
  }
  return pods;
}

void release_pods(Api& api, const Plugin& plugin, const std::string& ns,
                  std::vector<BenchPod>& pods) {
  for (auto& p : pods) plugin.call("DEL", *p.netns, ns, p.name, p.uid, "c-" + p.name);
  api.clear_namespace(ns);
  pods.clear();
}

json burst(const Options& o, Api& api, AnnotationWatch& watch, const Plugin& plugin) {
  api.ensure_namespace("bench-burst", true);
  auto pods = make_pods(api, "bench-burst", "b", o.burst, 1000);
  std::this_thread::sleep_for(2s);
  std::vector<double> ms(pods.size(), -1);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  std::vector<std::string> errors(pods.size());
  for (size_t i = 0; i < pods.size(); ++i) {
    threads.emplace_back([&, i] {
      ++ready;
      while (!go) std::this_thread::yield();
      const auto& p = pods[i];
      const auto x = plugin.call("ADD", *p.netns, "bench-burst", p.name, p.uid, "c-" + p.name);
      if (x.exit_code == 0) {
        ms[i] = std::chrono::duration<double, std::milli>(x.elapsed).count();
      } else {
        errors[i] = x.out + x.err;
      }
    });
  }
  while (ready < static_cast<int>(pods.size())) std::this_thread::sleep_for(1ms);
  const auto t0 = Clock::now();
  go = true;
  for (auto& t : threads) t.join();
  std::vector<double> ok;
  int annotated = 0;
  Clock::time_point last = t0;
  for (size_t i = 0; i < pods.size(); ++i) {
    if (ms[i] >= 0) ok.push_back(ms[i]);
    if (!errors[i].empty()) say("burst ADD " + pods[i].name + " failed: " + errors[i]);
    if (const auto seen = watch.enabled("bench-burst/" + pods[i].name, 30s)) {
      ++annotated;
      last = std::max(last, *seen);
    }
  }
  release_pods(api, plugin, "bench-burst", pods);
  json out = stats(ok);
  out["succeeded"] = ok.size();
  out["attempted"] = ms.size();
  out["annotated"] = annotated;
  out["all_enabled_ms"] = ms_between(t0, last);
  return out;
}

json rss(const Options& o, Api& api, AnnotationWatch& watch, const Plugin& plugin) {
  api.ensure_namespace("bench-rss", true);
  std::this_thread::sleep_for(3s);
  const auto before = agent_usage(o.agent_comm);
  if (!before) throw std::runtime_error("no process named " + o.agent_comm);
  auto pods = make_pods(api, "bench-rss", "r", o.rss_pods, 2000);
  std::this_thread::sleep_for(2s);
  std::atomic<size_t> next{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      for (size_t i; (i = next++) < pods.size();) {
        const auto& p = pods[i];
        if (plugin.call("ADD", *p.netns, "bench-rss", p.name, p.uid, "c-" + p.name).exit_code) {
          ++failed;
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  int annotated = 0;
  for (const auto& p : pods) annotated += watch.enabled("bench-rss/" + p.name, 30s) ? 1 : 0;
  std::this_thread::sleep_for(5s);
  const auto with = same_agent(o.agent_comm, *before);
  release_pods(api, plugin, "bench-rss", pods);
  return {{"pods", o.rss_pods},
          {"failed_adds", failed.load()},
          {"annotated", annotated},
          {"rss_before_mib", before->rss_kb / 1024.0},
          {"anon_before_mib", before->anon_kb / 1024.0},
          {"rss_with_pods_mib", with.rss_kb / 1024.0},
          {"anon_with_pods_mib", with.anon_kb / 1024.0}};
}

// C cycles of create → ADD → DEL → delete by `churn_workers` workers; the agent's CPU seconds
// from before the first to 5 s after the last (its informer work and releases included).
json churn(const Options& o, Api& api, const Plugin& plugin) {
  api.ensure_namespace("bench-churn", true);
  std::this_thread::sleep_for(3s);
  const auto before = agent_usage(o.agent_comm);
  if (!before) throw std::runtime_error("no process named " + o.agent_comm);
  std::atomic<int> next{0}, add_failures{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < o.churn_workers; ++w) {
    workers.emplace_back([&, w] {
      for (int i; (i = next++) < o.churn;) {
        const std::string name = "c" + std::to_string(i);
        const std::string uid = api.create_pod("bench-churn", name, false);
        PodNetns n("mb-" + name, bench_ip(3000 + w));
        std::this_thread::sleep_for(250ms);
        auto x = plugin.call("ADD", n, "bench-churn", name, uid, "c-" + name);
        if (x.exit_code != 0) ++add_failures;
        plugin.call("DEL", n, "bench-churn", name, uid, "c-" + name);
        api.delete_pod("bench-churn", name);
      }
    });
  }
  for (auto& t : workers) t.join();
  const double wall = ms_between(t0, Clock::now()) / 1000.0;
  std::this_thread::sleep_for(5s);
  const auto after = same_agent(o.agent_comm, *before);
  api.clear_namespace("bench-churn");
  return {{"cycles", o.churn},
          {"add_failures", add_failures.load()},
          {"wall_s", wall},
          {"agent_cpu_s", after.cpu_s - before->cpu_s},
          {"rss_after_mib", after.rss_kb / 1024.0}};
}

// --- kubelet phase ------------------------------------------------------------------------------

// containerd's "RunPodSandbox for &PodSandboxMetadata{Name:N,...,Namespace:NS,...}" and its
// "... returns sandbox id" line, each with time="…Z" (RFC 3339, ns): the CRI call the kubelet
// makes, which runs the whole CNI chain.
std::map<std::string, double> sandbox_ms(const std::string& log, const std::string& ns,
                                         std::uintmax_t from) {
  static const std::regex line(
      R"re(time="([0-9T:.\-]+)Z".*RunPodSandbox for &PodSandboxMetadata\{Name:([^,]+),Uid:[^,]*,Namespace:([^,]+),.*)re");
  auto parse = [](const std::string& t) {  // seconds since midnight is enough within a run
    const auto hms = t.substr(t.find('T') + 1);
    return std::stod(hms.substr(0, 2)) * 3600 + std::stod(hms.substr(3, 2)) * 60 +
           std::stod(hms.substr(6));
  };
  std::map<std::string, double> start, out;
  std::istringstream in(slurp(log).substr(from));
  for (std::string l; std::getline(in, l);) {
    std::smatch m;
    if (!std::regex_search(l, m, line) || m[3] != ns) continue;
    const bool done = l.find("returns sandbox id") != std::string::npos;
    // From the first attempt (a failed ADD makes the kubelet try again: the user waits for all).
    if (!done) {
      start.emplace(m[2], parse(m[1]));
    } else if (start.count(m[2])) {
      out[m[2]] = (parse(m[1]) - start[m[2]]) * 1000.0;
    }
  }
  return out;
}

void wait_running(Api& api, const std::string& ns, size_t count, std::chrono::seconds limit) {
  const auto until = Clock::now() + limit;
  while (true) {
    size_t running = 0;
    std::map<std::string, int> phases;
    const json list = api.c().list("/api/v1/namespaces/" + ns + "/pods");
    for (const auto& p : list["items"]) {
      const std::string phase = p.value("/status/phase"_json_pointer, std::string("none"));
      ++phases[phase];
      if (phase == "Running") ++running;
    }
    if (running >= count) return;
    if (Clock::now() > until) {
      std::string seen;
      for (const auto& [phase, n] : phases) seen += " " + phase + "=" + std::to_string(n);
      throw std::runtime_error(ns + ": " + std::to_string(running) + "/" + std::to_string(count) +
                               " pods running after " + std::to_string(limit.count()) +
                               " s (phases:" + seen + ")");
    }
    std::this_thread::sleep_for(500ms);
  }
}

json kubelet_sandboxes(const Options& o, Api& api, const std::string& ns, bool ambient) {
  api.ensure_namespace(ns, ambient);
  std::this_thread::sleep_for(1s);
  const auto from = fs::file_size(o.containerd_log);
  for (int i = 0; i < o.kubelet_pods; ++i) {
    api.create_pod(ns, "k" + std::to_string(i), true);
    wait_running(api, ns, static_cast<size_t>(i + 1), 120s);
  }
  const auto per_pod = sandbox_ms(o.containerd_log, ns, from);
  std::vector<double> ms;
  for (const auto& [pod, v] : per_pod) ms.push_back(v);
  api.clear_namespace(ns);
  json out = stats(ms);
  out["pods"] = o.kubelet_pods;
  return out;
}

// ztunnel's admin config_dump: the uids of the pods it holds in state Up.
std::set<std::string> ztunnel_up(const std::string& admin) {
  const auto x = ambient::testing::run({"/usr/bin/curl", "-s", "-m", "5", admin + "/config_dump"},
                                       {}, "", 10s);
  std::set<std::string> up;
  const auto j = json::parse(x.out, nullptr, false);
  if (!j.is_object()) return up;
  const auto states = j.find("workloadState");
  if (states == j.end() || !states->is_object()) return up;
  for (auto it = states->begin(); it != states->end(); ++it) {
    if (it->is_object() && it->value("state", "") == "Up") up.insert(it.key());
  }
  return up;
}

json label_to_served(const Options& o, Api& api) {
  const std::string ns = "bench-label";
  api.ensure_namespace(ns, false);
  std::this_thread::sleep_for(1s);
  std::vector<std::string> uids;
  for (int i = 0; i < o.label_pods; ++i) {
    uids.push_back(api.create_pod(ns, "l" + std::to_string(i), true));
  }
  wait_running(api, ns, uids.size(), 600s);
  std::this_thread::sleep_for(3s);
  const auto t0 = Clock::now();
  api.label_namespace(ns, true);
  size_t served = 0;
  while (Clock::now() - t0 < 300s) {
    const auto up = ztunnel_up(o.ztunnel_admin);
    served = std::count_if(uids.begin(), uids.end(), [&](const auto& u) { return up.count(u); });
    if (served == uids.size()) break;
    std::this_thread::sleep_for(20ms);
  }
  const double ms = ms_between(t0, Clock::now());
  api.label_namespace(ns, false);
  std::this_thread::sleep_for(3s);
  api.clear_namespace(ns);
  return {{"pods", uids.size()}, {"served", served}, {"ms", ms}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"one CNI system on the real node, measured for the side-by-side benchmark"};
  app.require_subcommand(1);
  Options o;
  auto common = [&](CLI::App* c) {
    c->add_option("--system", o.system, "label in the results")->required();
    c->add_option("--kubeconfig", o.kubeconfig, "cluster-admin kubeconfig")->required();
    c->add_option("--json", o.json_out)->required();
    c->add_option("--rows", o.rows,
                  "only these rows (exec: excluded untouched enrolled burst rss "
                  "churn; kubelet: sandboxes label)");
  };
  auto* ex = app.add_subcommand("exec", "the plugin exec'd directly (kubelet stopped)");
  common(ex);
  ex->add_option("--plugin", o.plugin, "the plugin binary the node installed")->required();
  ex->add_option("--conflist", o.conflist, "the node's conflist")->required();
  ex->add_option("--agent-comm", o.agent_comm, "the node agent's command name")->required();
  ex->add_option("--exec-floor", o.floor, "static exec floor binary")->required();
  ex->add_option("--runs", o.runs)->capture_default_str();
  ex->add_option("--burst", o.burst)->capture_default_str();
  ex->add_option("--rss-pods", o.rss_pods)->capture_default_str();
  ex->add_option("--churn", o.churn)->capture_default_str();
  ex->add_option("--churn-workers", o.churn_workers)->capture_default_str();
  auto* kl = app.add_subcommand("kubelet", "through the real kubelet");
  common(kl);
  kl->add_option("--containerd-log", o.containerd_log)->required();
  kl->add_option("--ztunnel-admin", o.ztunnel_admin)->capture_default_str();
  kl->add_option("--kubelet-pods", o.kubelet_pods)->capture_default_str();
  kl->add_option("--label-pods", o.label_pods)->capture_default_str();
  o.ztunnel_admin = "http://127.0.0.1:15000";
  CLI11_PARSE(app, argc, argv);

  json out = {{"system", o.system}};
  try {
    Api api(o.kubeconfig);
    if (ex->parsed()) {
      const Plugin plugin(o);
      AnnotationWatch watch(o.kubeconfig);
      if (o.wants("excluded")) {
        say(o.system + ": excluded ADD");
        out["excluded_add"] = excluded_add(o, plugin);
      }
      if (o.wants("untouched")) {
        say(o.system + ": untouched ADD");
        out["untouched_add"] = untouched_add(o, api, plugin);
      }
      if (o.wants("enrolled")) {
        say(o.system + ": enrolled ADD");
        out["enrolled_add"] = enrolled_add(o, api, watch, plugin);
      }
      if (o.wants("burst")) {
        say(o.system + ": burst of " + std::to_string(o.burst));
        out["burst"] = burst(o, api, watch, plugin);
      }
      if (o.wants("rss")) {
        say(o.system + ": RSS with " + std::to_string(o.rss_pods) + " pods");
        out["rss"] = rss(o, api, watch, plugin);
      }
      if (o.wants("churn")) {
        say(o.system + ": churn of " + std::to_string(o.churn));
        out["churn"] = churn(o, api, plugin);
      }
    } else {
      if (o.wants("sandboxes")) {
        say(o.system + ": kubelet sandboxes (ambient)");
        out["kubelet_enrolled"] = kubelet_sandboxes(o, api, "bench-kmesh", true);
        say(o.system + ": kubelet sandboxes (plain)");
        out["kubelet_plain"] = kubelet_sandboxes(o, api, "bench-kplain", false);
      }
      if (o.wants("label")) {
        say(o.system + ": label → " + std::to_string(o.label_pods) + " pods served");
        out["label"] = label_to_served(o, api);
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "mesh_bench: " << e.what() << "\n";
    out["error"] = e.what();
    std::ofstream(o.json_out) << out.dump(2) << "\n";
    return 1;
  }
  std::ofstream(o.json_out) << out.dump(2) << "\n";
  return 0;
}
