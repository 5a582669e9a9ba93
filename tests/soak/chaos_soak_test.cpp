// Chaos soak (issue 11): a seeded random walk over what a node lives through — pods created,
// ADDed, DELed, relabelled, terminating and deleted; namespaces labelled and unlabelled; the
// node component (`ambient-cni-node run`, a process) killed with SIGKILL and restarted; ztunnel
// restarted or disconnected; API 5xx bursts and 410s; the primary CNI rewriting its conflist.
// After every step the node must agree with an independent model of the precedence rules:
//   - an ADD that succeeds for a pod that should be in the mesh has enrolled it (ztunnel holds
//     it, its rules are in, it is annotated); an ADD for such a pod never succeeds while it
//     cannot be enrolled (fail closed); a failed ADD leaves nothing behind; DEL never fails;
//   - once the node is up and settled, every pod is enrolled exactly when the model says so, and
//     ztunnel holds no one else; our conflist entry is in place;
//   - while the agent is down, no enrolled pod loses its rules (nobody leaves the mesh early).
// AMBIENT_SOAK_STEPS (default 2000), AMBIENT_SOAK_SEED (default: from the clock, printed),
// AMBIENT_SOAK_AGENT_KILLS=0 (keeps one agent process, for the RSS trend).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "netns/host_probe.h"
#include "netns/redirect.h"
#include "rundir/store.h"
#include "tests/install/install_fixture.h"
#include "tests/standins/apiserver/apiserver.h"
#include "tests/standins/ztunnel/ztunnel_standin.h"
#include "tests/support/local_http.h"
#include "tests/support/process.h"
#include "tests/support/testbed.h"
#include "tests/support/wait.h"

namespace ambient {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using testing::free_port;
using testing::http_status;
using testing::spit;

const std::string kBridge = R"({
  "cniVersion": "1.0.0",
  "name": "k8s",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.197.0.0/16"}}
  ]
}
)";
constexpr const char* kMode = "istio.io/dataplane-mode";
constexpr const char* kRedirection = "ambient.istio.io/redirection";
const std::vector<std::string> kNamespaces = {"demo", "legacy", "kube-system"};

long env_number(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
}

std::string join(const std::set<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}

int open_fds(int pid) {
  std::error_code ec;
  int n = 0;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       it != fs::directory_iterator(); ++it) {
    ++n;
  }
  return n;
}

long rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// One pod slot: a pod name that lives through generations (each a new uid and sandbox).
struct Slot {
  int index = 0;
  std::string ns;
  bool sidecar = false;  // carries sidecar.istio.io/status: never ours
  int gen = 0;
  bool exists = false;   // the Pod object is in the API
  bool sandbox = false;  // ADDed and not DELed (its netns exists)
  bool terminating = false;
  std::string mode;  // pod label istio.io/dataplane-mode: "", "ambient", "none"

  std::string name() const { return "p" + std::to_string(index); }
  std::string uid() const { return "uid-" + name() + "-" + std::to_string(gen); }
  std::string container() const { return "c-" + name() + "-" + std::to_string(gen); }
  std::string netns_name() const {
    return "ambtest-" + std::to_string(::getpid()) + "-k" + std::to_string(index) + "g" +
           std::to_string(gen);
  }
  std::string netns() const { return testbed::Topology::path(netns_name()); }
  std::string ip() const {
    return "10.197." + std::to_string(index) + "." + std::to_string(gen % 250 + 1);
  }
};

class ChaosSoak : public ::testing::Test {
 protected:
  void SetUp() override {
    testbed::sweep_leftover_namespaces();
    seed_ = static_cast<std::uint64_t>(env_number(
        "AMBIENT_SOAK_SEED",
        std::chrono::system_clock::now().time_since_epoch() / std::chrono::microseconds(1)));
    rng_.seed(seed_);
    std::cerr << "soak seed " << seed_ << " (AMBIENT_SOAK_SEED reproduces this walk)\n";
    api_.start();
    dirs_.write_token(api_.token(), api_.ca_pem());
    api_.write_kubeconfig(dirs_.root / "node-kubeconfig");
    host_netns_ = "ambtest-" + std::to_string(::getpid()) + "-soakh";
    testbed::must("ip netns add " + host_netns_);
    for (const auto& ns : kNamespaces) {
      ns_ambient_[ns] = false;
      put_namespace(ns);
    }
    for (int i = 0; i < 10; ++i) {
      Slot s;
      s.index = i;
      s.ns = i < 6 ? "demo" : i < 8 ? "legacy" : "kube-system";
      s.sidecar = i == 5;
      slots_.push_back(s);
    }
    spit(dirs_.conf / "10-k8s.conflist", kBridge);
    start_ztunnel();
    health_port_ = free_port();
    start_agent();
    plugin_conf_ = our_entry();
    ASSERT_FALSE(plugin_conf_.is_null()) << log_tail();
  }

  void TearDown() override {
    // Leave the node as a kubelet would: every sandbox torn down, then the DaemonSet removed
    // (SIGTERM with no DaemonSet in the API: uninstall, which releases whatever is left).
    if (!agent_) start_agent();
    for (auto& s : slots_) {
      if (s.sandbox) del(s);
    }
    if (agent_) agent_->stop(SIGTERM, 20s);
    agent_.reset();
    ztunnel_.reset();
    for (auto& s : slots_) testbed::sh("ip netns del " + s.netns_name() + " 2>/dev/null");
    testbed::sh("ip netns del " + host_netns_);
    if (HasFailure()) {
      std::cerr << "soak seed " << seed_ << "\n" << history() << log_tail() << api_requests();
    }
  }

  // ---- the node -------------------------------------------------------------------------------

  void start_ztunnel() {
    ztunnel_ = std::make_unique<standins::ZtunnelStandin>(standins::ZtunnelStandin::Options{
        (dirs_.run / "ztunnel.sock").string(), 100ms, /*run_proxies=*/false});
    ztunnel_->start();
  }

  void start_agent() {
    std::vector<std::string> argv = {"/usr/bin/env", "-i"};
    for (const auto& e : dirs_.daemonset_env(
             api_.port(), {"AMBIENT_KUBECONFIG=" + (dirs_.root / "node-kubeconfig").string(),
                           "AMBIENT_HOST_NETNS=" + testbed::Topology::path(host_netns_),
                           "AMBIENT_LISTEN_ADDRESS=127.0.0.1",
                           "AMBIENT_HEALTH_PORT=" + std::to_string(health_port_),
                           "AMBIENT_METRICS_PORT=-1", "AMBIENT_API_TIMEOUT_MS=2000",
                           "AMBIENT_AGENT_TIMEOUT_MS=10000", "NODE_NAME=node-1"})) {
      argv.push_back(e);
    }
    argv.push_back(AMBIENT_NODE_BIN);
    argv.push_back("run");
    agent_ = std::make_unique<testing::BackgroundProcess>(argv, log_path().string());
    ++agent_starts_;
    const bool ready = testing::wait_until(
        [&] { return !agent_->running() || http_status(health_port_, "/readyz") == 200; }, 30s,
        20ms);
    if (!ready || !agent_->running()) {
      violation("the node component did not become ready after a start");
    }
    agent_pid_since_ = step_;
  }

  void kill_agent() {
    agent_->stop(SIGKILL);
    agent_.reset();
    // What was enrolled when it died must stay enrolled while it is down.
    enrolled_at_kill_.clear();
    for (const auto& s : slots_) {
      if (wants(s)) enrolled_at_kill_.push_back(s.index);
    }
  }

  json our_entry() const {
    const auto doc =
        json::parse(testing::read_file(dirs_.conf / "10-k8s.conflist"), nullptr, false);
    if (doc.is_discarded() || !doc.contains("plugins") || doc["plugins"].empty()) return nullptr;
    auto conf = doc["plugins"].back();
    if (conf.value("type", "") != "ambient-cni") return nullptr;
    conf["cniVersion"] = doc["cniVersion"];
    conf["name"] = doc["name"];
    return conf;
  }

  testing::Execution cni(const char* verb, const Slot& s) const {
    auto conf = plugin_conf_;
    conf["prevResult"] = {{"cniVersion", "1.0.0"},
                          {"interfaces", {{{"name", "eth0"}, {"sandbox", s.netns()}}}},
                          {"ips", {{{"address", s.ip() + "/32"}, {"interface", 0}}}}};
    return testing::run(
        {(dirs_.bin / "ambient-cni").string()},
        {std::string("CNI_COMMAND=") + verb, "CNI_CONTAINERID=" + s.container(),
         "CNI_NETNS=" + s.netns(), "CNI_IFNAME=eth0",
         "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=" + s.ns + ";K8S_POD_NAME=" + s.name() +
             ";K8S_POD_UID=" + s.uid() + ";K8S_POD_INFRA_CONTAINER_ID=" + s.container(),
         "CNI_PATH=" + dirs_.bin.string(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
        conf.dump(), 40s);
  }

  // ---- the API objects -----------------------------------------------------------------------

  void put_namespace(const std::string& ns) {
    json labels = json::object();
    if (ns_ambient_[ns]) labels[kMode] = "ambient";
    api_.put({{"apiVersion", "v1"},
              {"kind", "Namespace"},
              {"metadata", {{"name", ns}, {"labels", labels}}}});
  }

  // What the test owns of a pod (labels, deletionTimestamp, status); the agent owns its
  // annotation, so changes go through update(), atomic like a PATCH, and never overwrite it.
  void apply_pod_fields(const Slot& s, json& pod) const {
    json labels = json::object();
    if (!s.mode.empty()) labels[kMode] = s.mode;
    pod["metadata"]["labels"] = labels;
    if (s.sidecar) {
      pod["metadata"]["annotations"]["sidecar.istio.io/status"] =
          R"({"containers":["istio-proxy"]})";
    }
    if (s.terminating) {
      pod["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z";
      pod["metadata"]["deletionGracePeriodSeconds"] = 30;
    }
    pod["status"] = {{"phase", "Pending"}};
    if (s.sandbox) {
      pod["status"] = {{"phase", "Running"}, {"podIP", s.ip()}, {"podIPs", {{{"ip", s.ip()}}}}};
    }
  }

  void put_pod(const Slot& s) {
    const bool same = api_.update("Pod", s.ns, s.name(), [&](json& pod) {
      if (pod["metadata"].value("uid", "") == s.uid()) apply_pod_fields(s, pod);
    });
    const auto current = api_.get_object("Pod", s.ns, s.name());
    if (same && current && (*current)["metadata"].value("uid", "") == s.uid()) return;
    json pod = {{"apiVersion", "v1"},
                {"kind", "Pod"},
                {"metadata", {{"name", s.name()}, {"namespace", s.ns}, {"uid", s.uid()}}},
                {"spec", {{"nodeName", "node-1"}, {"serviceAccountName", s.name() + "-sa"}}}};
    apply_pod_fields(s, pod);
    api_.put(std::move(pod));
  }

  std::string annotation(const Slot& s) const {
    const auto obj = api_.get_object("Pod", s.ns, s.name());
    if (!obj || (*obj)["metadata"].value("uid", "") != s.uid()) return "<no pod>";
    return (*obj)["metadata"].value("annotations", json::object()).value(kRedirection, "");
  }

  // ---- the model -----------------------------------------------------------------------------

  // The precedence rules, written here independently of config/decision.cpp.
  bool wants(const Slot& s) const {
    if (!s.exists || !s.sandbox) return false;
    if (s.ns == "kube-system") return false;  // excluded namespace
    if (s.sidecar) return false;
    if (s.mode == "none") return false;
    if (s.mode == "ambient") return true;
    return ns_ambient_.at(s.ns);
  }

  // The pod's in-pod rules. The agent may be changing them while we look (a release, a
  // repair): a listing that fails mid-change is taken again; one that keeps failing counts as
  // drifted (and names why).
  netns::RedirectStatus rules(const Slot& s) const {
    netns::RedirectOptions o;
    o.ipv6 = false;
    const netns::RedirectPlan plan(o);
    for (int attempt = 0;; ++attempt) {
      try {
        return netns::inspect(netns::NetnsHandle::open(s.netns()), plan).status;
      } catch (const std::exception& e) {
        if (attempt == 50) {
          inspect_error_ = describe(s) + ": " + e.what();
          return netns::RedirectStatus::Drifted;
        }
        std::this_thread::sleep_for(10ms);
      }
    }
  }

  // What is wrong with slot s now ("" = nothing).
  std::string wrong(const Slot& s, const std::set<std::string>& held) const {
    std::ostringstream why;
    const bool in = held.contains(s.uid());
    if (wants(s)) {
      if (!in) why << "not held by ztunnel; ";
      if (rules(s) != netns::RedirectStatus::Current) why << "rules not current; ";
      if (annotation(s) != "enabled") why << "annotation '" << annotation(s) << "'; ";
    } else {
      if (in) why << "held by ztunnel; ";
      if (s.sandbox && rules(s) != netns::RedirectStatus::Absent) why << "rules present; ";
      // "enabled" would make istiod send it HBONE; "pending" (ztunnel refused an ADD) is
      // informational and stays until the next ADD.
      if (s.exists && annotation(s) == "enabled") why << "annotation 'enabled'; ";
    }
    const std::string text = why.str();
    return text.empty() ? "" : describe(s) + ": " + text;
  }

  std::string describe(const Slot& s) const {
    std::ostringstream d;
    d << s.ns << "/" << s.name() << " gen " << s.gen << " (exists " << s.exists << ", sandbox "
      << s.sandbox << ", terminating " << s.terminating << ", mode '" << s.mode << "', ns ambient "
      << ns_ambient_.at(s.ns) << ", wants " << wants(s) << ")";
    return d.str();
  }

  std::set<std::string> held() const {
    return ztunnel_ ? ztunnel_->pods() : std::set<std::string>{};
  }

  std::string problems() const {
    std::string out;
    const auto held = this->held();
    std::set<std::string> known;
    for (const auto& s : slots_) {
      out += wrong(s, held);
      if (wants(s)) known.insert(s.uid());
    }
    for (const auto& uid : held) {
      if (!known.contains(uid)) out += "ztunnel holds " + uid + ", which is not to be enrolled; ";
    }
    const auto entry = our_entry();
    if (entry.is_null()) out += "our conflist entry is missing; ";
    // Nothing leaks: the agent's state and the node's probe SNAT hold exactly the pods to
    // enrol, records exist only for sandboxes that exist, no tombstone is left over.
    const rundir::RunDir dir(dirs_.run.string());
    std::vector<rundir::Problem> ignored;  // a file being renamed into place
    std::set<std::string> state;
    for (const auto& e : dir.enrolled(&ignored)) state.insert(e.pod.uid);
    if (state != known)
      out += "enrolled state {" + join(state) + "}, expected {" + join(known) + "}; ";
    std::set<std::string> sandboxes;
    for (const auto& s : slots_) {
      if (s.sandbox) sandboxes.insert(s.container());
    }
    for (const auto& r : dir.records(&ignored)) {
      if (!sandboxes.contains(r.container_id))
        out += "record of gone sandbox " + r.container_id + "; ";
    }
    std::error_code ec;
    for (const auto& t : fs::directory_iterator(dirs_.run / "tombstones", ec)) {
      out += "tombstone " + t.path().filename().string() + " left; ";
    }
    std::set<std::string> probed;
    for (const auto& e :
         netns::HostProbeSnat(netns::NetnsHandle::open(testbed::Topology::path(host_netns_)), {})
             .entries()) {
      probed.insert(e.pod_uid);
    }
    if (probed != known)
      out += "probe entries {" + join(probed) + "}, expected {" + join(known) + "}; ";
    return out;
  }

  // The node is up: it must converge to the model.
  void check_settled() {
    if (!ztunnel_->wait_for([&] { return ztunnel_->connected(); }, 10s)) {
      violation("ztunnel did not reconnect to the agent");
      return;
    }
    std::string last;
    const bool ok = testing::wait_until(
        [&] {
          last = problems();
          return last.empty();
        },
        20s, 20ms);
    if (!ok) violation("did not settle: " + last);
  }

  // The agent is down: nobody it enrolled has left the mesh.
  void check_while_down() {
    for (const int i : enrolled_at_kill_) {
      const auto& s = slots_[i];
      if (s.sandbox && rules(s) != netns::RedirectStatus::Current) {
        violation(describe(s) + ": rules gone while the agent was down");
      }
    }
  }

  void violation(const std::string& what) {
    if (violations_ == 0 && agent_ && std::getenv("AMBIENT_SOAK_GDB")) {  // where it is stuck
      testbed::sh("gdb -p " + std::to_string(agent_->pid()) +
                  " -batch -ex 'thread apply all bt' > " +
                  (dirs_.root / "agent-stacks.txt").string() + " 2>&1");
      testbed::sh("gdb -p " + std::to_string(::getpid()) + " -batch -ex 'thread apply all bt' > " +
                  (dirs_.root / "test-stacks.txt").string() + " 2>&1");
    }
    ++violations_;
    ADD_FAILURE() << "step " << step_ << ": " << what
                  << (inspect_error_.empty() ? ""
                                             : "\n(last inspect error: " + inspect_error_ + ")");
  }

  // ---- the actions ---------------------------------------------------------------------------

  void create(Slot& s) {
    ++s.gen;
    s.exists = true;
    s.terminating = false;
    s.mode = pick({"", "", "ambient", "none"});
    put_pod(s);
    note("create " + describe(s));
  }

  void add(Slot& s, bool clean) {
    testbed::must("ip netns add " + s.netns_name());
    testbed::must("ip -n " + s.netns_name() + " link set lo up");
    testbed::must("ip -n " + s.netns_name() + " link add eth0 type veth peer name eth0p");
    testbed::must("ip -n " + s.netns_name() + " addr add " + s.ip() + "/32 dev eth0");
    testbed::must("ip -n " + s.netns_name() + " link set eth0 up");
    s.sandbox = true;  // for the model while we look
    const bool want = wants(s);
    const auto x = cni("ADD", s);
    note("ADD " + describe(s) + " → " + std::to_string(x.exit_code) +
         (x.exit_code ? " " + x.out.substr(0, 160) : ""));
    if (x.exit_code == 0) {
      if (want) {
        if (!agent_) violation(describe(s) + ": ADD succeeded while no agent could enrol it");
        const auto why = ztunnel_ ? wrong(s, held()) : "ztunnel is not running";
        if (!why.empty()) violation("ADD returned success but " + why);
      } else if (rules(s) != netns::RedirectStatus::Absent) {
        violation(describe(s) + ": untouched pod got rules");
      }
      put_pod(s);  // the kubelet reports it Running with its IP
      return;
    }
    if (clean) violation(describe(s) + ": ADD failed on a healthy node: " + x.out + x.err);
    const auto code = json::parse(x.out, nullptr, false);
    if (code.is_discarded() || code.value("code", 0) != 11) {
      violation(describe(s) + ": ADD failed without error 11: " + x.out);
    }
    // Nothing half-applied; the runtime then tears the sandbox down (DEL) and retries later.
    if (rules(s) != netns::RedirectStatus::Absent)
      violation(describe(s) + ": failed ADD left rules");
    if (held().contains(s.uid()) && agent_) {
      violation(describe(s) + ": failed ADD left the pod in ztunnel");
    }
    s.sandbox = false;
    const auto d = cni("DEL", s);
    if (d.exit_code != 0) violation(describe(s) + ": DEL after a failed ADD failed: " + d.out);
    testbed::sh("ip netns del " + s.netns_name());
  }

  void del(Slot& s) {
    const auto x = cni("DEL", s);
    note("DEL " + describe(s) + " → " + std::to_string(x.exit_code));
    if (x.exit_code != 0) violation(describe(s) + ": DEL failed: " + x.out + x.err);
    s.sandbox = false;
    testbed::sh("ip netns del " + s.netns_name());
    if (s.exists) put_pod(s);  // Pending again, without an IP
  }

  void remove_object(Slot& s) {
    api_.remove_object("Pod", s.ns, s.name());
    s.exists = false;
    note("delete pod object " + describe(s));
  }

  void terminate(Slot& s) {
    s.terminating = true;
    put_pod(s);
    note("terminating " + describe(s));
  }

  void relabel_pod(Slot& s) {
    s.mode = pick({"", "ambient", "none"});
    put_pod(s);
    note("relabel pod " + describe(s));
  }

  void relabel_namespace() {
    const auto& ns = kNamespaces[rng_() % kNamespaces.size()];
    ns_ambient_[ns] = !ns_ambient_[ns];
    put_namespace(ns);
    note("namespace " + ns + (ns_ambient_[ns] ? " labelled ambient" : " unlabelled"));
  }

  void rewrite_conflist() {
    spit(dirs_.conf / "10-k8s.conflist", kBridge);  // the primary CNI writes its own file again
    note("primary CNI rewrote its conflist");
  }

  // A pod action under the current conditions; `clean` = nothing is broken right now.
  void pod_action(bool clean) {
    std::vector<std::function<void()>> choices;
    for (auto& s : slots_) {
      if (!s.exists && !s.sandbox) {
        for (int w = 0; w < 3; ++w) choices.push_back([&] { create(s); });
      }
      if (s.exists && !s.sandbox && !s.terminating) {
        for (int w = 0; w < 5; ++w) choices.push_back([&, clean] { add(s, clean); });
      }
      if (s.sandbox) {
        for (int w = 0; w < 2; ++w) choices.push_back([&] { del(s); });
      }
      if (s.exists) {
        choices.push_back([&] { remove_object(s); });
        for (int w = 0; w < 3; ++w) choices.push_back([&] { relabel_pod(s); });
        if (!s.terminating) choices.push_back([&] { terminate(s); });
      }
    }
    for (int w = 0; w < 6; ++w) choices.push_back([&] { relabel_namespace(); });
    choices[rng_() % choices.size()]();
  }

  void step() {
    ++step_;
    const int roll = static_cast<int>(rng_() % 100);
    if (!agent_) {
      if (roll < 40) {
        start_agent();
        note("agent restarted (start " + std::to_string(agent_starts_) + ")");
        check_settled();
      } else {
        pod_action(/*clean=*/false);
        check_while_down();
      }
      return;
    }
    if (roll < 2 && kills_) {
      kill_agent();
      note("agent killed (SIGKILL)");
      check_while_down();
      return;
    }
    if (roll < 4) {
      const bool restart = rng_() % 2 == 0;
      if (restart) {
        ztunnel_.reset();  // ztunnel killed: its replacement starts empty and gets a snapshot
        note("ztunnel killed");
        if (rng_() % 3 == 0) pod_action(/*clean=*/false);
        start_ztunnel();
      } else {
        ztunnel_->disconnect();
        note("ztunnel disconnected");
      }
      check_settled();
      return;
    }
    if (roll < 7) {
      const int times = 1 + static_cast<int>(rng_() % 8);
      api_.add_fault(testing::ApiFault{.path_prefix = "/api/v1/", .status = 503, .times = times});
      note("API: " + std::to_string(times) + " answers 503");
      pod_action(/*clean=*/false);
      api_.clear_faults();
      check_settled();
      return;
    }
    if (roll < 9) {
      api_.compact_history();
      api_.drop_watches();
      note("API: history compacted, watches dropped (410 on resume)");
      check_settled();
      return;
    }
    if (roll < 12) {
      rewrite_conflist();
      check_settled();
      return;
    }
    pod_action(/*clean=*/true);
    check_settled();
  }

  // ---- bookkeeping ---------------------------------------------------------------------------

  std::string pick(std::initializer_list<const char*> options) {
    const auto i = rng_() % options.size();
    return *(options.begin() + i);
  }
  void note(const std::string& what) {
    recent_.push_back("step " + std::to_string(step_) + ": " + what);
    if (recent_.size() > 80) recent_.pop_front();
  }
  std::string history() const {
    std::string out = "last steps:\n";
    for (const auto& line : recent_) out += "  " + line + "\n";
    return out;
  }
  fs::path log_path() const { return dirs_.root / "node.log"; }
  std::string api_requests() const {
    const auto all = api_.requests();
    std::string out = "---- the API's last requests\n";
    for (std::size_t i = all.size() > 40 ? all.size() - 40 : 0; i < all.size(); ++i) {
      const auto& r = all[i];
      out += "  " + r.method + " " + r.path + (r.query.empty() ? "" : "?" + r.query) + " port " +
             std::to_string(r.remote_port) + "\n";
    }
    return out;
  }
  std::string log_tail() const {
    const auto text = testing::read_file(log_path());
    return "---- tail of " + log_path().string() + "\n" +
           text.substr(text.size() > 6000 ? text.size() - 6000 : 0);
  }

  std::uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  testing::NodeDirs dirs_{"soak"};
  testing::ApiServerStandin api_;
  std::string host_netns_;
  std::unique_ptr<standins::ZtunnelStandin> ztunnel_;
  std::unique_ptr<testing::BackgroundProcess> agent_;
  int health_port_ = 0;
  json plugin_conf_;
  std::vector<Slot> slots_;
  std::map<std::string, bool> ns_ambient_;
  std::vector<int> enrolled_at_kill_;
  std::deque<std::string> recent_;
  mutable std::string inspect_error_;
  bool kills_ = env_number("AMBIENT_SOAK_AGENT_KILLS", 1) != 0;
  int step_ = 0;
  int agent_starts_ = 0;
  int agent_pid_since_ = 0;
  int violations_ = 0;
};

TEST_F(ChaosSoak, ARandomWalkNeverBreaksTheMeshBoundary) {
  const long steps = env_number("AMBIENT_SOAK_STEPS", 2000);
  std::vector<std::pair<int, long>> rss;  // (step, KiB) of the current agent process
  std::vector<std::pair<int, int>> fds;   // (step, open fds) of it
  const auto t0 = std::chrono::steady_clock::now();
  while (step_ < steps && violations_ == 0) {
    step();
    if (agent_ && step_ % 100 == 0) {
      rss.emplace_back(step_, rss_kib(agent_->pid()));
      fds.emplace_back(step_, open_fds(agent_->pid()));
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cerr << "soak: " << step_ << " steps in " << seconds << " s, " << violations_
            << " violations, " << agent_starts_ << " agent starts, seed " << seed_ << "\n";
  // The RSS of the process alive since agent_pid_since_: first and last samples of its life.
  std::vector<long> lifetime;
  std::vector<int> lifetime_fds;
  for (std::size_t i = 0; i < rss.size(); ++i) {
    if (rss[i].first < agent_pid_since_) continue;
    lifetime.push_back(rss[i].second);
    lifetime_fds.push_back(fds[i].second);
  }
  if (lifetime.size() >= 2) {
    std::cerr << "soak: agent RSS over its last " << (step_ - agent_pid_since_)
              << " steps: " << lifetime.front() << " KiB -> " << lifetime.back() << " KiB (max "
              << *std::max_element(lifetime.begin(), lifetime.end()) << "), open fds "
              << lifetime_fds.front() << " -> " << lifetime_fds.back() << " (max "
              << *std::max_element(lifetime_fds.begin(), lifetime_fds.end()) << "), "
              << lifetime.size() << " samples every 100 steps\n";
  }
  EXPECT_EQ(violations_, 0);
  EXPECT_EQ(step_, steps);
}

}  // namespace
}  // namespace ambient
