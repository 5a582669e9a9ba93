// The conflist transforms case by case: what the golden files do not pin down.
#include <gtest/gtest.h>

#include "config/node_config.h"
#include "install/conflist.h"
#include "install/errors.h"
#include "install/json_text.h"

namespace ambient::install {
namespace {

using nlohmann::json;

nlohmann::ordered_json entry() {
  config::NodeConfig n;
  n.exclude_namespaces = {"kube-system"};
  return config::render_plugin_entry(n);
}

std::vector<std::string> types(const std::string& text) {
  std::vector<std::string> out;
  const auto doc = json::parse(text);
  for (const auto& p : doc["plugins"]) out.push_back(p["type"]);
  return out;
}

const ConfFile* find(const std::vector<ConfFile>& dir, const std::string& name) {
  for (const auto& f : dir) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

TEST(JsonText, SpansOfMembersAndElements) {
  const std::string t = R"(  {"a" : [1, "x]\"y", {"b": [2]}], "c\u0041": null} )";
  const auto doc = json_text::document(t);
  EXPECT_EQ(doc.of(t).front(), '{');
  EXPECT_EQ(doc.of(t).back(), '}');
  const auto m = json_text::members(t, doc);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].key, "a");
  EXPECT_EQ(m[1].key, "cA");
  EXPECT_EQ(m[1].value.of(t), "null");
  const auto e = json_text::elements(t, m[0].value);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].of(t), "1");
  EXPECT_EQ(e[1].of(t), R"("x]\"y")");
  EXPECT_EQ(e[2].of(t), R"({"b": [2]})");
  EXPECT_TRUE(json_text::elements(t, json_text::value_at(t, t.find("[2]"))).size() == 1);
  const std::string empty = "[ ]";
  EXPECT_TRUE(json_text::elements(empty, json_text::document(empty)).empty());
}

TEST(Inspect, ValidityFollowsLibcni) {
  const auto problem = [](std::string name, std::string text) {
    return inspect_conf({std::move(name), std::move(text)}).problem;
  };
  EXPECT_EQ(problem("a.conflist", R"({"name":"n","plugins":[{"type":"bridge"}]})"), "");
  EXPECT_EQ(problem("a.conf", R"({"name":"n","type":"bridge"})"), "");
  EXPECT_EQ(problem("a.conflist", "{"), "not valid JSON");
  EXPECT_EQ(problem("a.conflist", "[]"), "not a JSON object");
  EXPECT_EQ(problem("a.conflist", R"({"plugins":[{"type":"x"}]})"), "no \"name\" string");
  EXPECT_EQ(problem("a.conflist", R"({"name":"n"})"), "no \"plugins\" array");
  EXPECT_EQ(problem("a.conflist", R"({"name":"n","plugins":[]})"), "\"plugins\" is empty");
  EXPECT_EQ(problem("a.conflist", R"({"name":"n","plugins":[{"type":""}]})"),
            "plugins[0] has no \"type\"");
  EXPECT_EQ(problem("a.conflist", R"({"name":"n","cniVersion":1,"plugins":[{"type":"x"}]})"),
            "\"cniVersion\" is not a string");
  EXPECT_NE(problem("a.conf", R"({"name":"n","plugins":[{"type":"x"}]})").find(".conflist?"),
            std::string::npos);
  // Runtimes load *.json as a single plugin, like *.conf.
  EXPECT_EQ(problem("a.json", R"({"name":"n","type":"bridge"})"), "");
  EXPECT_EQ(problem("a.json", R"({"name":"n","plugins":[{"type":"x"}]})").find(".conflist?") !=
                std::string::npos,
            true);
  EXPECT_EQ(problem("a.yaml", R"({"name":"n","type":"bridge"})"),
            "not a .conf, .conflist or .json file");
  const auto info = inspect_conf(
      {"a.conflist",
       R"({"name":"n","plugins":[{"type":"bridge"},{"type":"istio-cni"},{"type":"ambient-cni"}]})"});
  EXPECT_EQ(info.plugins, 3u);
  EXPECT_EQ(info.istio_entries, 1u);
  EXPECT_EQ(info.our_entries, 1u);
}

TEST(Chain, CompactFilesStayCompact) {
  const std::string t = R"({"name":"n","plugins":[{"type":"a"},{"type":"b"}]})";
  const auto chained = chain_conflist(t, entry());
  EXPECT_EQ(chained.find('\n'), std::string::npos) << chained;
  EXPECT_EQ(types(chained), (std::vector<std::string>{"a", "b", "ambient-cni"}));
  EXPECT_EQ(unchain({"x.conflist", chained}).text, t);
}

TEST(Chain, FollowsTheFilesIndentation) {
  const std::string t = "{\n\t\"name\": \"n\",\n\t\"plugins\": [\n\t\t{\"type\": \"a\"}\n\t]\n}\n";
  const auto chained = chain_conflist(t, entry());
  EXPECT_NE(chained.find(",\n\t\t{\n\t\t\t\"type\": \"ambient-cni\""), std::string::npos)
      << chained;
  EXPECT_EQ(unchain({"x.conflist", chained}).text, t);
}

TEST(Chain, RemovesEveryAmbientEntryWhereverItIs) {
  const std::string t =
      R"({"name":"n","plugins":[{"type":"istio-cni"},{"type":"a"},{"type":"ambient-cni","x":1},{"type":"b"},{"type":"ambient-cni"}]})";
  const auto chained = chain_conflist(t, entry());
  EXPECT_EQ(types(chained), (std::vector<std::string>{"a", "b", "ambient-cni"}));
  EXPECT_EQ(json::parse(chained)["plugins"][2], json::parse(entry().dump()));
  EXPECT_EQ(chain_conflist(chained, entry()), chained);  // idempotent
}

TEST(Chain, KeepsEveryOtherKeyAndTheLastPluginsKey) {
  const std::string t =
      R"({"zeta":1,"name":"n","cniVersion":"1.0.0","disableCheck":true,"plugins":[{"type":"a","k":[1,2.5,"s"]}],"alpha":{"x":null}})";
  const auto chained = json::parse(chain_conflist(t, entry()));
  auto expected = json::parse(t);
  expected["plugins"].push_back(json::parse(entry().dump()));
  EXPECT_EQ(chained, expected);
}

TEST(Wrap, ConfIsWrappedAndComesBackByteForByte) {
  const ConfFile conf{"10-net.conf",
                      "\n  {\"cniVersion\":\"0.4.0\",\"name\":\"net\",\"type\":\"bridge\"}  \n\n"};
  const auto wrapped = wrap_conf(conf, entry());
  const auto doc = json::parse(wrapped);
  EXPECT_EQ(doc["cniVersion"], "0.4.0");
  EXPECT_EQ(doc["name"], "net");
  EXPECT_EQ(doc[std::string(kWrappedMarker)], "10-net.conf");
  EXPECT_EQ(types(wrapped), (std::vector<std::string>{"bridge", "ambient-cni"}));
  EXPECT_EQ(unchain({"10-net.conflist", wrapped}), conf);
  EXPECT_EQ(chain_conflist(wrapped, entry()), wrapped);
}

TEST(Wrap, ConfWithoutNameOrVersionGetsTheStem) {
  const auto doc = json::parse(wrap_conf({"30-x.conf", R"({"type":"ptp"})"}, entry()));
  EXPECT_EQ(doc["name"], "30-x");
  EXPECT_FALSE(doc.contains("cniVersion"));
  EXPECT_EQ(wrapped_name("30-x.conf"), "30-x.conflist");
}

TEST(Wrap, AMarkerNamingAPathIsNotUnwrapped) {
  const std::string t =
      std::string(R"({"name":"n",")") + std::string(kWrappedMarker) +
      R"(":"../etc/passwd.conf","plugins":[{"type":"a"},{"type":"ambient-cni"}]})";
  const auto back = unchain({"x.conflist", t});
  EXPECT_EQ(back.name, "x.conflist");
  EXPECT_EQ(types(back.text), std::vector<std::string>{"a"});
}

TEST(Plan, WaitsWhenThereIsNoValidPrimary) {
  const std::vector<ConfFile> dir = {{"10-broken.conflist", "{"}, {"notes.txt", "hello"}};
  const auto plan = plan_install(dir, Mode::kChained, kDefaultOwnedName, entry());
  EXPECT_TRUE(plan.waiting());
  EXPECT_FALSE(plan.in_place());
  EXPECT_TRUE(plan.ops.empty());
  ASSERT_EQ(plan.warnings.size(), 1u);
  EXPECT_EQ(plan.warnings[0], "skipping 10-broken.conflist: not valid JSON");
  EXPECT_TRUE(plan_install({}, Mode::kOwned, kDefaultOwnedName, entry()).waiting());
}

TEST(Plan, AFileWithOnlyAmbientEntriesIsNotAPrimary) {
  const std::vector<ConfFile> dir = {
      {"01-istio.conflist", R"({"name":"i","plugins":[{"type":"istio-cni"}]})"},
      {"10-net.conflist", R"({"name":"n","plugins":[{"type":"bridge"}]})"}};
  const auto plan = plan_install(dir, Mode::kChained, kDefaultOwnedName, entry());
  EXPECT_EQ(plan.primary, "10-net.conflist");
  ASSERT_EQ(plan.warnings.size(), 2u);
  EXPECT_NE(plan.warnings[0].find("01-istio.conflist"), std::string::npos);
  // But a runtime loads that one first: pods would start without us, so this is not installed.
  EXPECT_EQ(plan.runtime_file, "01-istio.conflist");
  EXPECT_FALSE(plan.installed());
  EXPECT_EQ(
      plan.warnings[1],
      "a runtime would load 01-istio.conflist, which has no ambient-cni entry: not installed");
}

TEST(Plan, AJsonFileIsAConfigurationLikeAConf) {
  // A .json sorting first is what the runtime loads: it is the primary, wrapped like a .conf.
  const std::vector<ConfFile> dir = {
      {"05-mynet.json", R"({"cniVersion":"1.0.0","name":"mynet","type":"bridge"})"},
      {"10-calico.conflist", R"({"name":"k8s-pod-network","plugins":[{"type":"calico"}]})"}};
  const auto plan = plan_install(dir, Mode::kChained, kDefaultOwnedName, entry());
  EXPECT_EQ(plan.primary, "05-mynet.json");
  EXPECT_TRUE(plan.installed());
  EXPECT_EQ(plan.runtime_file, "05-mynet.conflist");
  const auto after = apply_plan(dir, plan);
  EXPECT_EQ(types(find(after, "05-mynet.conflist")->text),
            (std::vector<std::string>{"bridge", "ambient-cni"}));
  EXPECT_EQ(find(after, "05-mynet.json"), nullptr);
  // Uninstall writes the .json back byte for byte.
  EXPECT_EQ(apply_plan(after, plan_uninstall(after, kDefaultOwnedName)), dir);
}

TEST(Plan, OurEntryLeavesAFileThatIsNoLongerThePrimary) {
  const std::vector<ConfFile> dir = {
      {"20-old.conflist", R"({"name":"o","plugins":[{"type":"bridge"},{"type":"ambient-cni"}]})"},
      {"10-new.conflist", R"({"name":"n","plugins":[{"type":"ptp"}]})"}};
  const auto after = apply_plan(dir, plan_install(dir, Mode::kChained, kDefaultOwnedName, entry()));
  EXPECT_EQ(types(find(after, "10-new.conflist")->text),
            (std::vector<std::string>{"ptp", "ambient-cni"}));
  EXPECT_EQ(find(after, "20-old.conflist")->text, R"({"name":"o","plugins":[{"type":"bridge"}]})");
}

TEST(Plan, ARecreatedConfIsWrappedAgain) {
  const ConfFile conf{"10-net.conf", R"({"name":"net","type":"bridge","v":1})"};
  auto dir = apply_plan({conf}, plan_install({conf}, Mode::kChained, kDefaultOwnedName, entry()));
  ASSERT_EQ(dir.size(), 1u);
  ASSERT_EQ(dir[0].name, "10-net.conflist");
  // The primary CNI writes its .conf again (a new version): it sorts first, so it is the primary.
  const ConfFile newer{"10-net.conf", R"({"name":"net","type":"bridge","v":2})"};
  dir.push_back(newer);
  const auto plan = plan_install(dir, Mode::kChained, kDefaultOwnedName, entry());
  EXPECT_EQ(plan.primary, "10-net.conf");
  dir = apply_plan(dir, plan);
  ASSERT_EQ(dir.size(), 1u);
  EXPECT_EQ(unchain(dir[0]), newer);
}

TEST(Plan, UninstallDoesNotOverwriteARecreatedConf) {
  const ConfFile conf{"10-net.conf", R"({"name":"net","type":"bridge","v":1})"};
  auto dir = apply_plan({conf}, plan_install({conf}, Mode::kChained, kDefaultOwnedName, entry()));
  const ConfFile newer{"10-net.conf", R"({"name":"net","type":"bridge","v":2})"};
  dir.push_back(newer);
  dir = apply_plan(dir, plan_uninstall(dir, kDefaultOwnedName));
  EXPECT_EQ(dir, std::vector<ConfFile>{newer});
}

TEST(Plan, WrapIntoSomeoneElsesConflistIsRefused) {
  const std::vector<ConfFile> dir = {
      {"10-net.conf", R"({"name":"net","type":"bridge"})"},
      {"10-net.conflist", R"({"name":"other","plugins":[{"type":"ptp"}]})"}};
  const auto plan = plan_install(dir, Mode::kChained, kDefaultOwnedName, entry());
  EXPECT_NE(plan.error.find("cannot wrap 10-net.conf into 10-net.conflist"), std::string::npos)
      << plan.error;
  EXPECT_TRUE(plan.ops.empty());
  EXPECT_FALSE(plan.in_place());
}

TEST(Plan, OwnedCopyMustSortFirst) {
  const std::vector<ConfFile> dir = {
      {"00-aaa.conflist", R"({"name":"n","plugins":[{"type":"a"}]})"}};
  const auto plan = plan_install(dir, Mode::kOwned, kDefaultOwnedName, entry());
  EXPECT_NE(plan.error.find("would not sort before the primary 00-aaa.conflist"), std::string::npos)
      << plan.error;
  EXPECT_TRUE(plan.ops.empty());
  EXPECT_TRUE(plan_install(dir, Mode::kOwned, "0-ambient.conflist", entry()).error.empty());
}

TEST(Plan, OwnedNameTakenBySomeoneElse) {
  const std::vector<ConfFile> dir = {
      {std::string(kDefaultOwnedName), R"({"name":"theirs","plugins":[{"type":"a"}]})"},
      {"10-net.conflist", R"({"name":"n","plugins":[{"type":"bridge"}]})"}};
  const auto plan = plan_install(dir, Mode::kOwned, kDefaultOwnedName, entry());
  EXPECT_NE(plan.error.find("is taken by a file that is not ours"), std::string::npos);
  EXPECT_TRUE(plan.ops.empty());
  // Uninstall leaves their file alone.
  EXPECT_TRUE(plan_uninstall(dir, kDefaultOwnedName).ops.empty());
}

TEST(Plan, OwnedCopyFollowsThePrimary) {
  std::vector<ConfFile> dir = {
      {"10-net.conflist", R"({"name":"n","plugins":[{"type":"bridge"}]})"}};
  dir = apply_plan(dir, plan_install(dir, Mode::kOwned, kDefaultOwnedName, entry()));
  ASSERT_EQ(dir.size(), 2u);
  EXPECT_EQ(dir[1].text, R"({"name":"n","plugins":[{"type":"bridge"}]})");  // primary untouched
  dir[1].text = R"({"name":"n","plugins":[{"type":"bridge","mtu":1400},{"type":"portmap"}]})";
  const auto plan = plan_install(dir, Mode::kOwned, kDefaultOwnedName, entry());
  ASSERT_EQ(plan.ops.size(), 1u);
  EXPECT_EQ(plan.ops[0].name, kDefaultOwnedName);
  dir = apply_plan(dir, plan);
  const auto owned = json::parse(dir[0].text);
  EXPECT_EQ(owned["plugins"][0]["mtu"], 1400);
  EXPECT_EQ(types(dir[0].text), (std::vector<std::string>{"bridge", "portmap", "ambient-cni"}));
}

TEST(Plan, ChainedModeRemovesOurOwnedCopyAndItsStaleNames) {
  const std::string owned_text =
      std::string(R"({"name":"n",")") + std::string(kOwnedMarker) +
      R"(":"10-net.conflist","plugins":[{"type":"bridge"},{"type":"ambient-cni"}]})";
  const std::vector<ConfFile> dir = {
      {"00-old-name.conflist", owned_text},
      {"10-net.conflist", R"({"name":"n","plugins":[{"type":"bridge"}]})"}};
  const auto chained =
      apply_plan(dir, plan_install(dir, Mode::kChained, kDefaultOwnedName, entry()));
  EXPECT_EQ(find(chained, "00-old-name.conflist"), nullptr);
  const auto owned = apply_plan(dir, plan_install(dir, Mode::kOwned, kDefaultOwnedName, entry()));
  EXPECT_EQ(find(owned, "00-old-name.conflist"), nullptr);
  EXPECT_NE(find(owned, std::string(kDefaultOwnedName)), nullptr);
}

TEST(Plan, WritesComeBeforeRemovals) {
  const std::vector<ConfFile> dir = {{"10-net.conf", R"({"name":"net","type":"bridge"})"}};
  const auto plan = plan_install(dir, Mode::kChained, kDefaultOwnedName, entry());
  ASSERT_EQ(plan.ops.size(), 2u);
  EXPECT_EQ(plan.ops[0].kind, FileOp::Kind::kWrite);
  EXPECT_EQ(plan.ops[0].name, "10-net.conflist");
  EXPECT_EQ(plan.ops[1].kind, FileOp::Kind::kRemove);
  EXPECT_EQ(plan.ops[1].name, "10-net.conf");
}

TEST(Mode, Names) {
  EXPECT_EQ(parse_mode("chained"), Mode::kChained);
  EXPECT_EQ(parse_mode("owned"), Mode::kOwned);
  EXPECT_THROW(parse_mode("Owned"), InstallError);
  EXPECT_EQ(mode_name(Mode::kOwned), "owned");
}

}  // namespace
}  // namespace ambient::install
