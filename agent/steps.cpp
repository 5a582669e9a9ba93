// The production enrolment steps and the one derivation of a pod's enrolment.
#include "agent/enrolment.h"

#include <algorithm>

#include "config/redirect_settings.h"

namespace ambient::agent {
namespace {

class PathNetnsOpener final : public NetnsOpener {
 public:
  std::shared_ptr<netns::NetnsHandle> open(const std::string& path) override {
    auto ns = std::make_shared<netns::NetnsHandle>(netns::NetnsHandle::open(path));
    ns->relocate_fd();  // held for the pod's lifetime: keep low fd numbers free
    return ns;
  }
  NetnsId id_of(const netns::NetnsHandle& ns) override { return {ns.dev(), ns.inode()}; }
  bool holds_any(const netns::NetnsHandle& ns, const std::vector<std::string>& ips) override {
    return netns::holds_any_address(ns, ips);
  }
};

class NftRulesStep final : public RulesStep {
 public:
  explicit NftRulesStep(std::function<void(const std::string&)> degraded) {
    if (degraded) {
      hooks_.degraded = [d = std::move(degraded)](std::string_view what) { d(std::string(what)); };
    }
  }
  void apply(const netns::NetnsHandle& ns, const netns::RedirectPlan& plan) override {
    netns::apply(ns, plan, hooks_);
  }
  void remove(const netns::NetnsHandle& ns) override { netns::remove(ns); }
  netns::Inspection inspect(const netns::NetnsHandle& ns,
                            const netns::RedirectPlan& plan) override {
    return netns::inspect(ns, plan);
  }

 private:
  netns::ApplyHooks hooks_;
};

class HostProbeStep final : public ProbeStep {
 public:
  explicit HostProbeStep(netns::HostProbeSnat& probes) : probes_(probes) {}
  void set_pod(std::string_view uid, const std::vector<std::string>& ips) override {
    probes_.set_pod(uid, ips);
  }
  netns::ProbeReconcileReport reconcile(const std::vector<netns::ProbeEntry>& desired) override {
    return probes_.reconcile(desired);
  }

 private:
  netns::HostProbeSnat& probes_;
};

}  // namespace

Enrolment enrolment_for(const config::PodInfo& pod, rundir::PodRecord sandbox,
                        const NodeDefaults& defaults) {
  Enrolment e;
  e.pod = std::move(sandbox);
  if (!pod.uid.empty()) e.pod.uid = pod.uid;
  if (!pod.name.empty()) e.pod.name = pod.name;
  if (!pod.namespace_.empty()) e.pod.namespace_ = pod.namespace_;
  // The API's podIPs too: a dual-stack pod whose prevResult named only IPv4 still gets IPv6.
  for (const auto& ip : pod.ips) {
    if (std::find(e.pod.ips.begin(), e.pod.ips.end(), ip) == e.pod.ips.end()) {
      e.pod.ips.push_back(ip);
    }
  }
  e.service_account = pod.service_account;
  e.redirect = config::redirect_settings_for(pod.annotations, defaults.dns_capture, defaults.ipv6);
  return e;
}

netns::RedirectPlan plan_for(const config::RedirectSettings& s,
                             const std::vector<std::string>& ips) {
  bool has4 = false, has6 = false;
  for (const auto& ip : ips) (ip.find(':') == std::string::npos ? has4 : has6) = true;
  netns::RedirectOptions o;
  o.ipv6 = s.ipv6 && has6;
  o.ipv4 = has4 || !o.ipv6;
  o.dns_capture = s.dns_capture;
  o.bypass_inbound_capture = s.bypass_inbound_capture;
  o.reroute_interfaces = s.reroute_interfaces;
  return netns::RedirectPlan(std::move(o));
}

std::unique_ptr<NetnsOpener> make_path_netns_opener() {
  return std::make_unique<PathNetnsOpener>();
}

std::unique_ptr<RulesStep> make_nft_rules_step(std::function<void(const std::string&)> degraded) {
  return std::make_unique<NftRulesStep>(std::move(degraded));
}

std::unique_ptr<ProbeStep> make_host_probe_step(netns::HostProbeSnat& probes) {
  return std::make_unique<HostProbeStep>(probes);
}

}  // namespace ambient::agent
