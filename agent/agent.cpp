#include "agent/agent.h"

#include <httplib.h>
#include <malloc.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <tuple>

#include <spdlog/spdlog.h>

#include "agent/enroller.h"
#include "agent/kube_access.h"
#include "agent/metrics.h"
#include "agent/netns_finder.h"
#include "agent/plugin_server.h"
#include "agent/pod_table.h"
#include "agent/reconciler.h"
#include "agent/zds_server.h"
#include "config/errors.h"
#include "kube/kubeconfig.h"
#include "netns/host_probe.h"

namespace ambient::agent {
namespace {

namespace fs = std::filesystem;

netns::NetnsHandle host_netns(const std::string& path) {
  return path.empty() ? netns::NetnsHandle::current() : netns::NetnsHandle::open(path);
}

kube::Kubeconfig load_kubeconfig(const std::string& path) {
  return path.empty() ? kube::in_cluster_config() : kube::load_kubeconfig(path);
}

// An HTTP endpoint on its own thread; port 0 binds a free port.
class HttpEndpoint {
 public:
  void start(const std::string& address, int port, std::shared_ptr<spdlog::logger> log) {
    if (port < 0) return;
    port_ = port == 0 ? server_.bind_to_any_port(address) : port;
    if (port != 0 && !server_.bind_to_port(address, port)) port_ = -1;
    if (port_ < 0)
      throw std::runtime_error("cannot listen on " + address + ":" + std::to_string(port));
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    log->info("HTTP on {}:{}", address, port_);
  }
  void stop() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  httplib::Server& server() { return server_; }
  int port() const { return port_; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = -1;
};

}  // namespace

struct Agent::Impl {
  AgentOptions options;
  std::shared_ptr<spdlog::logger> log;
  Metrics metrics;
  PodTable pods;
  ApiPool api;
  StatusAnnotator status;
  kube::Kubeconfig kubeconfig;
  netns::NetnsHandle host;
  netns::HostProbeSnat probes;
  NetnsFinder finder;
  std::unique_ptr<Reconciler> reconciler;
  std::unique_ptr<ZdsServer> zds;
  std::unique_ptr<Enroller> enroller;
  std::unique_ptr<PluginServer> plugin_server;
  HttpEndpoint health;
  HttpEndpoint metrics_http;
  std::atomic<bool> ready{false};

  Impl(AgentOptions o, std::shared_ptr<spdlog::logger> l)
      : options(std::move(o)),
        log(std::move(l)),
        pods(options.run_dir),
        api(load_kubeconfig(options.kubeconfig), client_options()),
        status(api),
        kubeconfig(load_kubeconfig(options.kubeconfig)),
        host(host_netns(options.host_netns)),
        probes(host.dup(), netns::HostProbeConfig{options.kubelet_uid}),
        finder(options.run_dir, options.proc_root, host.inode()) {
    zds = std::make_unique<ZdsServer>(
        ZdsServer::Options{options.ztunnel_socket, options.ztunnel_deadline},
        [this] { return snapshot(); }, log);
    enroller = std::make_unique<Enroller>(EnrollerDeps{pods, *zds, probes, status, metrics, log});
    if (options.watch) {
      ReconcilerOptions ro;
      ro.policy = options.policy;
      ro.dns_capture = options.dns_capture;
      ro.ipv6 = options.ipv6;
      ro.node_name = options.node_name;
      ro.drift_interval = options.drift_interval;
      ro.watch_timeout = options.watch_timeout;
      reconciler = std::make_unique<Reconciler>(
          ro, ReconcilerDeps{
                  pods, *enroller, probes, api,
                  [this] { return std::make_unique<kube::Client>(kubeconfig, client_options()); },
                  finder, metrics, log});
    }
    plugin_server = std::make_unique<PluginServer>(
        config::run_dir::agent_socket(options.run_dir),
        [this](const config::AgentRequest& r) { return handle(r); }, log);
  }

  kube::ClientOptions client_options() const {
    kube::ClientOptions c;
    c.deadline = options.api_timeout;
    c.user_agent = "ambient-cni-agent";
    return c;
  }

  bool is_ready() const {
    const bool reconciled = !reconciler || reconciler->startup_done();
    return ready && reconciled && (!options.ready_gate || options.ready_gate());
  }

  std::vector<ZdsWorkload> snapshot() {
    std::vector<ZdsWorkload> out;
    for (const auto& p : pods.all()) {
      out.push_back({p.record.uid, p.record.name, p.record.namespace_, p.service_account,
                     p.netns ? p.netns->fd() : -1});
    }
    return out;
  }

  // The plugin's pod lookup: one GET each on the agent's warm connection — no TLS handshake or
  // libcurl load in the plugin's exec. Never from the watch caches: a namespace labelled a moment
  // before the sandbox starts may not have reached them yet, and the ADD must see it.
  config::AgentReply lookup(const config::PodRecord& p) {
    config::AgentReply reply;
    try {
      std::tie(reply.pod, reply.namespace_) = api.with([&](kube::Client& c) {
        const std::string ns_path = "/api/v1/namespaces/" + p.namespace_;
        return std::pair{c.get(ns_path + "/pods/" + p.name), c.get(ns_path)};
      });
      reply.ok = true;
      metrics.count_request("lookup", "ok");
    } catch (const kube::ApiError& e) {
      metrics.count_request("lookup", "failed");
      reply = config::AgentReply::failure(
          contract::cni_code::kTryAgainLater,
          "looking up pod " + p.namespace_ + "/" + p.name + ": " + e.what());
    }
    return reply;
  }

  config::AgentReply handle(const config::AgentRequest& r) {
    config::AgentReply reply;
    if (r.op == "lookup") return lookup(r.pod);
    if (r.op == "add") {
      reply = enroller->add(r);
    } else if (r.op == "del") {
      reply = enroller->del(r);
    } else {
      reply = enroller->check(r);
    }
    metrics.set_ztunnel_connections(zds->connections());
    return reply;
  }

  // DELs that happened while no agent ran.
  void process_tombstones(const std::vector<EnrolledPod>& persisted) {
    std::error_code ec;
    const fs::path dir = config::run_dir::tombstones_dir(options.run_dir);
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      std::ifstream in(entry.path());
      const auto j = nlohmann::json::parse(in, nullptr, false);
      try {
        const auto tomb = config::pod_record_from_json(j);
        for (const auto& p : persisted) {
          if (p.record.container_id == tomb.container_id) {
            log->info("tombstone: pod {}/{} was deleted while no agent ran", p.record.namespace_,
                      p.record.name);
            enroller->release(p, /*clear_annotation=*/true);
          }
        }
      } catch (const config::ConfigError& e) {
        log->warn("ignoring unreadable tombstone {}: {}", entry.path().string(), e.what());
      }
      fs::remove(entry.path(), ec);
    }
  }

  void restore() {
    std::vector<std::string> errors;
    auto persisted = pods.load_persisted(errors);
    for (const auto& e : errors) log->warn("ignoring unreadable pod state {}", e);
    process_tombstones(persisted);
    std::size_t kept = 0;
    std::vector<netns::ProbeEntry> desired;
    for (auto& p : pods.load_persisted(errors)) {
      if (enroller->restore(p)) ++kept;
    }
    for (const auto& p : pods.all()) {
      for (const auto& ip : p.record.ips) desired.push_back({p.record.uid, ip});
    }
    probes.ensure();
    const auto report = probes.reconcile(desired);
    if (report.base_repaired || report.added || report.removed) {
      log->info("host probe SNAT reconciled: base repaired {}, {} added, {} removed",
                report.base_repaired, report.added, report.removed);
    }
    log->info("restored {} enrolled pods from {}", kept, options.run_dir);
  }

  void start_http() {
    auto& h = health.server();
    h.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok\n", "text/plain");
    });
    h.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
      const bool ok = is_ready();
      res.status = ok ? 200 : 503;
      res.set_content(ok ? "ready\n" : "not ready\n", "text/plain");
    });
    metrics_http.server().Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      metrics.set_ztunnel_connections(zds->connections());
      metrics.set_enrolled_pods(pods.size());
      res.set_content(metrics.render(), "text/plain; version=0.0.4");
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

}  // namespace ambient::agent
