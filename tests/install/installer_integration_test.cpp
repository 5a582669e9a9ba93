// The installer and its watcher on real files in temp dirs (never the machine's /etc/cni or
// /opt/cni/bin): install, the primary CNI rewriting its file, token rotation, uninstall byte for
// byte, stop without uninstall.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "install/errors.h"
#include "install/files.h"
#include "install/installer.h"
#include "install/watcher.h"
#include "kube/kubeconfig.h"
#include "tests/install/install_fixture.h"
#include "tests/support/process.h"

namespace ambient::install {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using testing::NodeDirs;
using testing::read_file;
using testing::snapshot;
using testing::spit;
using testing::wait_for;

const std::string kCalico = R"({
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {"type": "calico", "mtu": 0, "ipam": {"type": "calico-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
)";

std::string calico_with_mtu(int mtu) {
  auto text = kCalico;
  text.replace(text.find("\"mtu\": 0"), 8, "\"mtu\": " + std::to_string(mtu));
  return text;
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mode & 07777;
}

std::vector<std::string> types(const std::string& text) {
  std::vector<std::string> out;
  const auto doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.contains("plugins")) return out;
  for (const auto& p : doc["plugins"]) out.push_back(p.value("type", ""));
  return out;
}

bool ours_last(const fs::path& file) {
  const auto t = types(read_file(file));
  return !t.empty() && t.back() == "ambient-cni" &&
         std::count(t.begin(), t.end(), "ambient-cni") == 1;
}

class InstallerIntegration : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    log_ = std::make_shared<spdlog::logger>(
        "install", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text_));
    log_->set_level(spdlog::level::debug);
  }
  void TearDown() override {
    ::unsetenv("KUBERNETES_SERVICE_HOST");
    ::unsetenv("KUBERNETES_SERVICE_PORT");
  }

  InstallerOptions options(Mode mode = Mode::kChained) const {
    InstallerOptions o;
    o.cni_bin_dir = dirs_.bin;
    o.cni_conf_dir = dirs_.conf;
    o.plugin_source = AMBIENT_PLUGIN_BIN;
    o.service_account_dir = dirs_.sa;
    o.mode = mode;
    o.node.run_dir = dirs_.run.string();
    return o;
  }
  std::string log() const { return log_text_.str(); }

  NodeDirs dirs_{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  std::ostringstream log_text_;
  std::shared_ptr<spdlog::logger> log_;
};

TEST_F(InstallerIntegration, InstallPutsARunnablePluginLastInTheChain) {
  spit(dirs_.conf / "10-calico.conflist", kCalico);
  Installer installer(options(), log_);
  const auto r = installer.reconcile();
  ASSERT_TRUE(r.installed) << log();
  EXPECT_EQ(r.primary, "10-calico.conflist");
  EXPECT_TRUE(r.binary_written);
  EXPECT_TRUE(r.kubeconfig_written);

  // The plugin runs from the bin dir: with no CNI_COMMAND it prints its about text.
  const auto plugin = dirs_.bin / "ambient-cni";
  EXPECT_EQ(mode_of(plugin), 0755u);
  const auto x = testing::run({plugin.string()}, {"PATH=/usr/bin:/bin"}, "", 10s);
  EXPECT_EQ(x.exit_code, 0) << x.err;
  EXPECT_TRUE(x.err.starts_with("ambient-cni ")) << x.err;
  EXPECT_NE(x.err.find("CNI protocol versions supported"), std::string::npos) << x.err;

  EXPECT_TRUE(ours_last(dirs_.conf / "10-calico.conflist"));
  EXPECT_EQ(mode_of(dirs_.conf / "10-calico.conflist"), 0644u);
  const auto chained = json::parse(read_file(dirs_.conf / "10-calico.conflist"));
  EXPECT_EQ(chained["plugins"].back(), json::parse(installer.entry().dump()));

  const auto kubeconfig = dirs_.run / "kubeconfig";
  EXPECT_EQ(mode_of(kubeconfig), 0600u);
  const auto k = kube::load_kubeconfig(kubeconfig);
  EXPECT_EQ(k.server, "https://10.96.0.1:443");
  EXPECT_EQ(k.token, "token-1");
  EXPECT_TRUE(installer.check_in_place());
}

TEST_F(InstallerIntegration, SecondPassWritesNothingAndStaleTempsAreSwept) {
  spit(dirs_.conf / "10-calico.conflist", kCalico);
  spit(dirs_.bin / (std::string(kTempPrefix) + "ambient-cni.77.0"), "half a binary");
  spit(dirs_.conf / (std::string(kTempPrefix) + "10-calico.conflist.77.1"), "{");
  Installer installer(options(), log_);
  ASSERT_TRUE(installer.reconcile().installed);
  EXPECT_FALSE(fs::exists(dirs_.bin / (std::string(kTempPrefix) + "ambient-cni.77.0")));
  EXPECT_FALSE(fs::exists(dirs_.conf / (std::string(kTempPrefix) + "10-calico.conflist.77.1")));
  const auto before = snapshot(dirs_.root);
  const auto mtime = fs::last_write_time(dirs_.bin / "ambient-cni");
  const auto again = installer.reconcile();
  EXPECT_FALSE(again.binary_written);  // identical: skipped
  EXPECT_FALSE(again.kubeconfig_written);
  EXPECT_TRUE(again.conf_ops.empty());
  EXPECT_EQ(snapshot(dirs_.root), before);
  EXPECT_EQ(fs::last_write_time(dirs_.bin / "ambient-cni"), mtime);
  // Same bytes, loosened mode: put back to 0600.
  ::chmod((dirs_.run / "kubeconfig").c_str(), 0644);
  EXPECT_TRUE(installer.reconcile().kubeconfig_written);
  EXPECT_EQ(mode_of(dirs_.run / "kubeconfig"), 0600u);
  EXPECT_EQ(snapshot(dirs_.root), before);
}

// Passes do not re-read an unchanged binary (they remember what they verified), yet a rewrite
// that keeps the size and even the mtime is still found: any write changes the ctime.
TEST_F(InstallerIntegration, ABinaryRewrittenInPlaceKeepingSizeAndMtimeIsPutBack) {
  spit(dirs_.conf / "10-calico.conflist", kCalico);
  Installer installer(options(), log_);
  ASSERT_TRUE(installer.reconcile().installed);
  ASSERT_TRUE(installer.check_in_place());
  const auto plugin = dirs_.bin / "ambient-cni";
  const std::string original = read_file(plugin);
  ASSERT_FALSE(original.empty());
  struct stat before {};
  ASSERT_EQ(::stat(plugin.c_str(), &before), 0);
  std::this_thread::sleep_for(20ms);  // a later ctime even on coarse clocks
  {
    std::fstream f(plugin, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(original.size() / 2));
    f.put(static_cast<char>(original[original.size() / 2] ^ 0x5a));
  }
  const struct timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, plugin.c_str(), times, 0), 0);
  struct stat after {};
  ASSERT_EQ(::stat(plugin.c_str(), &after), 0);
  ASSERT_EQ(after.st_size, before.st_size);
  EXPECT_FALSE(installer.check_in_place());
  EXPECT_TRUE(installer.reconcile().binary_written);
  EXPECT_EQ(read_file(plugin), original);
  EXPECT_TRUE(installer.check_in_place());
}

TEST_F(InstallerIntegration, BadInputIsNamedAndNothingIsWritten) {
  spit(dirs_.conf / "10-calico.conflist", kCalico);
  const auto before = snapshot(dirs_.root);
  auto o = options();
  o.plugin_source = dirs_.root / "no-such-plugin";
  spit(dirs_.bin / (std::string(kTempPrefix) + "ambient-cni.9.9"), "stale");
  Installer missing_source(o, log_);
  try {
    missing_source.reconcile();
    ADD_FAILURE() << "installed without a source binary";
  } catch (const InstallError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-plugin"), std::string::npos) << e.what();
  }
  EXPECT_EQ(snapshot(dirs_.root), [&] {
    auto s = before;
    s[fs::relative(dirs_.bin, dirs_.root).string() + "/" + std::string(kTempPrefix) +
      "ambient-cni.9.9"] = "644 file stale";
    return s;
  }());
  fs::remove(dirs_.bin / (std::string(kTempPrefix) + "ambient-cni.9.9"));
  o = options();
  o.node.plugin_log_level = "chatty";
  EXPECT_THROW(Installer(o, log_), InstallError);
  o = options();
  o.owned_name = "../escape.conflist";
  EXPECT_THROW(Installer(o, log_), InstallError);
  // No service account: the pass fails naming it, before any file is written.
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  Installer installer(options(), log_);
  try {
    installer.reconcile();
    ADD_FAILURE() << "installed without a service account";
  } catch (const InstallError& e) {
    EXPECT_NE(std::string(e.what()).find("KUBERNETES_SERVICE_HOST"), std::string::npos) << e.what();
  }
  EXPECT_EQ(snapshot(dirs_.root), before);
}

TEST_F(InstallerIntegration, UninstallLeavesTheDirectoriesByteIdentical) {
  spit(dirs_.conf / "10-calico.conflist", kCalico);
  spit(dirs_.conf / "99-loopback.conf", R"({"cniVersion":"1.0.0","name":"lo","type":"loopback"})");
  spit(dirs_.bin / "bridge", "#!/bin/sh\n");
  ::chmod((dirs_.bin / "bridge").c_str(), 0755);
  const auto before = snapshot(dirs_.root);
  Installer installer(options(), log_);
  ASSERT_TRUE(installer.reconcile().installed);
  ASSERT_NE(snapshot(dirs_.root), before);
  installer.uninstall();
  EXPECT_EQ(snapshot(dirs_.root), before);
  EXPECT_FALSE(installer.installed());
}

TEST_F(InstallerIntegration, UninstallOfAWrappedConfRestoresIt) {
  const std::string conf =
      "{\n\t\"cniVersion\": \"1.0.0\",\n\t\"name\": \"mynet\",\n\t\"type\": \"bridge\"\n}\n";
  spit(dirs_.conf / "10-mynet.conf", conf);
  ::chmod((dirs_.conf / "10-mynet.conf").c_str(), 0644);
  const auto before = snapshot(dirs_.root);
  Installer installer(options(), log_);
  ASSERT_TRUE(installer.reconcile().installed);
  EXPECT_FALSE(fs::exists(dirs_.conf / "10-mynet.conf"));
  EXPECT_TRUE(ours_last(dirs_.conf / "10-mynet.conflist"));
  installer.uninstall();
  EXPECT_EQ(snapshot(dirs_.root), before);
}

TEST_F(InstallerIntegration, UninstallLeavesAKubeconfigThatIsNotOurs) {
  spit(dirs_.conf / "10-calico.conflist", kCalico);
  auto o = options();
  o.node.kubeconfig = (dirs_.run / "operator-kubeconfig").string();
  Installer installer(o, log_);
  ASSERT_TRUE(installer.reconcile().installed);
  spit(dirs_.run / "operator-kubeconfig", "apiVersion: v1\nkind: Config\n");  // replaced by hand
  installer.uninstall();
  EXPECT_EQ(read_file(dirs_.run / "operator-kubeconfig"), "apiVersion: v1\nkind: Config\n");
  EXPECT_NE(log().find("not written by us"), std::string::npos);
}

class WatcherIntegration : public InstallerIntegration {
 protected:
  WatcherOptions watcher_options() const {
    WatcherOptions w;
    w.loop = {.threshold = 5, .window = std::chrono::seconds(60)};
    return w;
  }
};

TEST_F(WatcherIntegration, PrimaryRewritingItsFileTwentyTimesIsUndoneEachTimeWithinASecond) {
  const auto primary = dirs_.conf / "10-calico.conflist";
  spit(primary, kCalico);
  Installer installer(options(), log_);
  std::vector<std::string> events;
  std::mutex events_mu;
  Watcher watcher(installer, watcher_options(), log_, [&](std::string_view what) {
    std::lock_guard g(events_mu);
    events.emplace_back(what);
  });
  watcher.start();
  ASSERT_TRUE(wait_for([&] { return installer.installed() && watcher.healthy(); }, 10s)) << log();
  ASSERT_TRUE(ours_last(primary));

  std::chrono::milliseconds slowest{0};
  for (int i = 1; i <= 20; ++i) {
    const auto text = calico_with_mtu(1400 + i);
    if (i % 2 == 0) {
      spit(primary, text);  // in place (truncate + write), like a `cp`
    } else {
      spit(dirs_.conf / "calico.tmp", text);  // write + rename, like Calico's installer
      fs::rename(dirs_.conf / "calico.tmp", primary);
    }
    const auto took = wait_for(
        [&] {
          const auto now = read_file(primary);
          return ours_last(primary) &&
                 now.find("\"mtu\": " + std::to_string(1400 + i)) != std::string::npos;
        },
        1s);
    ASSERT_TRUE(took.has_value()) << "rewrite " << i << " not undone within a second\n" << log();
    slowest = std::max(slowest, *took);
  }
  RecordProperty("slowest_restore_ms", static_cast<int>(slowest.count()));
  // The pass that restored the last rewrite counts it right after its write.
  EXPECT_TRUE(wait_for([&] { return watcher.stats().reverts >= 20; }, 1s));
  const auto stats = watcher.stats();
  EXPECT_EQ(stats.reverts, 20u);
  EXPECT_EQ(stats.loop_warnings, 1u);  // 20 reverts within a minute: one loud warning
  EXPECT_NE(log().find("LOOP: another component keeps reverting"), std::string::npos);
  {
    std::lock_guard g(events_mu);
    EXPECT_EQ(std::count(events.begin(), events.end(), "cni_config"), 20);
    EXPECT_EQ(std::count(events.begin(), events.end(), "loop"), 1);
  }
  // Every byte of the primary's own content is as the primary last wrote it.
  const auto last = calico_with_mtu(1420);
  const auto now = read_file(primary);
  EXPECT_EQ(now.substr(0, now.rfind("    {\"type\": \"portmap\"")),
            last.substr(0, last.rfind("    {\"type\": \"portmap\"")));
  watcher.stop();
}

TEST_F(WatcherIntegration, RemovedOrReplacedBinaryIsPutBack) {
  spit(dirs_.conf / "10-calico.conflist", kCalico);
  Installer installer(options(), log_);
  Watcher watcher(installer, watcher_options(), log_);
  watcher.start();
  ASSERT_TRUE(wait_for([&] { return installer.installed(); }, 10s));
  const auto plugin = dirs_.bin / "ambient-cni";
  const auto original = read_file(AMBIENT_PLUGIN_BIN);
  fs::remove(plugin);
  EXPECT_TRUE(wait_for([&] { return fs::exists(plugin) && read_file(plugin) == original; }, 1s));
  spit(plugin, "not our plugin");
  EXPECT_TRUE(wait_for([&] { return read_file(plugin) == original; }, 1s));
  EXPECT_TRUE(wait_for([&] { return watcher.stats().reverts >= 2; }, 1s));
  // Our own writes do not feed back: after the pass their events cause, the watcher is quiet.
  std::this_thread::sleep_for(300ms);
  const auto passes = watcher.stats().passes;
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(watcher.stats().passes, passes);
  EXPECT_EQ(watcher.stats().reverts, 2u);
}

TEST_F(WatcherIntegration, TokenRotationBySymlinkSwapRewritesTheKubeconfig) {
  spit(dirs_.conf / "10-calico.conflist", kCalico);
  Installer installer(options(), log_);
  Watcher watcher(installer, watcher_options(), log_);
  watcher.start();
  ASSERT_TRUE(wait_for([&] { return installer.installed(); }, 10s));
  const auto kubeconfig = dirs_.run / "kubeconfig";
  EXPECT_EQ(kube::load_kubeconfig(kubeconfig).token, "token-1");
  for (int i = 2; i <= 4; ++i) {
    dirs_.write_token("token-" + std::to_string(i),
                      "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n");
    const auto want = "token-" + std::to_string(i);
    EXPECT_TRUE(wait_for([&] { return kube::load_kubeconfig(kubeconfig).token == want; }, 2s))
        << want << "\n"
        << log();
    EXPECT_EQ(mode_of(kubeconfig), 0600u);
  }
  EXPECT_TRUE(wait_for([&] { return watcher.stats().kubeconfig_rewrites >= 3; }, 1s));
  EXPECT_EQ(watcher.stats().kubeconfig_rewrites, 3u);
  EXPECT_EQ(watcher.stats().reverts, 0u);  // rotation is not someone reverting us
  fs::remove(kubeconfig);
  EXPECT_TRUE(wait_for([&] { return fs::exists(kubeconfig); }, 1s));
}

TEST_F(WatcherIntegration, WaitsForThePrimaryThenInstalls) {
  Installer installer(options(), log_);
  Watcher watcher(installer, watcher_options(), log_);
  watcher.start();
  ASSERT_TRUE(wait_for([&] { return watcher.stats().passes >= 1; }, 10s));
  EXPECT_FALSE(installer.installed());  // not ready: nothing to chain into yet
  EXPECT_TRUE(fs::exists(dirs_.bin / "ambient-cni"));
  spit(dirs_.conf / "10-mynet.conf", R"({"cniVersion":"1.0.0","name":"mynet","type":"bridge"})");
  EXPECT_TRUE(wait_for([&] { return installer.installed(); }, 1s)) << log();
  EXPECT_TRUE(ours_last(dirs_.conf / "10-mynet.conflist"));
  EXPECT_FALSE(fs::exists(dirs_.conf / "10-mynet.conf"));
  EXPECT_NE(log().find("no primary CNI configuration yet; waiting"), std::string::npos);
}

TEST_F(WatcherIntegration, OwnedCopyFollowsThePrimaryAndComesBack) {
  const auto primary = dirs_.conf / "10-calico.conflist";
  spit(primary, kCalico);
  Installer installer(options(Mode::kOwned), log_);
  Watcher watcher(installer, watcher_options(), log_);
  watcher.start();
  const auto owned = dirs_.conf / std::string(kDefaultOwnedName);
  ASSERT_TRUE(wait_for([&] { return installer.installed() && fs::exists(owned); }, 10s));
  EXPECT_EQ(read_file(primary), kCalico);  // the primary is left alone
  spit(primary, calico_with_mtu(9000));
  EXPECT_TRUE(wait_for(
      [&] {
        const auto doc = json::parse(read_file(owned), nullptr, false);
        return !doc.is_discarded() && doc["plugins"][0]["mtu"] == 9000 &&
               doc["plugins"].back()["type"] == "ambient-cni";
      },
      1s))
      << log();
  fs::remove(owned);
  EXPECT_TRUE(wait_for([&] { return fs::exists(owned) && ours_last(owned); }, 1s));
  EXPECT_EQ(read_file(primary), calico_with_mtu(9000));
  const auto before_uninstall = read_file(primary);
  watcher.stop();
  installer.uninstall();
  EXPECT_FALSE(fs::exists(owned));
  EXPECT_EQ(read_file(primary), before_uninstall);
}

TEST_F(WatcherIntegration, StopLeavesEverythingInPlace) {
  spit(dirs_.conf / "10-calico.conflist", kCalico);
  Installer installer(options(), log_);
  auto watcher = std::make_unique<Watcher>(installer, watcher_options(), log_);
  watcher->start();
  ASSERT_TRUE(wait_for([&] { return installer.installed(); }, 10s));
  const auto installed = snapshot(dirs_.root);
  watcher->stop();
  watcher.reset();
  EXPECT_EQ(snapshot(dirs_.root), installed);
  EXPECT_TRUE(installer.check_in_place());
}

}  // namespace
}  // namespace ambient::install
