// The plugin binary, every verb and spec version, against the Kubernetes API stand-in.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/standins/apiserver/apiserver.h"
#include "tests/support/process.h"

namespace ambient {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using testing::ApiFault;
using testing::ApiServerStandin;

const std::vector<std::string> kVersions = {"0.3.1", "0.4.0", "1.0.0", "1.1.0"};

ApiFault fault(void (*set)(ApiFault&)) {
  ApiFault f;
  set(f);
  return f;
}

// A prevResult as the primary plugin (bridge + host-local) prints it in each version.
json prev_result(const std::string& version) {
  json ip = {{"address", "10.22.0.5/16"}, {"gateway", "10.22.0.1"}, {"interface", 2}};
  json ip6 = {{"address", "fd00:22::5/64"}, {"gateway", "fd00:22::1"}, {"interface", 2}};
  if (version < "1.0.0") {
    ip["version"] = "4";
    ip6["version"] = "6";
  }
  return {{"cniVersion", version},
          {"interfaces",
           {{{"name", "cni0"}, {"mac", "5e:1a:2b:3c:4d:5e"}},
            {{"name", "veth1234"}, {"mac", "6e:1a:2b:3c:4d:5e"}},
            {{"name", "eth0"}, {"mac", "7e:1a:2b:3c:4d:5e"}, {"sandbox", "/var/run/netns/x"}}}},
          {"ips", {ip, ip6}},
          {"routes", {{{"dst", "0.0.0.0/0"}}}},
          {"dns", json::object()}};
}

json namespace_object(const std::string& name, json labels = json::object()) {
  return {{"apiVersion", "v1"},
          {"kind", "Namespace"},
          {"metadata", {{"name", name}, {"labels", std::move(labels)}}}};
}

json pod_object(const std::string& ns, const std::string& name, json labels = json::object()) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          // Every sandbox here carries K8S_POD_UID=0b3c: the pod it is for.
          {"metadata",
           {{"name", name}, {"namespace", ns}, {"uid", "0b3c"}, {"labels", std::move(labels)}}},
          {"spec", {{"nodeName", "node-1"}, {"serviceAccountName", "default"}}},
          {"status", {{"phase", "Pending"}}}};
}

// A network namespace the plugin may be pointed at: an unshared netns bind-mounted on a file
// (what `ip netns add` does), so CNI_NETNS is a real netns and not the plugin's own.
class TestNetns {
 public:
  TestNetns() {
    path_ = fs::path(::testing::TempDir()) / ("ambient-bb-netns-" + std::to_string(::getpid()));
    std::ofstream(path_).close();
    std::thread([this] {
      if (::unshare(CLONE_NEWNET) != 0) return;
      mounted_ = ::mount("/proc/thread-self/ns/net", path_.c_str(), nullptr, MS_BIND, nullptr) == 0;
    }).join();
  }
  ~TestNetns() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
    fs::remove(path_);
  }
  bool ok() const { return mounted_; }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
  bool mounted_ = false;
};

class PluginBinary : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    netns_ = new TestNetns();
    api_ = new ApiServerStandin();
    api_->start();
    api_->put(namespace_object("demo", {{"istio.io/dataplane-mode", "ambient"}}));
    api_->put(namespace_object("legacy"));
    api_->put(namespace_object("kube-system"));
    api_->put(pod_object("demo", "web"));
    api_->put(pod_object("demo", "opted-out", {{"istio.io/dataplane-mode", "none"}}));
    api_->put(pod_object("legacy", "batch"));
    api_->put(pod_object("legacy", "api", {{"istio.io/dataplane-mode", "ambient"}}));
    run_dir_ =
        new fs::path(fs::path(::testing::TempDir()) / ("ambient-bb-" + std::to_string(::getpid())));
    fs::create_directories(*run_dir_);
    api_->write_kubeconfig(*run_dir_ / "kubeconfig");
  }
  static void TearDownTestSuite() {
    api_->stop();
    delete api_;
    delete netns_;
    fs::remove_all(*run_dir_);
    delete run_dir_;
  }
  void SetUp() override {
    ASSERT_TRUE(netns_->ok()) << "cannot create a network namespace (needs root)";
    api_->clear_faults();
    api_->clear_requests();
  }

  json conf(json extra = json::object()) const {
    json c = {{"cniVersion", GetParam()}, {"name", "k8s-pod-network"},
              {"type", "ambient-cni"},    {"cni_agent_run_dir", run_dir_->string()},
              {"api_timeout_ms", 1500},   {"prevResult", prev_result(GetParam())}};
    c.update(extra);
    return c;
  }

  static std::vector<std::string> env(const std::string& command, const std::string& ns,
                                      const std::string& name, const std::string& netns) {
    return {"CNI_COMMAND=" + command,
            "CNI_CONTAINERID=4f1c0ffee",
            "CNI_NETNS=" + netns,
            "CNI_IFNAME=eth0",
            "CNI_ARGS=K8S_POD_UID=0b3c;IgnoreUnknown=1;K8S_POD_NAME=" + name +
                ";K8S_POD_INFRA_CONTAINER_ID=4f1c0ffee;K8S_POD_NAMESPACE=" + ns,
            "CNI_PATH=/opt/cni/bin",
            "PATH=/usr/bin:/bin"};
  }

  testing::Execution run(const std::vector<std::string>& e, const std::string& input) const {
    auto x = testing::run({AMBIENT_PLUGIN_BIN}, e, input, milliseconds(20000));
    EXPECT_FALSE(x.timed_out);
    return x;
  }
  testing::Execution add(const std::string& ns, const std::string& name, json c) const {
    return run(env("ADD", ns, name, netns_->path()), c.dump());
  }

  // stdout holds exactly one JSON document (or nothing).
  static json stdout_json(const testing::Execution& x) {
    auto j = json::parse(x.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "stdout is not one JSON document: " << x.out;
    return j;
  }
  static void expect_error(const testing::Execution& x, int code, const std::string& text) {
    EXPECT_NE(x.exit_code, 0);
    const auto j = stdout_json(x);
    EXPECT_EQ(j.value("code", 0), code) << x.out << x.err;
    EXPECT_NE(x.out.find(text), std::string::npos) << x.out;
  }

  static inline ApiServerStandin* api_ = nullptr;
  static inline TestNetns* netns_ = nullptr;
  static inline fs::path* run_dir_ = nullptr;
};

TEST_P(PluginBinary, Version) {
  const auto x = run({"CNI_COMMAND=VERSION", "CNI_CONTAINERID=dummy", "CNI_NETNS=dummy",
                      "CNI_IFNAME=dummy", "CNI_PATH=dummy"},
                     json{{"cniVersion", GetParam()}}.dump());
  ASSERT_EQ(x.exit_code, 0) << x.out << x.err;
  const auto j = stdout_json(x);
  EXPECT_EQ(j["cniVersion"], GetParam());
  EXPECT_EQ(j["supportedVersions"], (json{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}));
}

TEST_P(PluginBinary, ExcludedNamespacePassesThroughWithoutAnyApiCall) {
  const auto x = add("kube-system", "coredns-1", conf());
  ASSERT_EQ(x.exit_code, 0) << x.err;
  EXPECT_EQ(stdout_json(x), prev_result(GetParam()));
  EXPECT_TRUE(api_->requests().empty());
  EXPECT_NE(x.err.find("excluded namespace kube-system"), std::string::npos) << x.err;
}

TEST_P(PluginBinary, UntouchedPodPassesThrough) {
  const auto x = add("legacy", "batch", conf());
  ASSERT_EQ(x.exit_code, 0) << x.out << x.err;
  EXPECT_EQ(stdout_json(x), prev_result(GetParam()));
  const auto reqs = api_->requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].path, "/api/v1/namespaces/legacy/pods/batch");
  EXPECT_EQ(reqs[1].path, "/api/v1/namespaces/legacy");
  EXPECT_TRUE(reqs[0].authorized && reqs[1].authorized);
}

TEST_P(PluginBinary, PodLabelNoneInAmbientNamespaceIsUntouched) {
  const auto x = add("demo", "opted-out", conf());
  ASSERT_EQ(x.exit_code, 0) << x.out << x.err;
  EXPECT_EQ(stdout_json(x), prev_result(GetParam()));
  EXPECT_NE(x.err.find("pod label none"), std::string::npos) << x.err;
}

TEST_P(PluginBinary, EnrolledPodFailsClosedWhileNoAgentExists) {
  for (const auto& [ns, name] : {std::pair{"demo", "web"}, std::pair{"legacy", "api"}}) {
    const auto x = add(ns, name, conf());
    expect_error(x, 11, "node agent unavailable");
  }
}

TEST_P(PluginBinary, NoPrevResult) {
  auto c = conf();
  c.erase("prevResult");
  const auto x = add("kube-system", "p", c);
  ASSERT_EQ(x.exit_code, 0);
  EXPECT_EQ(stdout_json(x), (json{{"cniVersion", GetParam()}}));
}

TEST_P(PluginBinary, ApiDownFailsClosedOrPassesOpen) {
  api_->add_fault(fault([](ApiFault& f) { f.drop = true; }));
  expect_error(add("legacy", "batch", conf()), 11, "looking up pod legacy/batch");
  const auto open = add("legacy", "batch", conf({{"failure_policy", "open"}}));
  ASSERT_EQ(open.exit_code, 0) << open.out << open.err;
  EXPECT_EQ(stdout_json(open), prev_result(GetParam()));
  EXPECT_NE(open.err.find("failure_policy=open"), std::string::npos);
}

TEST_P(PluginBinary, ApiSlowerThanTheDeadline) {
  api_->add_fault(fault([](ApiFault& f) { f.delay_ms = 3000; }));
  const auto start = std::chrono::steady_clock::now();
  const auto x = add("legacy", "batch", conf({{"api_timeout_ms", 300}}));
  expect_error(x, 11, "legacy/batch");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST_P(PluginBinary, ApiErrorsNameTheirCause) {
  api_->add_fault(fault([](ApiFault& f) {
    f.path_prefix = "/api/v1/namespaces/legacy/pods";
    f.status = 403;
  }));
  expect_error(add("legacy", "batch", conf()), 11, "403");
  api_->clear_faults();
  api_->add_fault(fault([](ApiFault& f) { f.bad_json = true; }));
  expect_error(add("legacy", "batch", conf()), 11, "legacy/batch");
  api_->clear_faults();
  expect_error(add("legacy", "ghost", conf()), 11, "404");
  const auto open = add("legacy", "ghost", conf({{"failure_policy", "open"}}));
  EXPECT_EQ(open.exit_code, 0) << open.out;
}

TEST_P(PluginBinary, EveryLookupFailurePassesThroughUnderTheOpenPolicy) {
  const auto open = conf({{"failure_policy", "open"}, {"api_timeout_ms", 300}});
  const std::vector<std::pair<const char*, ApiFault>> faults = {
      {"down", fault([](ApiFault& f) { f.drop = true; })},
      {"slow", fault([](ApiFault& f) { f.delay_ms = 2000; })},
      {"403", fault([](ApiFault& f) { f.status = 403; })},
      {"500", fault([](ApiFault& f) { f.status = 500; })},
      {"bad JSON", fault([](ApiFault& f) { f.bad_json = true; })},
  };
  for (const auto& [name, f] : faults) {
    api_->clear_faults();
    api_->add_fault(f);
    const auto x = add("legacy", "batch", open);
    EXPECT_EQ(x.exit_code, 0) << name << ": " << x.out << x.err;
    EXPECT_EQ(stdout_json(x), prev_result(GetParam())) << name;
    EXPECT_NE(x.err.find("failure_policy=open"), std::string::npos) << name;
  }
  api_->clear_faults();
  const auto kubeconfig = *run_dir_ / "kubeconfig-open-bad-token";
  const auto token = *run_dir_ / "open-bad-token";
  api_->write_kubeconfig(kubeconfig, token);
  std::ofstream(token) << "not-the-token";
  auto c = open;
  c["kubeconfig"] = kubeconfig.string();
  const auto x = add("legacy", "batch", c);
  EXPECT_EQ(x.exit_code, 0) << "401: " << x.out;
  EXPECT_NE(x.err.find("401"), std::string::npos);
}

TEST_P(PluginBinary, WrongTokenIs401) {
  const auto kubeconfig = *run_dir_ / "kubeconfig-bad-token";
  const auto token = *run_dir_ / "bad-token";
  api_->write_kubeconfig(kubeconfig, token);  // writes the real token into the file…
  std::ofstream(token) << "not-the-token";    // …which then rotates to a wrong one
  expect_error(add("legacy", "batch", conf({{"kubeconfig", kubeconfig.string()}})), 11, "401");
}

TEST_P(PluginBinary, DelAlwaysSucceeds) {
  // containerd: three DELs, the 2nd and 3rd without netns or prevResult; the API may be down.
  api_->add_fault(fault([](ApiFault& f) { f.drop = true; }));
  auto bare = conf();
  bare.erase("prevResult");
  for (const auto& [netns, c] :
       {std::pair{netns_->path(), conf()}, std::pair{std::string(), bare},
        std::pair{std::string(), bare}, std::pair{std::string("/var/run/netns/gone"), bare}}) {
    const auto x = run(env("DEL", "demo", "web", netns), c.dump());
    EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
    EXPECT_EQ(x.out, "");
  }
  const auto garbage = run(env("DEL", "demo", "web", ""), "{garbage");
  EXPECT_EQ(garbage.exit_code, 0);
  EXPECT_EQ(garbage.out, "");
}

TEST_P(PluginBinary, CheckNeeds040) {
  const auto x = run(env("CHECK", "legacy", "batch", netns_->path()), conf().dump());
  if (GetParam() < "0.4.0") {
    expect_error(x, 1, "CHECK needs cniVersion 0.4.0");
  } else {
    EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
    EXPECT_EQ(x.out, "");
  }
}

TEST_P(PluginBinary, StatusAndGcNeed110) {
  auto gc = conf();
  gc["cni.dev/valid-attachments"] = json::array({{{"containerID", "a1"}, {"ifname", "eth0"}}});
  const auto status = run(env("STATUS", "", "", ""), conf().dump());
  const auto gcx = run(env("GC", "", "", ""), gc.dump());
  if (GetParam() == "1.1.0") {
    // No node agent runs here: not ready to enrol pods (decision 011), unless switched off.
    expect_error(status, 50, "node agent unavailable");
    EXPECT_EQ(
        run(env("STATUS", "", "", ""), conf({{"status_checks_agent", false}}).dump()).exit_code, 0);
    EXPECT_EQ(gcx.exit_code, 0) << gcx.out;
    auto no_kubeconfig = conf({{"kubeconfig", "/nonexistent/kubeconfig"}});
    expect_error(run(env("STATUS", "", "", ""), no_kubeconfig.dump()), 50, "kubeconfig");
  } else {
    expect_error(status, 1, "STATUS needs cniVersion 1.1.0");
    expect_error(gcx, 1, "GC needs cniVersion 1.1.0");
  }
}

TEST_P(PluginBinary, MalformedInput) {
  expect_error(run(env("ADD", "demo", "web", netns_->path()), "{\"cniVersion\":"), 6,
               "not valid JSON");
  expect_error(add("demo", "web", conf({{"exclude_namespaces", 1}})), 7, "exclude_namespaces");
  expect_error(add("demo", "web", conf({{"cniVersion", "0.2.0"}})), 1, "0.2.0");
  auto e = env("ADD", "demo", "web", netns_->path());
  e[4] = "CNI_ARGS=K8S_POD_NAME=web;BOGUS=1";
  expect_error(run(e, conf().dump()), 4, "CNI_ARGS");
  e = env("ADD", "demo", "web", netns_->path());
  e[1] = "CNI_CONTAINERID=";
  expect_error(run(e, conf().dump()), 4, "CNI_CONTAINERID");
  expect_error(run(env("ADD", "kube-system", "p", "/proc/self/ns/net"), conf().dump()), 8,
               "own network namespace");
  expect_error(run(env("EXPLODE", "kube-system", "p", netns_->path()), conf().dump()), 4,
               "CNI_COMMAND");
}

TEST_P(PluginBinary, AboutTextWithoutCommand) {
  const auto x = run({"PATH=/usr/bin"}, "");
  EXPECT_EQ(x.exit_code, 0);
  EXPECT_EQ(x.out, "");
  EXPECT_NE(x.err.find("CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
            std::string::npos);
}

TEST_P(PluginBinary, ConcurrentAddsAllSucceed) {
  std::vector<std::future<testing::Execution>> runs;
  for (int i = 0; i < 16; ++i) {
    runs.push_back(
        std::async(std::launch::async, [this] { return add("legacy", "batch", conf()); }));
  }
  for (auto& r : runs) {
    const auto x = r.get();
    EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
    EXPECT_EQ(stdout_json(x), prev_result(GetParam()));
  }
}

INSTANTIATE_TEST_SUITE_P(SpecVersions, PluginBinary, ::testing::ValuesIn(kVersions),
                         [](const auto& info) {
                           std::string n = "v" + info.param;
                           for (auto& c : n) c = c == '.' ? '_' : c;
                           return n;
                         });

}  // namespace
}  // namespace ambient
