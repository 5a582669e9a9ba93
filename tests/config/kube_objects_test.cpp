#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "config/errors.h"
#include "config/kube_objects.h"

namespace ambient::config {
namespace {

TEST(KubeObjects, PodAsTheApiReturnsIt) {
  const auto pod = parse_pod(nlohmann::json::parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-0", "namespace": "demo", "uid": "1b2c", "resourceVersion": "12",
                 "labels": {"app": "web", "istio.io/dataplane-mode": "ambient"},
                 "annotations": {"a": "b"}},
    "spec": {"nodeName": "node-1", "serviceAccountName": "web", "hostNetwork": false,
             "containers": [{"name": "c", "image": "busybox"}]},
    "status": {"phase": "Running", "podIP": "10.1.0.5",
               "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}]}})"));
  EXPECT_EQ(pod.name, "web-0");
  EXPECT_EQ(pod.namespace_, "demo");
  EXPECT_EQ(pod.uid, "1b2c");
  EXPECT_EQ(pod.service_account, "web");
  EXPECT_EQ(pod.node_name, "node-1");
  EXPECT_EQ(pod.phase, "Running");
  EXPECT_FALSE(pod.host_network);
  EXPECT_FALSE(pod.terminating);
  EXPECT_EQ(pod.labels.at("app"), "web");
  EXPECT_EQ(pod.ips, (std::vector<std::string>{"10.1.0.5", "fd00::5"}));
}

TEST(KubeObjects, PodDefaults) {
  const auto pod = parse_pod(nlohmann::json::parse(
      R"({"metadata":{"name":"p","deletionTimestamp":"2026-01-01T00:00:00Z"},"status":{"podIP":"10.0.0.1"}})"));
  EXPECT_EQ(pod.service_account, "default");
  EXPECT_TRUE(pod.terminating);
  EXPECT_EQ(pod.ips, std::vector<std::string>{"10.0.0.1"});
}

TEST(KubeObjects, Namespace) {
  const auto ns = parse_namespace(nlohmann::json::parse(
      R"({"kind":"Namespace","metadata":{"name":"demo","labels":{"istio.io/dataplane-mode":"ambient"}}})"));
  EXPECT_EQ(ns.name, "demo");
  EXPECT_EQ(ns.labels.at("istio.io/dataplane-mode"), "ambient");
}

class BadObjects : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(BadObjects, NameTheField) {
  try {
    const auto j = nlohmann::json::parse(GetParam().first);
    if (std::string(GetParam().second).rfind("Namespace", 0) == 0) {
      parse_namespace(j);
    } else {
      parse_pod(j);
    }
    FAIL() << "accepted " << GetParam().first;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), GetParam().second) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fields, BadObjects,
    ::testing::Values(
        std::pair{"[]", "Pod"},
        std::pair{R"({"kind":"Namespace","metadata":{"name":"x"}})", "Pod.kind"},
        std::pair{R"({"metadata":{}})", "Pod.metadata.name"},
        std::pair{R"({"metadata":"x"})", "Pod.metadata"},
        std::pair{R"({"metadata":{"name":"p","labels":{"a":1}}})", "Pod.metadata.labels.a"},
        std::pair{R"({"metadata":{"name":"p"},"spec":{"hostNetwork":"yes"}})",
                  "Pod.spec.hostNetwork"},
        std::pair{R"({"metadata":{"name":"p"},"status":{"podIPs":[3]}})", "Pod.status.podIPs[0]"},
        std::pair{R"({"kind":"Namespace","metadata":{"labels":{}}})", "Namespace.metadata.name"},
        std::pair{R"({"kind":"Namespace","metadata":{"name":"n","annotations":[]}})",
                  "Namespace.metadata.annotations"}));

}  // namespace
}  // namespace ambient::config
