// The kustomize manifests as kubectl 1.32 renders them: every overlay renders, the DaemonSet
// follows ambient-contract.md §7 (capabilities, mounts, not privileged, probes, priority,
// tolerations, update strategy), its configuration is made of flags the binary has, and RBAC
// grants what the code calls — no more, no less.
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/support/files.h"
#include "tests/support/process.h"

namespace ambient {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

const fs::path kManifests = fs::path(AMBIENT_SOURCE_DIR) / "install/manifests";

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

struct Rendered {
  std::string text;
  std::vector<json> objects;
  std::vector<json> of(const std::string& kind) const {
    std::vector<json> out;
    for (const auto& o : objects) {
      if (o.value("kind", "") == kind) out.push_back(o);
    }
    return out;
  }
  json one(const std::string& kind) const {
    const auto all = of(kind);
    EXPECT_EQ(all.size(), 1u) << kind;
    return all.empty() ? json::object() : all[0];
  }
};

Rendered render(const std::string& dir) {
  const auto x = testing::run({"/usr/bin/kubectl", "kustomize", (kManifests / dir).string()},
                              {"PATH=/usr/bin:/bin", "HOME=/tmp"}, "", 60s);
  EXPECT_EQ(x.exit_code, 0) << dir << ": " << x.err;
  Rendered r{x.out, {}};
  for (const auto& doc : YAML::LoadAll(x.out)) r.objects.push_back(to_json(doc));
  return r;
}

struct Platform {
  std::string dir;
  std::string cni_bin_dir;
  std::string cni_conf_dir;
  std::string mode;
};

void PrintTo(const Platform& p, std::ostream* os) {
  *os << p.dir;
}

class Manifests : public ::testing::TestWithParam<Platform> {};

TEST_P(Manifests, RendersAndTheDaemonSetFollowsTheNodeConventions) {
  const auto& p = GetParam();
  const auto r = render(p.dir);
  ASSERT_FALSE(r.objects.empty());
  EXPECT_EQ(r.text.find("privileged: true"), std::string::npos);

  const auto ds = r.one("DaemonSet");
  ASSERT_TRUE(ds.is_object() && ds.contains("spec"));
  EXPECT_EQ(ds["metadata"]["namespace"], "istio-system");
  EXPECT_EQ(ds["spec"]["updateStrategy"],
            json({{"type", "RollingUpdate"}, {"rollingUpdate", {{"maxUnavailable", 1}}}}));
  const auto& tpl = ds["spec"]["template"];
  EXPECT_EQ(tpl["metadata"]["labels"]["istio.io/dataplane-mode"], "none");
  const auto& spec = tpl["spec"];
  EXPECT_EQ(spec["priorityClassName"], "system-node-critical");
  EXPECT_EQ(spec["hostNetwork"], true);
  EXPECT_EQ(spec["tolerations"], json::array({{{"operator", "Exists"}}}));  // every taint
  EXPECT_EQ(spec["serviceAccountName"], "ambient-cni-node");
  ASSERT_EQ(spec["containers"].size(), 1u);
  EXPECT_FALSE(spec.contains("initContainers"));
  const auto& c = spec["containers"][0];

  const auto& sc = c["securityContext"];
  EXPECT_EQ(sc.value("privileged", false), false);
  EXPECT_EQ(sc["capabilities"]["drop"], json::array({"ALL"}));
  const std::set<std::string> add(sc["capabilities"]["add"].begin(),
                                  sc["capabilities"]["add"].end());
  EXPECT_EQ(add, (std::set<std::string>{"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE",
                                        "DAC_OVERRIDE"}));
  EXPECT_EQ(sc["capabilities"]["add"].size(), add.size());
  // Memory requested and bounded: a runaway agent is restarted, not left to squeeze the node.
  EXPECT_TRUE(c["resources"]["requests"].contains("memory"));
  EXPECT_TRUE(c["resources"]["limits"].contains("memory"));

  // Mounts: exactly §7's, each host path where this platform keeps it.
  std::map<std::string, json> volumes;
  for (const auto& v : spec["volumes"]) volumes[v["name"]] = v;
  struct Mount {
    std::string host_path;
    bool read_only;
    std::string propagation;
    bool operator==(const Mount&) const = default;
  };
  std::map<std::string, Mount> mounts;  // by mountPath
  for (const auto& m : c["volumeMounts"]) {
    const auto& v = volumes.at(m["name"].get<std::string>());
    ASSERT_TRUE(v.contains("hostPath")) << v;
    mounts[m["mountPath"]] = {v["hostPath"]["path"], m.value("readOnly", false),
                              m.value("mountPropagation", "")};
  }
  EXPECT_EQ(volumes.size(), mounts.size());  // no volume without a mount
  const std::map<std::string, Mount> expected = {
      {"/host/opt/cni/bin", {p.cni_bin_dir, false, ""}},
      {"/host/etc/cni/net.d", {p.cni_conf_dir, false, ""}},
      {"/host/proc", {"/proc", true, ""}},
      {"/var/run/netns", {"/var/run/netns", false, "HostToContainer"}},
      {"/var/run/ambient-cni", {"/var/run/ambient-cni", false, ""}},
      {"/var/run/ztunnel", {"/var/run/ztunnel", false, ""}},
  };
  EXPECT_EQ(mounts.size(), expected.size());
  for (const auto& [path, want] : expected) {
    ASSERT_TRUE(mounts.contains(path)) << path;
    EXPECT_TRUE(mounts[path] == want) << path << " from " << mounts[path].host_path;
  }

  // Probes on :8000, metrics on :15014.
  EXPECT_EQ(c["livenessProbe"]["httpGet"], json({{"path", "/healthz"}, {"port", 8000}}));
  EXPECT_EQ(c["readinessProbe"]["httpGet"], json({{"path", "/readyz"}, {"port", 8000}}));
  std::set<long long> ports;
  for (const auto& port : c["ports"]) ports.insert(port["containerPort"].get<long long>());
  EXPECT_EQ(ports, (std::set<long long>{8000, 15014}));

  // The container's paths agree with its mounts (the binary reads them from the environment).
  std::map<std::string, std::string> env;
  for (const auto& e : c["env"]) {
    if (e.contains("value")) env[e["name"]] = e["value"];
  }
  EXPECT_EQ(env["AMBIENT_CNI_BIN_DIR"], "/host/opt/cni/bin");
  EXPECT_EQ(env["AMBIENT_CNI_CONF_DIR"], "/host/etc/cni/net.d");
  EXPECT_EQ(env["AMBIENT_HOST_PROC_DIR"], "/host/proc");
  EXPECT_EQ(env["AMBIENT_NETNS_DIR"], "/var/run/netns");
  EXPECT_EQ(env["AMBIENT_RUN_DIR"], "/var/run/ambient-cni");
  EXPECT_EQ(env["AMBIENT_ZTUNNEL_SOCKET"].rfind("/var/run/ztunnel/", 0), 0u);

  const auto cm = r.one("ConfigMap");
  EXPECT_EQ(c["envFrom"][0]["configMapRef"]["name"], cm["metadata"]["name"]);
  EXPECT_EQ(cm["data"]["AMBIENT_CNI_MODE"], p.mode);
}

// Every variable the manifests set is one `ambient-cni-node run` reads.
TEST_P(Manifests, EveryConfigurationKeyIsAFlagOfRun) {
  const auto help = testing::run({AMBIENT_NODE_BIN, "run", "--help"}, {}, "", 10s);
  ASSERT_EQ(help.exit_code, 0) << help.err;
  const auto r = render(GetParam().dir);
  std::vector<std::string> names;
  const auto cm = r.one("ConfigMap");
  for (const auto& [k, v] : cm["data"].items()) names.push_back(k);
  const auto ds = r.one("DaemonSet");
  for (const auto& e : ds["spec"]["template"]["spec"]["containers"][0]["env"]) {
    names.push_back(e["name"]);
  }
  ASSERT_GT(names.size(), 10u);
  const auto in_cluster = testing::read_file(fs::path(AMBIENT_SOURCE_DIR) / "kube/kubeconfig.cpp");
  for (const auto& n : names) {
    if (n.starts_with("KUBERNETES_SERVICE_")) {  // the kubelet's own variables, read in-cluster
      EXPECT_NE(in_cluster.find("getenv(\"" + n + "\")"), std::string::npos) << n;
      continue;
    }
    EXPECT_NE(help.out.find("(Env:" + n + ")"), std::string::npos) << n << " is not read by run";
  }
}

// (apiGroup, resource, verb, resourceName) as RBAC grants them.
using Grant = std::tuple<std::string, std::string, std::string, std::string>;

std::set<Grant> grants(const std::vector<json>& roles) {
  std::set<Grant> out;
  for (const auto& role : roles) {
    for (const auto& rule : role["rules"]) {
      const auto names = rule.value("resourceNames", json::array({""}));
      for (const auto& g : rule["apiGroups"]) {
        for (const auto& res : rule["resources"]) {
          for (const auto& verb : rule["verbs"]) {
            for (const auto& name : names) {
              out.insert(Grant{g.get<std::string>(), res.get<std::string>(),
                               verb.get<std::string>(), name.get<std::string>()});
            }
          }
        }
      }
    }
  }
  return out;
}

// The lower-case word starting at `pos`.
std::string word_at(const std::string& s, std::size_t pos) {
  std::size_t end = pos;
  while (end < s.size() && std::islower(static_cast<unsigned char>(s[end]))) ++end;
  return s.substr(pos, end - pos);
}

// The API paths the code builds, line by line (no std::regex: GCC 12 under ASan warns in it):
// "/api/v1/<resource>" literals, "/pods/" + name + "/status", ".../serviceaccounts/{}/token" and
// "/apis/<group>/v1/namespaces/" + ns + "/<resource>/".
std::set<std::string> resources_the_code_calls() {
  std::set<std::string> out;
  for (const char* dir : {"agent", "plugin", "install", "node", "kube"}) {
    for (const auto& f : fs::recursive_directory_iterator(fs::path(AMBIENT_SOURCE_DIR) / dir)) {
      if (f.path().extension() != ".cpp") continue;
      std::istringstream lines(testing::read_file(f.path()));
      std::string line;
      while (std::getline(lines, line)) {
        for (auto at = line.find("\"/api/v1/"); at != std::string::npos;
             at = line.find("\"/api/v1/", at + 1)) {
          const auto resource = word_at(line, at + 9);
          if (!resource.empty() && line[at + 9 + resource.size()] == '"')
            out.insert("/" + resource);
        }
        if (line.find("/serviceaccounts/") != std::string::npos &&
            line.find("/token\"") != std::string::npos) {
          out.insert("/serviceaccounts/token");
        }
        if (line.find("\"/api/v1/namespaces/\"") != std::string::npos &&
            line.find("\"/events\"") != std::string::npos) {
          out.insert("/events");
        }
        const auto pods = line.find("\"/pods/\"");
        if (pods != std::string::npos && line.find("\"/status\"", pods) != std::string::npos) {
          out.insert("/pods/status");
        }
        if (const auto apis = line.find("\"/apis/"); apis != std::string::npos) {
          const auto group = word_at(line, apis + 7);
          const auto rest = line.find("/v1/namespaces/\"", apis);
          const auto next = rest == std::string::npos ? rest : line.find("\"/", rest + 16);
          if (!group.empty() && next != std::string::npos) {
            out.insert(group + "/" + word_at(line, next + 2));
          }
        }
      }
    }
  }
  return out;
}

// Service account → what its roles grant, through the bindings that name it.
std::map<std::string, std::set<Grant>> grants_by_subject(const Rendered& r,
                                                         const std::string& skip_role) {
  std::map<std::string, std::set<Grant>> out;
  for (const auto& [binding_kind, role_kind] :
       {std::pair{"ClusterRoleBinding", "ClusterRole"}, std::pair{"RoleBinding", "Role"}}) {
    for (const auto& b : r.of(binding_kind)) {
      const std::string role_name = b["roleRef"]["name"];
      if (role_name == skip_role) continue;
      std::vector<json> roles;
      for (const auto& role : r.of(role_kind)) {
        if (role["metadata"]["name"] == role_name) roles.push_back(role);
      }
      EXPECT_EQ(roles.size(), 1u) << binding_kind << " " << b["metadata"]["name"]
                                  << " refers to a missing " << role_kind << " " << role_name;
      for (const auto& s : b["subjects"]) {
        EXPECT_EQ(s["kind"], "ServiceAccount");
        EXPECT_EQ(s["namespace"], "istio-system");
        out[s["name"].get<std::string>()].merge(grants(roles));
      }
    }
  }
  return out;
}

TEST_P(Manifests, RbacGrantsWhatTheCodeCallsAndNothingMore) {
  const auto r = render(GetParam().dir);
  std::vector<json> scc_roles;
  for (const auto* kind : {"ClusterRole", "Role"}) {
    for (const auto& role : r.of(kind)) {
      if (role["metadata"]["name"] == "ambient-cni-node-scc") scc_roles.push_back(role);
    }
  }
  // The node agent: informers, the status annotation, the upgrade check, the plugin's token.
  const std::set<Grant> agent = {
      {"", "pods", "get", ""},
      {"", "pods", "list", ""},
      {"", "pods", "watch", ""},
      {"", "namespaces", "get", ""},
      {"", "namespaces", "list", ""},
      {"", "namespaces", "watch", ""},
      {"", "pods/status", "patch", ""},
      {"", "events", "create", ""},
      {"apps", "daemonsets", "get", "ambient-cni-node"},
      {"", "serviceaccounts/token", "create", "ambient-cni-plugin"},
  };
  // The plugin (its kubeconfig's token): the two lookups at ADD, nothing else.
  const std::set<Grant> plugin = {{"", "pods", "get", ""}, {"", "namespaces", "get", ""}};
  EXPECT_EQ(grants_by_subject(r, "ambient-cni-node-scc"),
            (std::map<std::string, std::set<Grant>>{{"ambient-cni-node", agent},
                                                    {"ambient-cni-plugin", plugin}}));
  EXPECT_EQ(r.one("ConfigMap")["data"]["AMBIENT_PLUGIN_SERVICE_ACCOUNT"], "ambient-cni-plugin");

  // Both directions against the source: every resource granted is called, every one called is
  // granted.
  const auto called = resources_the_code_calls();
  EXPECT_EQ(called, (std::set<std::string>{"/pods", "/namespaces", "/pods/status", "/events",
                                           "apps/daemonsets", "/serviceaccounts/token"}));
  // Verbs: lists and watches go through the informers; the patch is the status annotation.
  EXPECT_NE(testing::read_file(fs::path(AMBIENT_SOURCE_DIR) / "agent/informer.cpp").find("watch=1"),
            std::string::npos);
  EXPECT_NE(
      testing::read_file(fs::path(AMBIENT_SOURCE_DIR) / "agent/kube_access.cpp").find(".patch("),
      std::string::npos);
  // The plugin only gets: no list, watch, patch or create anywhere in its sources.
  for (const auto& f : fs::directory_iterator(fs::path(AMBIENT_SOURCE_DIR) / "plugin")) {
    const auto text = testing::read_file(f.path());
    for (const char* call : {".list(", ".watch(", "watch=", ".patch(", ".create("}) {
      EXPECT_EQ(text.find(call), std::string::npos) << f.path() << " calls " << call;
    }
  }
  EXPECT_NE(testing::read_file(fs::path(AMBIENT_SOURCE_DIR) / "plugin/pod_metadata.cpp")
                .find("client.get(ns_path + \"/pods/\""),
            std::string::npos);

  if (GetParam().dir == "overlays/openshift") {
    // The platform's requirement, not the code's: `use` of our own SCC, nothing else.
    EXPECT_EQ(grants(scc_roles),
              (std::set<Grant>{{"security.openshift.io", "securitycontextconstraints", "use",
                                "ambient-cni-node"}}));
  } else {
    EXPECT_TRUE(scc_roles.empty());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Overlays, Manifests,
    ::testing::Values(Platform{"base", "/opt/cni/bin", "/etc/cni/net.d", "chained"},
                      Platform{"overlays/k3s", "/var/lib/rancher/k3s/data/cni",
                               "/var/lib/rancher/k3s/agent/etc/cni/net.d", "chained"},
                      Platform{"overlays/gke", "/home/kubernetes/bin", "/etc/cni/net.d", "chained"},
                      Platform{"overlays/openshift", "/var/lib/cni/bin",
                               "/etc/kubernetes/cni/net.d", "owned"},
                      Platform{"overlays/testbed", "/opt/cni/bin", "/etc/cni/net.d", "chained"}),
    [](const auto& info) {
      auto n = info.param.dir.substr(info.param.dir.rfind('/') + 1);
      return n;
    });

// scripts/cluster.sh's node has no kube-proxy and no registry: the testbed overlay may change the
// API address and the pull policy, add the namespace Istio would have made, and nothing else.
TEST(PlatformManifests, TheTestbedOverlayChangesOnlyTheApiAddressAndThePullPolicy) {
  const auto base = render("base");
  auto testbed = render("overlays/testbed");
  auto& container = testbed.objects;
  std::vector<json> rest;
  for (auto& o : container) {
    if (o["kind"] == "Namespace") {
      EXPECT_EQ(o["metadata"]["name"], "istio-system");
      continue;
    }
    if (o["kind"] == "DaemonSet") {
      auto& c = o["spec"]["template"]["spec"]["containers"][0];
      EXPECT_EQ(c["imagePullPolicy"], "Never");
      c["imagePullPolicy"] = "IfNotPresent";
      json env = json::array();
      std::map<std::string, std::string> added;
      for (const auto& e : c["env"]) {
        const std::string name = e["name"];
        if (name.starts_with("KUBERNETES_SERVICE_")) {
          added[name] = e["value"];
        } else {
          env.push_back(e);
        }
      }
      EXPECT_EQ(added, (std::map<std::string, std::string>{{"KUBERNETES_SERVICE_HOST", "10.77.0.1"},
                                                           {"KUBERNETES_SERVICE_PORT", "6443"}}));
      c["env"] = env;
    }
    rest.push_back(o);
  }
  EXPECT_EQ(json(rest), json(base.objects));
}

TEST(PlatformManifests, GkeAdmitsNodeCriticalPodsOutsideKubeSystem) {
  const auto quota = render("overlays/gke").one("ResourceQuota");
  EXPECT_EQ(quota["metadata"]["namespace"], "istio-system");
  EXPECT_EQ(quota["spec"]["scopeSelector"]["matchExpressions"][0],
            json({{"operator", "In"},
                  {"scopeName", "PriorityClass"},
                  {"values", {"system-node-critical"}}}));
}

TEST(PlatformManifests, OpenShiftSccAllowsExactlyTheDaemonSet) {
  const auto r = render("overlays/openshift");
  const auto scc = r.one("SecurityContextConstraints");
  EXPECT_FALSE(scc["metadata"].contains("namespace"));  // cluster-scoped
  EXPECT_EQ(scc["allowPrivilegedContainer"], false);
  EXPECT_EQ(scc["allowHostNetwork"], true);
  EXPECT_EQ(scc["allowHostPID"], false);
  EXPECT_EQ(scc["allowHostDirVolumePlugin"], true);
  const std::set<std::string> caps(scc["allowedCapabilities"].begin(),
                                   scc["allowedCapabilities"].end());
  const auto ds = r.one("DaemonSet");
  const auto& c = ds["spec"]["template"]["spec"]["containers"][0];
  const std::set<std::string> add(c["securityContext"]["capabilities"]["add"].begin(),
                                  c["securityContext"]["capabilities"]["add"].end());
  EXPECT_EQ(caps, add);
  EXPECT_EQ(ds["spec"]["template"]["metadata"]["annotations"]["openshift.io/required-scc"],
            scc["metadata"]["name"]);
  EXPECT_EQ(c["securityContext"]["seLinuxOptions"]["type"], "spc_t");
}

}  // namespace
}  // namespace ambient
