#include <gtest/gtest.h>

#include "plugin/cni_args.h"
#include "plugin/cni_error.h"

namespace ambient::plugin {
namespace {

TEST(CniArgs, ContainerdStyleInAnyOrder) {
  for (const char* text : {"IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web;K8S_POD_INFRA_"
                           "CONTAINER_ID=abc;K8S_POD_UID=u1",
                           "K8S_POD_UID=u1;K8S_POD_NAME=web;IgnoreUnknown=1;K8S_POD_INFRA_"
                           "CONTAINER_ID=abc;K8S_POD_NAMESPACE=demo",
                           "K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_NAMESPACE=demo;K8S_POD_UID=u1;"
                           "K8S_POD_NAME=web;IgnoreUnknown=1"}) {
    const auto a = parse_cni_args(text);
    EXPECT_EQ(a.pod_namespace, "demo") << text;
    EXPECT_EQ(a.pod_name, "web");
    EXPECT_EQ(a.pod_uid, "u1");
    EXPECT_EQ(a.infra_container_id, "abc");
    EXPECT_TRUE(a.ignore_unknown);
  }
}

TEST(CniArgs, PodmanDuplicatesLastWins) {
  const auto a =
      parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=c1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web");
  EXPECT_EQ(a.pod_name, "web");
}

TEST(CniArgs, EmptyAndEmptySegments) {
  EXPECT_TRUE(parse_cni_args("").pod_name.empty());
  EXPECT_EQ(parse_cni_args("K8S_POD_NAME=a;;K8S_POD_NAMESPACE=b;").pod_namespace, "b");
}

TEST(CniArgs, UnknownKeysNeedIgnoreUnknown) {
  EXPECT_THROW(parse_cni_args("FOO=bar;K8S_POD_NAME=a"), CniError);
  EXPECT_NO_THROW(parse_cni_args("FOO=bar;IgnoreUnknown=true"));
  EXPECT_NO_THROW(parse_cni_args("FOO=bar;IgnoreUnknown=TRUE"));
  EXPECT_THROW(parse_cni_args("FOO=bar;IgnoreUnknown=0"), CniError);
  EXPECT_THROW(parse_cni_args("IgnoreUnknown=maybe"), CniError);
  // Keys are case-sensitive: k8s_pod_name is unknown.
  EXPECT_THROW(parse_cni_args("k8s_pod_name=a"), CniError);
}

TEST(CniArgs, MalformedPairsAreCode4NamingCniArgs) {
  for (const char* text : {"K8S_POD_NAME", "a=b=c", "=x", "K8S_POD_NAME=a;junk"}) {
    try {
      parse_cni_args(text);
      FAIL() << text;
    } catch (const CniError& e) {
      EXPECT_EQ(e.code(), 4);
      EXPECT_NE(std::string(e.what()).find("CNI_ARGS"), std::string::npos);
    }
  }
}

TEST(CniArgs, EmptyValuesAreAllowed) {
  const auto a = parse_cni_args("K8S_POD_NAMESPACE=;K8S_POD_NAME=web");
  EXPECT_EQ(a.pod_namespace, "");
}

}  // namespace
}  // namespace ambient::plugin
