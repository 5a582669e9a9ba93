#include "netns/host_probe.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "config/constants.h"
#include "netns/nft.h"

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

// Elements of both sets in the calling thread's netns, via libnftables' JSON listing.
// An element without a comment (written by someone else) gets an empty owner.
std::vector<ProbeEntry> list_entries_here() {
  std::vector<ProbeEntry> out;
  for (bool v6 : {false, true}) {
    const std::string json = nft::run(fmt::format("list set inet {} {}", c::kNatTable, set_for(v6)),
                                      fmt::format("list set {}", set_for(v6)), nft::Output::Json);
    const auto doc = nlohmann::json::parse(json, nullptr, false);
    if (doc.is_discarded() || !doc.contains("nftables")) {
      throw NetnsError(ErrorKind::Nftables,
                       "unexpected JSON listing of " + std::string(set_for(v6)));
    }
    for (const auto& item : doc["nftables"]) {
      if (!item.contains("set")) continue;
      const auto& set = item["set"];
      if (!set.contains("elem")) continue;
      for (const auto& el : set["elem"]) {
        if (el.is_string()) {
          out.push_back({"", el.get<std::string>()});
        } else if (el.contains("elem")) {
          const auto& inner = el["elem"];
          out.push_back({inner.value("comment", std::string()), inner.value("val", std::string())});
        }
      }
    }
  }
  return out;
}

bool base_exists_here() {
  // Cheap existence check: the listing of a missing set or chain fails.
  return nft::try_run(fmt::format("list chain inet {} postrouting\nlist set inet {} {}\nlist set "
                                  "inet {} {}",
                                  c::kNatTable, c::kNatTable, c::kProbeSetV4, c::kNatTable,
                                  c::kProbeSetV6))
      .ok;
}

// The rules are compared by listing; set elements are state, not base, so the sets are only
// checked for existence and type (set_types_ok_here).
std::string list_base_here() {
  return nft::run(fmt::format("list chain inet {} postrouting", c::kNatTable),
                  "list host probe chain");
}

std::string reference_base_listing(const HostProbeConfig& cfg) {
  static std::mutex mu;
  static std::map<std::uint32_t, std::string> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(cfg.kubelet_uid); it != cache.end()) return it->second;
  }
  const std::string listing = run_in_scratch_netns([&] {
    nft::run(HostProbeSnat::render_base(cfg), "apply host probe base in a scratch netns");
    return list_base_here();
  });
  std::lock_guard<std::mutex> lock(mu);
  cache.emplace(cfg.kubelet_uid, listing);
  return listing;
}

bool set_types_ok_here() {
  const auto json = nft::run("list sets inet", "list sets", nft::Output::Json);
  const auto doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.contains("nftables")) return false;
  bool v4 = false, v6 = false;
  for (const auto& item : doc["nftables"]) {
    if (!item.contains("set")) continue;
    const auto& s = item["set"];
    if (s.value("table", "") != c::kNatTable) continue;
    if (s.value("name", "") == c::kProbeSetV4) v4 = s.value("type", "") == "ipv4_addr";
    if (s.value("name", "") == c::kProbeSetV6) v6 = s.value("type", "") == "ipv6_addr";
  }
  return v4 && v6;
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
  run_in(host_, [&] { nft::run(render_base(config_), "ensure host probe SNAT"); });
}

void HostProbeSnat::add(std::string_view pod_uid, const std::vector<std::string>& ips) {
  validate_uid(pod_uid);
  std::vector<ParsedIp> parsed;
  for (const auto& ip : ips) parsed.push_back(parse_ip(ip));
  std::lock_guard<std::mutex> lock(mu_);
  run_in(host_, [&] {
    // Base and elements in one transaction: adding to a flushed host still works.
    std::string tx = render_base(config_);
    const auto current = base_exists_here() ? list_entries_here() : std::vector<ProbeEntry>{};
    for (const auto& p : parsed) {
      auto it = std::find_if(current.begin(), current.end(),
                             [&](const ProbeEntry& e) { return e.ip == p.text; });
      if (it != current.end()) {
        if (it->pod_uid == pod_uid) continue;
        spdlog::info("host probe: IP {} moves from pod {} to pod {}", p.text,
                     it->pod_uid.empty() ? "<unknown>" : it->pod_uid, pod_uid);
        tx += delete_element(p.text, p.v6);
      }
      tx += add_element({std::string(pod_uid), p.text}, p.v6);
    }
    nft::run(tx, fmt::format("add host probe IPs of pod {}", pod_uid));
  });
}

void HostProbeSnat::remove(std::string_view pod_uid, const std::vector<std::string>& ips) {
  validate_uid(pod_uid);
  std::vector<ParsedIp> parsed;
  for (const auto& ip : ips) parsed.push_back(parse_ip(ip));
  std::lock_guard<std::mutex> lock(mu_);
  run_in(host_, [&] {
    if (!base_exists_here()) return;  // nothing there: already removed
    const auto current = list_entries_here();
    std::string tx;
    for (const auto& p : parsed) {
      auto it = std::find_if(current.begin(), current.end(),
                             [&](const ProbeEntry& e) { return e.ip == p.text; });
      if (it == current.end()) continue;
      if (it->pod_uid != pod_uid) {
        spdlog::info("host probe: IP {} is owned by pod {}, not {}: kept", p.text,
                     it->pod_uid.empty() ? "<unknown>" : it->pod_uid, pod_uid);
        continue;
      }
      tx += delete_element(p.text, p.v6);
    }
    if (!tx.empty()) nft::run(tx, fmt::format("remove host probe IPs of pod {}", pod_uid));
  });
}

void HostProbeSnat::remove_pod(std::string_view pod_uid) {
  validate_uid(pod_uid);
  std::lock_guard<std::mutex> lock(mu_);
  run_in(host_, [&] {
    if (!base_exists_here()) return;
    std::string tx;
    for (const auto& e : list_entries_here()) {
      if (e.pod_uid == pod_uid) tx += delete_element(e.ip, parse_ip(e.ip).v6);
    }
    if (!tx.empty()) nft::run(tx, fmt::format("remove host probe IPs of pod {}", pod_uid));
  });
}

std::vector<ProbeEntry> HostProbeSnat::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return run_in(
      host_, [] { return base_exists_here() ? list_entries_here() : std::vector<ProbeEntry>{}; });
}

bool HostProbeSnat::base_is_current() const {
  const std::string expected = reference_base_listing(config_);
  std::lock_guard<std::mutex> lock(mu_);
  return run_in(host_, [&] {
    return base_exists_here() && set_types_ok_here() && list_base_here() == expected;
  });
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
  ProbeReconcileReport report;
  report.base_repaired = !current;
  run_in(host_, [&] {
    std::string tx;
    std::vector<ProbeEntry> present;
    if (current) {
      present = list_entries_here();
    } else {
      // A set of the wrong type cannot be fixed in place: rebuild the table from scratch.
      const bool rebuild = base_exists_here() && !set_types_ok_here();
      if (rebuild) {
        tx += fmt::format("add table inet {0}\ndelete table inet {0}\n", c::kNatTable);
      } else if (base_exists_here()) {
        present = list_entries_here();
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
  run_in(host_, [] {
    nft::run(fmt::format("add table inet {0}\ndelete table inet {0}\n", c::kNatTable),
             "delete host probe table");
  });
}

}  // namespace ambient::netns
