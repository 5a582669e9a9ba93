// The verb flows with a scripted metadata source (the black-box tests use the real API client).
#include <gtest/gtest.h>

#include <spdlog/sinks/ostream_sink.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "plugin/cni_error.h"
#include "plugin/plugin.h"
#include "rundir/store.h"

namespace ambient::plugin {
namespace {

using nlohmann::json;

struct Script {
  int calls = 0;
  bool fail = false;
  config::Labels pod_labels;
  config::Labels ns_labels;
  std::string uid;
};

class ScriptedSource : public PodMetadataSource {
 public:
  explicit ScriptedSource(Script& s) : s_(s) {}
  PodMetadata fetch(std::string_view ns, std::string_view name) override {
    ++s_.calls;
    if (s_.fail) throw MetadataError("GET /api/v1/namespaces/demo/pods/web: 401 Unauthorized");
    PodMetadata m;
    m.pod.namespace_ = std::string(ns);
    m.pod.name = std::string(name);
    m.pod.labels = s_.pod_labels;
    m.pod.uid = s_.uid;
    m.ns.name = std::string(ns);
    m.ns.labels = s_.ns_labels;
    return m;
  }

 private:
  Script& s_;
};

// An agent that records what it was asked and answers as scripted (or is not running).
struct AgentScript {
  bool reachable = false;
  bool silent = false;  // took the request, never answered
  rundir::AgentReply reply = rundir::AgentReply::success(false, "no enablement selector matched");
  std::vector<rundir::AgentRequest> requests;
};

class ScriptedAgent : public AgentClient {
 public:
  explicit ScriptedAgent(AgentScript& s) : s_(s) {}
  rundir::AgentReply call(const rundir::AgentRequest& r) override {
    if (!s_.reachable) throw AgentNotRunning("/run/x/agent.sock: No such file or directory");
    s_.requests.push_back(r);
    if (s_.silent) throw CniError(11, "node agent unavailable: no answer within 15000 ms");
    return s_.reply;
  }

 private:
  AgentScript& s_;
};

class PluginFlow : public ::testing::Test {
 protected:
  void SetUp() override {
    netns_path_ = ::testing::TempDir() + "/fake-netns";
    std::ofstream(netns_path_) << "";
    deps_.metadata = [this](const config::PluginConfig&) {
      return std::make_unique<ScriptedSource>(script_);
    };
    deps_.agent = [this](const config::PluginConfig&) {
      return std::make_unique<ScriptedAgent>(agent_);
    };
    run_dir_ = ::testing::TempDir() + "/plugin-flow-run-" + std::to_string(::getpid());
    std::filesystem::remove_all(run_dir_);
    deps_.log = std::make_shared<spdlog::logger>(
        "test", std::make_shared<spdlog::sinks::ostream_sink_st>(log_));
  }

  CniEnv env(const char* command, const char* args = "K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web") {
    CniEnv e;
    e.command = command;
    e.command_set = true;
    e.container_id = "c0ffee";
    e.netns = netns_path_;
    e.ifname = "eth0";
    e.args = args;
    e.path = "/opt/cni/bin";
    return e;
  }

  int run(const CniEnv& e, const json& conf) {
    out_.str("");
    return run_plugin(e, conf.dump(), out_, deps_);
  }
  json output() const { return json::parse(out_.str()); }

  json conf(const char* version = "1.0.0") {
    return {{"cniVersion", version},
            {"name", "k8s"},
            {"type", "ambient-cni"},
            {"cni_agent_run_dir", run_dir_},
            {"prevResult",
             {{"cniVersion", version},
              {"ips", {{{"address", "10.1.0.5/24"}, {"interface", 0}}}},
              {"interfaces", {{{"name", "eth0"}}}}}}};
  }

  void TearDown() override { std::filesystem::remove_all(run_dir_); }

  Script script_;
  AgentScript agent_;
  std::string run_dir_;
  PluginDeps deps_;
  std::ostringstream out_;
  std::ostringstream log_;
  std::string netns_path_;
};

TEST_F(PluginFlow, ExcludedNamespaceNeedsNoLookup) {
  EXPECT_EQ(run(env("ADD", "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=dns"), conf()), 0);
  EXPECT_EQ(script_.calls, 0);
  EXPECT_EQ(output(), conf()["prevResult"]);
  EXPECT_NE(log_.str().find("excluded namespace kube-system"), std::string::npos);
}

TEST_F(PluginFlow, NotAKubernetesPodPassesThrough) {
  EXPECT_EQ(run(env("ADD", ""), conf()), 0);
  EXPECT_EQ(script_.calls, 0);
  EXPECT_EQ(output(), conf()["prevResult"]);
}

TEST_F(PluginFlow, UntouchedPodPassesThroughConverted) {
  auto c = conf("0.4.0");
  c["prevResult"]["ips"][0]["version"] = "4";
  EXPECT_EQ(run(env("ADD"), c), 0);
  EXPECT_EQ(script_.calls, 1);
  EXPECT_EQ(output(), c["prevResult"]);
}

TEST_F(PluginFlow, NoPrevResultPrintsOnlyTheVersion) {
  auto c = conf();
  c.erase("prevResult");
  EXPECT_EQ(run(env("ADD"), c), 0);
  EXPECT_EQ(output(), (json{{"cniVersion", "1.0.0"}}));
}

TEST_F(PluginFlow, EnrolledPodFailsClosedWithoutAgent) {
  script_.ns_labels = {{"istio.io/dataplane-mode", "ambient"}};
  EXPECT_EQ(run(env("ADD"), conf()), 1);
  EXPECT_EQ(output()["code"], 11);
  EXPECT_NE(output()["msg"].get<std::string>().find("node agent unavailable"), std::string::npos);
  // A failed ADD leaves no record claiming a running pod.
  EXPECT_TRUE(rundir::RunDir(run_dir_).records().empty());
}

TEST_F(PluginFlow, TheAgentDecidesAndEnrolsInOneRoundTrip) {
  agent_.reachable = true;
  agent_.reply = rundir::AgentReply::success(true, "namespace label ambient");
  EXPECT_EQ(run(env("ADD", "K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web;K8S_POD_UID=u-1"), conf()), 0);
  EXPECT_EQ(output(), conf()["prevResult"]);
  EXPECT_EQ(script_.calls, 0);  // the plugin itself never read the API
  ASSERT_EQ(agent_.requests.size(), 1u);
  const auto& r = agent_.requests[0];
  EXPECT_EQ(r.op, "add");
  EXPECT_EQ(r.pod.container_id, "c0ffee");
  EXPECT_EQ(r.pod.namespace_, "demo");
  EXPECT_EQ(r.pod.name, "web");
  EXPECT_EQ(r.pod.uid, "u-1");
  EXPECT_EQ(r.pod.ips, std::vector<std::string>{"10.1.0.5"});
  ASSERT_EQ(rundir::RunDir(run_dir_).records().size(), 1u);
  EXPECT_NE(log_.str().find("enrolled: namespace label ambient"), std::string::npos);
}

TEST_F(PluginFlow, WithoutAnAgentAPodOfTheSameNameButAnotherUidIsNotDecidedFor) {
  script_.uid = "u-new";
  EXPECT_EQ(run(env("ADD", "K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web;K8S_POD_UID=u-old"), conf()),
            1);
  EXPECT_EQ(output()["code"], 11);
  EXPECT_NE(
      output()["msg"].get<std::string>().find("has uid u-new, but the sandbox is for uid u-old"),
      std::string::npos);
}

TEST_F(PluginFlow, AgentRefusalIsTheAddError) {
  agent_.reachable = true;
  agent_.reply = rundir::AgentReply::failure(11, "ztunnel did not take pod demo/web",
                                             "no ztunnel is connected");
  EXPECT_EQ(run(env("ADD"), conf()), 1);
  EXPECT_EQ(output()["code"], 11);
  EXPECT_EQ(output()["details"], "no ztunnel is connected");
  EXPECT_TRUE(rundir::RunDir(run_dir_).records().empty());
}

TEST_F(PluginFlow, AnAgentThatTookTheRequestButNeverAnsweredIsNotBypassed) {
  agent_.reachable = true;
  agent_.silent = true;  // it may have enrolled the pod: deciding alone now could contradict it
  auto c = conf();
  c["failure_policy"] = "open";
  EXPECT_EQ(run(env("ADD"), c), 1);
  EXPECT_EQ(output()["code"], 11);
  EXPECT_EQ(script_.calls, 0);
  EXPECT_TRUE(rundir::RunDir(run_dir_).records().empty());
}

TEST_F(PluginFlow, AnAgentThatCannotDecideLeavesItToTheFailurePolicy) {
  agent_.reachable = true;
  agent_.reply = rundir::AgentReply::failure(11, "looking up pod demo/web: 401 Unauthorized");
  agent_.reply.undecided = true;
  EXPECT_EQ(run(env("ADD"), conf()), 1);
  EXPECT_EQ(output()["code"], 11);
  EXPECT_EQ(output()["msg"],
            "cannot decide ambient enrolment (failure_policy=closed): looking up pod demo/web: "
            "401 Unauthorized");
  auto c = conf();
  c["failure_policy"] = "open";
  EXPECT_EQ(run(env("ADD"), c), 0);
  EXPECT_EQ(output(), c["prevResult"]);
  EXPECT_NE(log_.str().find("failure_policy=open"), std::string::npos);
  EXPECT_EQ(script_.calls, 0);  // the agent's API answer is final: no second wait on the API
}

TEST_F(PluginFlow, UntouchedPodIsRecordedForLaterEnrolment) {
  EXPECT_EQ(run(env("ADD"), conf()), 0);
  const auto records = rundir::RunDir(run_dir_).records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].netns, netns_path_);
  EXPECT_TRUE(agent_.requests.empty());
  auto del = env("DEL");
  EXPECT_EQ(run(del, conf()), 0);
  EXPECT_TRUE(rundir::RunDir(run_dir_).records().empty());
}

TEST_F(PluginFlow, DelTellsTheAgentOrLeavesATombstone) {
  auto e = env("DEL");
  e.netns.clear();
  EXPECT_EQ(run(e, conf()), 0);
  EXPECT_TRUE(std::filesystem::exists(run_dir_ + "/tombstones/c0ffee.json"));
  agent_.reachable = true;
  EXPECT_EQ(run(e, conf()), 0);
  ASSERT_EQ(agent_.requests.size(), 1u);
  EXPECT_EQ(agent_.requests[0].op, "del");
  // Excluded namespaces were never enrolled: no agent call.
  EXPECT_EQ(run(env("DEL", "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=x"), conf()), 0);
  EXPECT_EQ(agent_.requests.size(), 1u);
}

TEST_F(PluginFlow, DelWithoutKubernetesArgsFindsThePodInTheAddRecord) {
  EXPECT_EQ(run(env("ADD"), conf()), 0);  // untouched, recorded
  agent_.reachable = true;
  EXPECT_EQ(run(env("DEL", "IgnoreUnknown=1"), conf()), 0);
  ASSERT_EQ(agent_.requests.size(), 1u);
  EXPECT_EQ(agent_.requests[0].op, "del");
  EXPECT_EQ(agent_.requests[0].pod.namespace_, "demo");
  EXPECT_EQ(agent_.requests[0].pod.name, "web");
  EXPECT_TRUE(rundir::RunDir(run_dir_).records().empty());
}

TEST_F(PluginFlow, GcReleasesStaleRecords) {
  EXPECT_EQ(run(env("ADD"), conf("1.1.0")), 0);
  agent_.reachable = true;
  auto c = conf("1.1.0");
  c["cni.dev/valid-attachments"] = json::array({{{"containerID", "other"}, {"ifname", "eth0"}}});
  EXPECT_EQ(run(env("GC"), c), 0);
  EXPECT_TRUE(rundir::RunDir(run_dir_).records().empty());
  ASSERT_EQ(agent_.requests.size(), 1u);
  EXPECT_EQ(agent_.requests[0].op, "del");
  EXPECT_EQ(agent_.requests[0].pod.container_id, "c0ffee");
}

TEST_F(PluginFlow, GcOfAnotherNetworkSharingTheRunDirReleasesNothingOfOurs) {
  EXPECT_EQ(run(env("ADD"), conf("1.1.0")), 0);  // network "k8s"
  agent_.reachable = true;
  auto other = conf("1.1.0");
  other["name"] = "storage-net";  // a second network whose attachments list none of ours
  other["cni.dev/valid-attachments"] = json::array();
  EXPECT_EQ(run(env("GC"), other), 0);
  EXPECT_TRUE(agent_.requests.empty());
  ASSERT_EQ(rundir::RunDir(run_dir_).records().size(), 1u);
  EXPECT_EQ(rundir::RunDir(run_dir_).records()[0].network, "k8s");
}

TEST_F(PluginFlow, LookupFailureClosedIsCode11) {
  script_.fail = true;
  EXPECT_EQ(run(env("ADD"), conf()), 1);
  EXPECT_EQ(output()["code"], 11);
  EXPECT_NE(output()["msg"].get<std::string>().find("401 Unauthorized"), std::string::npos);
}

TEST_F(PluginFlow, LookupFailureOpenPassesThroughWithAWarning) {
  script_.fail = true;
  auto c = conf();
  c["failure_policy"] = "open";
  EXPECT_EQ(run(env("ADD"), c), 0);
  EXPECT_EQ(output(), c["prevResult"]);
  EXPECT_NE(log_.str().find("failure_policy=open"), std::string::npos);
}

TEST_F(PluginFlow, OwnNetnsIsCode8) {
  auto e = env("ADD");
  e.netns = "/proc/self/ns/net";
  EXPECT_EQ(run(e, conf()), 1);
  EXPECT_EQ(output()["code"], 8);
}

TEST_F(PluginFlow, MissingNetnsIsNamed) {
  auto e = env("ADD");
  e.netns = "/var/run/netns/does-not-exist-ambient";
  EXPECT_EQ(run(e, conf()), 1);
  EXPECT_EQ(output()["code"], 4);
  EXPECT_NE(output()["msg"].get<std::string>().find("CNI_NETNS"), std::string::npos);
}

TEST_F(PluginFlow, DelAlwaysSucceedsSilently) {
  auto e = env("DEL");
  e.netns.clear();
  EXPECT_EQ(run(e, conf()), 0);
  EXPECT_EQ(out_.str(), "");
  out_.str("");
  EXPECT_EQ(run_plugin(e, "not json", out_, deps_), 0);
  EXPECT_EQ(out_.str(), "");
  e.container_id.clear();
  EXPECT_EQ(run_plugin(e, "{}", out_, deps_), 0);
  EXPECT_EQ(out_.str(), "");
}

TEST_F(PluginFlow, VersionReportsEverySupportedVersion) {
  CniEnv e;
  e.command = "VERSION";
  e.command_set = true;
  EXPECT_EQ(run(e, json{{"cniVersion", "0.4.0"}}), 0);
  EXPECT_EQ(output()["cniVersion"], "0.4.0");
  EXPECT_EQ(output()["supportedVersions"], (json{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}));
}

TEST_F(PluginFlow, VersionGates) {
  EXPECT_EQ(run(env("CHECK"), conf("0.3.1")), 1);
  EXPECT_EQ(output()["code"], 1);
  EXPECT_EQ(run(env("STATUS"), conf("1.0.0")), 1);
  EXPECT_EQ(output()["code"], 1);
  EXPECT_EQ(run(env("GC"), conf("1.0.0")), 1);
  EXPECT_EQ(output()["code"], 1);
  EXPECT_EQ(run(env("ADD"), conf("0.2.0")), 1);
  EXPECT_EQ(output()["code"], 1);
  EXPECT_EQ(output()["cniVersion"], "0.2.0");
}

TEST_F(PluginFlow, CheckOfAnUntouchedPodSucceeds) {
  EXPECT_EQ(run(env("CHECK"), conf("0.4.0")), 0);  // no agent: decided from the API
  EXPECT_EQ(out_.str(), "");
  agent_.reachable = true;
  agent_.reply = rundir::AgentReply::success(true, "in place");
  EXPECT_EQ(run(env("CHECK"), conf("0.4.0")), 0);
  ASSERT_EQ(agent_.requests.size(), 1u);
  EXPECT_EQ(agent_.requests[0].op, "check");
}

TEST_F(PluginFlow, StatusNeedsAKubeconfigAndAReadyAgent) {
  auto c = conf("1.1.0");
  c["kubeconfig"] = "/nonexistent/kubeconfig";
  EXPECT_EQ(run(env("STATUS"), c), 1);
  EXPECT_EQ(output()["code"], 50);
  c["kubeconfig"] = netns_path_;  // any readable file
  // No agent: after a reboot the runtime must not start pods before it is up.
  EXPECT_EQ(run(env("STATUS"), c), 1);
  EXPECT_EQ(output()["code"], 50);
  EXPECT_NE(output()["msg"].get<std::string>().find("node agent unavailable"), std::string::npos);
  agent_.reachable = true;
  agent_.reply =
      rundir::AgentReply::failure(50, "node agent not ready: startup reconcile not done");
  EXPECT_EQ(run(env("STATUS"), c), 1);
  EXPECT_EQ(output()["code"], 50);
  EXPECT_EQ(output()["msg"], "node agent not ready: startup reconcile not done");
  agent_.reply = rundir::AgentReply::success(true, "in place");
  EXPECT_EQ(run(env("STATUS"), c), 0);
  EXPECT_EQ(agent_.requests.back().op, "status");
  // The trade-off switched off: informational again.
  agent_.reachable = false;
  c["status_checks_agent"] = false;
  EXPECT_EQ(run(env("STATUS"), c), 0);
}

TEST_F(PluginFlow, GcValidatesAttachments) {
  auto c = conf("1.1.0");
  c["cni.dev/valid-attachments"] = json::array({{{"containerID", "a"}, {"ifname", "eth0"}}});
  EXPECT_EQ(run(env("GC"), c), 0);
  c["cni.dev/valid-attachments"] = json::array({{{"ifname", "eth0"}}});
  EXPECT_EQ(run(env("GC"), c), 1);
  EXPECT_EQ(output()["code"], 7);
}

TEST_F(PluginFlow, BadInputsNameWhatWasWrong) {
  EXPECT_EQ(run_plugin(env("ADD"), "{not json", out_, deps_), 1);
  EXPECT_EQ(output()["code"], 6);
  auto c = conf();
  c["exclude_namespaces"] = "kube-system";
  EXPECT_EQ(run(env("ADD"), c), 1);
  EXPECT_EQ(output()["code"], 7);
  EXPECT_NE(output()["msg"].get<std::string>().find("exclude_namespaces"), std::string::npos);
  EXPECT_EQ(run(env("ADD", "K8S_POD_NAME"), conf()), 1);
  EXPECT_EQ(output()["code"], 4);
}

}  // namespace
}  // namespace ambient::plugin
