// The Helm chart install/helm/ambient-cni (issue 15), rendered by the Helm that scripts/peers.sh
// builds (v3.22.0; $AMBIENT_HELM_BIN names another):
//  - `helm lint --strict` with the defaults and each values file of tests/golden/helm;
//  - golden `helm template` output for those values files (UPDATE_GOLDEN=1 rewrites
//    tests/golden/helm/<case>.yaml: review the diff);
//  - parity: for the same settings, the chart renders the same objects as `kubectl kustomize` of
//    install/manifests (base and every overlay), compared parsed, with the allowed differences
//    listed in kAllowed below;
//  - Istio's cni chart (its source from scripts/peers.sh istio): every key of its values is one
//    this chart knows, its defaults render except the ones listed, its presets exist here;
//  - every key the chart refuses, refused by `helm template` with a message naming it (`helm
//    lint` runs the templates in lint mode, where Helm turns `fail` into an INFO line).
// Helm missing fails every test with what to run; nothing is skipped.
#include <gtest/gtest.h>

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/files.h"
#include "tests/support/process.h"

namespace ambient::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

const fs::path kRepo = AMBIENT_SOURCE_DIR;
const fs::path kChart = kRepo / "install/helm/ambient-cni";
const fs::path kGolden = kRepo / "tests/golden/helm";
const std::string kNamespace = "istio-system";

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// A peer's path from scripts/peers.sh, or "" with why in `problem`.
std::string peer_path(const std::string& name, std::string& problem) {
  const auto x = run({(kRepo / "scripts/peers.sh").string(), "path", name},
                     {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root"}, "", 30s);
  if (x.exit_code != 0) {
    problem = trimmed(x.err);
    return "";
  }
  return trimmed(x.out);
}

// The helm binary, or "" with `helm_problem()` saying why.
std::string& helm_problem() {
  static std::string problem;
  return problem;
}
const std::string& helm_binary() {
  static const std::string path = [] {
    if (const char* e = std::getenv("AMBIENT_HELM_BIN"); e != nullptr && *e != '\0') {
      if (::access(e, X_OK) != 0) helm_problem() = std::string("AMBIENT_HELM_BIN=") + e;
      return std::string(e);
    }
    const auto dir = peer_path("helm", helm_problem());
    return dir.empty() ? dir : dir + "/helm";
  }();
  return path;
}

// A directory of this test's own (Helm's cache/config homes, values files).
const fs::path& scratch() {
  static const fs::path dir = [] {
    auto d = fs::temp_directory_path() / ("ambient-helm-test-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

Execution helm(std::vector<std::string> args) {
  args.insert(args.begin(), helm_binary());
  const auto home = scratch().string();
  return run(args,
             {"PATH=/usr/bin:/bin", "HOME=" + home, "HELM_CACHE_HOME=" + home + "/cache",
              "HELM_CONFIG_HOME=" + home + "/config", "HELM_DATA_HOME=" + home + "/data"},
             "", 60s);
}

fs::path values_file(const std::string& name, const std::string& yaml) {
  const auto path = scratch() / (name + ".values.yaml");
  std::ofstream(path) << yaml;
  return path;
}

// `helm template` of the chart as release ambient-cni in istio-system, with a values file or none.
Execution render_chart(const fs::path& values = {}) {
  std::vector<std::string> args = {"template", "ambient-cni", kChart.string(), "--namespace",
                                   kNamespace};
  if (!values.empty()) {
    args.push_back("--values");
    args.push_back(values.string());
  }
  return helm(args);
}

// YAML → JSON: quoted scalars stay strings; plain ones become bools/numbers where they read so.
json to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) o[kv.first.as<std::string>()] = to_json(kv.second);
      return o;
    }
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& e : n) a.push_back(to_json(e));
      return a;
    }
    case YAML::NodeType::Scalar: {
      const auto s = n.as<std::string>();
      if (n.Tag() == "!") return s;
      if (s == "true") return true;
      if (s == "false") return false;
      if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos)
        return std::stoll(s);
      return s;
    }
    default:
      return nullptr;
  }
}

// Objects by "Kind namespace/name".
std::map<std::string, json> objects_of(const std::string& text) {
  std::map<std::string, json> out;
  for (const auto& doc : YAML::LoadAll(text)) {
    auto o = to_json(doc);
    if (!o.is_object()) continue;
    const auto& meta = o["metadata"];
    const auto key =
        o.value("kind", "") + " " + meta.value("namespace", "") + "/" + meta.value("name", "");
    EXPECT_FALSE(out.contains(key)) << key << " rendered twice";
    out[key] = std::move(o);
  }
  return out;
}

class HelmChart : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(helm_binary().empty())
        << "helm is missing: " << helm_problem()
        << " (scripts/peers.sh helm builds it; scripts/test.sh does so before the tests)";
    ASSERT_EQ(::access(helm_binary().c_str(), X_OK), 0)
        << helm_binary() << " is not executable: " << helm_problem();
  }
};

// ---- lint and golden output ----

struct GoldenCase {
  std::string name;
  bool has_values;  // tests/golden/helm/<name>.values.yaml
};
void PrintTo(const GoldenCase& c, std::ostream* os) {
  *os << c.name;
}

const std::vector<GoldenCase> kGoldenCases = {
    {"defaults", false},      // no values at all: the kustomize base
    {"istio-ambient", true},  // an Istio ambient user's values file, unchanged
    {"non-default", true},    // every key away from its default
};

class HelmGolden : public HelmChart, public ::testing::WithParamInterface<GoldenCase> {};

TEST_P(HelmGolden, LintsStrictly) {
  const auto& c = GetParam();
  std::vector<std::string> args = {"lint", "--strict", kChart.string(), "--namespace", kNamespace};
  if (c.has_values) {
    args.push_back("--values");
    args.push_back((kGolden / (c.name + ".values.yaml")).string());
  }
  const auto x = helm(args);
  EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
  EXPECT_NE(x.out.find("1 chart(s) linted, 0 chart(s) failed"), std::string::npos) << x.out;
}

TEST_P(HelmGolden, TemplateMatchesTheGoldenFile) {
  const auto& c = GetParam();
  const auto x = render_chart(c.has_values ? kGolden / (c.name + ".values.yaml") : fs::path());
  ASSERT_EQ(x.exit_code, 0) << x.err;
  const auto golden = kGolden / (c.name + ".yaml");
  const char* update = std::getenv("UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") std::ofstream(golden) << x.out;
  ASSERT_TRUE(fs::exists(golden)) << golden << " missing (UPDATE_GOLDEN=1 writes it)";
  EXPECT_EQ(x.out, read_file(golden)) << "UPDATE_GOLDEN=1 rewrites " << golden;
}

INSTANTIATE_TEST_SUITE_P(Values, HelmGolden, ::testing::ValuesIn(kGoldenCases),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (auto& ch : n) {
                             if (ch == '-') ch = '_';
                           }
                           return n;
                         });

// What the golden files pin, said plainly (a regenerated golden file cannot silently change it).
TEST_F(HelmChart, TheIstioAmbientValuesFileRendersWhatItAsks) {
  const auto x = render_chart(kGolden / "istio-ambient.values.yaml");
  ASSERT_EQ(x.exit_code, 0) << x.err;
  const auto objects = objects_of(x.out);
  const auto& cm = objects.at("ConfigMap istio-system/ambient-cni-config")["data"];
  EXPECT_EQ(cm["AMBIENT_ENABLED"], "true");  // profile: ambient
  EXPECT_EQ(cm["AMBIENT_EXCLUDE_NAMESPACES"], "kube-system,istio-system");
  EXPECT_EQ(cm["AMBIENT_IPV6"], "false");
  EXPECT_EQ(cm["AMBIENT_DNS_CAPTURE"], "true");
  EXPECT_EQ(cm["AMBIENT_LOG_LEVEL"], "info");  // "default:info"
  EXPECT_FALSE(cm.contains("AMBIENT_ENABLEMENT_SELECTORS"));
  const auto& ds = objects.at("DaemonSet istio-system/ambient-cni-node");
  const auto& pod = ds["spec"]["template"]["spec"];
  const auto& c = pod["containers"][0];
  // global.hub is the mirror; the tag is ours (the profile's distroless variant adds nothing).
  EXPECT_EQ(c["image"], "registry.example.com/istio/ambient-cni-node:0.1.0");
  // The file's requests; the chart's default memory limit stays, merged as Helm merges values.
  EXPECT_EQ(c["resources"], json::parse(R"({"requests":{"cpu":"100m","memory":"100Mi"},
                                            "limits":{"memory":"256Mi"}})"));
  EXPECT_EQ(c["securityContext"]["seccompProfile"], json::parse(R"({"type":"RuntimeDefault"})"));
  EXPECT_EQ(pod["tolerations"].size(), 3u);
  EXPECT_EQ(pod["terminationGracePeriodSeconds"], 30);
  EXPECT_EQ(ds["spec"]["template"]["metadata"]["annotations"]
              ["cluster-autoscaler.kubernetes.io/safe-to-evict"],
            "true");
  EXPECT_EQ(objects.at("ServiceAccount istio-system/ambient-cni-node")["imagePullSecrets"],
            json::parse(R"([{"name":"mirror-credentials"}])"));
}

TEST_F(HelmChart, NonDefaultValuesReachTheObjects) {
  const auto x = render_chart(kGolden / "non-default.values.yaml");
  ASSERT_EQ(x.exit_code, 0) << x.err;
  const auto objects = objects_of(x.out);
  const auto& cm = objects.at("ConfigMap istio-system/ambient-cni-config")["data"];
  EXPECT_EQ(cm["AMBIENT_CNI_MODE"], "owned");  // chained: false
  EXPECT_EQ(cm["AMBIENT_OWNED_CONFLIST_NAME"], "01-ambient.conflist");
  EXPECT_EQ(cm["AMBIENT_FAILURE_POLICY"], "open");  // enableAmbientDetectionRetry: false
  EXPECT_EQ(cm["AMBIENT_DNS_CAPTURE"], "false");    // cni.ambient.dnsCapture
  EXPECT_EQ(cm["AMBIENT_STATUS_CHECKS_AGENT"], "false");
  EXPECT_EQ(cm["AMBIENT_PLUGIN_SERVICE_ACCOUNT"], "");
  EXPECT_EQ(json::parse(cm["AMBIENT_ENABLEMENT_SELECTORS"].get<std::string>()),
            json::parse(R"([{"podSelector":{"matchLabels":{"mesh":"on"}}},
                            {"namespaceSelector":{"matchExpressions":
                              [{"key":"mesh","operator":"In","values":["on","strict"]}]}}])"));
  // No plugin identity: no ServiceAccount, binding or token grant for it.
  EXPECT_FALSE(objects.contains("ServiceAccount istio-system/ambient-cni-plugin"));
  EXPECT_FALSE(objects.contains("ClusterRoleBinding /ambient-cni-plugin"));
  EXPECT_EQ(objects.at("Role istio-system/ambient-cni-node")["rules"].size(), 1u);
  const auto& ds = objects.at("DaemonSet istio-system/ambient-cni-node");
  const auto& pod = ds["spec"]["template"]["spec"];
  const auto& c = pod["containers"][0];
  EXPECT_EQ(c["image"], "registry.example.com/mesh/ambient-cni-node:0.1.1");
  EXPECT_EQ(c["imagePullPolicy"], "Always");
  EXPECT_EQ(c["resources"], json::parse(R"({"requests":{"cpu":"20m","memory":"48Mi"}})"));
  EXPECT_EQ(pod["priorityClassName"], "mesh-node-critical");
  std::map<std::string, std::string> volumes;
  for (const auto& v : pod["volumes"]) volumes[v["name"]] = v["hostPath"]["path"];
  EXPECT_EQ(volumes["cni-bin-dir"], "/var/lib/rancher/k3s/data/cni");  // platform: k3s
  EXPECT_EQ(volumes["netns-dir"], "/run/netns");                       // cni.cniNetnsDir
  std::map<std::string, std::string> env;
  for (const auto& e : c["env"]) env[e["name"]] = e.value("value", "");
  EXPECT_EQ(env["AMBIENT_NETNS_DIR"], "/run/netns");
  EXPECT_EQ(env["AMBIENT_DRIFT_INTERVAL_MS"], "10000");
  EXPECT_EQ(ds["metadata"]["labels"]["istio.io/rev"], "canary");
  EXPECT_TRUE(objects.contains("NetworkPolicy istio-system/ambient-cni-node"));
  EXPECT_EQ(
      objects.at(
          "ResourceQuota istio-system/ambient-cni-node-critical-pods")["spec"]["hard"]["pods"],
      "200");
}

// ---- parity with the kustomize manifests ----

struct ParityCase {
  std::string kustomization;  // under install/manifests
  std::string values;         // the same settings as chart values
};
void PrintTo(const ParityCase& c, std::ostream* os) {
  *os << c.kustomization;
}

// The differences allowed between the chart and `kubectl kustomize`, and nothing else:
// 1. Helm's standard labels on every object's metadata.
const std::set<std::string> kHelmLabels = {"app.kubernetes.io/managed-by",
                                           "app.kubernetes.io/instance",
                                           "app.kubernetes.io/version", "helm.sh/chart"};
// 2. The uninstall hook (helm.sh/hook: pre-delete), which kustomize has no counterpart for (README:
//    Uninstall says to delete the DaemonSet first by hand).
const std::set<std::string> kHookObjects = {
    "ServiceAccount istio-system/ambient-cni-uninstall", "Role istio-system/ambient-cni-uninstall",
    "RoleBinding istio-system/ambient-cni-uninstall", "Job istio-system/ambient-cni-uninstall"};
// 3. Objects an overlay adds beside the base carry no app.kubernetes.io/part-of there (kustomize
//    labels the base's resources only); the chart labels all of its objects alike.
const std::set<std::string> kOverlayOwnObjects = {
    "SecurityContextConstraints /ambient-cni-node", "Role istio-system/ambient-cni-node-scc",
    "RoleBinding istio-system/ambient-cni-node-scc",
    "ResourceQuota istio-system/ambient-cni-node-critical-pods"};
// 4. The testbed overlay's Namespace: `helm install --create-namespace` makes it.
const std::set<std::string> kKustomizeOnly = {"Namespace /istio-system"};

class HelmParity : public HelmChart, public ::testing::WithParamInterface<ParityCase> {};

TEST_P(HelmParity, TheChartRendersTheKustomizeObjects) {
  const auto& c = GetParam();
  const auto k = run(
      {"/usr/bin/kubectl", "kustomize", (kRepo / "install/manifests" / c.kustomization).string()},
      {"PATH=/usr/bin:/bin", "HOME=/tmp"}, "", 60s);
  ASSERT_EQ(k.exit_code, 0) << k.err;
  auto expected = objects_of(k.out);
  for (const auto& key : kKustomizeOnly) expected.erase(key);

  const auto h =
      render_chart(values_file(c.kustomization.substr(c.kustomization.rfind('/') + 1), c.values));
  ASSERT_EQ(h.exit_code, 0) << h.err;
  auto rendered = objects_of(h.out);
  std::set<std::string> hooks;
  for (auto it = rendered.begin(); it != rendered.end();) {
    const auto annotations = it->second["metadata"].value("annotations", json::object());
    if (annotations.contains("helm.sh/hook")) {
      EXPECT_EQ(annotations["helm.sh/hook"], "pre-delete") << it->first;
      hooks.insert(it->first);
      it = rendered.erase(it);
    } else {
      ++it;
    }
  }
  EXPECT_EQ(hooks, kHookObjects);

  for (auto& [key, o] : rendered) {
    auto& labels = o["metadata"]["labels"];
    for (const auto& l : kHelmLabels) {
      EXPECT_TRUE(labels.contains(l)) << key << " lacks Helm's label " << l;
      labels.erase(l);
    }
    if (kOverlayOwnObjects.contains(key) && expected.contains(key) &&
        !expected[key]["metadata"]
             .value("labels", json::object())
             .contains("app.kubernetes.io/part-of")) {
      labels.erase("app.kubernetes.io/part-of");
    }
    if (labels.empty()) o["metadata"].erase("labels");
  }

  std::set<std::string> expected_keys, rendered_keys;
  for (const auto& [key, o] : expected) expected_keys.insert(key);
  for (const auto& [key, o] : rendered) rendered_keys.insert(key);
  EXPECT_EQ(rendered_keys, expected_keys);
  for (const auto& [key, want] : expected) {
    if (!rendered.contains(key)) continue;
    const auto& got = rendered[key];
    EXPECT_EQ(got, want) << key << " differs; JSON patch from kustomize's to the chart's:\n"
                         << json::diff(want, got).dump(2);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Manifests, HelmParity,
    ::testing::Values(ParityCase{"base", ""},
                      // The testbed as an Istio ambient user writes it: the API address (no
                      // kube-proxy) and images never pulled, in Istio's keys.
                      ParityCase{"overlays/testbed",
                                 "profile: ambient\npullPolicy: Never\nenv:\n"
                                 "  KUBERNETES_SERVICE_HOST: \"10.77.0.1\"\n"
                                 "  KUBERNETES_SERVICE_PORT: \"6443\"\n"},
                      ParityCase{"overlays/k3s", "platform: k3s\n"},
                      ParityCase{"overlays/gke", "global:\n  platform: gke\n"},
                      ParityCase{"overlays/openshift", "platform: openshift\n"}),
    [](const auto& info) {
      return info.param.kustomization.substr(info.param.kustomization.rfind('/') + 1);
    });

// ---- Istio's cni chart ----

fs::path istio_chart() {
  std::string problem;
  std::string src;
  if (const char* e = std::getenv("AMBIENT_ISTIO_SRC"); e != nullptr && *e != '\0') {
    src = e;
  } else {
    src = peer_path("istio", problem);
  }
  EXPECT_FALSE(src.empty()) << "Istio's source is missing: " << problem
                            << " (scripts/peers.sh istio fetches it)";
  return fs::path(src) / "manifests/charts/istio-cni";
}

// Istio's defaults (values.yaml, under _internal_defaults_do_not_set) as "a.b.c" → value, maps
// walked except the free-form ones, whose whole value is one entry.
void leaves(const json& n, const std::string& prefix, std::map<std::string, json>& out) {
  static const std::set<std::string> kFree = {"affinity",
                                              "daemonSetLabels",
                                              "podAnnotations",
                                              "podLabels",
                                              "seccompProfile",
                                              "seLinuxOptions",
                                              "resources",
                                              "updateStrategy",
                                              "env",
                                              "global.defaultResources"};
  for (const auto& [k, v] : n.items()) {
    const auto key = prefix + k;
    if (v.is_object() && !kFree.contains(key) && !v.empty()) {
      leaves(v, key + ".", out);
    } else {
      out[key] = v;
    }
  }
}

// A values document setting `path` ("a.b.c") to `value`, as JSON (which is YAML, and keeps
// quoted strings strings).
std::string at_path(std::string path, const json& value) {
  for (auto& ch : path) {
    if (ch == '.') ch = '/';
  }
  json root = json::object();
  root[json::json_pointer("/" + path)] = value;
  return root.dump();
}

// Istio's defaults that ask for what ambient-cni does not do, refused when written out (left
// unwritten they are never looked at: this chart's own default stands).
const std::map<std::string, std::string> kIstioDefaultsRefused = {
    {"repair.enabled", "repair.enabled=true: ambient-cni has no sidecar repair controller"},
    {"ambient.shareHostNetworkNamespace",
     "ambient.shareHostNetworkNamespace=false: ambient-cni's node component always runs in the "
     "host's network namespace"},
    {"image", "image=install-cni is Istio's CNI image"},
};

TEST_F(HelmChart, EveryKeyOfIstiosCniChartIsKnownAndItsDefaultsRender) {
  const auto values = to_json(YAML::LoadFile((istio_chart() / "values.yaml").string()));
  const auto& defaults = values["_internal_defaults_do_not_set"];
  std::map<std::string, json> istio;
  leaves(defaults, "", istio);
  ASSERT_GT(istio.size(), 50u);

  // All of them at once, written out as a user would, but the refused ones.
  json all = defaults;
  all["repair"].erase("enabled");
  all["ambient"].erase("shareHostNetworkNamespace");
  all.erase("image");
  const auto x = render_chart(values_file("istio-defaults", all.dump(2)));
  EXPECT_EQ(x.exit_code, 0) << x.err;

  // One by one: each renders, or is refused naming it — never unknown.
  for (const auto& [path, value] : istio) {
    const auto one = at_path(path, value);
    const auto r = render_chart(values_file("istio-default-one", one));
    if (kIstioDefaultsRefused.contains(path)) {
      EXPECT_NE(r.exit_code, 0) << path;
      EXPECT_NE(r.err.find(kIstioDefaultsRefused.at(path)), std::string::npos) << path << r.err;
    } else {
      EXPECT_EQ(r.exit_code, 0) << one << ": " << r.err;
    }
  }
}

// Istio's presets (files/profile-*.yaml): every profile, platform and compatibility version
// exists here, and renders — but the compatibility versions that turn
// ambient.reconcileIptablesOnStartup off, which are refused naming the key and the preset.
TEST_F(HelmChart, IstiosPresetsExistAndRender) {
  int seen = 0;
  for (const auto& f : fs::directory_iterator(istio_chart() / "files")) {
    const auto stem = f.path().stem().string();
    if (!stem.starts_with("profile-")) continue;
    ++seen;
    auto name = stem.substr(8);
    std::string key = "profile", ours = "profile-" + name;
    if (name.starts_with("platform-")) {
      key = "platform";
      name = name.substr(9);
      ours = "platform-" + name;
    } else if (name.starts_with("compatibility-version-")) {
      key = "compatibilityVersion";
      name = name.substr(22);
      ours = "compatibility-version-" + name;
    }
    EXPECT_TRUE(fs::exists(kChart / "files" / (ours + ".yaml"))) << "no preset for " << stem;
    const auto istio = YAML::LoadFile(f.path().string());
    const bool turns_reconcile_off =
        istio["cni"] && istio["cni"]["ambient"] &&
        istio["cni"]["ambient"]["reconcileIptablesOnStartup"] &&
        !istio["cni"]["ambient"]["reconcileIptablesOnStartup"].as<bool>();
    const auto x = render_chart(values_file("preset", key + ": \"" + name + "\"\n"));
    if (turns_reconcile_off) {
      EXPECT_NE(x.exit_code, 0) << stem;
      EXPECT_NE(
          x.err.find("ambient.reconcileIptablesOnStartup=false (set by compatibilityVersion " +
                     name + ")"),
          std::string::npos)
          << stem << ": " << x.err;
    } else {
      EXPECT_EQ(x.exit_code, 0) << stem << ": " << x.err;
    }
  }
  EXPECT_GT(seen, 10);
}

// ---- what the chart refuses ----

struct Refusal {
  std::string name;
  std::string values;
  std::string message;  // found in helm's error output
};
void PrintTo(const Refusal& r, std::ostream* os) {
  *os << r.name;
}

class HelmRefuses : public HelmChart, public ::testing::WithParamInterface<Refusal> {};

TEST_P(HelmRefuses, NamingTheKey) {
  const auto& r = GetParam();
  const auto x = render_chart(values_file(r.name, r.values));
  EXPECT_NE(x.exit_code, 0) << x.out;
  EXPECT_NE(x.err.find("ambient-cni: " + r.message), std::string::npos) << x.err;
}

INSTANTIATE_TEST_SUITE_P(
    Keys, HelmRefuses,
    ::testing::Values(
        // Istio keys asking for what ambient-cni does not do.
        Refusal{"repair", "repair:\n  enabled: true\n",
                "repair.enabled=true: ambient-cni has no sidecar repair controller"},
        Refusal{"multus", "provider: multus\n", "provider=multus: ambient-cni runs chained"},
        Refusal{"conf_file_name", "cniConfFileName: 10-calico.conflist\n",
                "cniConfFileName=10-calico.conflist: ambient-cni puts its entry into the "
                "configuration the runtime uses"},
        Refusal{"reconcile", "ambient:\n  reconcileIptablesOnStartup: false\n",
                "ambient.reconcileIptablesOnStartup=false: ambient-cni's agent always re-checks"},
        Refusal{"compatibility", "compatibilityVersion: 1.28\n",
                "ambient.reconcileIptablesOnStartup=false (set by compatibilityVersion 1.28)"},
        Refusal{"own_netns", "ambient:\n  shareHostNetworkNamespace: false\n",
                "ambient.shareHostNetworkNamespace=false: ambient-cni's node component always "
                "runs in the host's network namespace"},
        Refusal{"json_logs", "global:\n  logAsJson: true\n", "global.logAsJson=true"},
        Refusal{"debug_variant", "variant: debug\n",
                "variant=debug: ambient-cni publishes one image"},
        Refusal{"global_variant", "global:\n  variant: debug\n", "global.variant=debug"},
        Refusal{"istio_image", "image: install-cni\n", "image=install-cni is Istio's CNI image"},
        Refusal{"scoped_log_levels", "global:\n  logging:\n    level: \"default:info,cni:debug\"\n",
                "global.logging.level=default:info,cni:debug: ambient-cni's node component has "
                "one log level"},
        Refusal{"retry_vs_policy",
                "failurePolicy: closed\nambient:\n  enableAmbientDetectionRetry: false\n",
                "ambient.enableAmbientDetectionRetry=false means failurePolicy=open, but "
                "failurePolicy=closed"},
        // Keys neither Istio's nor ours, anywhere.
        Refusal{"unknown", "excludeNamespace: [kube-system]\n", "unknown key excludeNamespace"},
        Refusal{"unknown_nested", "ambient:\n  dnscapture: false\n",
                "unknown key ambient.dnscapture"},
        Refusal{"unknown_under_cni", "cni:\n  ambient:\n    foo: 1\n",
                "unknown key cni.ambient.foo"},
        Refusal{"other_istio_chart", "global:\n  meshID: mesh1\n", "unknown key global.meshID"},
        Refusal{"defaults_prefix", "defaults:\n  hub: x\n", "unknown key defaults"},
        Refusal{"unknown_profile", "profile: minimal\n", "unknown profile \"minimal\""},
        Refusal{"unknown_platform", "global:\n  platform: eks\n", "unknown platform \"eks\""},
        // Values of the wrong type or out of range.
        Refusal{"not_a_bool", "ambient:\n  enabled: \"yes\"\n",
                "ambient.enabled=yes must be true or false"},
        Refusal{"not_a_list", "excludeNamespaces: kube-system\n",
                "excludeNamespaces must be a list"},
        Refusal{"policy", "failurePolicy: sometimes\n", "failurePolicy=sometimes: closed or open"},
        Refusal{"timeout", "apiTimeoutMs: 0\n", "apiTimeoutMs=0: an integer from 1 to 600000"},
        Refusal{"token", "pluginTokenSeconds: 60\n",
                "pluginTokenSeconds=60: an integer of at least 600"},
        Refusal{"relative_dir", "cniBinDir: opt/cni/bin\n",
                "cniBinDir=opt/cni/bin: must be an absolute path"},
        Refusal{"selector_label", "podLabels:\n  istio.io/dataplane-mode: ambient\n",
                "podLabels.istio.io/dataplane-mode: set by the chart"},
        Refusal{"scope", "global:\n  resourceScope: some\n", "global.resourceScope=some"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace ambient::testing
