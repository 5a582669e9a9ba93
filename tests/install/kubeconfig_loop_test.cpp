// The plugin kubeconfig (rendered, then read back by the kubeconfig loader the plugin uses) and
// the watcher's loop detector.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "install/errors.h"
#include "install/plugin_kubeconfig.h"
#include "install/watcher.h"
#include "kube/kubeconfig.h"

namespace ambient::install {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ServiceAccountEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ambient-sa-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "ca.crt")
        << "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    std::ofstream(dir_ / "token") << "eyJhbGciOiJSUzI1NiJ9.payload.sig\n";
    ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  }
  void TearDown() override {
    ::unsetenv("KUBERNETES_SERVICE_HOST");
    ::unsetenv("KUBERNETES_SERVICE_PORT");
    fs::remove_all(dir_);
  }
  fs::path dir_;
};

TEST_F(ServiceAccountEnv, RenderedKubeconfigLoadsWithInlineCaAndToken) {
  const auto creds = read_service_account(dir_);
  EXPECT_EQ(creds.server, "https://10.96.0.1:443");
  EXPECT_EQ(creds.token, "eyJhbGciOiJSUzI1NiJ9.payload.sig");  // trailing newline dropped
  const auto text = render_plugin_kubeconfig(creds);
  EXPECT_TRUE(is_our_kubeconfig(text));
  const auto k = kube::parse_kubeconfig(text, "/nonexistent");
  EXPECT_EQ(k.server, "https://10.96.0.1:443");
  EXPECT_EQ(k.ca_pem, creds.ca_pem);
  EXPECT_EQ(k.token, creds.token);
  EXPECT_TRUE(k.ca_file.empty());
  EXPECT_TRUE(k.token_file.empty());
}

TEST_F(ServiceAccountEnv, Ipv6ServiceHostIsBracketed) {
  ::setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
  const auto k = kube::parse_kubeconfig(render_plugin_kubeconfig(read_service_account(dir_)), "/");
  EXPECT_EQ(k.server, "https://[fd00:10:96::1]:443");
}

TEST_F(ServiceAccountEnv, MissingPiecesAreNamed) {
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  try {
    read_service_account(dir_);
    ADD_FAILURE();
  } catch (const InstallError& e) {
    EXPECT_NE(std::string(e.what()).find("KUBERNETES_SERVICE_HOST"), std::string::npos) << e.what();
  }
  ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  std::ofstream(dir_ / "token", std::ios::trunc) << "\n";
  try {
    read_service_account(dir_);
    ADD_FAILURE();
  } catch (const InstallError& e) {
    EXPECT_NE(std::string(e.what()).find((dir_ / "token").string() + " is empty"),
              std::string::npos)
        << e.what();
  }
  fs::remove(dir_ / "ca.crt");
  try {
    read_service_account(dir_);
    ADD_FAILURE();
  } catch (const InstallError& e) {
    EXPECT_NE(std::string(e.what()).find("ca.crt"), std::string::npos) << e.what();
  }
}

TEST(PluginKubeconfig, OnlyOurHeaderCountsAsOurs) {
  EXPECT_FALSE(is_our_kubeconfig("apiVersion: v1\nkind: Config\n"));
  EXPECT_FALSE(is_our_kubeconfig(""));
  EXPECT_TRUE(is_our_kubeconfig(render_plugin_kubeconfig({"https://h:1", "ca", "t"})));
}

TEST(LoopDetector, WarnsOnceWhenRevertsKeepComing) {
  LoopDetector d({.threshold = 3, .window = std::chrono::seconds(60)});
  const auto t0 = std::chrono::steady_clock::time_point{} + 1000s;
  EXPECT_FALSE(d.record(t0));
  EXPECT_FALSE(d.record(t0 + 1s));
  EXPECT_TRUE(d.record(t0 + 2s));   // third within the window: a loop
  EXPECT_FALSE(d.record(t0 + 3s));  // already warned within this window
  EXPECT_EQ(d.recent(t0 + 3s), 4u);
  EXPECT_FALSE(d.record(t0 + 40s));
  EXPECT_FALSE(d.record(t0 + 50s));
  EXPECT_TRUE(d.record(t0 + 63s));  // still looping a window after the warning: warned again
}

TEST(LoopDetector, SpreadOutRevertsAreNoLoop) {
  LoopDetector d({.threshold = 3, .window = std::chrono::seconds(60)});
  const auto t0 = std::chrono::steady_clock::time_point{} + 1000s;
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(d.record(t0 + std::chrono::seconds(40 * i))) << i;
  EXPECT_EQ(d.recent(t0 + 400s), 1u);
  EXPECT_EQ(d.recent(t0 + 1000s), 0u);
}

}  // namespace
}  // namespace ambient::install
