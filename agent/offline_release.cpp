#include "agent/offline_release.h"

#include "agent/enroller.h"
#include "agent/kube_access.h"
#include "agent/metrics.h"
#include "agent/pod_table.h"
#include "netns/host_probe.h"
#include "rundir/store.h"

namespace ambient::agent {
namespace {

// No ztunnel is connected to anyone while no agent runs.
class NoZtunnel final : public ZtunnelStep {
 public:
  void add(const ZdsWorkload&) override {
    throw ZdsError(ZdsError::Kind::kNoZtunnel, "no agent runs: no ztunnel is connected");
  }
  void del(const std::string&) override {}
  std::size_t connections() const override { return 0; }
};

class NoApi final : public StatusStep {
 public:
  void set(const std::string&, const std::string&, const std::string&, std::string_view) override {}
  void clear(const std::string&, const std::string&, const std::string&) override {}
};

}  // namespace

std::size_t release_persisted_pods(const OfflineReleaseOptions& o,
                                   const std::shared_ptr<spdlog::logger>& log) {
  const rundir::RunDir dir(o.run_dir);
  std::vector<rundir::Problem> problems;
  const auto persisted = dir.enrolled(&problems);
  for (const auto& p : problems)
    log->warn("run dir: {} is unreadable: left in place ({})", p.path, p.error);
  if (persisted.empty() && problems.empty()) log->info("no enrolled pods in {}", o.run_dir);
  if (!o.api && !persisted.empty()) {
    log->warn("no API access: redirection annotations of released pods stay set");
  }

  Metrics metrics;
  PodTable pods(dir);
  std::optional<ApiPool> api;
  std::optional<StatusAnnotator> annotator;
  if (o.api) {
    api.emplace(*o.api, kube::ClientOptions{.user_agent = "ambient-cni-node-uninstall"});
    annotator.emplace(*api);
  }
  NoApi no_api;
  netns::HostProbeSnat probes(
      o.host_netns.empty() ? netns::NetnsHandle::current() : netns::NetnsHandle::open(o.host_netns),
      netns::HostProbeConfig{o.kubelet_uid});
  const auto probe_step = make_host_probe_step(probes);
  NoZtunnel ztunnel;
  const auto opener = make_path_netns_opener();
  const auto rules = make_nft_rules_step();
  Enroller enroller({pods, *opener, *rules, *probe_step, ztunnel,
                     annotator ? static_cast<StatusStep&>(*annotator) : no_api, metrics, log});
  for (const auto& e : persisted) enroller.forget(e, /*clear_annotation=*/o.api.has_value());

  std::vector<rundir::Problem> again;
  const auto remaining = dir.enrolled(&again).size() + again.size();
  if (remaining == 0) {
    try {
      probes.teardown();  // the host probe SNAT table is ours and now empty
    } catch (const std::exception& e) {
      log->warn("removing the host probe SNAT table: {}", e.what());
    }
  }
  log->info("released {} enrolled pod(s)", persisted.size());
  return remaining;
}

}  // namespace ambient::agent
