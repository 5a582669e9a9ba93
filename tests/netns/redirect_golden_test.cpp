// Golden tests of the rendered nft text (no privileges needed). Regenerate with
//   UPDATE_GOLDEN=1 ctest -L unit -R redirect
// and review the diff: every change here is a change of what runs in every enrolled pod.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "netns/error.h"
#include "netns/host_probe.h"
#include "netns/redirect.h"

namespace ambient::netns {
namespace {

namespace fs = std::filesystem;

struct GoldenCase {
  std::string name;
  RedirectOptions options;
};

std::vector<GoldenCase> all_cases() {
  std::vector<GoldenCase> out;
  const struct {
    const char* name;
    bool v4, v6;
  } families[] = {{"ipv4", true, false}, {"ipv6", false, true}, {"dual", true, true}};
  for (const auto& f : families) {
    for (bool dns : {true, false}) {
      for (bool bypass : {false, true}) {
        RedirectOptions o;
        o.ipv4 = f.v4;
        o.ipv6 = f.v6;
        o.dns_capture = dns;
        o.bypass_inbound_capture = bypass;
        out.push_back(
            {std::string(f.name) + (dns ? "_dns" : "_nodns") + (bypass ? "_bypass" : ""), o});
      }
    }
  }
  RedirectOptions reroute;
  reroute.reroute_interfaces = {"vm0", "kubevirt-1"};
  out.push_back({"ipv4_dns_reroute", reroute});
  reroute.ipv6 = true;
  reroute.bypass_inbound_capture = true;
  reroute.dns_capture = false;
  out.push_back({"dual_nodns_bypass_reroute", reroute});
  return out;
}

std::string golden_path(const std::string& name) {
  return std::string(AMBIENT_GOLDEN_DIR) + "/" + name + ".nft";
}

bool updating() {
  const char* v = std::getenv("UPDATE_GOLDEN");
  return v && std::string(v) == "1";
}

void check_golden(const std::string& name, const std::string& rendered) {
  const std::string path = golden_path(name);
  if (updating()) {
    fs::create_directories(AMBIENT_GOLDEN_DIR);
    std::ofstream(path) << rendered;
    return;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << path << " missing; run with UPDATE_GOLDEN=1 to create it";
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(rendered, want.str()) << "golden " << path << " differs (UPDATE_GOLDEN=1 to refresh)";
}

class RedirectGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(RedirectGolden, RenderMatchesGoldenFile) {
  check_golden(GetParam().name, RedirectPlan(GetParam().options).render());
}

INSTANTIATE_TEST_SUITE_P(AllOptionCombinations, RedirectGolden, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (auto& ch : n) {
                             if (ch == '-') ch = '_';
                           }
                           return n;
                         });

TEST(RedirectGoldenHostProbe, RenderMatchesGoldenFile) {
  check_golden("host_probe_uid0", HostProbeSnat::render_base({}));
  check_golden("host_probe_uid1000", HostProbeSnat::render_base({1000}));
}

TEST(RedirectGoldenFiles, NoStaleGoldenFiles) {
  if (updating()) GTEST_SKIP() << "updating";
  std::set<std::string> expected = {"host_probe_uid0.nft", "host_probe_uid1000.nft"};
  for (const auto& c : all_cases()) expected.insert(c.name + ".nft");
  std::set<std::string> found;
  for (const auto& e : fs::directory_iterator(AMBIENT_GOLDEN_DIR)) {
    found.insert(e.path().filename().string());
  }
  EXPECT_EQ(found, expected);
}

TEST(RedirectPlanOptions, RejectsPlansWithoutAFamily) {
  RedirectOptions o;
  o.ipv4 = false;
  EXPECT_THROW(RedirectPlan{o}, NetnsError);
}

TEST(RedirectPlanOptions, RejectsUnsafeInterfaceNames) {
  for (const std::string bad :
       {"", "a b", "x\"y", "0123456789abcdef", "..", "eth0;", "a/b", "vm0\n"}) {
    RedirectOptions o;
    o.reroute_interfaces = {bad};
    try {
      RedirectPlan plan(o);
      ADD_FAILURE() << "accepted interface name '" << bad << "'";
    } catch (const NetnsError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    }
  }
}

TEST(RedirectPlanOptions, DropsDuplicateInterfaces) {
  RedirectOptions o;
  o.reroute_interfaces = {"vm0", "vm1", "vm0"};
  EXPECT_EQ(RedirectPlan(o).options().reroute_interfaces, (std::vector<std::string>{"vm0", "vm1"}));
}

TEST(RedirectPlanOptions, RawTableOnlyWithDnsCapture) {
  RedirectOptions o;
  EXPECT_EQ(RedirectPlan(o).tables().size(), 3u);
  o.dns_capture = false;
  const RedirectPlan plan(o);
  EXPECT_EQ(plan.tables().size(), 2u);
  const std::string text = plan.render();
  // Without DNS capture the raw table is deleted in the same transaction, never filled.
  EXPECT_NE(text.find("add table inet istio-ambient-raw\ndelete table inet istio-ambient-raw\n"),
            std::string::npos);
  EXPECT_EQ(text.find("ct zone"), std::string::npos);
  EXPECT_EQ(text.find(":15053"), std::string::npos);
}

TEST(RedirectPlanOptions, BypassDropsInboundCaptureOnly) {
  RedirectOptions o;
  o.bypass_inbound_capture = true;
  const std::string text = RedirectPlan(o).render();
  EXPECT_EQ(text.find(":15006"), std::string::npos);
  // HBONE still arrives on 15008: ztunnel's spoofed leg to the app needs the connmark.
  EXPECT_NE(text.find("ct mark set ct mark & 0xfffff000 | 0x111"), std::string::npos);
  EXPECT_NE(text.find(":15001"), std::string::npos);
  EXPECT_NE(text.find("meta mark set ct mark"), std::string::npos);
}

}  // namespace
}  // namespace ambient::netns
