#include <gtest/gtest.h>

#include "plugin/cni_error.h"
#include "plugin/cni_version.h"

namespace ambient::plugin {
namespace {

using nlohmann::json;

const json kResult10 = json::parse(R"({
  "cniVersion": "1.0.0",
  "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/var/run/netns/x"}],
  "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0},
          {"address": "fd00::5/64", "interface": 0}],
  "routes": [{"dst": "0.0.0.0/0"}], "dns": {}, "x-vendor": {"keep": true}})");

TEST(CniVersion, Ordering) {
  EXPECT_LT(compare_versions("0.3.1", "0.4.0"), 0);
  EXPECT_LT(compare_versions("0.4.0", "1.0.0"), 0);
  EXPECT_EQ(compare_versions("1.1.0", "1.1.0"), 0);
  EXPECT_GT(compare_versions("1.1.0", "1.0.0"), 0);
  EXPECT_GT(compare_versions("0.10.0", "0.4.0"), 0);
  EXPECT_LT(compare_versions("junk", "0.1.0"), 0);
  EXPECT_TRUE(is_supported_version("0.3.0"));
  EXPECT_FALSE(is_supported_version("0.2.0"));
  EXPECT_FALSE(is_supported_version("1.2.0"));
}

TEST(CniVersion, DownToPre1AddsIpVersion) {
  for (const char* to : {"0.3.0", "0.3.1", "0.4.0"}) {
    const auto out = convert_result(kResult10, "1.0.0", to);
    EXPECT_EQ(out["cniVersion"], to);
    EXPECT_EQ(out["ips"][0]["version"], "4");
    EXPECT_EQ(out["ips"][1]["version"], "6");
    EXPECT_EQ(out["x-vendor"], kResult10["x-vendor"]);
    EXPECT_EQ(out["dns"], json::object());
    EXPECT_EQ(out["interfaces"], kResult10["interfaces"]);
  }
}

TEST(CniVersion, UpFromPre1DropsIpVersion) {
  auto old = convert_result(kResult10, "1.0.0", "0.4.0");
  const auto back = convert_result(old, "0.4.0", "1.0.0");
  EXPECT_EQ(back, kResult10);
  const auto to11 = convert_result(old, "0.4.0", "1.1.0");
  EXPECT_FALSE(to11["ips"][0].contains("version"));
  EXPECT_EQ(to11["cniVersion"], "1.1.0");
}

TEST(CniVersion, SameFamilyKeepsEverything) {
  auto r = kResult10;
  r["routes"][0]["mtu"] = 1400;  // a 1.1.0 field
  const auto out = convert_result(r, "1.1.0", "1.0.0");
  EXPECT_EQ(out["routes"][0]["mtu"], 1400);
}

TEST(CniVersion, ResultWithoutOwnVersionUsesTheConfigs) {
  auto r = kResult10;
  r.erase("cniVersion");
  EXPECT_EQ(convert_result(r, "1.0.0", "0.3.1")["ips"][0]["version"], "4");
}

TEST(CniVersion, Errors) {
  auto r = kResult10;
  r["cniVersion"] = "0.2.0";
  EXPECT_THROW(convert_result(r, "1.0.0", "1.0.0"), CniError);
  r = kResult10;
  r["ips"][0].erase("address");
  EXPECT_THROW(convert_result(r, "1.0.0", "0.4.0"), CniError);
  EXPECT_THROW(convert_result(json::array(), "1.0.0", "0.4.0"), CniError);
}

TEST(CniResult, Ips) {
  const auto ips = result_ips(nlohmann::json::parse(
      R"({"ips":[{"address":"10.0.0.5/24"},{"address":"fd00::5/64"},{"gateway":"x"},3]})"));
  EXPECT_EQ(ips, (std::vector<std::string>{"10.0.0.5", "fd00::5"}));
  EXPECT_TRUE(result_ips(nullptr).empty());
}

}  // namespace
}  // namespace ambient::plugin
