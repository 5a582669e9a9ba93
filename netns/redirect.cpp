#include "netns/redirect.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <sstream>

#include "config/constants.h"
#include "netns/nft.h"
#include "netns/nft_batch.h"
#include "netns/prepared_plan.h"

namespace ambient::netns {
namespace {

namespace c = ambient::contract;

constexpr std::string_view kAllTables[] = {c::kNatTable, c::kMangleTable, c::kRawTable};

bool valid_interface_name(const std::string& name) {
  // IFNAMSIZ - 1 characters. The charset is stricter than the kernel's on purpose: the name comes
  // from a pod annotation and is spliced into nft text, so quotes, spaces and the like never pass.
  if (name.empty() || name.size() > 15 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
  });
}

// Collects "add ..." lines for one table; keeps render() readable.
class TableWriter {
 public:
  TableWriter(std::string& out, std::string_view table) : out_(out), table_(table) {}

  void begin(std::string_view type_pre, int prio_pre, std::string_view type_out, int prio_out) {
    line("add table inet {}", table_);
    line("flush table inet {}", table_);
    line("add chain inet {} prerouting {{ type {} hook prerouting priority {}; }}", table_,
         type_pre, prio_pre);
    line("add chain inet {} output {{ type {} hook output priority {}; }}", table_, type_out,
         prio_out);
    line("add chain inet {} istio-prerouting", table_);
    line("add chain inet {} istio-output", table_);
    line("add rule inet {} prerouting jump istio-prerouting", table_);
    line("add rule inet {} output jump istio-output", table_);
  }
  void prerouting(std::string_view rule) {
    line("add rule inet {} istio-prerouting {}", table_, rule);
  }
  void output(std::string_view rule) { line("add rule inet {} istio-output {}", table_, rule); }

 private:
  template <class... Args>
  void line(fmt::format_string<Args...> f, Args&&... args) {
    out_ += fmt::format(f, std::forward<Args>(args)...);
    out_ += '\n';
  }
  std::string& out_;
  std::string_view table_;
};

// One match per enabled family ("ip daddr != 127.0.0.1", "ip6 daddr != ::1"): the tables are
// inet, so an ip/ip6 match also restricts the rule to its family.
struct Family {
  std::string_view ip;        // "ip" / "ip6"
  std::string_view loopback;  // 127.0.0.1 / ::1
  std::string_view probe;     // the probe SNAT source address
};

std::vector<Family> families_of(const RedirectOptions& o) {
  std::vector<Family> out;
  if (o.ipv4) out.push_back({"ip", "127.0.0.1", c::kProbeSnatV4});
  if (o.ipv6) out.push_back({"ip6", "::1", c::kProbeSnatV6});
  return out;
}

// Rule text follows Istio's (cni/pkg/nftables, ambient-contract.md §4) match for match, so the
// kernel holds the same ruleset for the same options: a counter on every rule (what an operator
// reads with `nft list table`), matches in Istio's order. tests/e2e checks this against Istio's
// own goldens applied with nft -f.
std::string render_nat(const RedirectOptions& o) {
  std::string out;
  TableWriter t(out, c::kNatTable);
  t.begin("nat", -100, "nat", -100);
  const auto fams = families_of(o);
  const std::string not_ztunnel =
      fmt::format("meta mark & {:#x} != {:#x}", c::kMarkMask, c::kZtunnelMark);

  for (const auto& ifname : o.reroute_interfaces) {
    t.prerouting(fmt::format("iifname \"{}\" meta l4proto tcp counter redirect to :{}", ifname,
                             c::kOutboundPort));
    t.prerouting(fmt::format("iifname \"{}\" meta l4proto tcp counter return", ifname));
  }
  if (!o.bypass_inbound_capture) {
    for (const auto& f : fams) {
      t.prerouting(fmt::format("meta l4proto tcp {} saddr {} counter accept", f.ip, f.probe));
    }
    for (const auto& f : fams) {
      t.prerouting(fmt::format("{} daddr != {} tcp dport != {} {} counter redirect to :{}", f.ip,
                               f.loopback, c::kInboundHbonePort, not_ztunnel,
                               c::kInboundPlaintextPort));
    }
  }

  for (const auto& f : fams) {
    t.output(fmt::format("meta l4proto tcp {} daddr {} counter accept", f.ip, f.probe));
  }
  if (o.dns_capture) {
    t.output(fmt::format("oifname != \"lo\" {} udp dport 53 counter redirect to :{}", not_ztunnel,
                         c::kDnsProxyPort));
    for (const auto& f : fams) {
      t.output(fmt::format("{} daddr != {} tcp dport 53 {} counter redirect to :{}", f.ip,
                           f.loopback, not_ztunnel, c::kDnsProxyPort));
    }
  }
  t.output(fmt::format("meta l4proto tcp meta mark & {:#x} == {:#x} counter accept", c::kMarkMask,
                       c::kConnMark));
  for (const auto& f : fams) {
    t.output(fmt::format("oifname \"lo\" {} daddr != {} counter accept", f.ip, f.loopback));
  }
  for (const auto& f : fams) {
    t.output(fmt::format("meta l4proto tcp {} daddr != {} {} counter redirect to :{}", f.ip,
                         f.loopback, not_ztunnel, c::kOutboundPort));
  }
  return out;
}

std::string render_mangle() {
  std::string out;
  TableWriter t(out, c::kMangleTable);
  t.begin("filter", -150, "route", -150);
  // Kept with bypass-inbound-capture too: such a pod still takes HBONE on 15008, and ztunnel's
  // spoofed leg to the app needs this connmark so the app's replies route back to ztunnel
  // (ambient-contract.md §4; Istio's ingress goldens keep it, istio#58577). Keep the connmark
  // bits outside our mask: other agents may use them.
  t.prerouting(fmt::format("meta mark & {:#x} == {:#x} counter ct mark set ct mark & {:#x} | {:#x}",
                           c::kMarkMask, c::kZtunnelMark, ~c::kMarkMask, c::kConnMark));
  t.output(fmt::format("ct mark & {:#x} == {:#x} counter meta mark set ct mark", c::kMarkMask,
                       c::kConnMark));
  return out;
}

std::string render_raw() {
  std::string out;
  TableWriter t(out, c::kRawTable);
  t.begin("filter", -300, "filter", -300);
  t.output(fmt::format("udp dport 53 meta mark & {:#x} == {:#x} counter ct zone set 1",
                       c::kMarkMask, c::kZtunnelMark));
  t.prerouting(fmt::format("udp sport 53 meta mark & {:#x} != {:#x} counter ct zone set 1",
                           c::kMarkMask, c::kZtunnelMark));
  return out;
}

// "add" then "delete" in one transaction deletes a table whether or not it exists: nft 1.0.6 has
// no "destroy", and listing first would race with another writer.
std::string render_delete_table(std::string_view table) {
  return fmt::format("add table inet {0}\ndelete table inet {0}\n", table);
}

}  // namespace

std::string render_removal() {
  std::string out;
  for (auto t : kAllTables) out += render_delete_table(t);
  return out;
}

namespace {

std::string first_difference(const std::string& expected, const std::string& found) {
  std::istringstream e(expected), f(found);
  std::string le, lf;
  for (int line = 1;; ++line) {
    const bool he = static_cast<bool>(std::getline(e, le));
    const bool hf = static_cast<bool>(std::getline(f, lf));
    if (!he && !hf) return "identical";
    if (!he) le = "<end>";
    if (!hf) lf = "<end>";
    if (!he || !hf || le != lf) {
      auto strip = [](std::string s) {
        s.erase(0, s.find_first_not_of(" \t"));
        return s;
      };
      return fmt::format("line {}: expected '{}', found '{}'", line, strip(le), strip(lf));
    }
  }
}

}  // namespace

RedirectPlan::RedirectPlan(RedirectOptions options) : options_(std::move(options)) {
  if (!options_.ipv4 && !options_.ipv6) {
    throw NetnsError(ErrorKind::InvalidArgument, "redirect plan needs IPv4, IPv6 or both");
  }
  std::vector<std::string> unique;
  for (auto& name : options_.reroute_interfaces) {
    if (!valid_interface_name(name)) {
      throw NetnsError(ErrorKind::InvalidArgument,
                       fmt::format("invalid reroute interface name '{}'", name));
    }
    if (std::find(unique.begin(), unique.end(), name) == unique.end()) unique.push_back(name);
  }
  options_.reroute_interfaces = std::move(unique);
}

std::vector<std::string_view> RedirectPlan::tables() const {
  std::vector<std::string_view> out{c::kNatTable, c::kMangleTable};
  if (options_.dns_capture) out.push_back(c::kRawTable);
  return out;
}

std::string RedirectPlan::render() const {
  std::string out = render_nat(options_);
  out += render_mangle();
  out += options_.dns_capture ? render_raw() : render_delete_table(c::kRawTable);
  return out;
}

namespace {

// The plan's batch, or null (then told: logged once per process, counted on every apply).
std::shared_ptr<const detail::PreparedPlan> replayable(const RedirectPlan& plan,
                                                       const ApplyHooks& hooks) {
  std::shared_ptr<const detail::PreparedPlan> prepared;
  std::string why;
  try {
    prepared = detail::prepare(plan);
    if (prepared->batch) return prepared;
    why = prepared->not_replayable;
  } catch (const std::exception& e) {
    why = e.what();
  }
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true)) {
    spdlog::warn(
        "in-pod rules go in through libnftables, not as a replayed batch ({}); same "
        "rules, about twice the time (decision 017)",
        why);
  } else {
    spdlog::debug("in-pod rules through libnftables: {}", why);
  }
  if (hooks.degraded) hooks.degraded("rule_replay_unavailable");
  return nullptr;
}

// The nf_tables transaction of the plan in the calling thread's netns: the batch when there is
// one, libnftables when there is none or the kernel refused it (a refused batch changed nothing).
void program_rules_here(const RedirectPlan& plan, const detail::PreparedPlan* prepared,
                        const std::string& netns, const ApplyHooks& hooks) {
  std::string refused;
  if (prepared != nullptr) {
    try {
      nft::replay_here(*prepared->batch);
      detail::count_rule_programming({.replayed = 1});
      return;
    } catch (const NetnsError& e) {
      refused = e.what();
    }
    detail::count_rule_programming({.replay_refused = 1});
    spdlog::warn(
        "netns {}: replaying the in-pod rules failed ({}); trying libnftables (a batch the "
        "kernel refuses changes nothing)",
        netns, refused);
    if (hooks.degraded) hooks.degraded("rule_replay_refused");
  }
  try {
    nft::run(plan.render(), fmt::format("apply redirection in netns {}", netns));
  } catch (const NetnsError& e) {
    if (refused.empty()) throw;
    throw NetnsError(e.kind(),
                     fmt::format("{} (the replayed batch before it: {})", e.what(), refused));
  }
  detail::count_rule_programming({.libnftables = 1});
}

}  // namespace

void apply(const NetnsHandle& ns, const RedirectPlan& plan, const ApplyHooks& hooks) {
  const auto prepared = replayable(plan, hooks);
  run_in(ns, [&] {
    program_rules_here(plan, prepared.get(), ns.path(), hooks);
    try {
      if (hooks.install_routing) {
        hooks.install_routing(plan.routing());
      } else {
        install_routing_here(plan.routing());
      }
    } catch (const std::exception& routing_error) {
      // No half-done pod: without the route, ztunnel's inbound leg would hang, so take the
      // tables out again and report both what failed and how the rollback went.
      std::string rollback = "tables and routing removed";
      try {
        nft::run(render_removal(), "roll back tables");
        remove_routing_here();
      } catch (const std::exception& e) {
        rollback = fmt::format("rollback failed too: {}", e.what());
      }
      ErrorKind kind = ErrorKind::Netlink;
      if (const auto* ne = dynamic_cast<const NetnsError*>(&routing_error)) kind = ne->kind();
      spdlog::error("netns {}: policy routing failed: {}; {}", ns.path(), routing_error.what(),
                    rollback);
      throw NetnsError(kind,
                       fmt::format("netns {}: policy routing failed after the nft tables were "
                                   "applied: {}; {}",
                                   ns.path(), routing_error.what(), rollback));
    }
  });
  spdlog::debug("netns {}: redirection applied", ns.path());
}

void remove(const NetnsHandle& ns) {
  static const nft::Batch removal =
      nft::remove_tables_batch({std::begin(kAllTables), std::end(kAllTables)});
  run_in(ns, [&] {
    try {
      nft::replay_here(removal);
    } catch (const NetnsError& e) {
      // The same removal through libnftables, which says what it could not do.
      spdlog::info("netns {}: table removal batch refused ({}); using libnftables", ns.path(),
                   e.what());
      nft::run(render_removal(), fmt::format("remove redirection tables in netns {}", ns.path()));
    }
    remove_routing_here();
  });
  spdlog::debug("netns {}: redirection removed", ns.path());
}

std::string_view to_string(RedirectStatus status) {
  switch (status) {
    case RedirectStatus::Absent:
      return "absent";
    case RedirectStatus::Current:
      return "current";
    case RedirectStatus::Drifted:
      return "drifted";
  }
  return "unknown";
}

std::string Inspection::summary() const {
  std::string out(to_string(status));
  for (size_t i = 0; i < details.size(); ++i) {
    out += i == 0 ? ": " : "; ";
    out += details[i];
  }
  return out;
}

Inspection inspect(const NetnsHandle& ns, const RedirectPlan& plan) {
  const auto prepared = detail::prepare(plan);
  const auto& expected = prepared->listing;
  struct Observed {
    std::map<std::string, std::string> tables;
    RoutingState routing;
    RoutingSpec effective;
  };
  const Observed seen = run_in(ns, [&] {
    Observed o;
    for (const auto& name : detail::our_tables_here()) {
      o.tables.emplace(name, detail::list_table_here(name));
    }
    o.routing = read_routing_here();
    o.effective = effective_routing_here(plan.routing());
    return o;
  });

  Inspection result;
  if (seen.tables.empty() && !seen.routing.any()) return result;  // Absent

  for (const auto& [name, listing] : expected) {
    auto it = seen.tables.find(name);
    if (it == seen.tables.end()) {
      result.details.push_back(fmt::format("table {} missing", name));
    } else if (it->second != listing) {
      result.details.push_back(fmt::format("table {} differs from the plan ({})", name,
                                           first_difference(listing, it->second)));
    }
  }
  for (const auto& [name, listing] : seen.tables) {
    if (!expected.contains(name)) {
      result.details.push_back(fmt::format("table {} present but not in the plan", name));
    }
  }
  const auto& r = seen.routing;
  const auto& want = seen.effective;
  auto check = [&](bool want_it, bool have, std::string_view what) {
    if (want_it && !have) result.details.push_back(fmt::format("{} missing", what));
    if (!want_it && have)
      result.details.push_back(fmt::format("{} present but not in the plan", what));
  };
  check(want.ipv4, r.v4_rule, "IPv4 rule fwmark 0x111/0xfff lookup 100");
  check(want.ipv4, r.v4_route, "IPv4 local default route in table 100");
  check(want.ipv6, r.v6_rule, "IPv6 rule fwmark 0x111/0xfff lookup 100");
  check(want.ipv6, r.v6_route, "IPv6 local default route in table 100");

  result.status = result.details.empty() ? RedirectStatus::Current : RedirectStatus::Drifted;
  return result;
}

}  // namespace ambient::netns
