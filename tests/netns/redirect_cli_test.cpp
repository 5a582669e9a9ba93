// The operator CLI over the same library: dry-run output, apply/inspect/remove exit codes.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "netns/redirect.h"
#include "tests/netns/netns_test_env.h"

namespace ambient::netns {
namespace {

using testbed::sh;
using testbed::Topology;

const std::string kCli = AMBIENT_REDIRECT_CLI;

TEST(RedirectCli, DryRunPrintsThePlanAndNeedsNoNetns) {
  const auto r = sh(kCli +
                    " redirect apply --dry-run --ipv6 --no-dns-capture "
                    "--bypass-inbound-capture --reroute-interfaces vm0,kubevirt-1 2>/dev/null");
  EXPECT_EQ(r.status, 0) << r.out;
  RedirectOptions o;
  o.ipv6 = true;
  o.dns_capture = false;
  o.bypass_inbound_capture = true;
  o.reroute_interfaces = {"vm0", "kubevirt-1"};
  EXPECT_EQ(r.out, RedirectPlan(o).render());
  const auto rm = sh(kCli + " redirect remove --dry-run 2>/dev/null");
  EXPECT_EQ(rm.out, render_removal());
}

TEST(RedirectCli, BadInterfaceNameIsAnError) {
  const auto r = sh(kCli + " redirect apply --dry-run --reroute-interfaces 'a\"b'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("invalid reroute interface name"), std::string::npos) << r.out;
}

TEST(RedirectCli, ApplyInspectRemoveInARealNetns) {
  AMBIENT_REQUIRE_ROOT();
  Topology topo;
  const std::string ns = " --netns " + Topology::path(topo.pod());
  EXPECT_EQ(sh(kCli + " redirect inspect" + ns).status, 3);  // absent
  EXPECT_EQ(sh(kCli + " redirect apply --dry-run" + ns).status, 0);
  EXPECT_EQ(sh(kCli + " redirect inspect" + ns).status, 3) << "dry-run changed the netns";

  auto r = sh(kCli + " redirect apply --ipv6" + ns);
  EXPECT_EQ(r.status, 0) << r.out;
  // A binary linked like ambient-cni-node replays the plan's batch (decision 017): libnftables'
  // sendmsg() bound to the library's, or apply() would have warned that it fell back.
  EXPECT_EQ(r.out.find("through libnftables"), std::string::npos) << r.out;
  r = sh(kCli + " redirect inspect --ipv6" + ns);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, "current\n");
  r = sh(kCli + " redirect inspect --no-dns-capture --ipv6" + ns);  // a different plan
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("istio-ambient-raw present but not in the plan"), std::string::npos);

  EXPECT_EQ(sh(kCli + " redirect remove" + ns).status, 0);
  EXPECT_EQ(sh(kCli + " redirect remove" + ns).status, 0);
  EXPECT_EQ(sh(kCli + " redirect inspect" + ns).status, 3);
  testbed::expect_no_redirection_state(topo.pod());

  // The caller's own netns is refused; a missing netns is "already removed" for remove only.
  EXPECT_EQ(sh(kCli + " redirect apply --netns /proc/self/ns/net").status, 1);
  EXPECT_EQ(sh(kCli + " redirect remove --netns /var/run/netns/ambtest-missing").status, 0);
  EXPECT_EQ(sh(kCli + " redirect apply --netns /var/run/netns/ambtest-missing").status, 1);
}

}  // namespace
}  // namespace ambient::netns
