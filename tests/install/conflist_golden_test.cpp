// Golden tests of the conflist transform and its reversal on real-shaped CNI conf dirs.
//
// tests/golden/conflist/<case>/before/     the directory as the primary CNI left it (hand-written)
//                              chained/    after install in chained mode
//                              owned/      after install in owned mode
//                              uninstalled/ after uninstall, only where it cannot be `before`
//                                          (an Istio entry or an older entry of ours was
//                                          replaced at install and is not brought back)
// UPDATE_GOLDEN=1 rewrites chained/, owned/ and uninstalled/ from the code: review the diff.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/node_config.h"
#include "install/conflist.h"

namespace ambient::install {
namespace {

namespace fs = std::filesystem;

const fs::path kGolden = AMBIENT_CONFLIST_GOLDEN_DIR;

std::vector<ConfFile> read_dir(const fs::path& dir) {
  std::vector<ConfFile> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    out.push_back({e.path().filename().string(), text.str()});
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
  return out;
}

void write_dir(const fs::path& dir, const std::vector<ConfFile>& files) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& f : files) std::ofstream(dir / f.name, std::ios::binary) << f.text;
}

bool updating() {
  const char* u = std::getenv("UPDATE_GOLDEN");
  return u != nullptr && std::string(u) == "1";
}

void expect_dir(const std::vector<ConfFile>& actual, const fs::path& expected_dir) {
  if (updating()) write_dir(expected_dir, actual);
  ASSERT_TRUE(fs::is_directory(expected_dir)) << expected_dir << " missing (UPDATE_GOLDEN=1)";
  const auto expected = read_dir(expected_dir);
  std::vector<std::string> actual_names, expected_names;
  for (const auto& f : actual) actual_names.push_back(f.name);
  for (const auto& f : expected) expected_names.push_back(f.name);
  ASSERT_EQ(actual_names, expected_names) << expected_dir;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    EXPECT_EQ(actual[i].text, expected[i].text) << expected_dir / actual[i].name;
  }
}

nlohmann::ordered_json entry() {
  return config::render_plugin_entry(config::NodeConfig{});
}

struct Case {
  std::string name;
  std::string primary;               // the file plan_install reports as the primary
  std::vector<std::string> skipped;  // files it must warn about
};

class ConflistGolden : public ::testing::TestWithParam<Case> {};

TEST_P(ConflistGolden, ChainedInstallAndUninstall) {
  const auto& c = GetParam();
  const auto before = read_dir(kGolden / c.name / "before");
  const auto plan = plan_install(before, Mode::kChained, kDefaultOwnedName, entry());
  ASSERT_EQ(plan.error, "");
  ASSERT_EQ(plan.primary, c.primary);
  ASSERT_EQ(plan.warnings.size(), c.skipped.size());
  for (std::size_t i = 0; i < c.skipped.size(); ++i) {
    EXPECT_TRUE(plan.warnings[i].starts_with("skipping " + c.skipped[i] + ": "))
        << plan.warnings[i];
  }
  const auto installed = apply_plan(before, plan);
  expect_dir(installed, kGolden / c.name / "chained");

  // Kept installed: a second pass changes nothing.
  EXPECT_TRUE(plan_install(installed, Mode::kChained, kDefaultOwnedName, entry()).in_place());

  const auto removed = apply_plan(installed, plan_uninstall(installed, kDefaultOwnedName));
  const auto uninstalled_dir = kGolden / c.name / "uninstalled";
  if (removed == before) {
    EXPECT_FALSE(fs::exists(uninstalled_dir)) << "stale " << uninstalled_dir;
  } else {
    expect_dir(removed, uninstalled_dir);
  }
  // Uninstall of an uninstalled dir is a no-op.
  EXPECT_TRUE(plan_uninstall(removed, kDefaultOwnedName).ops.empty());
}

TEST_P(ConflistGolden, OwnedInstallAndUninstall) {
  const auto& c = GetParam();
  const auto before = read_dir(kGolden / c.name / "before");
  const auto plan = plan_install(before, Mode::kOwned, kDefaultOwnedName, entry());
  ASSERT_EQ(plan.error, "");
  const auto installed = apply_plan(before, plan);
  expect_dir(installed, kGolden / c.name / "owned");
  EXPECT_TRUE(plan_install(installed, Mode::kOwned, kDefaultOwnedName, entry()).in_place());
  // The runtime's pick is our copy, and it holds the primary's plugins with ours last.
  ASSERT_FALSE(installed.empty());
  EXPECT_EQ(installed.front().name, kDefaultOwnedName);
  const auto owned = nlohmann::json::parse(installed.front().text);
  EXPECT_EQ(owned["plugins"].back()["type"], "ambient-cni");

  const auto removed = apply_plan(installed, plan_uninstall(installed, kDefaultOwnedName));
  // Owned mode removes older entries of ours from the primary but never Istio's (the primary
  // is left alone), so only the older-ours case differs from `before`.
  if (c.name == "older-ours") {
    EXPECT_EQ(removed, read_dir(kGolden / c.name / "uninstalled"));
  } else {
    EXPECT_EQ(removed, before);
  }
}

std::size_t our_entries(const std::vector<ConfFile>& dir) {
  std::size_t n = 0;
  for (const auto& f : dir) n += inspect_conf(f).our_entries;
  return n;
}

TEST_P(ConflistGolden, SwitchingModesKeepsExactlyOneEntry) {
  const auto& c = GetParam();
  const auto before = read_dir(kGolden / c.name / "before");
  auto dir = apply_plan(before, plan_install(before, Mode::kChained, kDefaultOwnedName, entry()));
  dir = apply_plan(dir, plan_install(dir, Mode::kOwned, kDefaultOwnedName, entry()));
  EXPECT_EQ(our_entries(dir), 1u);
  ASSERT_FALSE(dir.empty());
  EXPECT_EQ(inspect_conf(dir.front()).owned_copy_of, c.primary);  // the un-chained primary
  dir = apply_plan(dir, plan_install(dir, Mode::kChained, kDefaultOwnedName, entry()));
  EXPECT_EQ(our_entries(dir), 1u);
  expect_dir(dir, kGolden / c.name / "chained");
}

INSTANTIATE_TEST_SUITE_P(RealShaped, ConflistGolden,
                         ::testing::Values(Case{"debian-bridge", "87-podman-bridge.conflist", {}},
                                           Case{"calico", "10-calico.conflist", {}},
                                           Case{"cilium", "05-cilium.conflist", {}},
                                           Case{"flannel", "10-flannel.conflist", {}},
                                           Case{"single-conf", "10-mynet.conf", {}},
                                           Case{"multiple-files", "10-alpha.conflist", {}},
                                           Case{"broken-json",
                                                "10-bridge.conflist",
                                                {"05-half-written.conflist",
                                                 "07-no-plugins.conflist"}},
                                           Case{"istio-entry", "10-calico.conflist", {}},
                                           Case{"older-ours", "10-flannel.conflist", {}}),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace ambient::install
