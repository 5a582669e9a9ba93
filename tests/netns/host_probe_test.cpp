// Host probe SNAT (§5), with a namespace that plays the node: probes from its local sockets reach
// the enrolled pod's app from 169.254.7.127, uncaptured; other traffic stays captured.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>

#include "config/constants.h"
#include "netns/host_probe.h"
#include "netns/redirect.h"
#include "tests/netns/netns_test_env.h"

namespace ambient::netns {
namespace {

using standins::InpodProxy;
using testbed::Addr;
using testbed::of_direction;
using testbed::TcpServer;
using testbed::Topology;

constexpr int kAppPort = 8080;

class HostProbe : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (creates network namespaces)";
    topo_ = std::make_unique<Topology>();
    pod_ = std::make_unique<NetnsHandle>(topo_->open(topo_->pod()));
    proxy_ = InpodProxy::start(pod_->fd(),
                               [](const std::string& line) { spdlog::info("proxy: {}", line); });
    app_ = std::make_unique<TcpServer>(topo_->pod(), AF_INET, kAppPort, "app");
    app6_ = std::make_unique<TcpServer>(topo_->pod(), AF_INET6, kAppPort, "app6");
    RedirectOptions o;
    o.ipv6 = true;
    apply(*pod_, RedirectPlan(o));
  }
  void TearDown() override {
    app6_.reset();
    app_.reset();
    proxy_.reset();
    pod_.reset();
    topo_.reset();
  }
  std::unique_ptr<HostProbeSnat> Probe(HostProbeConfig cfg = {}) {
    return std::make_unique<HostProbeSnat>(topo_->open(topo_->host()), cfg);
  }
  // A "kubelet probe": a uid-0 socket in the node namespace connecting to the pod's app.
  std::string ProbeFromHost(const std::string& pod_ip) {
    return testbed::tcp_exchange(topo_->host(), pod_ip, kAppPort, "probe").reply;
  }
  size_t Inbound() const { return of_direction(*proxy_, "inbound").size(); }

  std::unique_ptr<Topology> topo_;
  std::unique_ptr<NetnsHandle> pod_;
  std::unique_ptr<InpodProxy> proxy_;
  std::unique_ptr<TcpServer> app_;
  std::unique_ptr<TcpServer> app6_;
};

TEST_F(HostProbe, ProbeArrivesSnatedAndUncapturedWhileOtherTrafficIsCaptured) {
  auto probe = Probe();
  probe->set_pod("pod-a", {Addr::kPod4, Addr::kPod6});

  EXPECT_EQ(ProbeFromHost(Addr::kPod4), "app:probe");
  EXPECT_EQ(app_->peers().back(), std::string(contract::kProbeSnatV4));
  EXPECT_EQ(Inbound(), 0u);

  // From elsewhere (the remote, routed through the node): still captured.
  EXPECT_EQ(testbed::tcp_exchange(topo_->remote(), Addr::kPod4, kAppPort, "x").reply, "app:x");
  EXPECT_EQ(Inbound(), 1u);
  EXPECT_EQ(app_->peers().back(), Addr::kRemote4);

  // Once the pod's IP leaves the set, the node's own connection is captured like any other.
  probe->set_pod("pod-a", {Addr::kPod6});
  EXPECT_EQ(probe->entries(), (std::vector<ProbeEntry>{{"pod-a", Addr::kPod6}}));
  EXPECT_EQ(ProbeFromHost(Addr::kPod4), "app:probe");
  EXPECT_EQ(Inbound(), 2u);
  EXPECT_EQ(app_->peers().back(), Addr::kHostPod4);
}

TEST_F(HostProbe, Ipv6ProbeArrivesFromTheV6ProbeAddress) {
  auto probe = Probe();
  probe->set_pod("pod-a", {Addr::kPod6});
  EXPECT_EQ(ProbeFromHost(Addr::kPod6), "app6:probe");
  EXPECT_EQ(app6_->peers().back(), std::string(contract::kProbeSnatV6));
  EXPECT_EQ(Inbound(), 0u);
}

TEST_F(HostProbe, OnlyTheConfiguredKubeletUidIsSnated) {
  HostProbeConfig cfg;
  cfg.kubelet_uid = 4242;  // our probe socket is uid 0: it must not match
  auto probe = Probe(cfg);
  probe->set_pod("pod-a", {Addr::kPod4});
  EXPECT_EQ(ProbeFromHost(Addr::kPod4), "app:probe");
  EXPECT_EQ(app_->peers().back(), Addr::kHostPod4);
  EXPECT_EQ(Inbound(), 1u);
}

TEST_F(HostProbe, AnIpOwnedByAnotherPodIsNeverRemoved) {
  auto probe = Probe();
  probe->set_pod("pod-a", {Addr::kPod4});
  probe->set_pod("pod-b", {Addr::kPod4});  // IP reused by a new pod before pod-a's DEL
  EXPECT_EQ(probe->entries(), (std::vector<ProbeEntry>{{"pod-b", Addr::kPod4}}));

  probe->set_pod("pod-a", {});  // late DEL of the old pod
  EXPECT_EQ(probe->entries(), (std::vector<ProbeEntry>{{"pod-b", Addr::kPod4}}));
  EXPECT_EQ(ProbeFromHost(Addr::kPod4), "app:probe");
  EXPECT_EQ(app_->peers().back(), std::string(contract::kProbeSnatV4));

  probe->set_pod("pod-b", {});
  EXPECT_TRUE(probe->entries().empty());
  EXPECT_NO_THROW(probe->set_pod("pod-b", {}));
}

TEST_F(HostProbe, ReconcileRecreatesWhatWasFlushedOrDeleted) {
  auto probe = Probe();
  probe->set_pod("pod-a", {Addr::kPod4, Addr::kPod6});
  EXPECT_TRUE(probe->base_is_current());
  const std::vector<ProbeEntry> desired = {{"pod-a", Addr::kPod4}, {"pod-a", Addr::kPod6}};

  testbed::must("ip netns exec " + topo_->host() + " nft flush table inet istio-ambient-nat");
  EXPECT_FALSE(probe->base_is_current());
  EXPECT_EQ(ProbeFromHost(Addr::kPod4), "app:probe");
  EXPECT_EQ(Inbound(), 1u) << "flushed host rules: the probe is captured";

  ProbeReconcileReport report = probe->reconcile(desired);
  EXPECT_TRUE(report.base_repaired);
  EXPECT_EQ(report.added, 0u) << "flush table keeps set elements: only the rules were gone";
  EXPECT_TRUE(probe->base_is_current());
  EXPECT_EQ(ProbeFromHost(Addr::kPod4), "app:probe");
  EXPECT_EQ(app_->peers().back(), std::string(contract::kProbeSnatV4));
  EXPECT_EQ(Inbound(), 1u);

  testbed::must("ip netns exec " + topo_->host() + " nft delete table inet istio-ambient-nat");
  report = probe->reconcile(desired);
  EXPECT_TRUE(report.base_repaired);
  EXPECT_EQ(report.added, 2u);
  auto entries = probe->entries();
  std::sort(entries.begin(), entries.end());
  auto want = desired;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(entries, want);

  // In sync: nothing to do. A stale element (a pod that is gone) is removed.
  report = probe->reconcile(desired);
  EXPECT_FALSE(report.base_repaired);
  EXPECT_EQ(report.added + report.removed, 0u);
  report = probe->reconcile({{"pod-a", Addr::kPod6}});
  EXPECT_EQ(report.removed, 1u);
  EXPECT_EQ(probe->entries(), (std::vector<ProbeEntry>{{"pod-a", Addr::kPod6}}));

  probe->teardown();
  EXPECT_EQ(testbed::nft_tables(topo_->host()).find("istio-ambient-nat"), std::string::npos);
  EXPECT_NO_THROW(probe->teardown());
}

// The fast path cannot add to a table that is gone (a flushed or rebooted host): the whole
// transaction fails, the host is read again and base plus elements go in with libnftables.
TEST_F(HostProbe, ElementsGoInWhenTheHostTableWasDeleted) {
  auto probe = Probe();
  probe->set_pod("pod-a", {Addr::kPod4});
  testbed::must("ip netns exec " + topo_->host() + " nft delete table inet istio-ambient-nat");
  probe->set_pod("pod-b", {Addr::kPod6});
  EXPECT_EQ(probe->entries(), (std::vector<ProbeEntry>{{"pod-b", Addr::kPod6}}));
  EXPECT_TRUE(probe->base_is_current());
  probe->set_pod("pod-b", {Addr::kPod4, Addr::kPod6});  // the fast path again
  auto entries = probe->entries();
  std::sort(entries.begin(), entries.end());
  EXPECT_EQ(entries, (std::vector<ProbeEntry>{{"pod-b", Addr::kPod4}, {"pod-b", Addr::kPod6}}));
  EXPECT_EQ(ProbeFromHost(Addr::kPod4), "app:probe");
  EXPECT_EQ(app_->peers().back(), std::string(contract::kProbeSnatV4));
}

TEST_F(HostProbe, BadInputIsRejected) {
  auto probe = Probe();
  EXPECT_THROW(probe->set_pod("pod-a", {"10.1.2"}), NetnsError);
  EXPECT_THROW(probe->set_pod("pod \"a\"", {Addr::kPod4}), NetnsError);
  EXPECT_TRUE(probe->entries().empty());
}

}  // namespace
}  // namespace ambient::netns
