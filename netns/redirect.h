// In-pod redirection for ztunnel (ambient-contract.md §4): options → RedirectPlan → nft text,
// applied as one nf_tables transaction inside the pod's netns, plus policy routing via libnl.
//
// Rendering, entering the netns and executing are separate steps so the text can be
// golden-tested without privileges and shown by `ambient-cni-node redirect --dry-run`. The text
// is what runs: libnftables compiles it once per distinct plan in a throwaway netns, and each pod
// gets that same netlink batch replayed (decision 017).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "netns/netns.h"
#include "netns/routing.h"

namespace ambient::netns {

struct RedirectOptions {
  bool ipv4 = true;
  bool ipv6 = false;
  bool dns_capture = true;
  // Ingress mode: no inbound plaintext redirect (15006); outbound capture, HBONE on 15008 and the
  // connmark for ztunnel's spoofed inbound leg stay.
  bool bypass_inbound_capture = false;
  // TCP arriving on these interfaces is treated as outbound (KubeVirt/VM interfaces).
  std::vector<std::string> reroute_interfaces;

  bool operator==(const RedirectOptions&) const = default;
};

class RedirectPlan {
 public:
  // Validates the options (at least one family; interface names 1-15 chars of [A-Za-z0-9_.-],
  // duplicates dropped). Throws NetnsError(InvalidArgument).
  explicit RedirectPlan(RedirectOptions options);

  const RedirectOptions& options() const noexcept { return options_; }
  // The whole transaction as libnftables input: add + flush + chains + rules for each table the
  // plan uses, and add + delete for a table it does not use (so re-applying with DNS capture
  // switched off converges).
  std::string render() const;
  // The tables the plan creates (nat and mangle always, raw only with DNS capture).
  std::vector<std::string_view> tables() const;
  RoutingSpec routing() const { return {options_.ipv4, options_.ipv6}; }

 private:
  RedirectOptions options_;
};

// Failure-injection seam for the routing step: called on the netns thread after the nft
// transaction succeeded, instead of the real libnl programming. Tests use it to prove that a
// routing failure leaves no tables behind.
using RoutingInstaller = std::function<void(const RoutingSpec&)>;

struct ApplyHooks {
  RoutingInstaller install_routing;  // empty: install_routing_here()
  // Told when the rules went in through libnftables instead of the replayed batch (decision 017;
  // same rules, slower): "rule_replay_unavailable" (no batch this node can replay for the plan;
  // logged once per process) or "rule_replay_refused" (the kernel refused the replay, which
  // changed nothing; logged each time). For a metric; may be empty.
  std::function<void(std::string_view what)> degraded;
};

// Applies the plan in ns: one nf_tables transaction (the plan's batch replayed, or libnftables),
// then policy routing. Idempotent. If routing fails, the tables and any routing already added
// are removed again and the NetnsError says what failed (and whether the rollback itself failed).
// The first apply of a distinct plan in a process learns its batch in throwaway netns (needs
// CAP_SYS_ADMIN, as entering a pod's netns does; a few milliseconds).
void apply(const NetnsHandle& ns, const RedirectPlan& plan, const ApplyHooks& hooks = {});

// The nft transaction remove() runs (for --dry-run): add + delete of each of the three tables.
std::string render_removal();

// Deletes the three tables (one transaction) and the rule(s)/route(s) of both families.
// "Not found" is success; removing twice is fine.
void remove(const NetnsHandle& ns);

enum class RedirectStatus { Absent, Current, Drifted };
std::string_view to_string(RedirectStatus status);

struct Inspection {
  RedirectStatus status = RedirectStatus::Absent;
  // One line per difference from the plan (empty when Current or Absent).
  std::vector<std::string> details;
  std::string summary() const;  // "drifted: a; b"
};

// Compares what is in ns with the plan. Absent: none of our tables, rules or routes. Current:
// every table lists exactly as the plan lists in a pristine netns, no table the plan does not
// use, and the rule and route of each effective family present. Anything else: Drifted.
// The reference listing is learnt with the plan's batch (apply() above) and cached with it.
Inspection inspect(const NetnsHandle& ns, const RedirectPlan& plan);

}  // namespace ambient::netns
