// Host-side probe SNAT (ambient-contract.md §5): kubelet probes leave the node from node-local
// sockets; TCP from the kubelet's UID to an enrolled pod IP is SNATed to the probe address, which
// the in-pod rules let through uncaptured.
//
// Lives in the node's netns (table inet istio-ambient-nat: the same name as the in-pod table, in
// another netns). Every operation takes the netns to act in, so tests run it in a namespace that
// plays the node.
//
// Ownership: each set element carries its pod UID as the element comment (what Istio does), so
// the kernel state itself says which pod owns an IP and survives an agent restart. remove() only
// deletes an element whose comment is the caller's UID; add() of an IP owned by another UID moves
// it to the new owner (the IP was reused by a new pod). Read-modify-write is serialised per
// process; the agent is the only writer of this table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "netns/netns.h"

namespace ambient::netns {
namespace nft {
struct SetElementOp;  // nft_batch.h (internal)
}

struct HostProbeConfig {
  std::uint32_t kubelet_uid = 0;
};

struct ProbeEntry {
  std::string pod_uid;
  std::string ip;  // canonical text form (inet_ntop)
  bool operator==(const ProbeEntry&) const = default;
  auto operator<=>(const ProbeEntry&) const = default;
};

struct ProbeReconcileReport {
  bool base_repaired = false;  // table, sets, chain or rules were missing or different
  std::size_t added = 0;       // elements added or given back to their owner
  std::size_t removed = 0;     // elements not in the desired state
};

class HostProbeSnat {
 public:
  HostProbeSnat(NetnsHandle host, HostProbeConfig config);

  // Table, both sets, the postrouting chain and its two SNAT rules; the chain is flushed and
  // refilled, the sets (and their elements) are kept.
  static std::string render_base(const HostProbeConfig& config);

  void ensure();
  // The one mutator: afterwards pod_uid owns exactly `ips` (IPv4 and/or IPv6, any order; empty
  // removes every IP it owns). An IP owned by another pod moves to pod_uid (reused by a new pod);
  // IPs of other pods are never removed. Throws InvalidArgument on a bad IP or UID, NetnsError
  // when the transaction fails.
  void set_pod(std::string_view pod_uid, const std::vector<std::string>& ips);
  std::vector<ProbeEntry> entries() const;
  // Makes the host state equal to `desired`: repairs the base if flushed/deleted/changed, then
  // adds missing elements, fixes owners, and removes elements not in `desired`.
  ProbeReconcileReport reconcile(const std::vector<ProbeEntry>& desired);
  // True when table, sets, chain and rules list exactly as render_base() does in a fresh netns.
  bool base_is_current() const;
  // Deletes the whole table (uninstall). Missing is success.
  void teardown();

  const HostProbeConfig& config() const noexcept { return config_; }

 private:
  // Fast path for add/remove: who owns which IP, as this process last wrote it (the agent is the
  // only writer). Loaded from the kernel on first use; dropped whenever the kernel may disagree
  // (a transaction failed, ensure/reconcile/teardown), so the next call reads it again.
  void load_owners_here();
  bool run_incremental(const std::vector<nft::SetElementOp>& ops, const std::string& what);

  NetnsHandle host_;
  HostProbeConfig config_;
  mutable std::mutex mu_;
  std::optional<std::map<std::string, std::string>> owners_;  // ip → pod UID
};

}  // namespace ambient::netns
