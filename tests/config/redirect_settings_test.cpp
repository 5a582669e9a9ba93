#include <gtest/gtest.h>

#include "config/errors.h"
#include "config/redirect_settings.h"

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

TEST(RedirectSettings, JsonRoundTrip) {
  RedirectSettings s;
  s.dns_capture = false;
  s.bypass_inbound_capture = true;
  s.reroute_interfaces = {"tap0"};
  EXPECT_EQ(redirect_settings_from_json(to_json(s)), s);
  EXPECT_EQ(redirect_settings_from_json(nlohmann::json::object()), RedirectSettings{});
  EXPECT_THROW(redirect_settings_from_json(nlohmann::json::parse(R"({"ipv6":"yes"})")),
               ConfigError);
}

}  // namespace
}  // namespace ambient::config
