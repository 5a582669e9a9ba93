// The ruleset we program equals Istio's for the same options (issue 11, item 5). For each of
// Istio's in-pod nftables goldens (cni/pkg/nftables/testdata in the istio.io/istio module that
// scripts/peers.sh istio fetches — read from the peers cache, never copied here), the golden is
// applied with `nft -f` in one netns and our plan with the same options in another (through
// apply(), i.e. replayed as the agent does), and the kernel's stateless listings of both must be
// identical, table for table.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "config/constants.h"
#include "netns/prepared_plan.h"
#include "netns/redirect.h"
#include "tests/netns/netns_test_env.h"
#include "tests/peers/istio/istio_source.h"
#include "tests/support/scratch_dir.h"

namespace ambient::netns {
namespace {

namespace fs = std::filesystem;
using testbed::must;
using testbed::Topology;

// Istio's golden tests give the host probe's IPv6 SNAT address as this fake one
// (nftables_test.go); the contract's address is ours. The only text we substitute.
constexpr std::string_view kIstioTestProbeV6 = "e9ac:1e77:90ca:399f:4d6d:ece2:2f9b:3164";

struct IstioCase {
  std::string golden;  // file name without .golden
  RedirectOptions options;
};
void PrintTo(const IstioCase& c, std::ostream* os) {
  *os << c.golden;
}

// Istio's GetCommonInPodTestCases (cni/pkg/nftables/common_test.go) in our options: each case
// with EnableIPv6 off ("<name>") and on ("<name>_ipv6", which is dual-stack). RedirectDNS is off
// unless the case turns it on; a pod-level DNS override wins over the global setting; IngressMode
// is our bypass_inbound_capture; VirtualInterfaces our reroute_interfaces.
std::vector<IstioCase> istio_cases() {
  const std::vector<std::string> vifs = {"fake1s0f0", "fake1s0f1"};
  const struct {
    const char* name;
    bool dns;
    bool ingress;
    bool virtual_interfaces;
  } base[] = {
      {"default", true, false, false},
      {"ingress", false, true, false},
      {"virtual_interfaces", false, false, true},
      {"ingress_and_virtual_interfaces", false, true, true},
      {"dns_pod_enabled_and_off_globally", true, false, false},
      {"dns_pod_disabled_and_on_globally", false, false, false},
  };
  std::vector<IstioCase> out;
  for (const auto& b : base) {
    for (bool v6 : {false, true}) {
      RedirectOptions o;
      o.ipv4 = true;
      o.ipv6 = v6;
      o.dns_capture = b.dns;
      o.bypass_inbound_capture = b.ingress;
      if (b.virtual_interfaces) o.reroute_interfaces = vifs;
      out.push_back({std::string(b.name) + (v6 ? "_ipv6" : ""), o});
    }
  }
  return out;
}

fs::path istio_golden_dir() {
  return peers::istio_source_dir() / "cni" / "pkg" / "nftables" / "testdata";
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

// The whole ruleset of a namespace as the kernel lists it, without counter values.
std::string stateless_ruleset(const std::string& ns) {
  return must("ip netns exec " + ns + " nft -s list ruleset");
}

class IstioEquivalence : public ::testing::TestWithParam<IstioCase> {
 protected:
  void SetUp() override { AMBIENT_REQUIRE_ROOT(); }
};

TEST_P(IstioEquivalence, KernelRulesetEqualsIstiosGoldenApplied) {
  const IstioCase& c = GetParam();
  const fs::path golden = istio_golden_dir() / (c.golden + ".golden");
  ASSERT_TRUE(fs::exists(golden)) << golden;
  const std::string theirs =
      replace_all(read_file(golden), kIstioTestProbeV6, contract::kProbeSnatV6);
  ASSERT_NE(theirs.find("add table inet istio-ambient-nat"), std::string::npos) << golden;

  // Two fresh namespaces of a standard topology: theirs in the remote, ours in the pod. Neither
  // holds any nft table before.
  Topology topo;
  ASSERT_EQ(stateless_ruleset(topo.remote()), "");
  ASSERT_EQ(stateless_ruleset(topo.pod()), "");

  testing::ScratchDir dir("istio-golden");
  const fs::path script = dir.path() / (c.golden + ".nft");
  std::ofstream(script) << theirs;
  must("ip netns exec " + topo.remote() + " nft -f " + script.string());

  // What the agent does: the plan's batch, learnt once, replayed in the pod (decision 017).
  const auto before = detail::rule_programming_counts();
  apply(topo.open(topo.pod()), RedirectPlan(c.options));
  const auto after = detail::rule_programming_counts();
  EXPECT_EQ(after.replayed - before.replayed, 1u) << "the rules did not go in as a replay";
  EXPECT_EQ(after.libnftables, before.libnftables);

  const std::string want = stateless_ruleset(topo.remote());
  const std::string got = stateless_ruleset(topo.pod());
  EXPECT_EQ(got, want) << "ours (pod netns) vs Istio's " << golden.filename().string()
                       << " (applied with nft -f)";
  // Every table Istio's transaction leaves is one of ours, and vice versa (the comparison above
  // already implies it; this names the tables when it fails).
  EXPECT_EQ(testbed::nft_tables(topo.pod()), testbed::nft_tables(topo.remote()));
}

INSTANTIATE_TEST_SUITE_P(IstioGoldens, IstioEquivalence, ::testing::ValuesIn(istio_cases()),
                         [](const auto& info) { return info.param.golden; });

// An Istio upgrade that adds or renames an in-pod case must show up here, not pass unnoticed.
TEST(IstioEquivalenceCases, CoverEveryInPodGoldenOfIstio) {
  std::set<std::string> theirs;
  for (const auto& e : fs::directory_iterator(istio_golden_dir())) {
    const std::string name = e.path().filename().string();
    // hostprobe*.golden are the node-side probe rules, not the pod's.
    if (e.path().extension() == ".golden" && name.rfind("hostprobe", 0) != 0) {
      theirs.insert(e.path().stem().string());
    }
  }
  std::set<std::string> ours;
  for (const auto& c : istio_cases()) ours.insert(c.golden);
  EXPECT_EQ(ours, theirs);
  EXPECT_EQ(ours.size(), 12u);
}

}  // namespace
}  // namespace ambient::netns
