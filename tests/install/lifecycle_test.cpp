// What SIGTERM means for the node (upgrade or removal), and the netns dir mount check.
#include <gtest/gtest.h>

#include "install/lifecycle.h"

namespace ambient::install {
namespace {

using nlohmann::json;
using Kind = kube::ApiError::Kind;

TEST(Shutdown, ExistingDaemonSetIsAnUpgrade) {
  const json ds = {{"kind", "DaemonSet"},
                   {"metadata", {{"name", "ambient-cni-node"}, {"namespace", "istio-system"}}}};
  const auto d = decide_shutdown(&ds, nullptr);
  EXPECT_EQ(d.action, ShutdownAction::kLeaveInPlace);
  EXPECT_NE(d.reason.find("still exists"), std::string::npos);
}

TEST(Shutdown, DeletedOrDeletingDaemonSetIsARemoval) {
  const kube::ApiError not_found(Kind::kNotFound, 404, "daemonsets \"ambient-cni-node\" not found");
  EXPECT_EQ(decide_shutdown(nullptr, &not_found).action, ShutdownAction::kUninstall);
  const json deleting = {
      {"metadata", {{"name", "ambient-cni-node"}, {"deletionTimestamp", "2025-01-01T00:00:00Z"}}}};
  const auto d = decide_shutdown(&deleting, nullptr);
  EXPECT_EQ(d.action, ShutdownAction::kUninstall);
  EXPECT_EQ(d.reason, "the DaemonSet is being deleted");
  const json null_timestamp = {{"metadata", {{"deletionTimestamp", nullptr}}}};
  EXPECT_EQ(decide_shutdown(&null_timestamp, nullptr).action, ShutdownAction::kLeaveInPlace);
}

// `kubectl delete -k` deletes the ServiceAccount and RBAC with the DaemonSet: on SIGTERM the API
// answers 401 (found on a real kube-apiserver) or 403.
TEST(Shutdown, AnIdentityTheApiNoLongerAcceptsMeansRemovalWithoutTheApi) {
  for (const auto kind : {Kind::kForbidden, Kind::kUnauthorized}) {
    const kube::ApiError e(kind, 401, "Unauthorized");
    const auto d = decide_shutdown(nullptr, &e);
    EXPECT_EQ(d.action, ShutdownAction::kUninstallKeepingPods) << static_cast<int>(kind);
    EXPECT_NE(d.reason.find("Unauthorized"), std::string::npos);
  }
}

TEST(Shutdown, UnknownLeavesEverythingInPlace) {
  for (const auto kind :
       {Kind::kUnreachable, Kind::kTimeout, Kind::kServerError, Kind::kBadResponse}) {
    const kube::ApiError e(kind, 0, "boom");
    const auto d = decide_shutdown(nullptr, &e);
    EXPECT_EQ(d.action, ShutdownAction::kLeaveInPlace) << static_cast<int>(kind);
    EXPECT_NE(d.reason.find("boom"), std::string::npos);
  }
  EXPECT_EQ(decide_shutdown(nullptr, nullptr).action, ShutdownAction::kLeaveInPlace);
}

// Lines as a container with `mountPropagation: HostToContainer` (slave, master:N), a private
// mount, and a shared one (Bidirectional) show them.
constexpr const char* kMountinfo =
    "1372 1290 0:26 / / rw,relatime master:1 - overlay overlay rw\n"
    "1400 1372 0:23 /netns /var/run/netns rw,nosuid,nodev master:12 - tmpfs tmpfs rw\n"
    "1401 1372 0:23 /netns /private/netns rw,nosuid,nodev - tmpfs tmpfs rw\n"
    "1402 1372 0:23 /netns /shared/netns rw shared:7 master:12 - tmpfs tmpfs rw\n";

TEST(NetnsDir, HostToContainerMountIsFine) {
  EXPECT_TRUE(netns_dir_problems(kMountinfo, "/var/run/netns", true).empty());
  EXPECT_TRUE(netns_dir_problems(kMountinfo, "/shared/netns", true).empty());
}

TEST(NetnsDir, PrivateMountIsReported) {
  const auto p = netns_dir_problems(kMountinfo, "/private/netns", true);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].find("HostToContainer"), std::string::npos) << p[0];
}

TEST(NetnsDir, MissingDirIsReportedAndAPlainDirIsFine) {
  EXPECT_EQ(netns_dir_problems(kMountinfo, "/nowhere", false).size(), 1u);
  EXPECT_TRUE(netns_dir_problems(kMountinfo, "/run/netns", true).empty());  // not a mount: host
}

}  // namespace
}  // namespace ambient::install
