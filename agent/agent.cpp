#include "agent/agent.h"

#include <httplib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/enroller.h"
#include "agent/kube_access.h"
#include "agent/metrics.h"
#include "agent/plugin_server.h"
#include "agent/pod_table.h"
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
    if (port_ < 0) throw std::runtime_error("cannot listen on " + address + ":" + std::to_string(port));
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
  netns::HostProbeSnat probes;
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
        api(load_kubeconfig(options.kubeconfig),
            kube::ClientOptions{.deadline = options.api_timeout, .user_agent = "ambient-cni-agent"}),
        status(api),
        probes(host_netns(options.host_netns), netns::HostProbeConfig{options.kubelet_uid}) {
    zds = std::make_unique<ZdsServer>(
        ZdsServer::Options{options.ztunnel_socket, options.ztunnel_deadline},
        [this] { return snapshot(); }, log);
    enroller = std::make_unique<Enroller>(EnrollerDeps{pods, *zds, probes, status, metrics, log});
    plugin_server = std::make_unique<PluginServer>(
        config::run_dir::agent_socket(options.run_dir),
        [this](const config::AgentRequest& r) { return handle(r); }, log);
  }

  std::vector<ZdsWorkload> snapshot() {
    std::vector<ZdsWorkload> out;
    for (const auto& p : pods.all()) {
      out.push_back({p.record.uid, p.record.name, p.record.namespace_, p.service_account,
                     p.netns ? p.netns->fd() : -1});
    }
    return out;
  }

  config::AgentReply handle(const config::AgentRequest& r) {
    config::AgentReply reply;
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
      const bool gate = !options.ready_gate || options.ready_gate();
      const bool ok = ready && gate;
      res.status = ok ? 200 : 503;
      res.set_content(ok ? "ready\n" : (ready ? "not ready: not installed\n" : "not ready\n"),
                      "text/plain");
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
    : impl_(std::make_unique<Impl>(std::move(options), std::move(log))) {}

Agent::~Agent() { stop(); }

void Agent::start() {
  auto& s = *impl_;
  s.start_http();  // liveness from the start; readiness once restored
  s.restore();
  s.zds->start();
  s.plugin_server->start();
  s.ready = true;
  s.log->info("agent ready: {} enrolled pods", s.pods.size());
}

void Agent::stop() {
  auto& s = *impl_;
  s.ready = false;
  s.plugin_server->stop();
  s.zds->stop();
  s.health.stop();
  s.metrics_http.stop();
}

bool Agent::ready() const { return impl_->ready; }
int Agent::health_port() const { return impl_->health.port(); }
int Agent::metrics_port() const { return impl_->metrics_http.port(); }
Enroller& Agent::enroller() { return *impl_->enroller; }
PodTable& Agent::pods() { return impl_->pods; }
ZdsServer& Agent::zds() { return *impl_->zds; }
Metrics& Agent::metrics() { return impl_->metrics; }

}  // namespace ambient::agent
