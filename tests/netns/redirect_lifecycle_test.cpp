// Lifecycle of the in-pod redirection: never enrolled, removed, idempotency, drift, rollback.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <memory>

#include "netns/prepared_plan.h"
#include "netns/redirect.h"
#include "tests/netns/netns_test_env.h"

namespace ambient::netns {
namespace {

using standins::InpodProxy;
using testbed::Addr;
using testbed::count_of;
using testbed::of_direction;
using testbed::TcpServer;
using testbed::Topology;

constexpr int kAppPort = 8080;

class RedirectLifecycle : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (creates network namespaces)";
    topo_ = std::make_unique<Topology>();
    pod_ = std::make_unique<NetnsHandle>(topo_->open(topo_->pod()));
    proxy_ = InpodProxy::start(pod_->fd(),
                               [](const std::string& line) { spdlog::info("proxy: {}", line); });
    app_ = std::make_unique<TcpServer>(topo_->pod(), AF_INET, kAppPort, "app");
    remote_ = std::make_unique<TcpServer>(topo_->remote(), AF_INET, kAppPort, "remote");
    counts_ = detail::rule_programming_counts();
  }
  void TearDown() override {
    // Every apply in these tests replayed the plan's batch, as the agent does (decision 017).
    const auto now = detail::rule_programming_counts();
    EXPECT_EQ(now.libnftables, counts_.libnftables);
    EXPECT_EQ(now.replay_refused, counts_.replay_refused);
    remote_.reset();
    app_.reset();
    proxy_.reset();
    pod_.reset();
    topo_.reset();
  }

  // One outbound and one inbound exchange; true when both went through the proxy.
  struct Captured {
    bool outbound;
    bool inbound;
  };
  Captured Exchange() {
    const size_t out_before = of_direction(*proxy_, "outbound").size();
    const size_t in_before = of_direction(*proxy_, "inbound").size();
    EXPECT_EQ(testbed::tcp_exchange(topo_->pod(), Addr::kRemote4, kAppPort, "o").reply, "remote:o");
    EXPECT_EQ(testbed::tcp_exchange(topo_->remote(), Addr::kPod4, kAppPort, "i").reply, "app:i");
    return {of_direction(*proxy_, "outbound").size() > out_before,
            of_direction(*proxy_, "inbound").size() > in_before};
  }

  std::unique_ptr<Topology> topo_;
  std::unique_ptr<NetnsHandle> pod_;
  std::unique_ptr<InpodProxy> proxy_;
  std::unique_ptr<TcpServer> app_;
  std::unique_ptr<TcpServer> remote_;
  const RedirectPlan plan_{RedirectOptions{}};
  detail::RuleProgrammingCounts counts_;
};

TEST_F(RedirectLifecycle, NeverEnrolledNetnsCapturesNothingAndHasNoState) {
  EXPECT_EQ(inspect(*pod_, plan_).status, RedirectStatus::Absent);
  const Captured c = Exchange();
  EXPECT_FALSE(c.outbound);
  EXPECT_FALSE(c.inbound);
  EXPECT_EQ(remote_->peers(), std::vector<std::string>{Addr::kPod4});
  EXPECT_EQ(app_->peers(), std::vector<std::string>{Addr::kRemote4});
  testbed::UdpResolver resolver(topo_->remote(), "198.51.100.53");
  EXPECT_EQ(testbed::dns_query_udp(topo_->pod(), Addr::kRemote4, "example.test"), "198.51.100.53");
  EXPECT_TRUE(proxy_->connections().empty());
  testbed::expect_no_redirection_state(topo_->pod());
}

TEST_F(RedirectLifecycle, RemovedNetnsCapturesNothingAndHasNoState) {
  apply(*pod_, plan_);
  const Captured before = Exchange();
  EXPECT_TRUE(before.outbound);
  EXPECT_TRUE(before.inbound);

  remove(*pod_);
  EXPECT_EQ(inspect(*pod_, plan_).status, RedirectStatus::Absent);
  testbed::expect_no_redirection_state(topo_->pod());
  const Captured after = Exchange();
  EXPECT_FALSE(after.outbound);
  EXPECT_FALSE(after.inbound);
}

TEST_F(RedirectLifecycle, ApplyTwiceEqualsOnceAndRemoveTwiceIsFine) {
  RedirectOptions o;
  o.ipv6 = true;
  const RedirectPlan plan(o);
  apply(*pod_, plan);
  const std::string once = testbed::nft_ruleset(topo_->pod());
  apply(*pod_, plan);
  EXPECT_EQ(testbed::nft_ruleset(topo_->pod()), once);
  for (bool v6 : {false, true}) {
    EXPECT_EQ(count_of(testbed::ip_rules(topo_->pod(), v6), "lookup 100"), 1);
    EXPECT_EQ(count_of(testbed::table100_routes(topo_->pod(), v6), "local default dev lo"), 1);
  }
  EXPECT_EQ(inspect(*pod_, plan).status, RedirectStatus::Current);
  EXPECT_TRUE(Exchange().outbound);

  remove(*pod_);
  EXPECT_NO_THROW(remove(*pod_));
  testbed::expect_no_redirection_state(topo_->pod());
}

TEST_F(RedirectLifecycle, ApplyAfterManualFlushRestoresCapture) {
  apply(*pod_, plan_);
  testbed::must("ip netns exec " + topo_->pod() + " nft flush table inet istio-ambient-nat");
  const Inspection drifted = inspect(*pod_, plan_);
  EXPECT_EQ(drifted.status, RedirectStatus::Drifted);
  EXPECT_NE(drifted.summary().find("istio-ambient-nat"), std::string::npos) << drifted.summary();
  EXPECT_FALSE(Exchange().outbound);

  apply(*pod_, plan_);
  EXPECT_EQ(inspect(*pod_, plan_).status, RedirectStatus::Current)
      << inspect(*pod_, plan_).summary();
  const Captured c = Exchange();
  EXPECT_TRUE(c.outbound);
  EXPECT_TRUE(c.inbound);
}

TEST_F(RedirectLifecycle, InspectReportsDeletedRuleAndTheTransparentLegNeedsIt) {
  apply(*pod_, plan_);
  EXPECT_EQ(inspect(*pod_, plan_).status, RedirectStatus::Current)
      << inspect(*pod_, plan_).summary();
  testbed::must("ip -n " + topo_->pod() + " rule del fwmark 0x111/0xfff lookup 100 pref 32764");
  const Inspection drifted = inspect(*pod_, plan_);
  EXPECT_EQ(drifted.status, RedirectStatus::Drifted);
  EXPECT_NE(drifted.summary().find("IPv4 rule"), std::string::npos) << drifted.summary();

  // Without the rule the app's replies to the spoofed source leave by eth0: the inbound leg
  // cannot complete (the proxy gives up after its connect timeout).
  const auto r =
      testbed::tcp_exchange(topo_->remote(), Addr::kPod4, kAppPort, "i", std::chrono::seconds(10));
  EXPECT_NE(r.reply, "app:i");
  EXPECT_EQ(of_direction(*proxy_, "inbound").size(), 1u);

  apply(*pod_, plan_);
  EXPECT_EQ(inspect(*pod_, plan_).status, RedirectStatus::Current)
      << inspect(*pod_, plan_).summary();
  EXPECT_EQ(testbed::tcp_exchange(topo_->remote(), Addr::kPod4, kAppPort, "i").reply, "app:i");
}

TEST_F(RedirectLifecycle, InspectReportsTablesThatDoNotMatchThePlan) {
  RedirectOptions no_dns;
  no_dns.dns_capture = false;
  const RedirectPlan without_dns(no_dns);

  apply(*pod_, plan_);  // with the raw table
  Inspection i = inspect(*pod_, without_dns);
  EXPECT_EQ(i.status, RedirectStatus::Drifted);
  EXPECT_NE(i.summary().find("istio-ambient-raw present but not in the plan"), std::string::npos)
      << i.summary();

  apply(*pod_, without_dns);  // converges: the raw table goes away
  EXPECT_EQ(inspect(*pod_, without_dns).status, RedirectStatus::Current);
  i = inspect(*pod_, plan_);
  EXPECT_EQ(i.status, RedirectStatus::Drifted);
  EXPECT_NE(i.summary().find("table istio-ambient-raw missing"), std::string::npos) << i.summary();

  // A changed rule (same count, different content) is drift too.
  testbed::must("ip netns exec " + topo_->pod() +
                " nft flush chain inet istio-ambient-mangle istio-output");
  testbed::must("ip netns exec " + topo_->pod() +
                " nft add rule inet istio-ambient-mangle istio-output meta mark set 0x1");
  i = inspect(*pod_, without_dns);
  EXPECT_EQ(i.status, RedirectStatus::Drifted);
  EXPECT_NE(i.summary().find("istio-ambient-mangle differs"), std::string::npos) << i.summary();
}

TEST_F(RedirectLifecycle, InjectedRoutingFailureLeavesNoTablesBehind) {
  ApplyHooks failing;
  failing.install_routing = [](const RoutingSpec&) {
    throw NetnsError(ErrorKind::Injected, "injected routing failure");
  };
  try {
    apply(*pod_, plan_, failing);
    FAIL() << "apply succeeded despite the routing failure";
  } catch (const NetnsError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Injected);
    EXPECT_NE(std::string(e.what()).find("injected routing failure"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("tables and routing removed"), std::string::npos)
        << e.what();
  }
  testbed::expect_no_redirection_state(topo_->pod());
  EXPECT_EQ(inspect(*pod_, plan_).status, RedirectStatus::Absent);
  EXPECT_FALSE(Exchange().outbound);
}

TEST_F(RedirectLifecycle, RoutingFailureAfterPartialRoutingRollsBackRoutingToo) {
  ApplyHooks partial;
  partial.install_routing = [](const RoutingSpec& spec) {
    install_routing_here(spec);  // the real rule and route go in ...
    throw NetnsError(ErrorKind::Injected, "injected failure after the IPv4 route");
  };
  EXPECT_THROW(apply(*pod_, plan_, partial), NetnsError);
  testbed::expect_no_redirection_state(topo_->pod());
}

TEST_F(RedirectLifecycle, RealRoutingFailureRollsBackAndNamesTheCause) {
  // The kernel refuses an IPv6 route on a down lo: a genuine netlink failure after the tables
  // and the IPv4 rule/route are in.
  testbed::must("ip -n " + topo_->pod() + " link set lo down");
  RedirectOptions o;
  o.ipv6 = true;
  try {
    apply(*pod_, RedirectPlan(o));
    FAIL() << "apply succeeded with lo down";
  } catch (const NetnsError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Netlink);
    EXPECT_NE(std::string(e.what()).find("IPv6 local default route"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("lo is down"), std::string::npos) << e.what();
  }
  testbed::expect_no_redirection_state(topo_->pod());
}

TEST_F(RedirectLifecycle, NoIpv6RoutingWhenLoDisallowsIpv6) {
  run_in(*pod_, [] { std::ofstream("/proc/sys/net/ipv6/conf/lo/disable_ipv6") << "1"; });
  RedirectOptions o;
  o.ipv6 = true;
  const RedirectPlan plan(o);
  apply(*pod_, plan);
  EXPECT_NE(testbed::ip_rules(topo_->pod(), false).find("lookup 100"), std::string::npos);
  EXPECT_EQ(testbed::ip_rules(topo_->pod(), true).find("lookup 100"), std::string::npos);
  EXPECT_EQ(inspect(*pod_, plan).status, RedirectStatus::Current);
  remove(*pod_);
  testbed::expect_no_redirection_state(topo_->pod());
}

}  // namespace
}  // namespace ambient::netns
