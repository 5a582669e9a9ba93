#include <gtest/gtest.h>

#include "config/errors.h"
#include "config/plugin_config.h"

namespace ambient::config {
namespace {

TEST(PluginConfig, DefaultsFromAMinimalEntry) {
  const auto c = parse_plugin_config(R"({"cniVersion":"1.0.0","name":"k8s","type":"ambient-cni"})");
  EXPECT_EQ(c.cni_version, "1.0.0");
  EXPECT_EQ(c.policy.exclude_namespaces, std::vector<std::string>{"kube-system"});
  EXPECT_EQ(c.policy.enablement_selectors.size(), 2u);
  EXPECT_TRUE(c.policy.ambient_enabled);
  EXPECT_EQ(c.policy.pod_namespace, "istio-system");
  EXPECT_EQ(c.run_dir, "/var/run/ambient-cni");
  EXPECT_EQ(c.kubeconfig, "/var/run/ambient-cni/kubeconfig");
  EXPECT_EQ(c.api_timeout_ms, 5000);
  EXPECT_EQ(c.failure_policy, FailurePolicy::kClosed);
  EXPECT_TRUE(c.dns_capture);
  EXPECT_TRUE(c.ipv6);
  EXPECT_TRUE(c.prev_result.is_null());
  EXPECT_TRUE(c.runtime_config.is_object());
}

TEST(PluginConfig, IstioGeneratedEntryWorksUnchanged) {
  const auto c = parse_plugin_config(R"({
    "cniVersion": "0.3.1", "name": "istio-cni", "type": "ambient-cni",
    "ambient_enabled": true, "cni_agent_run_dir": "/var/run/istio-cni",
    "dns": {}, "enablement_selectors": [
      {"podSelector": {"matchLabels": {"istio.io/dataplane-mode": "ambient"}}},
      {"namespaceSelector": {"matchLabels": {"istio.io/dataplane-mode": "ambient"}},
       "podSelector": {"matchExpressions": [{"key": "istio.io/dataplane-mode", "operator": "NotIn", "values": ["none"]}]}}],
    "exclude_namespaces": ["kube-system", " istio-system ", ""],
    "kubernetes": {"cni_bin_dir": "/opt/cni/bin", "kubeconfig": "/etc/cni/net.d/ZZZ-istio-cni-kubeconfig"},
    "log_level": "debug", "plugin_log_level": "INFO", "pod_namespace": "istio-system"})");
  EXPECT_EQ(c.policy.exclude_namespaces, (std::vector<std::string>{"kube-system", "istio-system"}));
  EXPECT_EQ(c.run_dir, "/var/run/istio-cni");
  EXPECT_EQ(c.kubeconfig, "/var/run/istio-cni/kubeconfig");
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.policy.enablement_selectors.size(), 2u);
}

TEST(PluginConfig, OurKeys) {
  const auto c = parse_plugin_config(R"({"cniVersion":"1.1.0","kubeconfig":"/etc/k.yaml",
    "api_timeout_ms":250,"failure_policy":"open","dns_capture":false,"ipv6":false,
    "prevResult":{"cniVersion":"1.1.0","ips":[]},"runtimeConfig":{"PortMappings":[]}})");
  EXPECT_EQ(c.kubeconfig, "/etc/k.yaml");
  EXPECT_EQ(c.api_timeout_ms, 250);
  EXPECT_EQ(c.failure_policy, FailurePolicy::kOpen);
  EXPECT_FALSE(c.dns_capture);
  EXPECT_FALSE(c.ipv6);
  EXPECT_TRUE(c.prev_result.is_object());
  ASSERT_NE(find_runtime_config(c.runtime_config, "portMappings"), nullptr);
  EXPECT_EQ(find_runtime_config(c.runtime_config, "bandwidth"), nullptr);
}

TEST(PluginConfig, UnknownKeysAreIgnored) {
  EXPECT_NO_THROW(
      parse_plugin_config(R"({"cniVersion":"1.0.0","capabilities":{"x":true},"zzz":[1]})"));
}

TEST(PluginConfig, NotJsonIsADecodeError) {
  for (const char* text : {"", "{", "[]", "\"x\"", "{\"cniVersion\":\"1.0.0\",}"}) {
    try {
      parse_plugin_config(text);
      FAIL() << "accepted: " << text;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.kind(), ConfigError::Kind::kDecode) << text;
    }
  }
}

struct BadKey {
  const char* json;
  const char* key;
};

class BadKeys : public ::testing::TestWithParam<BadKey> {};

TEST_P(BadKeys, NameTheKey) {
  try {
    parse_plugin_config(GetParam().json);
    FAIL() << "accepted " << GetParam().json;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.kind(), ConfigError::Kind::kInvalid);
    EXPECT_EQ(e.key(), GetParam().key) << e.what();
    EXPECT_NE(std::string(e.what()).find(GetParam().key), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    EachKey, BadKeys,
    ::testing::Values(
        BadKey{R"({})", "cniVersion"}, BadKey{R"({"cniVersion":1})", "cniVersion"},
        BadKey{R"({"cniVersion":"1.0.0","name":7})", "name"},
        BadKey{R"({"cniVersion":"1.0.0","exclude_namespaces":"kube-system"})",
               "exclude_namespaces"},
        BadKey{R"({"cniVersion":"1.0.0","exclude_namespaces":["a",3]})", "exclude_namespaces[1]"},
        BadKey{R"({"cniVersion":"1.0.0","enablement_selectors":{}})", "enablement_selectors"},
        BadKey{R"({"cniVersion":"1.0.0","enablement_selectors":[1]})", "enablement_selectors[0]"},
        BadKey{
            R"({"cniVersion":"1.0.0","enablement_selectors":[{"podSelector":{"matchLabels":{"a":false}}}]})",
            "enablement_selectors[0].podSelector.matchLabels.a"},
        BadKey{R"({"cniVersion":"1.0.0","cni_agent_run_dir":"relative"})", "cni_agent_run_dir"},
        BadKey{R"({"cniVersion":"1.0.0","cni_agent_run_dir":""})", "cni_agent_run_dir"},
        BadKey{R"({"cniVersion":"1.0.0","plugin_log_level":"loud"})", "plugin_log_level"},
        BadKey{R"({"cniVersion":"1.0.0","ambient_enabled":"true"})", "ambient_enabled"},
        BadKey{R"({"cniVersion":"1.0.0","pod_namespace":[]})", "pod_namespace"},
        BadKey{R"({"cniVersion":"1.0.0","kubeconfig":"k.yaml"})", "kubeconfig"},
        BadKey{R"({"cniVersion":"1.0.0","api_timeout_ms":"5s"})", "api_timeout_ms"},
        BadKey{R"({"cniVersion":"1.0.0","api_timeout_ms":0})", "api_timeout_ms"},
        BadKey{R"({"cniVersion":"1.0.0","api_timeout_ms":2.5})", "api_timeout_ms"},
        BadKey{R"({"cniVersion":"1.0.0","failure_policy":"Closed"})", "failure_policy"},
        BadKey{R"({"cniVersion":"1.0.0","dns_capture":1})", "dns_capture"},
        BadKey{R"({"cniVersion":"1.0.0","ipv6":null})", "ipv6"},
        BadKey{R"({"cniVersion":"1.0.0","prevResult":[]})", "prevResult"},
        BadKey{R"({"cniVersion":"1.0.0","runtimeConfig":"x"})", "runtimeConfig"}));

}  // namespace
}  // namespace ambient::config
