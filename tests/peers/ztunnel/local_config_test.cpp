// The local config the testbed hands ztunnel: istiod's rule for workloads (HBONE only once our
// agent marked the pod enabled), ztunnel's schema details (tagged StringMatch, the file path's
// missing trust-domain default, services listed in their endpoints' workloads), and the demo's
// extras file. ztunnel itself parses these texts in the e2e layer.
#include <gtest/gtest.h>

#include "tests/peers/ztunnel/local_config.h"

namespace ambient::peers {
namespace {

using nlohmann::json;

json pod(const std::string& ns, const std::string& name, json annotations, json ips,
         bool host_network = false) {
  json status = {{"phase", "Running"}};
  if (!ips.empty()) status["podIPs"] = ips;
  return {{"metadata", {{"name", name}, {"namespace", ns}, {"annotations", annotations}}},
          {"spec", {{"serviceAccountName", name + "-sa"}, {"hostNetwork", host_network}}},
          {"status", status}};
}

TEST(LocalConfig, WorkloadsFollowIstiodsRuleForHbone) {
  const auto w = workloads_from_pods(
      {pod("demo", "b", {{"ambient.istio.io/redirection", "enabled"}}, {{{"ip", "10.0.0.2"}}}),
       pod("demo", "a", {{"ambient.istio.io/redirection", "pending"}},
           {{{"ip", "10.0.0.1"}}, {{"ip", "fd00::1"}}}),
       pod("demo", "starting", json::object(), json::array()),
       pod("demo", "host", {{"ambient.istio.io/redirection", "enabled"}}, {{{"ip", "10.9.9.9"}}},
           true)},
      "node-1");
  ASSERT_EQ(w.size(), 2u);    // no IP yet, host network: istiod has no workload address for them
  EXPECT_EQ(w[0].name, "a");  // sorted by uid: the same pods always render the same text
  EXPECT_FALSE(w[0].hbone);   // pending is not enabled: peers keep sending it plain TCP
  EXPECT_EQ(w[0].ips, (std::vector<std::string>{"10.0.0.1", "fd00::1"}));
  EXPECT_EQ(w[1].uid, "Kubernetes//Pod/demo/b");
  EXPECT_TRUE(w[1].hbone);
  EXPECT_EQ(w[1].service_account, "b-sa");
  EXPECT_EQ(w[1].node, "node-1");
}

TEST(LocalConfig, RendersZtunnelsSchema) {
  LocalConfig c;
  LocalWorkload b;
  b.uid = "Kubernetes//Pod/demo/b";
  b.name = "b";
  b.namespace_ = "demo";
  b.service_account = "b-sa";
  b.ips = {"10.0.0.2"};
  b.hbone = true;
  b.node = "node-1";
  c.workloads = {b};
  LocalService web;
  web.name = "web";
  web.namespace_ = "demo";
  web.hostname = "web.demo.svc.cluster.local";
  web.vips = {"10.96.0.10"};
  web.ports = {{80, 8080}};
  web.endpoints = {"demo/b"};
  c.services = {web};
  c.policies = {namespace_policy("deny-outside", "demo", LocalPolicy::Action::kDeny,
                                 {not_from_namespaces({"demo", "legacy"}), to_ports({9090})})};
  const std::string y = c.render();
  EXPECT_NE(y.find("  protocol: HBONE\n"), std::string::npos);
  EXPECT_NE(y.find("  trustDomain: \"cluster.local\"\n"), std::string::npos);
  EXPECT_NE(y.find("  services:\n    \"demo/web.demo.svc.cluster.local\": {80: 8080}\n"),
            std::string::npos);
  EXPECT_NE(y.find("  vips: [\"/10.96.0.10\"]\n"), std::string::npos);  // default network
  EXPECT_NE(y.find("  action: Deny\n"), std::string::npos);
  // One rule of one any-of clause; StringMatch as a YAML tag (serde_yaml 0.9).
  EXPECT_NE(y.find("  - - - {notNamespaces: [!Exact \"demo\", !Exact \"legacy\"]}\n"
                   "      - {destinationPorts: [9090]}\n"),
            std::string::npos)
      << y;
  EXPECT_EQ(c.render(), y);
}

TEST(LocalConfig, EmptyConfigStillHasEveryKey) {
  EXPECT_EQ(LocalConfig{}.render(), "workloads: []\nservices: []\npolicies: []\n");
}

TEST(LocalConfig, ExtrasFromJson) {
  const auto c = extras_from_json(json::parse(R"({
    "services": [{"name": "web", "namespace": "demo", "hostname": "web.demo.svc.cluster.local",
                  "vips": ["10.96.0.11"], "ports": {"80": 8080}, "endpoints": ["demo/web"]}],
    "policies": [{"name": "p", "namespace": "demo", "action": "Allow",
                  "rules": [[{"principals": ["cluster.local/ns/demo/sa/a"]}]]}]})"));
  ASSERT_EQ(c.services.size(), 1u);
  EXPECT_EQ(c.services[0].ports.at(80), 8080);
  ASSERT_EQ(c.policies.size(), 1u);
  EXPECT_EQ(c.policies[0].action, LocalPolicy::Action::kAllow);
  EXPECT_EQ(c.policies[0].rules.at(0).at(0).principals.at(0), "cluster.local/ns/demo/sa/a");
}

TEST(LocalConfig, ExtrasNameWhatIsWrong) {
  const auto err = [](const char* text) {
    try {
      extras_from_json(json::parse(text));
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(err(R"({"policies": [{"name": "p", "namespace": "demo", "action": "Maybe"}]})"),
            "policies[0].action must be Allow or Deny");
  EXPECT_EQ(err(R"({"services": [{"name": "web", "namespace": "demo", "hostname": "h"}]})"),
            "services[0].ports is missing or not an object");
  EXPECT_EQ(err(R"({"policies": [{"namespace": "demo", "action": "Deny"}]})"),
            "policies[0].name is missing or not a string");
  EXPECT_EQ(err(R"([])"), "extras: not an object");
}

}  // namespace
}  // namespace ambient::peers
