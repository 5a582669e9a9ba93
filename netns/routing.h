// Policy routing for ztunnel's spoofed inbound connections (ambient-contract.md §4): the rule
// "fwmark 0x111/0xfff lookup 100" (priority 32764) and a local default route on lo in table 100,
// per address family. Programmed with libnl, never with the ip binary.
//
// The *_here functions act on the calling thread's netns: call them inside run_in() (the redirect
// code does so on the same thread as the nft transaction). The handle overloads enter the netns
// themselves.
#pragma once

#include <string>

#include "netns/netns.h"

namespace ambient::netns {

struct RoutingSpec {
  bool ipv4 = true;
  bool ipv6 = false;  // honoured only where the netns' lo allows IPv6
};

struct RoutingState {
  bool v4_rule = false;
  bool v4_route = false;
  bool v6_rule = false;
  bool v6_route = false;
  bool any() const { return v4_rule || v4_route || v6_rule || v6_route; }
};

// True when IPv6 is usable on lo in the calling thread's netns
// (/proc/sys/net/ipv6/conf/lo/disable_ipv6 exists and is 0).
bool loopback_allows_ipv6_here();

// The families that install_routing_here() really programs for a spec: IPv6 is dropped (with a
// warning) when lo does not allow it.
RoutingSpec effective_routing_here(const RoutingSpec& spec);

// Adds the rule(s) and route(s) of the effective families and removes those of the others;
// re-adding is a no-op (an identical rule is never duplicated).
void install_routing_here(const RoutingSpec& spec);
// Deletes our rule(s) (every copy) and route(s) of both families; "not found" is success.
void remove_routing_here();
RoutingState read_routing_here();

void install_routing(const NetnsHandle& ns, const RoutingSpec& spec);
void remove_routing(const NetnsHandle& ns);
RoutingState read_routing(const NetnsHandle& ns);

}  // namespace ambient::netns
