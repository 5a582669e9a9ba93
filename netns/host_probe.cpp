#include "netns/host_probe.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "config/constants.h"
#include "netns/nft.h"
#include "netns/nft_batch.h"

namespace ambient::netns {
namespace {

namespace c = ambient::contract;

struct ParsedIp {
  bool v6;
  std::string text;
};

ParsedIp parse_ip(const std::string& ip) {
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, ip.c_str(), buf) == 1) {
    inet_ntop(AF_INET, buf, out, sizeof out);
    return {false, out};
  }
  if (inet_pton(AF_INET6, ip.c_str(), buf) == 1) {
    inet_ntop(AF_INET6, buf, out, sizeof out);
    return {true, out};
  }
  throw NetnsError(ErrorKind::InvalidArgument, fmt::format("invalid pod IP '{}'", ip));
}

void validate_uid(std::string_view uid) {
  // Stored as an nft comment inside double quotes: only UID-like characters may pass.
  const bool ok =
      !uid.empty() && uid.size() <= 128 && std::all_of(uid.begin(), uid.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               ch == '-' || ch == '_' || ch == '.';
      });
  if (!ok) throw NetnsError(ErrorKind::InvalidArgument, fmt::format("invalid pod UID '{}'", uid));
}

std::string_view set_for(bool v6) {
  return v6 ? c::kProbeSetV6 : c::kProbeSetV4;
}

std::string add_element(const ProbeEntry& e, bool v6) {
  return fmt::format("add element inet {} {} {{ {} comment \"{}\" }}\n", c::kNatTable, set_for(v6),
                     e.ip, e.pod_uid);
}

std::string delete_element(const std::string& ip, bool v6) {
  return fmt::format("delete element inet {} {} {{ {} }}\n", c::kNatTable, set_for(v6), ip);
}

// The same change as add_element/delete_element, for the netlink fast path.
nft::SetElementOp element_op(bool add, const std::string& ip, bool v6, std::string_view uid) {
  unsigned char key[16];
  inet_pton(v6 ? AF_INET6 : AF_INET, ip.c_str(), key);
  return {add, std::string(set_for(v6)),
          std::string(reinterpret_cast<const char*>(key), v6 ? 16 : 4),
          add ? std::string(uid) : std::string()};
}

// The host table as libnftables JSON, or nullopt when it does not exist. One listing of the whole
// table: listing a chain on its own does not load the sets its rules look up, and nft then drops
// the lookup from the output.
std::optional<nlohmann::json> host_table_here() {
  const nft::RunResult r =
      nft::try_run(fmt::format("list table inet {}", c::kNatTable), nft::Output::Json);
  if (!r.ok) {
    if (r.error.find("No such file or directory") != std::string::npos) return std::nullopt;
    throw NetnsError(ErrorKind::Nftables, "list host probe table: libnftables: " + r.error);
  }
  auto doc = nlohmann::json::parse(r.output, nullptr, false);
  if (doc.is_discarded() || !doc.contains("nftables") || !doc["nftables"].is_array()) {
    throw NetnsError(ErrorKind::Nftables, "unexpected JSON listing of the host probe table");
  }
  return doc;
}

// Elements of both sets; an element without a comment (written by someone else) has no owner.
std::vector<ProbeEntry> entries_of(const std::optional<nlohmann::json>& table) {
  std::vector<ProbeEntry> out;
  if (!table) return out;
  for (const auto& item : (*table)["nftables"]) {
    if (!item.contains("set")) continue;
    const auto& set = item["set"];
    const std::string name = set.value("name", "");
    if ((name != c::kProbeSetV4 && name != c::kProbeSetV6) || !set.contains("elem")) continue;
    for (const auto& el : set["elem"]) {
      if (el.is_string()) {
        out.push_back({"", el.get<std::string>()});
      } else if (el.contains("elem")) {
        const auto& inner = el["elem"];
        out.push_back({inner.value("comment", std::string()), inner.value("val", std::string())});
      }
    }
  }
  return out;
}

// The table without what is state rather than base: handles, set elements, metainfo. Two hosts
// with the same rules, sets and chain give the same string.
std::string base_of(const std::optional<nlohmann::json>& table) {
  if (!table) return "";
  nlohmann::json items = nlohmann::json::array();
  for (auto item : (*table)["nftables"]) {
    if (item.contains("metainfo")) continue;
    for (auto& [kind, obj] : item.items()) {
      obj.erase("handle");
      obj.erase("elem");
      (void)kind;
    }
    items.push_back(item);
  }
  return items.dump();
}

bool set_types_ok(const std::optional<nlohmann::json>& table) {
  if (!table) return false;
  bool v4 = false, v6 = false;
  for (const auto& item : (*table)["nftables"]) {
    if (!item.contains("set")) continue;
    const auto& s = item["set"];
    if (s.value("name", "") == c::kProbeSetV4) v4 = s.value("type", "") == "ipv4_addr";
    if (s.value("name", "") == c::kProbeSetV6) v6 = s.value("type", "") == "ipv6_addr";
  }
  return v4 && v6;
}

// How the kernel lists the base for a config, learnt once in a throwaway netns.
std::string reference_base(const HostProbeConfig& cfg) {
  static std::mutex mu;
  static std::map<std::uint32_t, std::string> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(cfg.kubelet_uid); it != cache.end()) return it->second;
  }
  const std::string base = run_in_scratch_netns([&] {
    nft::run(HostProbeSnat::render_base(cfg), "apply host probe base in a scratch netns");
    return base_of(host_table_here());
  });
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace(cfg.kubelet_uid, base);
  return base;
}

}  // namespace

HostProbeSnat::HostProbeSnat(NetnsHandle host, HostProbeConfig config)
    : host_(std::move(host)), config_(config) {}

std::string HostProbeSnat::render_base(const HostProbeConfig& cfg) {
  std::string out;
  out += fmt::format("add table inet {}\n", c::kNatTable);
  out += fmt::format("add set inet {} {} {{ type ipv4_addr; }}\n", c::kNatTable, c::kProbeSetV4);
  out += fmt::format("add set inet {} {} {{ type ipv6_addr; }}\n", c::kNatTable, c::kProbeSetV6);
  out +=
      fmt::format("add chain inet {} postrouting {{ type nat hook postrouting priority 100; }}\n",
                  c::kNatTable);
  // Flushing the chain (not the table) rewrites the rules without dropping enrolled pods' IPs.
  out += fmt::format("flush chain inet {} postrouting\n", c::kNatTable);
  out += fmt::format(
      "add rule inet {} postrouting meta l4proto tcp meta skuid {} ip daddr @{} snat ip to {}\n",
      c::kNatTable, cfg.kubelet_uid, c::kProbeSetV4, c::kProbeSnatV4);
  out += fmt::format(
      "add rule inet {} postrouting meta l4proto tcp meta skuid {} ip6 daddr @{} snat ip6 to {}\n",
      c::kNatTable, cfg.kubelet_uid, c::kProbeSetV6, c::kProbeSnatV6);
  return out;
}

void HostProbeSnat::ensure() {
  std::lock_guard<std::mutex> lock(mu_);
  owners_.reset();  // rewritten wholesale: read again on next use
  run_in(host_, [&] { nft::run(render_base(config_), "ensure host probe SNAT"); });
}

void HostProbeSnat::load_owners_here() {
  owners_.emplace();
  for (const auto& e : entries_of(host_table_here())) (*owners_)[e.ip] = e.pod_uid;
}

// The element changes as one netlink transaction built here (no libnftables: its cache would
// read every table of the node, the kubelet's iptables-nft ones included, for each pod). A
// missing table or set (a flushed host) fails it as a whole; the caller then re-reads the host
// and writes base and elements with libnftables.
bool HostProbeSnat::run_incremental(const std::vector<nft::SetElementOp>& ops,
                                    const std::string& what) {
  try {
    nft::replay_here(nft::set_elements_batch(c::kNatTable, ops));
    return true;
  } catch (const NetnsError& e) {
    spdlog::info("host probe: {} on the fast path failed ({}); re-reading the host table", what,
                 e.what());
    owners_.reset();
    return false;
  }
}

void HostProbeSnat::set_pod(std::string_view pod_uid, const std::vector<std::string>& ips) {
  validate_uid(pod_uid);
  std::map<std::string, bool> wanted;  // canonical IP → is IPv6
  for (const auto& ip : ips) {
    const ParsedIp p = parse_ip(ip);
    wanted[p.text] = p.v6;
  }
  std::lock_guard<std::mutex> lock(mu_);
  run_in(host_, [&] {
    const auto what = fmt::format("set host probe IPs of pod {}", pod_uid);
    // From the mirror; when it was just (re)loaded from the kernel, or the kernel disagreed with
    // it, base and elements go in one transaction, so a fresh or flushed host works too.
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool fresh = !owners_;
      if (fresh) load_owners_here();
      std::string tx;
      std::vector<nft::SetElementOp> ops;
      for (const auto& [ip, owner] : *owners_) {
        if (owner == pod_uid && !wanted.contains(ip)) {
          const bool v6 = parse_ip(ip).v6;
          tx += delete_element(ip, v6);
          ops.push_back(element_op(false, ip, v6, pod_uid));
        }
      }
      for (const auto& [ip, v6] : wanted) {
        const auto it = owners_->find(ip);
        if (it != owners_->end() && it->second == pod_uid) continue;
        if (it != owners_->end()) {
          spdlog::info("host probe: IP {} moves from pod {} to pod {}", ip,
                       it->second.empty() ? "<unknown>" : it->second, pod_uid);
          tx += delete_element(ip, v6);
          ops.push_back(element_op(false, ip, v6, pod_uid));
        }
        tx += add_element({std::string(pod_uid), ip}, v6);
        ops.push_back(element_op(true, ip, v6, pod_uid));
      }
      if (tx.empty()) return;
      bool done = true;
      if (fresh || attempt == 1) {
        nft::run(render_base(config_) + tx, what);
      } else {
        done = run_incremental(ops, what);
      }
      if (done) {
        std::erase_if(*owners_, [&](const auto& kv) { return kv.second == pod_uid; });
        for (const auto& [ip, v6] : wanted) (*owners_)[ip] = std::string(pod_uid);
        return;
      }
    }
  });
}

std::vector<ProbeEntry> HostProbeSnat::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return run_in(host_, [] { return entries_of(host_table_here()); });
}

bool HostProbeSnat::base_is_current() const {
  const std::string expected = reference_base(config_);
  std::lock_guard<std::mutex> lock(mu_);
  return run_in(host_, [&] { return base_of(host_table_here()) == expected; });
}

ProbeReconcileReport HostProbeSnat::reconcile(const std::vector<ProbeEntry>& desired_in) {
  std::map<std::string, ProbeEntry> desired;  // by canonical IP; the last owner given wins
  for (const auto& e : desired_in) {
    validate_uid(e.pod_uid);
    const ParsedIp p = parse_ip(e.ip);
    desired[p.text] = {e.pod_uid, p.text};
  }
  const bool current = base_is_current();
  std::lock_guard<std::mutex> lock(mu_);
  owners_.reset();  // rewritten wholesale: read again on next use
  ProbeReconcileReport report;
  report.base_repaired = !current;
  run_in(host_, [&] {
    std::string tx;
    const auto table = host_table_here();
    std::vector<ProbeEntry> present = entries_of(table);
    if (!current) {
      if (table && !set_types_ok(table)) {
        // A set of the wrong type cannot be fixed in place: rebuild the table from scratch.
        tx += fmt::format("add table inet {0}\ndelete table inet {0}\n", c::kNatTable);
        present.clear();
      }
      tx += render_base(config_);
    }
    std::map<std::string, std::string> have;  // ip -> owner
    for (const auto& e : present) have[e.ip] = e.pod_uid;
    for (const auto& [ip, owner] : have) {
      auto it = desired.find(ip);
      if (it == desired.end() || it->second.pod_uid != owner) {
        tx += delete_element(ip, parse_ip(ip).v6);
        if (it == desired.end()) ++report.removed;
      }
    }
    for (const auto& [ip, e] : desired) {
      auto it = have.find(ip);
      if (it != have.end() && it->second == e.pod_uid) continue;
      tx += add_element(e, parse_ip(ip).v6);
      ++report.added;
    }
    if (!tx.empty()) nft::run(tx, "reconcile host probe SNAT");
  });
  if (report.base_repaired || report.added || report.removed) {
    spdlog::warn("host probe SNAT reconciled: base {}, {} element(s) added, {} removed",
                 report.base_repaired ? "repaired" : "intact", report.added, report.removed);
  }
  return report;
}

void HostProbeSnat::teardown() {
  std::lock_guard<std::mutex> lock(mu_);
  owners_.reset();  // rewritten wholesale: read again on next use
  run_in(host_, [] {
    nft::run(fmt::format("add table inet {0}\ndelete table inet {0}\n", c::kNatTable),
             "delete host probe table");
  });
}

}  // namespace ambient::netns
