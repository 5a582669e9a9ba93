#include <gtest/gtest.h>

#include "config/agent_protocol.h"
#include "config/errors.h"

namespace ambient::config {
namespace {

TEST(RedirectSettings, DefaultsAndAnnotations) {
  auto s = redirect_settings_for({}, true, true);
  EXPECT_TRUE(s.dns_capture);
  EXPECT_FALSE(s.bypass_inbound_capture);
  EXPECT_TRUE(s.reroute_interfaces.empty());

  s = redirect_settings_for({{"ambient.istio.io/dns-capture", "F"},
                             {"ambient.istio.io/bypass-inbound-capture", "TRUE"},
                             {"istio.io/reroute-virtual-interfaces", " tap0, ,net1 "}},
                            true, false);
  EXPECT_FALSE(s.dns_capture);
  EXPECT_TRUE(s.bypass_inbound_capture);
  EXPECT_FALSE(s.ipv6);
  EXPECT_EQ(s.reroute_interfaces, (std::vector<std::string>{"tap0", "net1"}));
  EXPECT_TRUE(s.warnings.empty());

  s = redirect_settings_for({{"ambient.istio.io/dns-capture", "yes"}}, false, true);
  EXPECT_FALSE(s.dns_capture);  // unparsable: default kept, warned
  ASSERT_EQ(s.warnings.size(), 1u);
  EXPECT_NE(s.warnings[0].find("dns-capture"), std::string::npos);
  for (const char* t : {"1", "t", "True"}) {
    EXPECT_TRUE(
        redirect_settings_for({{"ambient.istio.io/dns-capture", t}}, false, true).dns_capture);
  }
}

TEST(AgentProtocol, RequestRoundTrip) {
  AgentRequest r;
  r.op = "add";
  r.pod = {"c1", "/var/run/netns/p", "eth0", "uid-1", "web", "demo", {"10.0.0.5", "fd00::5"}};
  r.service_account = "web";
  r.redirect.bypass_inbound_capture = true;
  r.redirect.reroute_interfaces = {"tap0"};
  const auto back = agent_request_from_json(to_json(r));
  EXPECT_EQ(back.op, "add");
  EXPECT_EQ(back.pod.ips, r.pod.ips);
  EXPECT_EQ(back.pod.uid, "uid-1");
  EXPECT_EQ(back.service_account, "web");
  EXPECT_EQ(back.redirect, r.redirect);
}

TEST(AgentProtocol, ReplyRoundTripAndErrors) {
  const auto bad = AgentReply::failure(11, "ztunnel refused", "nack: boom");
  const auto back = agent_reply_from_json(to_json(bad));
  EXPECT_FALSE(back.ok);
  EXPECT_EQ(back.code, 11);
  EXPECT_EQ(back.details, "nack: boom");
  EXPECT_TRUE(agent_reply_from_json(to_json(AgentReply::success())).ok);
  EXPECT_THROW(agent_reply_from_json(nlohmann::json::parse(R"({"ok":false})")), ConfigError);
  EXPECT_THROW(agent_request_from_json(nlohmann::json::parse(R"({"op":"explode","pod":{}})")),
               ConfigError);
  EXPECT_THROW(agent_request_from_json(nlohmann::json::parse(R"({"op":"add"})")), ConfigError);
}

TEST(AgentProtocol, ResultIps) {
  const auto ips = result_ips(nlohmann::json::parse(
      R"({"ips":[{"address":"10.0.0.5/24"},{"address":"fd00::5/64"},{"gateway":"x"},3]})"));
  EXPECT_EQ(ips, (std::vector<std::string>{"10.0.0.5", "fd00::5"}));
  EXPECT_TRUE(result_ips(nullptr).empty());
}

}  // namespace
}  // namespace ambient::config
