// Shared by the netns integration tests: root check, the leftover sweep, and small helpers that
// look at a namespace with the real tools (nft, ip) rather than with the library under test.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "netns/host_probe.h"
#include "netns/redirect.h"
#include "tests/standins/proxy/inpod_proxy.h"
#include "tests/support/testbed.h"

namespace ambient::testbed {

#define AMBIENT_REQUIRE_ROOT()                                                     \
  do {                                                                             \
    if (geteuid() != 0) GTEST_SKIP() << "needs root (creates network namespaces)"; \
  } while (0)

// Independent views of a namespace, through the nft and ip binaries.
inline std::string nft_tables(const std::string& ns) {
  return sh("ip netns exec " + ns + " nft list tables").out;
}
inline std::string nft_ruleset(const std::string& ns) {
  return must("ip netns exec " + ns + " nft list ruleset");
}
inline std::string ip_rules(const std::string& ns, bool v6) {
  return must(std::string("ip ") + (v6 ? "-6 " : "") + "-n " + ns + " rule show");
}
inline std::string table100_routes(const std::string& ns, bool v6) {
  const Shell r = sh(std::string("ip ") + (v6 ? "-6 " : "") + "-n " + ns + " route show table 100");
  // The kernel creates table 100 with its first route; never having had one is "empty".
  if (r.status != 0 && r.out.find("FIB table does not exist") != std::string::npos) return "";
  if (r.status != 0) throw std::runtime_error("ip route show table 100 failed: " + r.out);
  return r.out;
}
inline int count_of(const std::string& haystack, const std::string& needle) {
  int n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

// Asserts that ns holds none of our tables, rules or table-100 routes.
inline void expect_no_redirection_state(const std::string& ns) {
  const std::string tables = nft_tables(ns);
  EXPECT_EQ(tables.find("istio-ambient"), std::string::npos) << tables;
  for (bool v6 : {false, true}) {
    const std::string rules = ip_rules(ns, v6);
    EXPECT_EQ(rules.find("lookup 100"), std::string::npos) << rules;
    EXPECT_EQ(table100_routes(ns, v6), "");
  }
}

inline std::vector<standins::ProxiedConnection> of_direction(const standins::InpodProxy& proxy,
                                                             const std::string& direction) {
  std::vector<standins::ProxiedConnection> out;
  for (auto& c : proxy.connections()) {
    if (c.direction == direction) out.push_back(c);
  }
  return out;
}

inline bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

}  // namespace ambient::testbed

// Readable gtest failure output for the library's value types.
namespace ambient::netns {
inline void PrintTo(RedirectStatus s, std::ostream* os) {
  *os << to_string(s);
}
inline void PrintTo(const ProbeEntry& e, std::ostream* os) {
  *os << e.pod_uid << "=" << e.ip;
}
}  // namespace ambient::netns
