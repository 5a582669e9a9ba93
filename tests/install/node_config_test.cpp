// The node config renders the plugin's conflist entry; the plugin's own parser must read back
// exactly what the node config says.
#include <gtest/gtest.h>

#include "config/errors.h"
#include "config/node_config.h"
#include "config/plugin_config.h"

namespace ambient::config {
namespace {

using nlohmann::json;

PluginConfig round_trip(const NodeConfig& node) {
  auto entry = render_plugin_entry(node);
  entry["cniVersion"] = "1.0.0";
  return parse_plugin_config(entry.dump());
}

TEST(NodeConfig, DefaultsRoundTripToThePluginsDefaults) {
  const auto c = round_trip(NodeConfig{});
  const auto defaults = parse_plugin_config(R"({"cniVersion":"1.0.0"})");
  EXPECT_EQ(c.type, "ambient-cni");
  EXPECT_EQ(c.policy.ambient_enabled, defaults.policy.ambient_enabled);
  EXPECT_EQ(c.policy.exclude_namespaces, defaults.policy.exclude_namespaces);
  EXPECT_EQ(c.policy.enablement_selectors.size(), defaults.policy.enablement_selectors.size());
  EXPECT_EQ(c.policy.enablement_selectors[0].reason, "pod label ambient");
  EXPECT_EQ(c.policy.pod_namespace, defaults.policy.pod_namespace);
  EXPECT_EQ(c.policy.daemonset_name, defaults.policy.daemonset_name);
  EXPECT_EQ(c.policy.system_namespace, defaults.policy.system_namespace);
  EXPECT_EQ(c.run_dir, defaults.run_dir);
  EXPECT_EQ(c.kubeconfig, defaults.kubeconfig);
  EXPECT_EQ(c.log_level, defaults.log_level);
  EXPECT_EQ(c.api_timeout_ms, defaults.api_timeout_ms);
  EXPECT_EQ(c.agent_timeout_ms, defaults.agent_timeout_ms);
  EXPECT_EQ(c.failure_policy, defaults.failure_policy);
  EXPECT_EQ(c.dns_capture, defaults.dns_capture);
  EXPECT_EQ(c.ipv6, defaults.ipv6);
}

TEST(NodeConfig, EveryValueRoundTrips) {
  NodeConfig n;
  n.ambient_enabled = false;
  n.exclude_namespaces = {"kube-system", " legacy ", "", "legacy"};
  n.enablement_selectors = json::parse(
      R"([{"podSelector":{"matchLabels":{"mesh":"yes"}},"namespaceSelector":{"matchExpressions":[{"key":"team","operator":"In","values":["a","b"]}]}}])");
  n.pod_namespace = "mesh-system";
  n.daemonset_name = "cni-node";
  n.system_namespace = "mesh-system";
  n.run_dir = "/run/ambient";
  n.plugin_log_level = "DEBUG";
  n.kubeconfig = "/etc/ambient/kubeconfig";
  n.api_timeout_ms = 1234;
  n.agent_timeout_ms = 4321;
  n.failure_policy = FailurePolicy::kOpen;
  n.dns_capture = false;
  n.ipv6 = false;
  const auto c = round_trip(n);
  EXPECT_FALSE(c.policy.ambient_enabled);
  EXPECT_EQ(c.policy.exclude_namespaces, (std::vector<std::string>{"kube-system", "legacy"}));
  ASSERT_EQ(c.policy.enablement_selectors.size(), 1u);
  EXPECT_TRUE(c.policy.enablement_selectors[0].pod.matches({{"mesh", "yes"}}));
  EXPECT_FALSE(c.policy.enablement_selectors[0].pod.matches({{"mesh", "no"}}));
  EXPECT_TRUE(c.policy.enablement_selectors[0].namespace_.matches({{"team", "b"}}));
  EXPECT_FALSE(c.policy.enablement_selectors[0].namespace_.matches({{"team", "c"}}));
  EXPECT_EQ(c.policy.pod_namespace, "mesh-system");
  EXPECT_EQ(c.policy.daemonset_name, "cni-node");
  EXPECT_EQ(c.policy.system_namespace, "mesh-system");
  EXPECT_EQ(c.run_dir, "/run/ambient");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.kubeconfig, "/etc/ambient/kubeconfig");
  EXPECT_EQ(c.api_timeout_ms, 1234);
  EXPECT_EQ(c.agent_timeout_ms, 4321);
  EXPECT_EQ(c.failure_policy, FailurePolicy::kOpen);
  EXPECT_FALSE(c.dns_capture);
  EXPECT_FALSE(c.ipv6);
}

TEST(NodeConfig, UsesIstiosKeyNamesWhereIstioHasThem) {
  NodeConfig n;
  n.enablement_selectors = json::parse(R"([{"podSelector":{}}])");
  const auto e = render_plugin_entry(n);
  for (const char* key : {"exclude_namespaces", "enablement_selectors", "cni_agent_run_dir",
                          "plugin_log_level", "ambient_enabled", "pod_namespace"}) {
    EXPECT_TRUE(e.contains(key)) << key;
  }
  EXPECT_EQ(e["type"], "ambient-cni");
  EXPECT_EQ(e.begin().key(), "type");      // first, for people reading the file
  EXPECT_FALSE(e.contains("cniVersion"));  // the conflist's, not the entry's
  EXPECT_FALSE(e.contains("name"));
}

TEST(NodeConfig, DefaultSelectorsAreNotRendered) {
  EXPECT_FALSE(render_plugin_entry(NodeConfig{}).contains("enablement_selectors"));
}

TEST(NodeConfig, KubeconfigDefaultsIntoTheRunDir) {
  NodeConfig n;
  n.run_dir = "/run/x";
  EXPECT_EQ(n.plugin_kubeconfig_path(), "/run/x/kubeconfig");
  EXPECT_EQ(render_plugin_entry(n)["kubeconfig"], "/run/x/kubeconfig");
}

void expect_invalid(const NodeConfig& n, const std::string& key) {
  try {
    render_plugin_entry(n);
    ADD_FAILURE() << "accepted an invalid " << key;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.kind(), ConfigError::Kind::kInvalid);
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
}

TEST(NodeConfig, InvalidValuesAreRejectedNamingTheKey) {
  NodeConfig n;
  n.run_dir = "relative/dir";
  expect_invalid(n, "cni_agent_run_dir");
  n = {};
  n.plugin_log_level = "loud";
  expect_invalid(n, "plugin_log_level");
  n = {};
  n.api_timeout_ms = 0;
  expect_invalid(n, "api_timeout_ms");
  n = {};
  n.agent_timeout_ms = 600001;
  expect_invalid(n, "agent_timeout_ms");
  n = {};
  n.kubeconfig = "kubeconfig";
  expect_invalid(n, "kubeconfig");
  n = {};
  n.pod_namespace = "";
  expect_invalid(n, "pod_namespace");
  n = {};
  n.enablement_selectors =
      json::parse(R"([{"podSelector":{"matchExpressions":[{"key":"a","operator":"Near"}]}}])");
  expect_invalid(n, "enablement_selectors[0]");
  EXPECT_THROW(validate_node_config(n), ConfigError);
  EXPECT_NO_THROW(validate_node_config(NodeConfig{}));
}

TEST(NodeConfig, NamespaceListFromText) {
  EXPECT_EQ(split_namespace_list("kube-system, istio-system,,  x ,x"),
            (std::vector<std::string>{"kube-system", "istio-system", "x"}));
  EXPECT_TRUE(split_namespace_list("").empty());
  EXPECT_TRUE(split_namespace_list(" , ").empty());
  EXPECT_EQ(split_namespace_list("one"), std::vector<std::string>{"one"});
}

TEST(NodeConfig, SelectorsFromText) {
  EXPECT_TRUE(parse_enablement_selectors_text("").is_null());
  EXPECT_TRUE(parse_enablement_selectors_text("  null ").is_null());
  EXPECT_EQ(parse_enablement_selectors_text(R"([{"podSelector":{}}])").size(), 1u);
  EXPECT_THROW(parse_enablement_selectors_text("[{"), ConfigError);
  EXPECT_THROW(parse_enablement_selectors_text(R"({"podSelector":{}})"), ConfigError);
  try {
    parse_enablement_selectors_text(R"([{"podSelector":{"matchLabels":{"a":1}}}])");
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("enablement_selectors[0].podSelector"), std::string::npos)
        << e.what();
  }
}

TEST(NodeConfig, FailurePolicyText) {
  EXPECT_EQ(parse_failure_policy("closed"), FailurePolicy::kClosed);
  EXPECT_EQ(parse_failure_policy("open"), FailurePolicy::kOpen);
  EXPECT_THROW(parse_failure_policy("Open"), ConfigError);
  EXPECT_EQ(failure_policy_name(FailurePolicy::kOpen), "open");
  EXPECT_EQ(failure_policy_name(FailurePolicy::kClosed), "closed");
}

}  // namespace
}  // namespace ambient::config
