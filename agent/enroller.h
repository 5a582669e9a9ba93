// Enrolment of one pod, end to end, and its undoing: in-pod rules, host probe entries, the
// agent's state, ztunnel's ack, the status annotation — in that order, each step's undo pushed
// on a Rollback so a failure leaves nothing behind (tests/agent/enroller_test.cpp fails each step
// in turn). The Enroller is the only place that changes a pod's enrolment.
#pragma once

#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/logger.h>

#include "agent/enrolment.h"
#include "agent/metrics.h"
#include "agent/pod_events.h"
#include "agent/pod_table.h"

namespace ambient::agent {

struct EnrollerDeps {
  PodTable& pods;
  NetnsOpener& netns;
  RulesStep& rules;
  ProbeStep& probes;
  ZtunnelStep& ztunnel;
  StatusStep& status;
  Metrics& metrics;
  std::shared_ptr<spdlog::logger> log;
  // Told about failed and pending enrolments and recoveries (Events, last error); may be null.
  PodReport* report = nullptr;
};

class Enroller {
 public:
  explicit Enroller(EnrollerDeps deps) : d_(std::move(deps)) {}

  // Where the netns path came from: the runtime's ADD (authoritative), or the agent's own search
  // (a run-dir record or a /proc scan), which is used only when the netns holds one of the pod's
  // IPs — a reused PID or path must never give another pod's netns this pod's rules or identity.
  enum class Source { kAdd, kFound };

  // Enrols the pod (or re-enrols it: new sandbox, other settings). Failure: a CNI error code
  // (11 for everything the kubelet should retry) and nothing of this attempt left in place.
  Outcome enrol(const Enrolment& e, Source source = Source::kAdd);

  // A sandbox's DEL: releases the pod when that sandbox is the one enrolled; an older sandbox of
  // the same pod, or a pod never enrolled, changes nothing. Never fails.
  void release_sandbox(const rundir::PodRecord& sandbox);

  // Forgets an enrolled pod: ztunnel del, in-pod rules, probe entries, state; the annotation too
  // when asked. Best effort: every step runs even if an earlier one failed. With `only_sandbox`,
  // only when that is still the pod's sandbox: a decision taken about an older sandbox never
  // tears down the one a new ADD just enrolled. Returns whether it released.
  bool release(const std::string& uid, bool clear_annotation, std::string_view only_sandbox = {});

  // Releases a pod known only from the run dir (a tombstone's pod, or uninstall with no agent
  // running): the same steps, the netns opened by its path.
  void forget(const Enrolment& e, bool clear_annotation);

  // Releases every enrolled pod (removal). With clear_annotation the annotation goes first: a pod
  // whose annotation the API will not let us clear (401/403: our identity or RBAC was deleted
  // with us) is kept enrolled, so no pod is left "enabled" without rules (istiod would send it
  // HBONE that nothing receives).
  struct Released {
    std::size_t released = 0;
    std::size_t kept = 0;
  };
  Released release_all(bool clear_annotation);

  // Is what ADD set up for this sandbox in place (CNI CHECK)?
  Outcome check(const std::string& container_id);

  // After a restart: re-opens the pod's netns and re-applies its rules and probe entries (no ZDS
  // here: the next snapshot carries it). False (and forgotten) when its netns is gone; a pod
  // whose rules cannot be re-applied is kept "pending" (annotated so) for repair() to retry.
  bool restore(const Enrolment& e);

  // Drift repair and the retry of pending pods, under the pod's lock with its state re-read
  // there (a pod released meanwhile is left alone): re-applies the rules when they drifted or
  // when the pod is pending; a pending pod that recovers is annotated "enabled" again.
  enum class Repair { kInPlace, kRepaired, kFailed, kGone };
  Repair repair(const std::string& uid);
  std::vector<std::string> pending() const;

  // Makes the host probe set exactly the enrolled pods' IPs (pods being released left out).
  // A pod's probe entries and its place in the table change together under a shared hold of
  // membership_; this takes it exclusively, so the table it reads and the set it writes agree
  // (an enrolment or release in between can neither be undone nor resurrected). Throws
  // netns::NetnsError when the host set cannot be written.
  netns::ProbeReconcileReport repair_probes();

  // A pod that is not enrolled but annotated "enabled" (a release whose annotation patch failed,
  // an agent killed between the two): istiod would send it HBONE. Removes the annotation under
  // the pod's lock, so an ADD in flight is never undone; false when the API refused (retry).
  bool clear_stale_annotation(const std::string& uid, const std::string& ns,
                              const std::string& name);

 private:
  void release_locked(const EnrolledPod& pod, bool clear_annotation, bool touch_netns = true);
  bool is_its_netns(const Enrolment& e, const netns::NetnsHandle& ns);
  void mark(const rundir::PodRecord& p, std::string_view value);  // status annotation, best effort

  EnrollerDeps d_;
  std::shared_mutex membership_;  // see repair_probes()
};

}  // namespace ambient::agent
