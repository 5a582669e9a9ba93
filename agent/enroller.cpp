#include "agent/enroller.h"

#include <chrono>

#include <spdlog/spdlog.h>

#include "config/constants.h"

namespace ambient::agent {
namespace {

using contract::cni_code::kInvalidConfig;
using contract::cni_code::kTryAgainLater;

config::AgentReply ok() {
  return config::AgentReply::success();
}
config::AgentReply fail(int code, std::string msg, std::string details = {}) {
  return config::AgentReply::failure(code, std::move(msg), std::move(details));
}

std::string who(const config::PodRecord& r) {
  return r.namespace_ + "/" + r.name;
}

ZdsWorkload workload(const EnrolledPod& p) {
  return {p.record.uid, p.record.name, p.record.namespace_, p.service_account,
          p.netns ? p.netns->fd() : -1};
}

}  // namespace

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

config::AgentReply Enroller::add(const config::AgentRequest& r) {
  const auto started = std::chrono::steady_clock::now();
  const auto& rec = r.pod;
  if (rec.uid.empty()) {
    d_.metrics.count_request("add", "invalid");
    return fail(kInvalidConfig, "pod " + who(rec) + " has no UID (K8S_POD_UID or the API's uid)");
  }
  auto lock = d_.pods.lock_pod(rec.uid);
  using Clock = std::chrono::steady_clock;
  auto mark = Clock::now();
  std::string phases;  // debug: where an enrolment spends its time
  const auto phase = [&](const char* name) {
    const auto now = Clock::now();
    phases += fmt::format(" {} {:.1f}", name,
                          std::chrono::duration<double, std::milli>(now - mark).count());
    mark = now;
  };
  EnrolledPod pod{rec, r.service_account, r.redirect, nullptr};
  std::optional<netns::RedirectPlan> plan;
  try {
    pod.netns = std::make_shared<netns::NetnsHandle>(netns::NetnsHandle::open(rec.netns));
    pod.netns->relocate_fd();  // held for the pod's lifetime: keep low fd numbers free
    plan.emplace(plan_for(r.redirect, rec.ips));
    netns::apply(*pod.netns, *plan);
    phase("rules");
  } catch (const netns::NetnsError& e) {
    d_.metrics.count_request("add", "rules_failed");
    d_.log->error("pod {}: programming redirection failed: {}", who(rec), e.what());
    return fail(kTryAgainLater, "cannot program ztunnel redirection for pod " + who(rec), e.what());
  }
  const auto undo_rules = [&] {
    try {
      netns::remove(*pod.netns);
    } catch (const netns::NetnsError& e) {
      d_.log->error("pod {}: rollback of in-pod rules failed: {}", who(rec), e.what());
    }
  };
  try {
    d_.probes.add(rec.uid, rec.ips);
    phase("probes");
  } catch (const netns::NetnsError& e) {
    undo_rules();
    d_.metrics.count_request("add", "probe_failed");
    return fail(kTryAgainLater, "cannot add pod " + who(rec) + " to the host probe set", e.what());
  }
  const auto undo_probes = [&] {
    try {
      d_.probes.remove(rec.uid, rec.ips);
    } catch (const netns::NetnsError& e) {
      d_.log->error("pod {}: rollback of probe entries failed: {}", who(rec), e.what());
    }
  };

  d_.pods.put(pod);  // from here a new ztunnel's snapshot includes the pod
  phase("state");
  try {
    d_.zds.add(workload(pod));
    phase("ztunnel");
  } catch (const ZdsError& e) {
    d_.pods.erase(rec.uid);
    undo_probes();
    undo_rules();
    try {  // informational: the kubelet retries the sandbox
      d_.status.set(rec.namespace_, rec.name, contract::kRedirectionPending);
    } catch (const kube::ApiError& api) {
      d_.log->warn("pod {}: cannot mark it pending: {}", who(rec), api.what());
    }
    d_.metrics.count_request("add", "ztunnel_failed");
    d_.log->error("pod {}: ztunnel did not take the pod: {}", who(rec), e.what());
    return fail(kTryAgainLater, "ztunnel did not take pod " + who(rec), e.what());
  }
  try {
    d_.status.set(rec.namespace_, rec.name, contract::kRedirectionEnabled);
    phase("annotation");
  } catch (const kube::ApiError& e) {
    // istiod sends mTLS to the pod only once it reads "enabled": don't start it half-meshed.
    d_.zds.del(rec.uid);
    d_.pods.erase(rec.uid);
    undo_probes();
    undo_rules();
    d_.metrics.count_request("add", "annotation_failed");
    return fail(kTryAgainLater, "cannot mark pod " + who(rec) + " as enabled", e.what());
  }
  const auto took = std::chrono::steady_clock::now() - started;
  d_.metrics.observe_add_latency(took);
  d_.metrics.count_request("add", "ok");
  d_.metrics.set_enrolled_pods(d_.pods.size());
  d_.log->info("pod {} enrolled (uid {}, netns {}) in {:.1f} ms", who(rec), rec.uid, rec.netns,
               std::chrono::duration<double, std::milli>(took).count());
  d_.log->debug("pod {} enrolment phases (ms):{}", who(rec), phases);
  return ok();
}

config::AgentReply Enroller::del(const config::AgentRequest& r) {
  std::optional<EnrolledPod> pod;
  if (!r.pod.uid.empty()) pod = d_.pods.get(r.pod.uid);
  if (!pod) pod = d_.pods.find_by_container(r.pod.container_id);
  if (!pod) {
    d_.metrics.count_request("del", "unknown");
    return ok();  // never enrolled, or already released: DEL is idempotent
  }
  auto lock = d_.pods.lock_pod(pod->record.uid);
  // A DEL for an older sandbox of the same pod must not release the current one.
  const auto current = d_.pods.get(pod->record.uid);
  if (!current || current->record.container_id != r.pod.container_id) {
    d_.metrics.count_request("del", "stale");
    return ok();
  }
  release(*current, /*clear_annotation=*/true);
  d_.metrics.count_request("del", "ok");
  return ok();
}

config::AgentReply Enroller::check(const config::AgentRequest& r) {
  auto pod = d_.pods.find_by_container(r.pod.container_id);
  if (!pod || !pod->netns) {
    d_.metrics.count_request("check", "unknown");
    return fail(kTryAgainLater, "pod " + who(r.pod) + " is not enrolled by the node agent");
  }
  const auto seen = netns::inspect(*pod->netns, plan_for(pod->redirect, pod->record.ips));
  if (seen.status != netns::RedirectStatus::Current) {
    d_.metrics.count_request("check", "drifted");
    return fail(kTryAgainLater, "redirection of pod " + who(r.pod) + " is not in place",
                seen.summary());
  }
  if (d_.zds.connections() == 0) {
    d_.metrics.count_request("check", "no_ztunnel");
    return fail(kTryAgainLater, "no ztunnel is connected to the node agent");
  }
  d_.metrics.count_request("check", "ok");
  return ok();
}

bool Enroller::restore(EnrolledPod pod) {
  auto lock = d_.pods.lock_pod(pod.record.uid);
  try {
    pod.netns = std::make_shared<netns::NetnsHandle>(netns::NetnsHandle::open(pod.record.netns));
    pod.netns->relocate_fd();
  } catch (const netns::NetnsError& e) {
    d_.log->info("pod {}: its netns is gone ({}); forgetting it", who(pod.record), e.what());
    release(pod, /*clear_annotation=*/false);
    return false;
  }
  try {
    netns::apply(*pod.netns, plan_for(pod.redirect, pod.record.ips));
    d_.probes.add(pod.record.uid, pod.record.ips);
  } catch (const netns::NetnsError& e) {
    // Kept: the snapshot still hands it to ztunnel; the periodic reconcile retries the rules.
    d_.log->error("pod {}: re-applying redirection after restart failed: {}", who(pod.record),
                  e.what());
  }
  d_.pods.put(std::move(pod));
  d_.metrics.set_enrolled_pods(d_.pods.size());
  return true;
}

void Enroller::release(const EnrolledPod& pod, bool clear_annotation) {
  const auto& rec = pod.record;
  d_.zds.del(rec.uid);
  try {
    if (pod.netns) {
      netns::remove(*pod.netns);
    } else {
      netns::remove(netns::NetnsHandle::open(rec.netns));
    }
  } catch (const netns::NetnsError& e) {
    if (e.kind() != netns::ErrorKind::NotFound && e.kind() != netns::ErrorKind::NotNetns) {
      d_.log->warn("pod {}: removing in-pod rules: {}", who(rec), e.what());
    }
  }
  try {
    d_.probes.remove_pod(rec.uid);
  } catch (const netns::NetnsError& e) {
    d_.log->warn("pod {}: removing probe entries: {}", who(rec), e.what());
  }
  d_.pods.erase(rec.uid);
  d_.metrics.set_enrolled_pods(d_.pods.size());
  if (clear_annotation) {
    try {
      d_.status.clear(rec.namespace_, rec.name);
    } catch (const kube::ApiError& e) {
      d_.log->warn("pod {}: removing the redirection annotation: {}", who(rec), e.what());
    }
  }
  d_.log->info("pod {} released (uid {})", who(rec), rec.uid);
}

}  // namespace ambient::agent
