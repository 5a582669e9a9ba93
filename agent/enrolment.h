// The agent's enrolment API: what it takes to enrol a pod (Enrolment), what comes back (Outcome),
// and the steps an enrolment goes through, each behind a narrow interface so the Enroller's
// ordering and rollback are tested without root (tests/agent/enroller_test.cpp).
//
// The plugin protocol (rundir/messages.h) never reaches past the agent's socket edge.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/kube_objects.h"
#include "config/redirect_settings.h"
#include "netns/host_probe.h"
#include "netns/netns.h"
#include "netns/redirect.h"
#include "rundir/records.h"

namespace ambient::agent {

// pod (uid, name, namespace, sandbox, IPs), service account, redirect settings: the run dir keeps
// exactly this for every enrolled pod.
using rundir::Enrolment;

// A CNI-style result: ok, or a CNI error code with a message naming the pod and the cause.
struct Outcome {
  bool ok = true;
  int code = 0;
  std::string msg;
  std::string details;
  static Outcome success() { return {}; }
  static Outcome failure(int code, std::string msg, std::string details = {}) {
    return {false, code, std::move(msg), std::move(details)};
  }
};

// The agent's answer to a sandbox's ADD: its decision (enrolled, or untouched and why), or why it
// could not decide (`decided` false: the API failed) or could not enrol.
struct AddResult {
  Outcome outcome;
  bool decided = true;
  bool enrolled = false;
  std::string reason;
};

// What the agent applies to every pod unless its annotations say otherwise: from the same node
// configuration the plugin's conflist entry is rendered from.
struct NodeDefaults {
  bool dns_capture = true;
  bool ipv6 = true;
};

// The one place a pod's enrolment is derived from what the API says about it: the ADD and every
// later (re-)enrolment by the reconciler or a restart use it, so their settings never differ.
Enrolment enrolment_for(const config::PodInfo& pod, rundir::PodRecord sandbox,
                        const NodeDefaults& defaults);

// The in-pod plan: IPv4 unless the pod has only IPv6; IPv6 when enabled and present.
netns::RedirectPlan plan_for(const config::RedirectSettings& settings,
                             const std::vector<std::string>& ips);

// ---- the steps ----------------------------------------------------------------------------------
// Each throws its layer's error on failure: netns::NetnsError (netns, rules, probes), ZdsError
// (ztunnel), kube::ApiError (status annotation).

struct NetnsId {
  std::uint64_t dev = 0;
  std::uint64_t inode = 0;
  bool operator==(const NetnsId&) const = default;
};

class NetnsOpener {
 public:
  virtual ~NetnsOpener() = default;
  virtual std::shared_ptr<netns::NetnsHandle> open(const std::string& path) = 0;
  // Which namespace a handle is (nsfs device and inode).
  virtual NetnsId id_of(const netns::NetnsHandle& ns) = 0;
  // Whether it holds one of the pod's IPs (the check for a netns the agent found itself).
  virtual bool holds_any(const netns::NetnsHandle& ns, const std::vector<std::string>& ips) = 0;
};

class RulesStep {
 public:
  virtual ~RulesStep() = default;
  virtual void apply(const netns::NetnsHandle& ns, const netns::RedirectPlan& plan) = 0;
  virtual void remove(const netns::NetnsHandle& ns) = 0;
  virtual netns::Inspection inspect(const netns::NetnsHandle& ns,
                                    const netns::RedirectPlan& plan) = 0;
};

class ProbeStep {
 public:
  virtual ~ProbeStep() = default;
  // Afterwards the pod owns exactly `ips` in the host probe set (empty: none).
  virtual void set_pod(std::string_view uid, const std::vector<std::string>& ips) = 0;
  // Makes the whole host set equal to `desired` (drift repair, restart).
  virtual netns::ProbeReconcileReport reconcile(const std::vector<netns::ProbeEntry>& desired) = 0;
};

struct ZdsWorkload {
  std::string uid;
  std::string name;
  std::string namespace_;
  std::string service_account;
  int netns_fd = -1;  // borrowed; -1 in a snapshot means "keep" (known, no netns held)
};

class ZdsError : public std::runtime_error {
 public:
  enum class Kind { kNoZtunnel, kNack, kTimeout, kDisconnected, kProtocol };
  ZdsError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

class ZtunnelStep {
 public:
  virtual ~ZtunnelStep() = default;
  virtual void add(const ZdsWorkload& workload) = 0;  // returns once ztunnel acked
  virtual void del(const std::string& uid) = 0;       // best effort, never throws
  virtual std::size_t connections() const = 0;
};

class StatusStep {
 public:
  virtual ~StatusStep() = default;
  // `uid` is a precondition: a pod of that name but another uid (replaced) is never touched.
  virtual void set(const std::string& ns, const std::string& name, const std::string& uid,
                   std::string_view value) = 0;
  virtual void clear(const std::string& ns, const std::string& name, const std::string& uid) = 0;
};

// The production steps over netns/ (nf_tables, libnl, the host probe table). The rules step
// tells `degraded` when a pod's rules went in through libnftables instead of the replayed batch
// (netns::ApplyHooks::degraded, decision 017).
std::unique_ptr<NetnsOpener> make_path_netns_opener();
std::unique_ptr<RulesStep> make_nft_rules_step(
    std::function<void(const std::string& what)> degraded = {});
std::unique_ptr<ProbeStep> make_host_probe_step(netns::HostProbeSnat& probes);

}  // namespace ambient::agent
