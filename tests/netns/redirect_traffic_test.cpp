// Traffic proof of the in-pod redirection: real sockets in real namespaces, a ztunnel-like proxy
// inside the pod, and assertions on what the proxy and the servers actually saw.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "config/constants.h"
#include "netns/redirect.h"
#include "tests/netns/netns_test_env.h"

namespace ambient::netns {
namespace {

using standins::InpodProxy;
using testbed::Addr;
using testbed::of_direction;
using testbed::starts_with;
using testbed::TcpServer;
using testbed::Topology;

constexpr int kAppPort = 8080;

class RedirectTraffic : public ::testing::Test {
 protected:
  void Start(bool with_vm = false) {
    topo_ = std::make_unique<Topology>(with_vm);
    pod_ = std::make_unique<NetnsHandle>(topo_->open(topo_->pod()));
    proxy_ = InpodProxy::start(pod_->fd(),
                               [](const std::string& line) { spdlog::info("proxy: {}", line); });
  }
  void TearDown() override {
    proxy_.reset();
    pod_.reset();
    topo_.reset();
  }
  void Apply(RedirectOptions o) { apply(*pod_, RedirectPlan(std::move(o))); }

  std::unique_ptr<Topology> topo_;
  std::unique_ptr<NetnsHandle> pod_;
  std::unique_ptr<InpodProxy> proxy_;
};

TEST_F(RedirectTraffic, OutboundLandsOn15001WithOriginalDstAndMarkedLegIsNotRecaptured) {
  AMBIENT_REQUIRE_ROOT();
  Start();
  TcpServer remote(topo_->remote(), AF_INET, kAppPort, "remote");
  Apply({});

  const auto r = testbed::tcp_exchange(topo_->pod(), Addr::kRemote4, kAppPort, "ping");
  EXPECT_EQ(r.reply, "remote:ping") << r.error;
  const auto out = of_direction(*proxy_, "outbound");
  // Exactly one capture: had the proxy's own (0x539-marked) connection been recaptured, it
  // would have landed on 15001 again and looped.
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].original_dst, "10.199.2.2:8080");
  EXPECT_TRUE(starts_with(out[0].src, "10.199.1.2:")) << out[0].src;
  // The real server got the proxy's connection, from the pod's address.
  EXPECT_EQ(remote.peers(), std::vector<std::string>{Addr::kPod4});
}

TEST_F(RedirectTraffic, InboundLandsOn15006AndTransparentLegCompletes) {
  AMBIENT_REQUIRE_ROOT();
  Start();
  TcpServer app(topo_->pod(), AF_INET, kAppPort, "app");
  Apply({});

  const auto r = testbed::tcp_exchange(topo_->remote(), Addr::kPod4, kAppPort, "ping");
  EXPECT_EQ(r.reply, "app:ping") << r.error;
  const auto in = of_direction(*proxy_, "inbound");
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0].original_dst, "10.199.1.2:8080");
  EXPECT_TRUE(starts_with(in[0].src, "10.199.2.2:")) << in[0].src;
  // The app saw the original client's address although the connection came from the proxy:
  // the transparent socket's replies came back through connmark 0x111 and table 100.
  EXPECT_EQ(app.peers(), std::vector<std::string>{Addr::kRemote4});
}

TEST_F(RedirectTraffic, HbonePortIsNotRedirected) {
  AMBIENT_REQUIRE_ROOT();
  Start();
  Apply({});
  const auto r =
      testbed::tcp_exchange(topo_->remote(), Addr::kPod4, contract::kInboundHbonePort, "hbone");
  EXPECT_EQ(r.reply, "hbone") << r.error;
  const auto hb = of_direction(*proxy_, "hbone");
  ASSERT_EQ(hb.size(), 1u);
  EXPECT_TRUE(starts_with(hb[0].src, "10.199.2.2:")) << hb[0].src;
  EXPECT_TRUE(of_direction(*proxy_, "inbound").empty());
}

TEST_F(RedirectTraffic, DnsToOutsideResolverReachesProxyOn15053) {
  AMBIENT_REQUIRE_ROOT();
  Start();
  testbed::UdpResolver resolver(topo_->remote(), "198.51.100.53");
  Apply({});
  EXPECT_EQ(testbed::dns_query_udp(topo_->pod(), Addr::kRemote4, "example.test"),
            InpodProxy::kDnsAnswer);
  const auto udp = of_direction(*proxy_, "dns-udp");
  ASSERT_GE(udp.size(), 1u);
  EXPECT_EQ(udp[0].query, "example.test");
  EXPECT_EQ(udp[0].original_dst, "127.0.0.1:15053");  // the proxy's loopback DNS socket got it
  EXPECT_TRUE(starts_with(udp[0].src, "10.199.1.2:")) << udp[0].src;
  // TCP DNS as well (the remote has no TCP resolver: only the proxy can answer).
  EXPECT_EQ(testbed::dns_query_tcp(topo_->pod(), Addr::kRemote4, "tcp.example.test"),
            InpodProxy::kDnsAnswer);
  ASSERT_EQ(of_direction(*proxy_, "dns-tcp").size(), 1u);
  EXPECT_NE(testbed::nft_tables(topo_->pod()).find("istio-ambient-raw"), std::string::npos);
}

TEST_F(RedirectTraffic, DnsIsNotCapturedWhenDnsCaptureIsOff) {
  AMBIENT_REQUIRE_ROOT();
  Start();
  testbed::UdpResolver resolver(topo_->remote(), "198.51.100.53");
  RedirectOptions o;
  o.dns_capture = false;
  Apply(o);
  EXPECT_EQ(testbed::dns_query_udp(topo_->pod(), Addr::kRemote4, "example.test"), "198.51.100.53");
  EXPECT_TRUE(of_direction(*proxy_, "dns-udp").empty());
  EXPECT_EQ(testbed::nft_tables(topo_->pod()).find("istio-ambient-raw"), std::string::npos);
}

TEST_F(RedirectTraffic, BypassInboundCaptureLeavesInboundAloneButCapturesOutbound) {
  AMBIENT_REQUIRE_ROOT();
  Start();
  TcpServer app(topo_->pod(), AF_INET, kAppPort, "app");
  TcpServer remote(topo_->remote(), AF_INET, kAppPort, "remote");
  RedirectOptions o;
  o.bypass_inbound_capture = true;
  Apply(o);

  EXPECT_EQ(testbed::tcp_exchange(topo_->remote(), Addr::kPod4, kAppPort, "in").reply, "app:in");
  EXPECT_EQ(app.peers(), std::vector<std::string>{Addr::kRemote4});
  EXPECT_TRUE(of_direction(*proxy_, "inbound").empty());

  EXPECT_EQ(testbed::tcp_exchange(topo_->pod(), Addr::kRemote4, kAppPort, "out").reply,
            "remote:out");
  const auto out = of_direction(*proxy_, "outbound");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].original_dst, "10.199.2.2:8080");
}

TEST_F(RedirectTraffic, Ipv6OutboundAndInbound) {
  AMBIENT_REQUIRE_ROOT();
  Start();
  TcpServer app6(topo_->pod(), AF_INET6, kAppPort, "app6");
  TcpServer remote6(topo_->remote(), AF_INET6, kAppPort, "remote6");
  TcpServer remote4(topo_->remote(), AF_INET, kAppPort, "remote4");
  RedirectOptions o;
  o.ipv6 = true;
  Apply(o);

  EXPECT_EQ(testbed::tcp_exchange(topo_->pod(), Addr::kRemote6, kAppPort, "o6").reply,
            "remote6:o6");
  auto out = of_direction(*proxy_, "outbound");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].original_dst, "[fd00:199:2::2]:8080");  // from IP6T_SO_ORIGINAL_DST
  EXPECT_EQ(remote6.peers(), std::vector<std::string>{Addr::kPod6});

  EXPECT_EQ(testbed::tcp_exchange(topo_->remote(), Addr::kPod6, kAppPort, "i6").reply, "app6:i6");
  const auto in = of_direction(*proxy_, "inbound");
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0].original_dst, "[fd00:199:1::2]:8080");
  EXPECT_TRUE(starts_with(in[0].src, "[fd00:199:2::2]:")) << in[0].src;
  EXPECT_EQ(app6.peers(), std::vector<std::string>{Addr::kRemote6});  // transparent over IPv6

  // Dual stack: IPv4 still captured.
  EXPECT_EQ(testbed::tcp_exchange(topo_->pod(), Addr::kRemote4, kAppPort, "o4").reply,
            "remote4:o4");
  EXPECT_EQ(of_direction(*proxy_, "outbound").size(), 2u);
}

TEST_F(RedirectTraffic, Ipv6OnlyPlanLeavesIpv4Uncaptured) {
  AMBIENT_REQUIRE_ROOT();
  Start();
  TcpServer remote6(topo_->remote(), AF_INET6, kAppPort, "remote6");
  TcpServer remote4(topo_->remote(), AF_INET, kAppPort, "remote4");
  RedirectOptions o;
  o.ipv4 = false;
  o.ipv6 = true;
  Apply(o);
  EXPECT_EQ(testbed::tcp_exchange(topo_->pod(), Addr::kRemote4, kAppPort, "o4").reply,
            "remote4:o4");
  EXPECT_TRUE(of_direction(*proxy_, "outbound").empty());
  EXPECT_EQ(testbed::tcp_exchange(topo_->pod(), Addr::kRemote6, kAppPort, "o6").reply,
            "remote6:o6");
  EXPECT_EQ(of_direction(*proxy_, "outbound").size(), 1u);
  EXPECT_EQ(testbed::ip_rules(topo_->pod(), false).find("lookup 100"), std::string::npos);
  EXPECT_NE(testbed::ip_rules(topo_->pod(), true).find("lookup 100"), std::string::npos);
}

TEST_F(RedirectTraffic, RerouteInterfaceSendsItsTcpToOutboundPort) {
  AMBIENT_REQUIRE_ROOT();
  Start(/*with_vm=*/true);
  TcpServer remote(topo_->remote(), AF_INET, kAppPort, "remote");

  // Without the option, TCP from the VM interface is treated as inbound.
  Apply({});
  testbed::tcp_exchange(topo_->vm(), Addr::kRemote4, kAppPort, "x", std::chrono::seconds(2));
  ASSERT_TRUE(proxy_->wait_for_connections(1, std::chrono::seconds(5)));
  EXPECT_EQ(of_direction(*proxy_, "inbound").size(), 1u);
  EXPECT_TRUE(of_direction(*proxy_, "outbound").empty());

  RedirectOptions o;
  o.reroute_interfaces = {"vm0"};
  Apply(o);
  const auto r = testbed::tcp_exchange(topo_->vm(), Addr::kRemote4, kAppPort, "vm");
  EXPECT_EQ(r.reply, "remote:vm") << r.error;
  const auto out = of_direction(*proxy_, "outbound");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].original_dst, "10.199.2.2:8080");
  EXPECT_TRUE(starts_with(out[0].src, "10.199.3.2:")) << out[0].src;
}

}  // namespace
}  // namespace ambient::netns
