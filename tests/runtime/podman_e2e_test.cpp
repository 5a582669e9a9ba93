// podman (CNI backend) through the same chain, bridge + host-local + ambient-cni, with the API
// stand-in, the real agent and the ztunnel stand-in. podman is not a Kubernetes runtime: it
// sends only K8S_POD_NAME (the container name), so the caller supplies K8S_POD_NAMESPACE and
// K8S_POD_UID through CNI_ARGS, which podman appends to its own.
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <sys/mount.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/pod_table.h"
#include "tests/runtime/mesh.h"
#include "tests/runtime/podman_harness.h"
#include "tests/support/process.h"

namespace ambient::runtime_test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class Podman : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!skip_reason().empty()) return;
    try {
      mesh_ = std::make_unique<Mesh>(owned_dir(owned_tag("pmmesh")));
      mesh_->start();
      PodmanOptions o;
      o.plugin_binary = AMBIENT_PLUGIN_BIN;
      o.plugin_entry = mesh_->plugin_entry();
      podman_ = std::make_unique<PrivatePodman>(o);
      podman_->start();
    } catch (const std::exception& e) {
      suite_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    podman_.reset();
    mesh_.reset();
    release_owned(owned_tag("pmmesh"));
  }

  void SetUp() override {
    if (!skip_reason().empty()) GTEST_SKIP() << skip_reason();
    ASSERT_TRUE(suite_error_.empty()) << suite_error_;
    mesh_->start_agent();
    mesh_->put_namespace("pmshop", {{"istio.io/dataplane-mode", "ambient"}});
    mesh_->put_namespace("pmlegacy");
  }
  void TearDown() override {
    for (const auto& name : containers_) podman().podman({"rm", "--force", "--time", "0", name});
    if (HasFailure() && mesh_) {
      std::fprintf(stderr, "--- agent log (end) ---\n%s\n", mesh_->agent_log_tail().c_str());
    }
  }

  static Mesh& mesh() { return *mesh_; }
  static PrivatePodman& podman() { return *podman_; }

  struct Container {
    PodRef pod;
    std::string id;
    std::string netns;
    std::string ip;
  };
  // A pod in the API stand-in and its container, started by `podman run`.
  Container run(const std::string& ns, const std::string& name) {
    Container c;
    c.pod = PodRef{ns, name, random_uid(), {}, {}};
    mesh().put_pod(c.pod);
    c.id = podman().run(ns, name, c.pod.uid);
    containers_.push_back(name);
    c.netns = podman().netns(name);
    c.ip = podman().ip(name);
    EXPECT_FALSE(c.netns.empty()) << name;
    EXPECT_FALSE(c.ip.empty()) << name;
    // No podIP is reported to the API: the agent leaves the pod to the plugin, so whatever is
    // enrolled was enrolled by the ADD podman ran.
    return c;
  }
  // `podman rm --force` with the same CNI_ARGS as the run.
  Command remove(const Container& c) {
    const auto x = podman().podman({"rm", "--force", "--time", "0", c.pod.name},
                                   {"CNI_ARGS=" + PrivatePodman::cni_args(c.pod.ns, c.pod.uid)});
    std::erase(containers_, c.pod.name);
    return x;
  }
  std::vector<CniCall> calls(const std::string& id, const std::string& verb = "") {
    return cni_calls_for(podman().calls_log(), id, verb);
  }
  bool in_ztunnel(const PodRef& p) { return mesh().ztunnel().pods().contains(p.uid); }
  void expect_enrolled(const Container& c) {
    EXPECT_TRUE(in_ztunnel(c.pod)) << c.pod.name;
    EXPECT_EQ(mesh().redirection(c.pod), "enabled") << c.pod.name;
    EXPECT_TRUE(mesh().enrolled_record(c.pod.uid)) << c.pod.name;
    EXPECT_TRUE(has_ambient_tables(c.netns)) << c.pod.name;
  }
  void expect_released(const Container& c) {
    EXPECT_FALSE(in_ztunnel(c.pod)) << c.pod.name;
    EXPECT_FALSE(mesh().enrolled_record(c.pod.uid)) << c.pod.name;
    EXPECT_FALSE(mesh().pod_record(c.id)) << c.pod.name;
    EXPECT_FALSE(mesh().agent().pods().get(c.pod.uid).has_value()) << c.pod.name;
  }

  static std::unique_ptr<Mesh> mesh_;
  static std::unique_ptr<PrivatePodman> podman_;
  static std::string suite_error_;
  std::vector<std::string> containers_;
};

std::unique_ptr<Mesh> Podman::mesh_;
std::unique_ptr<PrivatePodman> Podman::podman_;
std::string Podman::suite_error_;

// `podman run` of an ambient pod: enrolled, its traffic captured; `podman rm` releases it.
TEST_F(Podman, RunEnrolsAmbientPodAndRemoveReleasesIt) {
  const auto web = run("pmshop", "pm-web");
  const auto db = run("pmlegacy", "pm-db");
  expect_enrolled(web);
  EXPECT_FALSE(in_ztunnel(db.pod));
  EXPECT_EQ(nft_tables(db.netns), std::vector<std::string>{});

  // What podman handed the plugin: its own keys, then ours appended.
  const auto adds = calls(web.id, "ADD");
  ASSERT_EQ(adds.size(), 1u);
  EXPECT_EQ(adds[0].rc, 0) << adds[0].out;
  EXPECT_EQ(adds[0].netns, web.netns);
  EXPECT_EQ(adds[0].args.rfind("IgnoreUnknown=1;K8S_POD_NAME=pm-web", 0), 0u) << adds[0].args;
  EXPECT_NE(adds[0].args.find(PrivatePodman::cni_args("pmshop", web.pod.uid)), std::string::npos)
      << adds[0].args;

  testbed::TcpServer app(db.netns, AF_INET, 8080, "pm-db");
  const auto r = testbed::tcp_exchange(web.netns, db.ip, 8080, "via podman");
  ASSERT_TRUE(r.connected) << r.error;
  EXPECT_EQ(r.reply, "pm-db:via podman") << r.error;
  const auto out = mesh().ztunnel().connections(web.pod.uid);
  ASSERT_FALSE(out.empty()) << "pm-web's outbound connection did not reach ztunnel";
  EXPECT_EQ(out.back().direction, "outbound");
  EXPECT_EQ(out.back().original_dst, db.ip + ":8080");

  const auto removed = remove(web);
  ASSERT_EQ(removed.exit_code, 0) << removed.out;
  const auto dels = calls(web.id, "DEL");
  ASSERT_FALSE(dels.empty()) << "podman sent no DEL";
  for (const auto& d : dels) {
    EXPECT_EQ(d.rc, 0) << d.out;
    std::printf("podman DEL: netns=%s CNI_ARGS=%s\n", d.netns.c_str(), d.args.c_str());
  }
  expect_released(web);
}

// A container that exits on its own: conmon's `podman container cleanup` runs the DEL, from a
// process that does not have the caller's CNI_ARGS. The agent must still forget the pod.
TEST_F(Podman, ContainerExitingOnItsOwnIsReleased) {
  const auto job = run("pmshop", "pm-job");
  expect_enrolled(job);
  const auto stopped = podman().podman({"kill", "pm-job"});
  ASSERT_EQ(stopped.exit_code, 0) << stopped.out;
  ASSERT_TRUE(wait_until([&] { return !calls(job.id, "DEL").empty(); }, 20s))
      << "no DEL after the container exited";
  for (const auto& d : calls(job.id, "DEL")) {
    EXPECT_EQ(d.rc, 0) << d.out;
    std::printf("cleanup DEL: netns=%s CNI_ARGS=%s\n", d.netns.c_str(), d.args.c_str());
  }
  EXPECT_TRUE(wait_until([&] { return !in_ztunnel(job.pod); }, 5s));
  expect_released(job);
}

// A container whose netns vanished: podman skips the DEL, so the pod stays enrolled in the
// agent and ztunnel. The plugin's GC verb (what a CNI 1.1 runtime calls with the attachments it
// still has; podman 4.3 never does, so the test calls it the same way) releases it, and only it.
TEST_F(Podman, VanishedNetnsIsReleasedByGc) {
  const auto gone = run("pmshop", "pm-gone");
  const auto stay = run("pmshop", "pm-stay");
  expect_enrolled(gone);
  expect_enrolled(stay);

  // The netns bind mount disappears (a reboot's tmpfs, a crashed runtime's cleanup).
  ASSERT_EQ(::umount2(gone.netns.c_str(), MNT_DETACH), 0) << gone.netns;
  ASSERT_EQ(::unlink(gone.netns.c_str()), 0) << gone.netns;
  const auto removed = remove(gone);
  EXPECT_EQ(removed.exit_code, 0) << removed.out;
  EXPECT_TRUE(calls(gone.id, "DEL").empty()) << "podman sent a DEL after all";
  // Nothing told the agent: the pod is still held.
  EXPECT_TRUE(mesh().pod_record(gone.id));
  EXPECT_TRUE(in_ztunnel(gone.pod));

  json gc = podman().conflist()["plugins"][1];
  gc["cniVersion"] = "1.1.0";
  gc["name"] = podman().network();
  gc["cni.dev/valid-attachments"] = json::array({{{"containerID", stay.id}, {"ifname", "eth0"}}});
  const auto x = testing::run(
      {(podman().cni_bin_dir() / "ambient-cni").string()},
      {"CNI_COMMAND=GC", "CNI_CONTAINERID=", "CNI_NETNS=", "CNI_IFNAME=", "CNI_ARGS=",
       "CNI_PATH=" + podman().cni_bin_dir().string(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
      gc.dump(), 30s);
  ASSERT_EQ(x.exit_code, 0) << x.out << x.err;
  EXPECT_EQ(x.out, "");

  expect_released(gone);
  const auto reqs = mesh().ztunnel().requests();
  EXPECT_NE(std::find(reqs.begin(), reqs.end(), "del " + gone.pod.uid), reqs.end());
  // The attachment podman still has keeps everything.
  expect_enrolled(stay);
  EXPECT_TRUE(mesh().pod_record(stay.id));
}

}  // namespace
}  // namespace ambient::runtime_test
