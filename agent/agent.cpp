#include "agent/agent.h"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include <spdlog/spdlog.h>

#include "agent/enroller.h"
#include "agent/http_endpoint.h"
#include "agent/kube_access.h"
#include "agent/metrics.h"
#include "agent/netns_finder.h"
#include "agent/plugin_server.h"
#include "agent/pod_events.h"
#include "agent/pod_table.h"
#include "agent/reconciler.h"
#include "agent/zds_server.h"
#include "config/decision.h"
#include "config/errors.h"
#include "config/kube_objects.h"
#include "kube/kubeconfig.h"
#include "netns/host_probe.h"
#include "rundir/store.h"

namespace ambient::agent {
namespace {

namespace fs = std::filesystem;

netns::NetnsHandle host_netns(const std::string& path) {
  return path.empty() ? netns::NetnsHandle::current() : netns::NetnsHandle::open(path);
}

kube::Kubeconfig load_kubeconfig(const std::string& path) {
  return path.empty() ? kube::in_cluster_config() : kube::load_kubeconfig(path);
}

// The pod uids of a /debug/pods query: uid=a,b&uid=c (',' also as %2C). Throws
// std::invalid_argument with what is wrong.
std::vector<std::string> query_uids(const std::string& query) {
  constexpr std::size_t kMaxUids = 100;
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= query.size()) {
    auto end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    const std::string param = query.substr(start, end - start);
    start = end + 1;
    if (!param.starts_with("uid=")) continue;
    std::string value = param.substr(4);
    for (auto at = value.find("%2"); at != std::string::npos; at = value.find("%2", at)) {
      if (at + 2 < value.size() && (value[at + 2] == 'C' || value[at + 2] == 'c')) {
        value.replace(at, 3, ",");
      } else {
        ++at;
      }
    }
    std::size_t from = 0;
    while (from <= value.size()) {
      auto comma = value.find(',', from);
      if (comma == std::string::npos) comma = value.size();
      const std::string uid = value.substr(from, comma - from);
      from = comma + 1;
      if (uid.empty()) continue;
      const bool valid = uid.size() <= 64 && std::all_of(uid.begin(), uid.end(), [](char c) {
                           return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
                         });
      if (!valid) throw std::invalid_argument("not a pod uid: " + uid.substr(0, 64));
      out.push_back(uid);
      if (out.size() > kMaxUids) {
        throw std::invalid_argument("at most " + std::to_string(kMaxUids) + " uids per request");
      }
    }
  }
  if (out.empty()) {
    throw std::invalid_argument(
        "uid=<pod uid>[,<pod uid>...] is required: the agent answers only about pods whose uid "
        "the caller knows (ambient-cni-node status on the node lists them all)");
  }
  return out;
}

}  // namespace

struct Agent::Impl final : PluginRequests {
  AgentOptions options;
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<Metrics> metrics_ptr;
  Metrics& metrics;
  rundir::RunDir run_dir;
  PodTable pods;
  ApiPool api;
  StatusAnnotator annotator;
  kube::Kubeconfig kubeconfig;
  netns::NetnsHandle host;
  netns::HostProbeSnat probes;
  std::unique_ptr<ProbeStep> probe_step;
  std::unique_ptr<NetnsOpener> netns_opener = make_path_netns_opener();
  std::unique_ptr<RulesStep> rules =
      make_nft_rules_step([this](const std::string& w) { metrics.count_degraded(w); });
  NetnsFinder finder;
  std::unique_ptr<PodReporter> reporter;
  std::unique_ptr<ZdsServer> zds;
  std::unique_ptr<Enroller> enroller;
  std::unique_ptr<Reconciler> reconciler;
  std::unique_ptr<PluginServer> plugin_server;
  HttpEndpoint health;
  HttpEndpoint metrics_http;
  std::atomic<bool> ready{false};

  Impl(AgentOptions o, std::shared_ptr<spdlog::logger> l)
      : options(std::move(o)),
        log(std::move(l)),
        metrics_ptr(options.metrics ? options.metrics : std::make_shared<Metrics>()),
        metrics(*metrics_ptr),
        run_dir(options.run_dir),
        pods(run_dir),
        api(load_kubeconfig(options.kubeconfig), client_options()),
        annotator(api),
        kubeconfig(load_kubeconfig(options.kubeconfig)),
        host(host_netns(options.host_netns)),
        probes(host.dup(), netns::HostProbeConfig{options.kubelet_uid}),
        probe_step(make_host_probe_step(probes)),
        finder(run_dir, options.proc_root, host.inode()) {
    reporter = std::make_unique<PodReporter>(
        PodReporter::Options{"ambient-cni-node", options.node_name, options.event_limits},
        [this](const std::string& ns, const nlohmann::json& event) {
          api.with([&](kube::Client& c) {
            return c.create("/api/v1/namespaces/" + ns + "/events", event);
          });
        },
        metrics, log);
    PodReport* report = options.events ? reporter.get() : nullptr;
    zds = std::make_unique<ZdsServer>(
        ZdsServer::Options{options.ztunnel_socket, options.ztunnel_deadline,
                           [this](const std::string& w) { metrics.count_degraded(w); }},
        [this] { return snapshot(); }, log);
    enroller = std::make_unique<Enroller>(EnrollerDeps{pods, *netns_opener, *rules, *probe_step,
                                                       *zds, annotator, metrics, log, report});
    if (options.watch) {
      ReconcilerOptions ro;
      ro.policy = options.policy;
      ro.defaults = defaults();
      ro.node_name = options.node_name;
      ro.drift_interval = options.drift_interval;
      ro.watch_timeout = options.watch_timeout;
      reconciler = std::make_unique<Reconciler>(
          ro, ReconcilerDeps{
                  pods, *enroller, api,
                  [this] { return std::make_unique<kube::Client>(kubeconfig, client_options()); },
                  finder, metrics, log, report});
    }
    plugin_server = std::make_unique<PluginServer>(run_dir.agent_socket(), *this, log);
  }

  NodeDefaults defaults() const { return {options.dns_capture, options.ipv6}; }

  kube::ClientOptions client_options() const {
    kube::ClientOptions c;
    c.deadline = options.api_timeout;
    c.user_agent = "ambient-cni-agent";
    return c;
  }

  bool is_ready() const { return not_ready_reason().empty(); }
  // Why the agent cannot enrol pods yet ("" when it can): what /readyz and CNI STATUS report.
  std::string not_ready_reason() const {
    if (!ready) return "not serving yet (restoring earlier state)";
    if (reconciler) {
      // A verb missing from our RBAC: label changes would be missed. Said, not hidden.
      if (const auto why = reconciler->refused(); !why.empty()) {
        return "the API refuses the node agent: " + why;
      }
      if (!reconciler->startup_done()) return "startup reconcile not done";
    }
    if (options.ready_gate && !options.ready_gate()) return "the plugin is not installed";
    return "";
  }

  // CNI STATUS. Not ztunnel: ztunnel runs in a pod that is not host-network, and a node whose
  // network is "not ready" would never start it (decision 011).
  Outcome status() override {
    const auto why = not_ready_reason();
    if (why.empty()) return Outcome::success();
    return Outcome::failure(contract::cni_code::kStatusPluginNotAvailable,
                            "node agent not ready: " + why);
  }

  std::vector<ZdsWorkload> snapshot() {
    std::vector<ZdsWorkload> out;
    for (const auto& p : pods.all()) {
      if (p.releasing) continue;  // its del follows (or went) to this very connection
      out.push_back({p.uid(), p.pod().name, p.pod().namespace_, p.enrolment.service_account,
                     p.netns ? p.netns->fd() : -1});
    }
    return out;
  }

  // A sandbox's ADD, in one round trip: the pod and its namespace read fresh on the agent's warm
  // connection (never the watch caches: a namespace labelled a moment before the sandbox starts
  // may not have reached them), the same decision the reconciler makes, and the enrolment.
  // docs/decisions/009-one-enrolment-api.md
  AddResult add(const rundir::PodRecord& sandbox) override {
    const auto started = std::chrono::steady_clock::now();
    Decision r = decide(sandbox);
    log->debug("pod {}/{}: decided in {:.1f} ms", sandbox.namespace_, sandbox.name,
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
                   .count());
    if (!r.decided || !r.enrolled) return r;  // undecided, or untouched with its reason
    const auto e = enrolment_for(*r.pod, sandbox, defaults());
    for (const auto& w : e.redirect.warnings) {
      log->warn("pod {}/{}: {}", sandbox.namespace_, sandbox.name, w);
    }
    r.outcome = enroller->enrol(e);
    r.enrolled = r.outcome.ok;
    metrics.set_ztunnel_connections(zds->connections());
    return r;
  }

  // Why the API's pod is not the one this sandbox belongs to, if it is not.
  std::optional<std::string> not_this_sandbox(const rundir::PodRecord& sandbox,
                                              const config::PodInfo& pod) const {
    const std::string who = sandbox.namespace_ + "/" + sandbox.name;
    if (!sandbox.uid.empty() && pod.uid != sandbox.uid) {
      return "pod " + who + " in the API has uid " + pod.uid + ", but the sandbox is for uid " +
             sandbox.uid + " (a pod of the same name that was replaced?)";
    }
    if (!options.node_name.empty() && pod.node_name != options.node_name) {
      return "pod " + who + " is scheduled on node '" + pod.node_name + "', not on this node (" +
             options.node_name + ")";
    }
    return std::nullopt;
  }

  // The pod and its namespace read fresh, and the decision: `enrolled` here means "selected".
  struct Decision : AddResult {
    std::optional<config::PodInfo> pod;
  };
  Decision decide(const rundir::PodRecord& sandbox) {
    const std::string who = sandbox.namespace_ + "/" + sandbox.name;
    Decision r;
    config::PodInfo pod;
    config::NamespaceInfo ns;
    try {
      // The two reads at once, each on a pooled connection: an API read costs a round trip to
      // etcd (2-3 ms on the test node), and this is on every enrolled ADD's path.
      const std::string ns_path = "/api/v1/namespaces/" + sandbox.namespace_;
      auto ns_read = std::async(std::launch::async, [&] {
        return api.with([&](kube::Client& c) { return config::parse_namespace(c.get(ns_path)); });
      });
      std::optional<config::PodInfo> pod_read;
      std::exception_ptr pod_failure;
      try {
        pod_read = api.with([&](kube::Client& c) {
          return config::parse_pod(c.get(ns_path + "/pods/" + sandbox.name));
        });
      } catch (...) {
        pod_failure = std::current_exception();
      }
      ns = ns_read.get();  // rethrows its failure; always waited for (it refers to locals)
      if (pod_failure) std::rethrow_exception(pod_failure);
      pod = std::move(*pod_read);
    } catch (const kube::ApiError& e) {
      metrics.count_request("decide", "failed");
      r.decided = false;
      r.outcome = Outcome::failure(contract::cni_code::kTryAgainLater,
                                   "looking up pod " + who + ": " + e.what());
      return r;
    } catch (const config::ConfigError& e) {
      metrics.count_request("decide", "failed");
      r.decided = false;
      r.outcome = Outcome::failure(
          contract::cni_code::kTryAgainLater,
          "looking up pod " + who + ": the API returned a malformed object: " + e.what());
      return r;
    }
    if (pod.namespace_.empty()) pod.namespace_ = sandbox.namespace_;
    // Never a decision about another pod: a StatefulSet's name is reused by a new pod, and a
    // stale sandbox of the old one (or one on another node) must not be enrolled as the new one.
    if (const auto wrong = not_this_sandbox(sandbox, pod)) {
      metrics.count_request("decide", "wrong_pod");
      r.outcome = Outcome::failure(contract::cni_code::kTryAgainLater, *wrong);
      return r;
    }
    const auto decision = config::decide(options.policy, pod, ns);
    for (const auto& w : decision.warnings) log->warn("pod {}: {}", who, w);
    metrics.count_request("decide", decision.enrol ? "enrol" : "untouched");
    r.reason = decision.reason;
    r.enrolled = decision.enrol;
    r.pod = std::move(pod);
    return r;
  }

  // One row per pod the agent holds, and per pod it failed to enrol lately (not held), sorted by
  // namespace and name.
  std::vector<rundir::HeldPod> rows() {
    std::vector<rundir::HeldPod> out;
    std::set<std::string> seen;
    for (const auto& p : pods.all()) {
      rundir::HeldPod h;
      h.uid = p.uid();
      h.name = p.pod().name;
      h.namespace_ = p.pod().namespace_;
      h.held = true;
      h.state = p.releasing   ? "releasing"
                : p.enrolling ? "enrolling"
                : p.pending   ? "pending"
                              : "enrolled";
      if (const auto connection = zds->acked_by(h.uid)) {
        h.ztunnel_acked = true;
        h.ztunnel_connection = *connection;
      }
      h.since = p.enrolment.enrolled_at;
      h.container_id = p.pod().container_id;
      h.netns = p.pod().netns;
      h.ips = p.pod().ips;
      if (const auto e = reporter->journal().get(h.uid)) {
        h.last_error = e->error;
        h.last_error_at =
            std::chrono::duration_cast<std::chrono::seconds>(e->at.time_since_epoch()).count();
      }
      seen.insert(h.uid);
      out.push_back(std::move(h));
    }
    for (const auto& e : reporter->journal().all()) {
      if (seen.contains(e.pod.uid)) continue;
      rundir::HeldPod h;
      h.uid = e.pod.uid;
      h.name = e.pod.name;
      h.namespace_ = e.pod.namespace_;
      h.state = e.state;
      h.last_error = e.error;
      h.last_error_at =
          std::chrono::duration_cast<std::chrono::seconds>(e.at.time_since_epoch()).count();
      out.push_back(std::move(h));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
      return std::tie(a.namespace_, a.name, a.uid) < std::tie(b.namespace_, b.name, b.uid);
    });
    return out;
  }

  rundir::AgentView view_header() {
    rundir::AgentView v;
    v.node = options.node_name;
    v.not_ready = not_ready_reason();
    v.ready = v.not_ready.empty();
    v.ztunnel_connections = zds->connections();
    return v;
  }

  rundir::AgentView listing(std::size_t offset) override {
    auto v = view_header();
    auto all = rows();
    v.total = all.size();
    v.offset = offset;
    for (std::size_t i = offset; i < all.size() && v.pods.size() < rundir::kPodsPerPage; ++i) {
      v.pods.push_back(std::move(all[i]));
    }
    return v;
  }

  rundir::AgentView view_of(const std::vector<std::string>& uids) {
    auto v = view_header();
    const auto all = rows();
    for (const auto& uid : uids) {
      const auto it =
          std::find_if(all.begin(), all.end(), [&](const auto& h) { return h.uid == uid; });
      if (it != all.end()) {
        v.pods.push_back(*it);
      } else {
        rundir::HeldPod h;
        h.uid = uid;
        h.state = "not held";
        v.pods.push_back(std::move(h));
      }
    }
    v.total = v.pods.size();
    return v;
  }

  // GET /debug/pods?uid=…: explain's view of the agent through the API server's pods/proxy
  // (decision 016). Read-only, per pod uid (no listing: a uid is known only to who can read the
  // pod), bounded, no node-local paths or addresses, no credentials needed or read.
  HttpEndpoint::Response debug_pods(const std::string& query) {
    std::vector<std::string> uids;
    try {
      uids = query_uids(query);
    } catch (const std::invalid_argument& e) {
      return {400, "text/plain", std::string(e.what()) + "\n"};
    }
    const auto v = view_of(uids);
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& h : v.pods) rows.push_back(rundir::to_json(h, /*node_local=*/false));
    nlohmann::json body = {{"node", v.node},
                           {"ready", v.ready},
                           {"ztunnelConnections", v.ztunnel_connections},
                           {"pods", std::move(rows)}};
    if (!v.not_ready.empty()) body["notReady"] = v.not_ready;
    return {200, "application/json", body.dump() + "\n"};
  }

  void del(const rundir::PodRecord& sandbox) override {
    enroller->release_sandbox(sandbox);
    metrics.set_ztunnel_connections(zds->connections());
  }

  // CNI CHECK: an enrolled sandbox must have its rules and a ztunnel; any other must not be one
  // the decision selects (then ADD failed to enrol it, or it was released since).
  Outcome check(const rundir::PodRecord& sandbox) override {
    if (pods.find_by_container(sandbox.container_id)) {
      return enroller->check(sandbox.container_id);
    }
    const auto d = decide(sandbox);
    if (!d.decided) return d.outcome;
    if (d.enrolled) {
      return Outcome::failure(contract::cni_code::kTryAgainLater,
                              "pod " + sandbox.namespace_ + "/" + sandbox.name +
                                  " is selected for ambient (" + d.reason +
                                  ") but not enrolled by the node agent");
    }
    return Outcome::success();
  }

  // What an earlier agent left: tombstones (DELs that happened while no agent ran) release their
  // pods; every other enrolled pod is restored (netns re-opened, rules and probes re-applied).
  void restore() {
    std::vector<rundir::Problem> problems;
    const auto persisted = run_dir.enrolled(&problems);
    const auto tombstones = run_dir.take_tombstones(&problems);
    for (const auto& p : problems) {
      log->warn("run dir: ignoring {}: {}", p.path, p.error);
      metrics.count_degraded("run_dir_unreadable");
    }
    std::size_t kept = 0;
    for (const auto& e : persisted) {
      const bool deleted = std::any_of(tombstones.begin(), tombstones.end(), [&](const auto& t) {
        return t.container_id == e.pod.container_id;
      });
      if (deleted) {
        log->info("tombstone: pod {}/{} was deleted while no agent ran", e.pod.namespace_,
                  e.pod.name);
        enroller->forget(e, /*clear_annotation=*/true);
      } else if (enroller->restore(e)) {
        ++kept;
      }
    }
    probes.ensure();
    const auto report = enroller->repair_probes();
    if (report.base_repaired || report.added || report.removed) {
      log->info("host probe SNAT reconciled: base repaired {}, {} added, {} removed",
                report.base_repaired, report.added, report.removed);
    }
    log->info("restored {} enrolled pods from {}", kept, options.run_dir);
  }

  void start_http() {
    health.route("/healthz", [] { return HttpEndpoint::Response{200, "text/plain", "ok\n"}; });
    health.route("/debug/pods", [this](const std::string& query) { return debug_pods(query); });
    health.route("/readyz", [this] {
      const auto why = not_ready_reason();
      return why.empty() ? HttpEndpoint::Response{200, "text/plain", "ready\n"}
                         : HttpEndpoint::Response{503, "text/plain", "not ready: " + why + "\n"};
    });
    metrics_http.route("/metrics", [this] {
      metrics.set_ztunnel_connections(zds->connections());
      metrics.set_enrolled_pods(pods.size());
      return HttpEndpoint::Response{200, "text/plain; version=0.0.4", metrics.render()};
    });
    health.start(options.listen_address, options.health_port, log);
    metrics_http.start(options.listen_address, options.metrics_port, log);
  }
};

Agent::Agent(AgentOptions options, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(log))) {
  // The agent serves each plugin request and each netns operation on a short-lived thread; glibc
  // gives every thread that allocates its own arena, and their free lists keep the node
  // component's RSS high for no gain. Two arenas are plenty for this workload.
  mallopt(M_ARENA_MAX, 2);
}

Agent::~Agent() {
  stop();
}

void Agent::start() {
  auto& s = *impl_;
  s.start_http();  // liveness from the start; readiness once restored
  if (s.options.events) s.reporter->start();
  s.restore();
  s.zds->start();
  s.plugin_server->start();
  s.ready = true;
  if (s.reconciler) s.reconciler->start();  // readiness waits for its startup pass
  s.log->info("agent serving: {} enrolled pods restored", s.pods.size());
}

void Agent::stop() {
  auto& s = *impl_;
  s.ready = false;
  if (s.reconciler) s.reconciler->stop();
  s.plugin_server->stop();
  s.zds->stop();
  s.health.stop();
  s.metrics_http.stop();
  s.reporter->stop();
}

bool Agent::ready() const {
  return impl_->is_ready();
}
bool Agent::wait_ready(std::chrono::milliseconds timeout) const {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!ready()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}
Reconciler* Agent::reconciler() {
  return impl_->reconciler.get();
}
int Agent::health_port() const {
  return impl_->health.port();
}
int Agent::metrics_port() const {
  return impl_->metrics_http.port();
}
Enroller::Released Agent::release_all() {
  auto& s = *impl_;
  if (s.reconciler) s.reconciler->stop();  // or it would enrol again what is released next
  const auto r = s.enroller->release_all(/*clear_annotation=*/true);
  if (r.released > 0) s.log->info("released {} enrolled pod(s)", r.released);
  return r;
}

Enroller& Agent::enroller() {
  return *impl_->enroller;
}
PodTable& Agent::pods() {
  return impl_->pods;
}
ZdsServer& Agent::zds() {
  return *impl_->zds;
}
Metrics& Agent::metrics() {
  return impl_->metrics;
}
PodReporter& Agent::reporter() {
  return *impl_->reporter;
}
rundir::AgentView Agent::view(std::size_t offset) {
  return impl_->listing(offset);
}
rundir::AgentView Agent::view_of(const std::vector<std::string>& uids) {
  return impl_->view_of(uids);
}

}  // namespace ambient::agent
