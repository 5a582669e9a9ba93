// The decision matrix of ambient-contract.md §2, one row per rule and consequence.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "config/decision.h"
#include "config/plugin_config.h"

namespace ambient::config {
namespace {

struct Row {
  const char* name;
  PodInfo pod;
  NamespaceInfo ns;
  bool enrol;
  const char* reason;
  std::size_t warnings = 0;
};

PodInfo pod(std::string ns, std::string name, Labels labels = {}, Labels annotations = {},
            bool host_network = false) {
  PodInfo p;
  p.namespace_ = std::move(ns);
  p.name = std::move(name);
  p.labels = std::move(labels);
  p.annotations = std::move(annotations);
  p.host_network = host_network;
  return p;
}

NamespaceInfo ns(std::string name, Labels labels = {}) {
  return {std::move(name), std::move(labels), {}};
}

const Labels kAmbient{{"istio.io/dataplane-mode", "ambient"}};
const Labels kNone{{"istio.io/dataplane-mode", "none"}};

class DecisionMatrix : public ::testing::TestWithParam<Row> {};

TEST_P(DecisionMatrix, FollowsPrecedence) {
  const auto& row = GetParam();
  EnrolmentPolicy policy;
  const auto d = decide(policy, row.pod, row.ns);
  EXPECT_EQ(d.enrol, row.enrol);
  EXPECT_EQ(d.reason, row.reason);
  EXPECT_EQ(d.warnings.size(), row.warnings);
}

INSTANTIATE_TEST_SUITE_P(
    Contract, DecisionMatrix,
    ::testing::Values(
        Row{"no_namespace", pod("", "web"), ns(""), false,
            "not a Kubernetes pod (CNI_ARGS has no K8S_POD_NAMESPACE/K8S_POD_NAME)"},
        Row{"excluded_namespace_even_if_labelled", pod("kube-system", "dns", kAmbient),
            ns("kube-system", kAmbient), false, "excluded namespace kube-system"},
        Row{"own_agent_pod", pod("istio-system", "ambient-cni-node-x7k2p", kAmbient),
            ns("istio-system", kAmbient), false, "ambient-cni node agent pod"},
        Row{"agent_prefix_needs_dash", pod("istio-system", "ambient-cni-nodex", kAmbient),
            ns("istio-system"), true, "pod label ambient"},
        Row{"host_network", pod("demo", "h", kAmbient, {}, true), ns("demo", kAmbient), false,
            "host network pod"},
        Row{"sidecar_wins", pod("demo", "s", {}, {{"sidecar.istio.io/status", "{}"}}),
            ns("demo", kAmbient), false, "sidecar pod (annotation sidecar.istio.io/status)"},
        Row{"ztunnel_pod", pod("istio-system", "ztunnel-abc", {{"app", "ztunnel"}}),
            ns("istio-system", kAmbient), false, "ztunnel pod"},
        Row{"app_ztunnel_elsewhere_is_normal", pod("demo", "z", {{"app", "ztunnel"}}),
            ns("demo", kAmbient), true, "namespace label ambient"},
        Row{"pod_none_in_ambient_ns", pod("demo", "w", kNone), ns("demo", kAmbient), false,
            "pod label none"},
        Row{"pod_ambient_in_plain_ns", pod("legacy", "w", kAmbient), ns("legacy"), true,
            "pod label ambient"},
        Row{"pod_ambient_in_none_ns", pod("legacy", "w", kAmbient), ns("legacy", kNone), true,
            "pod label ambient"},
        Row{"namespace_ambient", pod("demo", "w"), ns("demo", kAmbient), true,
            "namespace label ambient"},
        Row{"nothing_labelled", pod("legacy", "w"), ns("legacy"), false,
            "no enablement selector matched (pod and namespace not labelled ambient)"},
        Row{"namespace_none", pod("legacy", "w"), ns("legacy", kNone), false,
            "namespace label none"},
        Row{"unknown_pod_value_capitalised_ns_decides",
            pod("demo", "w", {{"istio.io/dataplane-mode", "Ambient"}}), ns("demo", kAmbient), true,
            "namespace label ambient", 1},
        Row{"unknown_pod_value_plain_ns", pod("legacy", "w", {{"istio.io/dataplane-mode", "foo"}}),
            ns("legacy"), false,
            "no enablement selector matched (pod and namespace not labelled ambient)", 1},
        Row{"unknown_namespace_value", pod("demo", "w"),
            ns("demo", {{"istio.io/dataplane-mode", "AMBIENT"}}), false,
            "no enablement selector matched (pod and namespace not labelled ambient)", 1}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Decision, FromNamesNeedsNoMetadataForEarlyRules) {
  EnrolmentPolicy policy;
  EXPECT_TRUE(decide_from_names(policy, "kube-system", "x").has_value());
  EXPECT_TRUE(decide_from_names(policy, "", "x").has_value());
  EXPECT_TRUE(decide_from_names(policy, "demo", "").has_value());
  EXPECT_TRUE(decide_from_names(policy, "istio-system", "ambient-cni-node-abc").has_value());
  EXPECT_FALSE(decide_from_names(policy, "demo", "web").has_value());
  EXPECT_FALSE(decide_from_names(policy, "istio-system", "ztunnel-abc").has_value());
}

TEST(Decision, CustomExclusionsAndAgentIdentity) {
  EnrolmentPolicy policy;
  policy.exclude_namespaces = {"monitoring"};
  policy.pod_namespace = "mesh";
  policy.daemonset_name = "cni";
  EXPECT_EQ(decide(policy, pod("monitoring", "p", kAmbient), ns("monitoring")).reason,
            "excluded namespace monitoring");
  EXPECT_TRUE(decide(policy, pod("kube-system", "p", kAmbient), ns("kube-system")).enrol);
  EXPECT_EQ(decide(policy, pod("mesh", "cni-abc", kAmbient), ns("mesh")).reason,
            "ambient-cni node agent pod");
}

TEST(Decision, AmbientDisabledLeavesEverythingUntouched) {
  EnrolmentPolicy policy;
  policy.ambient_enabled = false;
  const auto d = decide(policy, pod("demo", "w", kAmbient), ns("demo", kAmbient));
  EXPECT_FALSE(d.enrol);
  EXPECT_EQ(d.reason, "ambient disabled in the plugin configuration");
}

TEST(Decision, CustomSelectorsFromConfig) {
  const auto cfg = parse_plugin_config(R"({
    "cniVersion": "1.0.0",
    "enablement_selectors": [
      {"podSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]},
       "namespaceSelector": {"matchLabels": {"mesh": "yes"}}}
    ]})");
  const auto yes = decide(cfg.policy, pod("x", "p", {{"team", "b"}}), ns("x", {{"mesh", "yes"}}));
  EXPECT_TRUE(yes.enrol);
  EXPECT_EQ(yes.reason, "enablement selector 0 (pod: team in (a,b); namespace: mesh=yes)");
  EXPECT_FALSE(
      decide(cfg.policy, pod("x", "p", {{"team", "c"}}), ns("x", {{"mesh", "yes"}})).enrol);
  EXPECT_FALSE(decide(cfg.policy, pod("x", "p", {{"team", "a"}}), ns("x")).enrol);
  // The default ambient label no longer counts once selectors are replaced.
  EXPECT_FALSE(decide(cfg.policy, pod("x", "p", kAmbient), ns("x", kAmbient)).enrol);
}

TEST(Decision, EmptySelectorListEnrolsNothing) {
  const auto cfg = parse_plugin_config(R"({"cniVersion":"1.0.0","enablement_selectors":[]})");
  EXPECT_FALSE(decide(cfg.policy, pod("demo", "p", kAmbient), ns("demo", kAmbient)).enrol);
}

TEST(Decision, EmptySelectorsMatchEverything) {
  const auto cfg = parse_plugin_config(
      R"({"cniVersion":"1.0.0","enablement_selectors":[{"podSelector":{},"namespaceSelector":{}}]})");
  EXPECT_TRUE(decide(cfg.policy, pod("legacy", "p"), ns("legacy")).enrol);
  // Precedence still holds above the selectors.
  EXPECT_FALSE(decide(cfg.policy, pod("kube-system", "p"), ns("kube-system")).enrol);
  EXPECT_FALSE(decide(cfg.policy, pod("legacy", "p", {}, {}, true), ns("legacy")).enrol);
}

}  // namespace
}  // namespace ambient::config
