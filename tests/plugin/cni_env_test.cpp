#include <gtest/gtest.h>

#include "plugin/cni_env.h"
#include "plugin/cni_error.h"

namespace ambient::plugin {
namespace {

CniEnv full(const char* command) {
  CniEnv e;
  e.command = command;
  e.command_set = true;
  e.container_id = "0123abc";
  e.netns = "/var/run/netns/x";
  e.ifname = "eth0";
  e.path = "/opt/cni/bin";
  return e;
}

std::string error_of(const CniEnv& env) {
  try {
    validate_env(env);
  } catch (const CniError& e) {
    EXPECT_EQ(e.code(), 4);
    return e.what();
  }
  return "";
}

TEST(CniEnv, Verbs) {
  EXPECT_EQ(validate_env(full("ADD")), Verb::kAdd);
  EXPECT_EQ(validate_env(full("DEL")), Verb::kDel);
  EXPECT_EQ(validate_env(full("CHECK")), Verb::kCheck);
  EXPECT_EQ(validate_env(full("STATUS")), Verb::kStatus);
  EXPECT_EQ(validate_env(full("GC")), Verb::kGc);
  EXPECT_NE(error_of(full("add")).find("CNI_COMMAND"), std::string::npos);
}

TEST(CniEnv, VersionValidatesNothing) {
  CniEnv e;
  e.command = "VERSION";
  e.container_id = "dummy!";
  e.ifname = "dummy/";
  EXPECT_EQ(validate_env(e), Verb::kVersion);
}

TEST(CniEnv, NamesTheMissingVariable) {
  auto e = full("ADD");
  e.container_id.clear();
  EXPECT_NE(error_of(e).find("CNI_CONTAINERID"), std::string::npos);
  e = full("ADD");
  e.netns.clear();
  EXPECT_NE(error_of(e).find("CNI_NETNS"), std::string::npos);
  e = full("CHECK");
  e.ifname.clear();
  EXPECT_NE(error_of(e).find("CNI_IFNAME"), std::string::npos);
  e = full("GC");
  e.path.clear();
  EXPECT_NE(error_of(e).find("CNI_PATH"), std::string::npos);
}

TEST(CniEnv, DelWithoutNetnsIsFine) {
  auto e = full("DEL");
  e.netns.clear();
  EXPECT_EQ(validate_env(e), Verb::kDel);
}

TEST(CniEnv, MalformedIdsAndNames) {
  auto e = full("ADD");
  e.container_id = "-abc";
  EXPECT_NE(error_of(e).find("CNI_CONTAINERID"), std::string::npos);
  e = full("ADD");
  e.container_id = "ab c";
  EXPECT_NE(error_of(e).find("CNI_CONTAINERID"), std::string::npos);
  for (const char* name : {"0123456789abcdef", "e/th0", "e:0", "e 0", ".", ".."}) {
    e = full("ADD");
    e.ifname = name;
    EXPECT_NE(error_of(e).find("CNI_IFNAME"), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace ambient::plugin
