// kubectl 1.32 (the machine image's /usr/bin/kubectl) driving the API stand-in: the user's own
// commands from issue 5 must work against it, unchanged.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "tests/kube/test_util.h"
#include "tests/standins/apiserver/apiserver.h"
#include "tests/support/process.h"

namespace ambient::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kKubectl = "/usr/bin/kubectl";

json objects() {
  return json::array({
      {{"kind", "Namespace"}, {"metadata", {{"name", "demo"}}}},
      {{"kind", "Namespace"}, {"metadata", {{"name", "kube-system"}}}},
      {{"kind", "Pod"},
       {"metadata", {{"name", "web"}, {"namespace", "demo"}, {"labels", {{"app", "web"}}}}},
       {"spec", {{"nodeName", "node-1"}, {"serviceAccountName", "web"}, {"hostNetwork", false}}},
       {"status",
        {{"phase", "Running"}, {"podIP", "10.1.0.7"}, {"podIPs", {{{"ip", "10.1.0.7"}}}}}}},
      {{"kind", "Pod"},
       {"metadata", {{"name", "coredns"}, {"namespace", "kube-system"}}},
       {"spec", {{"nodeName", "node-2"}}},
       {"status", {{"phase", "Running"}}}},
  });
}

class KubectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kKubectl, X_OK) != 0) GTEST_SKIP() << kKubectl << " is not installed";
  }

  // kubectl with a private HOME and cache, against `kubeconfig`.
  Execution kubectl(const std::filesystem::path& kubeconfig, std::vector<std::string> args,
                    milliseconds timeout = milliseconds(30000)) {
    std::vector<std::string> argv = {kKubectl, "--kubeconfig", kubeconfig.string(), "--cache-dir",
                                     (dir_ / "cache").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, {"HOME=" + dir_.path().string(), "PATH=/usr/bin:/bin"}, "", timeout);
  }

  kube::test::TempDir dir_;
};

// The kube-apiserver-standin binary, as the demo runs it: --objects, --kubeconfig-out,
// --ready-file; stopped with SIGTERM.
class StandinProcess {
 public:
  explicit StandinProcess(const std::filesystem::path& dir) : dir_(dir) {
    kube::test::write_file(dir / "objects.json", objects().dump());
    const std::vector<std::string> args = {KUBE_APISERVER_STANDIN_BIN,
                                           "--port",
                                           "0",
                                           "--objects",
                                           (dir / "objects.json").string(),
                                           "--kubeconfig-out",
                                           (dir / "kubeconfig").string(),
                                           "--ready-file",
                                           (dir / "ready").string(),
                                           "--log-requests"};
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, (dir / "standin.log").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char* env[] = {nullptr};
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), env);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot spawn the stand-in");
    const auto give_up = Clock::now() + std::chrono::seconds(20);
    while (!std::filesystem::exists(dir / "ready") && Clock::now() < give_up) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    if (!std::filesystem::exists(dir / "ready")) throw std::runtime_error("stand-in not ready");
  }
  ~StandinProcess() {
    if (pid_ > 0) stop();
  }

  int port() const { return std::stoi(kube::test::read_file(dir_ / "ready")); }
  std::string log() const { return kube::test::read_file(dir_ / "standin.log"); }

  // SIGTERM; the exit status.
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  std::filesystem::path dir_;
  pid_t pid_ = -1;
};

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST_F(KubectlTest, UserCommandsAgainstTheStandinBinary) {
  StandinProcess standin(dir_.path());
  const auto kc = dir_ / "kubeconfig";
  EXPECT_GT(standin.port(), 0);

  auto r = kubectl(kc, {"get", "ns"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("NAME          STATUS   AGE\ndemo          Active   ")) << r.out;
  EXPECT_TRUE(contains(r.out, "kube-system   Active")) << r.out;

  r = kubectl(kc, {"label", "ns", "demo", "istio.io/dataplane-mode=ambient"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "namespace/demo labeled\n");
  r = kubectl(kc, {"get", "ns", "demo", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["metadata"]["labels"]["istio.io/dataplane-mode"], "ambient");

  r = kubectl(kc, {"label", "ns", "demo", "istio.io/dataplane-mode-"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "namespace/demo unlabeled\n");
  r = kubectl(kc, {"get", "ns", "demo", "-o", "json"});
  EXPECT_FALSE(json::parse(r.out)["metadata"]
                   .value("labels", json::object())
                   .contains("istio.io/dataplane-mode"));

  r = kubectl(kc, {"label", "pod", "-n", "demo", "web", "istio.io/dataplane-mode=none"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "pod/web labeled\n");

  r = kubectl(kc, {"get", "pods", "-n", "demo", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto list = json::parse(r.out);
  ASSERT_EQ(list["items"].size(), 1u);
  EXPECT_EQ(list["items"][0]["metadata"]["labels"]["istio.io/dataplane-mode"], "none");
  EXPECT_EQ(list["items"][0]["status"]["podIP"], "10.1.0.7");

  // Server-side printing: the columns of a real cluster.
  r = kubectl(kc, {"get", "pods", "-A"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("NAMESPACE     NAME      READY   STATUS    RESTARTS   AGE\n"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "demo          web       0/0     Running   0")) << r.out;
  EXPECT_TRUE(contains(r.out, "kube-system   coredns   0/0     Running   0")) << r.out;
  r = kubectl(kc, {"get", "pods", "-n", "demo", "-o", "wide"});
  EXPECT_TRUE(contains(r.out, "10.1.0.7") && contains(r.out, "node-1")) << r.out;

  r = kubectl(kc, {"get", "pods", "-A", "-l", "istio.io/dataplane-mode=none", "-o", "name"});
  EXPECT_EQ(r.out, "pod/web\n") << r.err;
  r = kubectl(kc, {"get", "pods", "-A", "--field-selector", "spec.nodeName=node-2", "-o", "name"});
  EXPECT_EQ(r.out, "pod/coredns\n") << r.err;

  r = kubectl(kc, {"get", "pod", "-n", "demo", "missing"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "NotFound") && contains(r.err, "\"missing\" not found")) << r.err;

  r = kubectl(kc, {"--token", "wrong", "get", "ns"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "Unauthorized")) << r.err;

  // kubectl really went through discovery and PATCH, not some fallback.
  const std::string log = standin.log();
  EXPECT_TRUE(contains(log, "GET /api/v1?")) << log;
  EXPECT_TRUE(contains(log, "PATCH /api/v1/namespaces/demo?")) << log;
  EXPECT_TRUE(contains(log, "PATCH /api/v1/namespaces/demo/pods/web?")) << log;

  const int status = standin.stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST_F(KubectlTest, WatchSeesALabelChange) {
  ApiServerStandin server;
  server.load_objects(objects());
  server.start();
  server.write_kubeconfig(dir_ / "kubeconfig");
  std::thread labeller([&] {
    const auto give_up = Clock::now() + std::chrono::seconds(20);
    while (server.open_watches() == 0 && Clock::now() < give_up) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    auto pod = server.get_object("Pod", "demo", "web").value();
    pod["metadata"]["labels"]["istio.io/dataplane-mode"] = "ambient";
    server.put(pod);
  });
  // Killed at the timeout: a watch never ends by itself.
  const auto r =
      kubectl(dir_ / "kubeconfig",
              {"get", "pods", "-n", "demo", "--watch-only", "--output-watch-events", "-o", "json"},
              milliseconds(4000));
  labeller.join();
  // One JSON watch event per line.
  bool seen = false;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    const auto event = json::parse(line, nullptr, false);
    if (event.is_discarded() || event.value("type", "") != "MODIFIED") continue;
    seen = event["object"]["metadata"]["labels"].value("istio.io/dataplane-mode", "") == "ambient";
  }
  EXPECT_TRUE(seen) << r.out << r.err;
}

}  // namespace
}  // namespace ambient::testing
