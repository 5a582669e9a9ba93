#include "netns/routing.h"

#include <arpa/inet.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <netlink/socket.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include "config/constants.h"

namespace ambient::netns {
namespace {

namespace c = ambient::contract;

struct SockDeleter {
  void operator()(nl_sock* s) const noexcept { nl_socket_free(s); }
};
struct RuleDeleter {
  void operator()(rtnl_rule* r) const noexcept { rtnl_rule_put(r); }
};
struct RouteDeleter {
  void operator()(rtnl_route* r) const noexcept { rtnl_route_put(r); }
};
struct AddrDeleter {
  void operator()(nl_addr* a) const noexcept { nl_addr_put(a); }
};
struct CacheDeleter {
  void operator()(nl_cache* c) const noexcept { nl_cache_free(c); }
};
using SockPtr = std::unique_ptr<nl_sock, SockDeleter>;
using RulePtr = std::unique_ptr<rtnl_rule, RuleDeleter>;
using RoutePtr = std::unique_ptr<rtnl_route, RouteDeleter>;
using AddrPtr = std::unique_ptr<nl_addr, AddrDeleter>;
using CachePtr = std::unique_ptr<nl_cache, CacheDeleter>;

const char* family_name(int family) {
  return family == AF_INET ? "IPv4" : "IPv6";
}

[[noreturn]] void throw_nl(const std::string& what, int err) {
  throw NetnsError(ErrorKind::Netlink, what + ": " + nl_geterror(err));
}

SockPtr connect_route_socket() {
  // Created on the calling thread, so it talks to that thread's netns.
  SockPtr sock(nl_socket_alloc());
  if (!sock) throw NetnsError(ErrorKind::Netlink, "nl_socket_alloc failed");
  if (const int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0) {
    throw_nl("connect NETLINK_ROUTE", err);
  }
  return sock;
}

RulePtr make_rule(int family) {
  RulePtr rule(rtnl_rule_alloc());
  if (!rule) throw NetnsError(ErrorKind::Netlink, "rtnl_rule_alloc failed");
  rtnl_rule_set_family(rule.get(), family);
  rtnl_rule_set_prio(rule.get(), c::kRulePriority);
  rtnl_rule_set_mark(rule.get(), c::kConnMark);
  rtnl_rule_set_mask(rule.get(), c::kMarkMask);
  rtnl_rule_set_table(rule.get(), c::kRouteTable);
  rtnl_rule_set_action(rule.get(), FR_ACT_TO_TBL);
  return rule;
}

RoutePtr make_route(int family, bool with_nexthop) {
  RoutePtr route(rtnl_route_alloc());
  if (!route) throw NetnsError(ErrorKind::Netlink, "rtnl_route_alloc failed");
  rtnl_route_set_family(route.get(), family);
  rtnl_route_set_table(route.get(), c::kRouteTable);
  rtnl_route_set_type(route.get(), RTN_LOCAL);
  rtnl_route_set_scope(route.get(), RT_SCOPE_HOST);
  const std::array<unsigned char, 16> zero{};
  AddrPtr dst(nl_addr_build(family, zero.data(), family == AF_INET ? 4 : 16));
  if (!dst) throw NetnsError(ErrorKind::Netlink, "nl_addr_build failed");
  nl_addr_set_prefixlen(dst.get(), 0);
  if (const int err = rtnl_route_set_dst(route.get(), dst.get()); err < 0) {
    throw_nl("set route destination", err);
  }
  if (with_nexthop) {
    const unsigned lo = if_nametoindex("lo");
    if (lo == 0) throw_errno("if_nametoindex(lo)", errno);
    rtnl_nexthop* nh = rtnl_route_nh_alloc();
    if (!nh) throw NetnsError(ErrorKind::Netlink, "rtnl_route_nh_alloc failed");
    rtnl_route_nh_set_ifindex(nh, static_cast<int>(lo));
    rtnl_route_add_nexthop(route.get(), nh);  // the route owns nh from here on
  }
  return route;
}

bool loopback_is_up() {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;  // cannot tell: no hint rather than a wrong one
  ifreq req{};
  std::strncpy(req.ifr_name, "lo", IFNAMSIZ - 1);
  const bool up = ioctl(fd, SIOCGIFFLAGS, &req) != 0 || (req.ifr_flags & IFF_UP);
  close(fd);
  return up;
}

bool is_gone(int err) {
  // ENOENT/ESRCH (nothing to delete) and EAFNOSUPPORT (IPv6 compiled out) all mean "absent".
  return err == -NLE_OBJ_NOTFOUND || err == -NLE_NOADDR || err == -NLE_AF_NOSUPPORT;
}

void install_family(nl_sock* sock, int family) {
  RulePtr rule = make_rule(family);
  // NLM_F_EXCL makes the kernel compare with existing rules, so a second apply does not stack a
  // duplicate rule (without it the kernel happily adds copies).
  int err = rtnl_rule_add(sock, rule.get(), NLM_F_EXCL);
  if (err < 0 && err != -NLE_EXIST) {
    throw_nl(std::string("add ") + family_name(family) + " rule fwmark 0x111/0xfff lookup 100",
             err);
  }
  RoutePtr route = make_route(family, true);
  err = rtnl_route_add(sock, route.get(), NLM_F_REPLACE);
  if (err < 0) {
    // The kernel refuses IPv6 routes on a down device, and libnl reports that as an
    // "unspecific failure": name the likely cause.
    const std::string hint = loopback_is_up() ? "" : " (lo is down in this netns)";
    throw_nl(std::string("add ") + family_name(family) + " local default route on lo in table 100" +
                 hint,
             err);
  }
}

void remove_family(nl_sock* sock, int family) {
  RulePtr rule = make_rule(family);
  // Delete every copy (a foreign agent may have stacked duplicates); bounded, never spins.
  for (int i = 0; i < 64; ++i) {
    const int err = rtnl_rule_delete(sock, rule.get(), 0);
    if (err == 0) continue;
    if (is_gone(err)) break;
    throw_nl(std::string("delete ") + family_name(family) + " rule", err);
  }
  RoutePtr route = make_route(family, false);
  const int err = rtnl_route_delete(sock, route.get(), 0);
  if (err < 0 && !is_gone(err)) {
    throw_nl(std::string("delete ") + family_name(family) + " table-100 route", err);
  }
}

bool has_rule(nl_sock* sock, int family) {
  nl_cache* raw = nullptr;
  const int err = rtnl_rule_alloc_cache(sock, family, &raw);
  if (err == -NLE_AF_NOSUPPORT) return false;
  if (err < 0) throw_nl(std::string("dump ") + family_name(family) + " rules", err);
  CachePtr cache(raw);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* r = reinterpret_cast<rtnl_rule*>(obj);
    // The cache may hold every family's rules whatever family was asked for.
    if (rtnl_rule_get_family(r) != family) continue;
    if (rtnl_rule_get_prio(r) == c::kRulePriority && rtnl_rule_get_mark(r) == c::kConnMark &&
        rtnl_rule_get_mask(r) == c::kMarkMask && rtnl_rule_get_table(r) == c::kRouteTable &&
        rtnl_rule_get_action(r) == FR_ACT_TO_TBL) {
      return true;
    }
  }
  return false;
}

bool has_route(nl_sock* sock, int family) {
  nl_cache* raw = nullptr;
  const int err = rtnl_route_alloc_cache(sock, family, 0, &raw);
  if (err == -NLE_AF_NOSUPPORT) return false;
  if (err < 0) throw_nl(std::string("dump ") + family_name(family) + " routes", err);
  CachePtr cache(raw);
  const unsigned lo = if_nametoindex("lo");
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* r = reinterpret_cast<rtnl_route*>(obj);
    if (rtnl_route_get_family(r) != family) continue;
    if (rtnl_route_get_table(r) != c::kRouteTable || rtnl_route_get_type(r) != RTN_LOCAL) continue;
    nl_addr* dst = rtnl_route_get_dst(r);
    if (!dst || nl_addr_get_prefixlen(dst) != 0) continue;
    if (rtnl_route_get_nnexthops(r) != 1) continue;
    rtnl_nexthop* nh = rtnl_route_nexthop_n(r, 0);
    if (nh && static_cast<unsigned>(rtnl_route_nh_get_ifindex(nh)) == lo) return true;
  }
  return false;
}

}  // namespace

bool loopback_allows_ipv6_here() {
  // /proc/sys/net is resolved against the opening thread's netns, which is why this must run on
  // the thread that entered the pod's netns.
  std::ifstream in("/proc/sys/net/ipv6/conf/lo/disable_ipv6");
  int disabled = 1;
  if (!(in >> disabled)) return false;  // IPv6 absent from the kernel or lo has no IPv6 conf
  return disabled == 0;
}

RoutingSpec effective_routing_here(const RoutingSpec& spec) {
  RoutingSpec out = spec;
  if (out.ipv6 && !loopback_allows_ipv6_here()) {
    spdlog::warn("IPv6 requested but lo has IPv6 disabled in this netns: no IPv6 policy routing");
    out.ipv6 = false;
  }
  return out;
}

void install_routing_here(const RoutingSpec& spec) {
  const RoutingSpec eff = effective_routing_here(spec);
  SockPtr sock = connect_route_socket();
  // A family the plan no longer uses is cleaned up, so re-applying converges.
  if (eff.ipv4) {
    install_family(sock.get(), AF_INET);
  } else {
    remove_family(sock.get(), AF_INET);
  }
  if (eff.ipv6) {
    install_family(sock.get(), AF_INET6);
  } else {
    remove_family(sock.get(), AF_INET6);
  }
}

void remove_routing_here() {
  SockPtr sock = connect_route_socket();
  remove_family(sock.get(), AF_INET);
  remove_family(sock.get(), AF_INET6);
}

RoutingState read_routing_here() {
  SockPtr sock = connect_route_socket();
  RoutingState st;
  st.v4_rule = has_rule(sock.get(), AF_INET);
  st.v4_route = has_route(sock.get(), AF_INET);
  st.v6_rule = has_rule(sock.get(), AF_INET6);
  st.v6_route = has_route(sock.get(), AF_INET6);
  return st;
}

void install_routing(const NetnsHandle& ns, const RoutingSpec& spec) {
  run_in(ns, [&] { install_routing_here(spec); });
}

void remove_routing(const NetnsHandle& ns) {
  run_in(ns, [] { remove_routing_here(); });
}

RoutingState read_routing(const NetnsHandle& ns) {
  return run_in(ns, [] { return read_routing_here(); });
}

}  // namespace ambient::netns
