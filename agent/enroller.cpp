#include "agent/enroller.h"

#include <chrono>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent/rollback.h"
#include "base/file.h"
#include "config/constants.h"
#include "kube/client.h"

namespace ambient::agent {
namespace {

using contract::cni_code::kInvalidConfig;
using contract::cni_code::kTryAgainLater;
using Clock = std::chrono::steady_clock;

std::string who(const rundir::PodRecord& r) {
  return r.namespace_ + "/" + r.name;
}

PodRef ref(const rundir::PodRecord& r) {
  return {r.namespace_, r.name, r.uid};
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ZdsWorkload workload(const EnrolledPod& p) {
  return {p.uid(), p.pod().name, p.pod().namespace_, p.enrolment.service_account,
          p.netns ? p.netns->fd() : -1};
}

// Debug: where an enrolment spends its time.
class Phases {
 public:
  void mark(const char* name) {
    const auto now = Clock::now();
    text_ += fmt::format(" {} {:.1f}", name,
                         std::chrono::duration<double, std::milli>(now - last_).count());
    last_ = now;
  }
  const std::string& text() const { return text_; }

 private:
  Clock::time_point last_ = Clock::now();
  std::string text_;
};

}  // namespace

Outcome Enroller::enrol(const Enrolment& e, Source source) {
  const auto started = Clock::now();
  const auto& p = e.pod;
  if (p.uid.empty()) {
    d_.metrics.count_request("add", "invalid");
    return Outcome::failure(kInvalidConfig,
                            "pod " + who(p) + " has no UID (K8S_POD_UID or the API's uid)");
  }
  auto lock = d_.pods.lock_pod(p.uid);
  if (source == Source::kFound) {
    // The agent's own pass (a label change, a retry) decided before an ADD enrolled the pod
    // with these very settings: nothing to redo, and redoing it would put a working enrolment
    // at the mercy of a rollback.
    if (const auto current = d_.pods.get(p.uid); current && current->netns && !current->pending &&
                                                 current->enrolment.redirect == e.redirect) {
      return Outcome::success();
    }
  }
  // A re-enrolment of the same sandbox (its settings changed, an ADD repeated) that fails puts
  // the previous enrolment back: the pod stays in the mesh as it was, never erased or stripped.
  std::optional<EnrolledPod> previous = d_.pods.get(p.uid);
  if (previous && (previous->pod().container_id != p.container_id || !previous->netns)) {
    previous.reset();  // an older sandbox's: this ADD replaces it
  }
  Phases phases;
  Rollback undo(*d_.log, "pod " + who(p));
  EnrolledPod pod{e, nullptr};
  pod.enrolment.enrolled_at = previous ? previous->enrolment.enrolled_at : unix_now();
  pod.enrolling = true;
  // Unwinds what this attempt did (newest first) and reports the failure.
  const auto fail = [&](const char* result, const std::string& msg, std::string details) {
    const auto left = undo.unwind();
    if (!left.empty()) {
      d_.metrics.count_request("add", "rollback_failed");
      details += "; could not undo: " + fmt::format("{}", fmt::join(left, ", "));
    }
    d_.metrics.count_request("add", result);
    d_.log->error("pod {}: {}: {}", who(p), msg, details);
    if (d_.report) {
      // ztunnel is the one step a pod waits on (it reconnects, then the retry works); every
      // other failure was undone as a whole.
      const bool waits = std::string_view(result) == "ztunnel_failed" && !previous;
      d_.report->problem(ref(p), waits ? PodReport::Problem::kPending : PodReport::Problem::kFailed,
                         msg + ": " + details +
                             (previous                 ? "; it stays enrolled as before"
                              : source == Source::kAdd ? "; the kubelet retries the pod's sandbox"
                                                       : "; the node agent retries"));
    }
    return Outcome::failure(kTryAgainLater, msg, details);
  };

  try {
    pod.netns = d_.netns.open(p.netns);
    if (source == Source::kFound && !d_.netns.holds_any(*pod.netns, p.ips)) {
      d_.metrics.count_degraded("netns_mismatch");
      return fail("rules_failed",
                  "the network namespace found for pod " + who(p) + " is not its own",
                  p.netns + " holds none of its IPs");
    }
    const auto id = d_.netns.id_of(*pod.netns);
    pod.enrolment.netns_dev = id.dev;
    pod.enrolment.netns_inode = id.inode;
    d_.rules.apply(*pod.netns, plan_for(e.redirect, p.ips));
    undo.add("in-pod rules", [&] {
      if (previous) {
        d_.rules.apply(*previous->netns,
                       plan_for(previous->enrolment.redirect, previous->pod().ips));
      } else {
        d_.rules.remove(*pod.netns);
      }
    });
  } catch (const netns::NetnsError& ex) {
    return fail("rules_failed", "cannot program ztunnel redirection for pod " + who(p), ex.what());
  }
  phases.mark("rules");
  {
    std::shared_lock member(membership_);  // probe entries and table together (repair_probes)
    try {
      d_.probes.set_pod(p.uid, p.ips);
      undo.add("host probe entries", [&] {
        d_.probes.set_pod(p.uid, previous ? previous->pod().ips : std::vector<std::string>{});
      });
    } catch (const netns::NetnsError& ex) {
      return fail("probe_failed", "cannot add pod " + who(p) + " to the host probe set", ex.what());
    }
    phases.mark("probes");
    try {
      d_.pods.put(pod);  // from here a new ztunnel's snapshot includes the pod
      undo.add("agent state", [&] {
        if (previous) {
          d_.pods.put(*previous);
        } else {
          d_.pods.erase(p.uid);
        }
      });
    } catch (const base::FileError& ex) {
      return fail("state_failed", "cannot record pod " + who(p) + " in the run dir", ex.what());
    }
    phases.mark("state");
  }
  try {
    d_.ztunnel.add(workload(pod));
    // ztunnel held the pod before (same uid, same netns): it keeps it.
    if (!previous) undo.add("ztunnel", [&] { d_.ztunnel.del(p.uid); });
  } catch (const ZdsError& ex) {
    auto out = fail("ztunnel_failed", "ztunnel did not take pod " + who(p), ex.what());
    if (previous) return out;  // still enrolled as before, still "enabled"
    // Informational: the kubelet retries the sandbox.
    try {
      d_.status.set(p.namespace_, p.name, p.uid, contract::kRedirectionPending);
    } catch (const kube::ApiError& api) {
      d_.log->warn("pod {}: cannot mark it pending: {}", who(p), api.what());
      d_.metrics.count_degraded("annotation_failed");
    }
    return out;
  }
  phases.mark("ztunnel");
  try {
    // istiod sends mTLS to the pod only once it reads "enabled": don't start it half-meshed.
    d_.status.set(p.namespace_, p.name, p.uid, contract::kRedirectionEnabled);
  } catch (const kube::ApiError& ex) {
    return fail("annotation_failed", "cannot mark pod " + who(p) + " as enabled", ex.what());
  }
  phases.mark("annotation");
  undo.commit();
  d_.pods.mark_enrolled(p.uid);

  const auto took = Clock::now() - started;
  d_.metrics.observe_add_latency(took);
  d_.metrics.count_request("add", "ok");
  d_.metrics.set_enrolled_pods(d_.pods.size());
  d_.log->info("pod {} enrolled (uid {}, netns {}) in {:.1f} ms", who(p), p.uid, p.netns,
               std::chrono::duration<double, std::milli>(took).count());
  // The agent's own passes report their enrolments themselves (they know why they enrolled).
  if (d_.report && source == Source::kAdd) d_.report->enrolled(ref(p), "");
  d_.log->debug("pod {} enrolment phases (ms):{}", who(p), phases.text());
  return Outcome::success();
}

void Enroller::release_sandbox(const rundir::PodRecord& sandbox) {
  std::optional<EnrolledPod> pod;
  if (!sandbox.uid.empty()) pod = d_.pods.get(sandbox.uid);
  if (!pod) pod = d_.pods.find_by_container(sandbox.container_id);
  if (!pod) {
    d_.metrics.count_request("del", "unknown");
    return;  // never enrolled, or already released: DEL is idempotent
  }
  auto lock = d_.pods.lock_pod(pod->uid());
  // A DEL for an older sandbox of the same pod must not release the current one.
  const auto current = d_.pods.get(pod->uid());
  if (!current || current->pod().container_id != sandbox.container_id) {
    d_.metrics.count_request("del", "stale");
    return;
  }
  release_locked(*current, /*clear_annotation=*/true);
  d_.metrics.count_request("del", "ok");
}

bool Enroller::release(const std::string& uid, bool clear_annotation,
                       std::string_view only_sandbox) {
  auto lock = d_.pods.lock_pod(uid);
  const auto pod = d_.pods.get(uid);
  if (!pod) return false;
  if (!only_sandbox.empty() && pod->pod().container_id != only_sandbox) {
    d_.log->info("pod {}: not released: sandbox {} was enrolled since the decision about {}",
                 who(pod->pod()), pod->pod().container_id, only_sandbox);
    return false;
  }
  release_locked(*pod, clear_annotation);
  return true;
}

void Enroller::forget(const Enrolment& e, bool clear_annotation) {
  auto lock = d_.pods.lock_pod(e.pod.uid);
  release_locked(EnrolledPod{e, nullptr}, clear_annotation);
}

Enroller::Released Enroller::release_all(bool clear_annotation) {
  Released out;
  for (const auto& p : d_.pods.all()) {
    auto lock = d_.pods.lock_pod(p.uid());
    const auto pod = d_.pods.get(p.uid());
    if (!pod) continue;
    if (clear_annotation) {
      const auto& rec = pod->pod();
      try {
        d_.status.clear(rec.namespace_, rec.name, rec.uid);
      } catch (const kube::ApiError& e) {
        if (e.kind() == kube::ApiError::Kind::kUnauthorized ||
            e.kind() == kube::ApiError::Kind::kForbidden) {
          d_.log->warn("pod {}: the API refuses to clear its annotation ({}); kept enrolled",
                       who(rec), e.what());
          ++out.kept;
          continue;
        }
        d_.log->warn("pod {}: removing the redirection annotation: {}", who(rec), e.what());
        d_.metrics.count_degraded("annotation_failed");
      }
    }
    release_locked(*pod, /*clear_annotation=*/false);
    ++out.released;
  }
  return out;
}

bool Enroller::is_its_netns(const Enrolment& e, const netns::NetnsHandle& ns) {
  if (e.netns_inode != 0) return d_.netns.id_of(ns) == NetnsId{e.netns_dev, e.netns_inode};
  return d_.netns.holds_any(ns, e.pod.ips);  // state from before identities were recorded
}

void Enroller::release_locked(const EnrolledPod& pod, bool clear_annotation, bool touch_netns) {
  const auto& rec = pod.pod();
  // Out of snapshots first: a ztunnel connecting between this del and the erase below must not
  // get the pod back from one.
  d_.pods.mark_releasing(rec.uid);
  d_.ztunnel.del(rec.uid);
  try {
    if (pod.netns) {
      d_.rules.remove(*pod.netns);
    } else if (touch_netns) {
      // Opened by path: only if it is still the namespace that was enrolled.
      const auto ns = d_.netns.open(rec.netns);
      if (is_its_netns(pod.enrolment, *ns)) {
        d_.rules.remove(*ns);
      } else {
        d_.log->info("pod {}: {} is another network namespace now: its rules are not ours",
                     who(rec), rec.netns);
      }
    }
  } catch (const netns::NetnsError& e) {
    if (e.kind() != netns::ErrorKind::NotFound && e.kind() != netns::ErrorKind::NotNetns) {
      d_.log->warn("pod {}: removing in-pod rules: {}", who(rec), e.what());
      d_.metrics.count_degraded("release_step_failed");
    }
  }
  {
    std::shared_lock member(membership_);  // probe entries and table together (repair_probes)
    try {
      d_.probes.set_pod(rec.uid, {});
    } catch (const netns::NetnsError& e) {
      d_.log->warn("pod {}: removing probe entries: {}", who(rec), e.what());
      d_.metrics.count_degraded("release_step_failed");
    }
    d_.pods.erase(rec.uid);
  }
  d_.metrics.set_enrolled_pods(d_.pods.size());
  if (clear_annotation) {
    try {
      d_.status.clear(rec.namespace_, rec.name, rec.uid);
    } catch (const kube::ApiError& e) {
      d_.log->warn("pod {}: removing the redirection annotation: {}", who(rec), e.what());
      d_.metrics.count_degraded("annotation_failed");
    }
  }
  d_.log->info("pod {} released (uid {})", who(rec), rec.uid);
}

void Enroller::mark(const rundir::PodRecord& p, std::string_view value) {
  try {
    d_.status.set(p.namespace_, p.name, p.uid, value);
  } catch (const kube::ApiError& e) {
    d_.log->warn("pod {}: cannot mark it {}: {}", who(p), value, e.what());
    d_.metrics.count_degraded("annotation_failed");
  }
}

bool Enroller::clear_stale_annotation(const std::string& uid, const std::string& ns,
                                      const std::string& name) {
  auto lock = d_.pods.lock_pod(uid);
  if (d_.pods.get(uid)) return true;  // enrolled meanwhile (an ADD): its annotation is right
  try {
    d_.status.clear(ns, name, uid);
  } catch (const kube::ApiError& e) {
    d_.log->warn("pod {}/{}: removing a stale redirection annotation: {}; will retry", ns, name,
                 e.what());
    d_.metrics.count_degraded("annotation_failed");
    return false;
  }
  d_.metrics.count_repair("stale_annotation");
  d_.log->info("pod {}/{} is not enrolled: removed its stale redirection annotation", ns, name);
  return true;
}

Enroller::Repair Enroller::repair(const std::string& uid) {
  auto lock = d_.pods.lock_pod(uid);
  auto pod = d_.pods.get(uid);
  if (!pod || !pod->netns) return Repair::kGone;  // released meanwhile: leave it alone
  const auto& p = pod->pod();
  const auto plan = plan_for(pod->enrolment.redirect, p.ips);
  try {
    const auto seen = d_.rules.inspect(*pod->netns, plan);
    if (seen.status == netns::RedirectStatus::Current && !pod->pending) return Repair::kInPlace;
    d_.rules.apply(*pod->netns, plan);
    d_.probes.set_pod(uid, p.ips);
    if (pod->pending) {
      pod->pending = false;
      d_.pods.adopt(*pod);
      mark(p, contract::kRedirectionEnabled);
      d_.log->warn("pod {}: redirection re-applied; enabled again", who(p));
      if (d_.report) d_.report->enrolled(ref(p), "its in-pod redirection is in place again");
    } else {
      d_.log->warn("pod {}: in-pod redirection had drifted ({}); repaired", who(p), seen.summary());
    }
    d_.metrics.count_repair("inpod_rules");
    return Repair::kRepaired;
  } catch (const netns::NetnsError& e) {
    d_.log->error("pod {}: re-applying its redirection failed: {}; pending, will retry", who(p),
                  e.what());
    d_.metrics.count_degraded("drift_repair_failed");
    if (d_.report) {
      d_.report->problem(ref(p), PodReport::Problem::kPending,
                         std::string("re-applying its in-pod redirection failed: ") + e.what() +
                             "; marked pending, retried every 2 s");
    }
    if (!pod->pending) {
      pod->pending = true;
      d_.pods.adopt(*pod);
      mark(p, contract::kRedirectionPending);
    }
    return Repair::kFailed;
  }
}

netns::ProbeReconcileReport Enroller::repair_probes() {
  std::unique_lock freeze(membership_);
  std::vector<netns::ProbeEntry> desired;
  for (const auto& p : d_.pods.all()) {
    if (p.releasing) continue;  // its release removes its entries next, under the same hold
    for (const auto& ip : p.pod().ips) desired.push_back({p.uid(), ip});
  }
  return d_.probes.reconcile(desired);
}

std::vector<std::string> Enroller::pending() const {
  std::vector<std::string> out;
  for (const auto& p : d_.pods.all()) {
    if (p.pending) out.push_back(p.uid());
  }
  return out;
}

Outcome Enroller::check(const std::string& container_id) {
  const auto pod = d_.pods.find_by_container(container_id);
  if (!pod || !pod->netns) {
    d_.metrics.count_request("check", "unknown");
    return Outcome::failure(kTryAgainLater,
                            "sandbox " + container_id + " is not enrolled by the node agent");
  }
  const auto seen =
      d_.rules.inspect(*pod->netns, plan_for(pod->enrolment.redirect, pod->pod().ips));
  if (seen.status != netns::RedirectStatus::Current) {
    d_.metrics.count_request("check", "drifted");
    return Outcome::failure(kTryAgainLater,
                            "redirection of pod " + who(pod->pod()) + " is not in place",
                            seen.summary());
  }
  if (d_.ztunnel.connections() == 0) {
    d_.metrics.count_request("check", "no_ztunnel");
    return Outcome::failure(kTryAgainLater, "no ztunnel is connected to the node agent");
  }
  d_.metrics.count_request("check", "ok");
  return Outcome::success();
}

bool Enroller::restore(const Enrolment& e) {
  auto lock = d_.pods.lock_pod(e.pod.uid);
  EnrolledPod pod{e, nullptr};
  try {
    pod.netns = d_.netns.open(e.pod.netns);
  } catch (const netns::NetnsError& ex) {
    d_.log->info("pod {}: its netns is gone ({}); forgetting it", who(e.pod), ex.what());
    release_locked(pod, /*clear_annotation=*/false);
    return false;
  }
  if (!is_its_netns(e, *pod.netns)) {
    // The path names another namespace now (its sandbox was replaced, the PID reused): nothing
    // in there is ours to touch. The pod is forgotten; if it still runs, the reconciler finds
    // its new netns and enrols it again.
    d_.log->warn(
        "pod {}: {} is another network namespace now; forgetting the pod without "
        "touching it",
        who(e.pod), e.pod.netns);
    d_.metrics.count_degraded("netns_replaced");
    pod.netns.reset();
    release_locked(pod, /*clear_annotation=*/false, /*touch_netns=*/false);
    return false;
  }
  std::shared_lock member(membership_);  // probe entries and table together (repair_probes)
  try {
    d_.rules.apply(*pod.netns, plan_for(e.redirect, e.pod.ips));
    d_.probes.set_pod(e.pod.uid, e.pod.ips);
  } catch (const netns::NetnsError& ex) {
    // Kept for ztunnel's snapshot, but never as "enabled" with no rules: pending, and retried.
    d_.log->error("pod {}: re-applying redirection after restart failed: {}; pending", who(e.pod),
                  ex.what());
    d_.metrics.count_degraded("restore_failed");
    if (d_.report) {
      d_.report->problem(ref(e.pod), PodReport::Problem::kPending,
                         std::string("re-applying its in-pod redirection after the node agent "
                                     "restarted failed: ") +
                             ex.what() + "; marked pending, retried every 2 s");
    }
    pod.pending = true;
    mark(pod.pod(), contract::kRedirectionPending);
  }
  d_.pods.adopt(std::move(pod));
  d_.metrics.set_enrolled_pods(d_.pods.size());
  return true;
}

}  // namespace ambient::agent
