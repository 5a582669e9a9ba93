// The Enroller's ordering and rollback, without root: every step behind its interface is a fake
// that records what is in place and fails on demand. Each step fails in turn, and afterwards
// nothing of the attempt is left: no rules, no probe entry, no state (in memory or in the run
// dir), no ztunnel workload, no "enabled" annotation.
#include <gtest/gtest.h>

#include <spdlog/sinks/ostream_sink.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "agent/enroller.h"
#include "config/constants.h"
#include "kube/client.h"
#include "tests/support/scratch_dir.h"

namespace ambient::agent {
namespace {

namespace fs = std::filesystem;

// What is in place, as the fakes saw it, and what they are told to fail.
struct World {
  std::map<int, std::string> open;     // fd → netns path (the fake opener's handles)
  std::set<std::string> rules;         // netns paths with our rules
  std::map<std::string, bool> dns;     // netns path → DNS capture in the rules applied last
  std::map<std::string, NetnsId> ids;  // the namespace a path names now (default: one per path)
  std::set<std::string> foreign;       // paths whose namespace holds none of the pod's IPs
  std::map<std::string, std::vector<std::string>> probes;  // pod uid → IPs
  std::set<std::string> ztunnel;                           // uids ztunnel holds
  std::map<std::string, std::string> annotations;          // "ns/name" → value
  std::string fail;  // the step that fails: netns, rules, probes, ztunnel, annotation
  std::set<std::string> fail_undo;  // steps whose undo fails too
};

class FakeNetns final : public NetnsOpener {
 public:
  explicit FakeNetns(World& w) : w_(w) {}
  std::shared_ptr<netns::NetnsHandle> open(const std::string& path) override {
    if (w_.fail == "netns") {
      throw netns::NetnsError(netns::ErrorKind::NotFound, "netns " + path + " does not exist",
                              ENOENT);
    }
    // Any process may hold its own netns: the fake hands that out and remembers whose it is.
    auto h = std::make_shared<netns::NetnsHandle>(netns::NetnsHandle::current());
    w_.open[h->fd()] = path;
    return h;
  }
  NetnsId id_of(const netns::NetnsHandle& ns) override {
    const auto& path = w_.open.at(ns.fd());
    const auto it = w_.ids.find(path);
    return it != w_.ids.end() ? it->second : NetnsId{1, std::hash<std::string>{}(path)};
  }
  bool holds_any(const netns::NetnsHandle& ns, const std::vector<std::string>&) override {
    return !w_.foreign.contains(w_.open.at(ns.fd()));
  }

 private:
  World& w_;
};

class FakeRules final : public RulesStep {
 public:
  explicit FakeRules(World& w) : w_(w) {}
  void apply(const netns::NetnsHandle& ns, const netns::RedirectPlan& plan) override {
    if (w_.fail == "rules") throw netns::NetnsError(netns::ErrorKind::Nftables, "nft: injected");
    w_.rules.insert(w_.open.at(ns.fd()));
    w_.dns[w_.open.at(ns.fd())] = plan.options().dns_capture;
  }
  void remove(const netns::NetnsHandle& ns) override {
    if (w_.fail_undo.contains("rules")) {
      throw netns::NetnsError(netns::ErrorKind::Netlink, "netlink: injected");
    }
    w_.rules.erase(w_.open.at(ns.fd()));
  }
  netns::Inspection inspect(const netns::NetnsHandle& ns, const netns::RedirectPlan&) override {
    netns::Inspection i;
    i.status = w_.rules.contains(w_.open.at(ns.fd())) ? netns::RedirectStatus::Current
                                                      : netns::RedirectStatus::Absent;
    return i;
  }

 private:
  World& w_;
};

class FakeProbes final : public ProbeStep {
 public:
  explicit FakeProbes(World& w) : w_(w) {}
  void set_pod(std::string_view uid, const std::vector<std::string>& ips) override {
    if (!ips.empty() && w_.fail == "probes") {
      throw netns::NetnsError(netns::ErrorKind::Nftables, "probe set: injected");
    }
    if (ips.empty()) {
      w_.probes.erase(std::string(uid));
    } else {
      w_.probes[std::string(uid)] = ips;
    }
  }
  netns::ProbeReconcileReport reconcile(const std::vector<netns::ProbeEntry>& desired) override {
    if (on_reconcile) on_reconcile();
    std::map<std::string, std::vector<std::string>> next;
    for (const auto& e : desired) next[e.pod_uid].push_back(e.ip);
    netns::ProbeReconcileReport report;
    for (const auto& [uid, ips] : next) report.added += w_.probes.contains(uid) ? 0 : ips.size();
    for (const auto& [uid, ips] : w_.probes) report.removed += next.contains(uid) ? 0 : ips.size();
    w_.probes = std::move(next);
    return report;
  }
  std::function<void()> on_reconcile;  // runs once the desired state is fixed

 private:
  World& w_;
};

class FakeZtunnel final : public ZtunnelStep {
 public:
  explicit FakeZtunnel(World& w) : w_(w) {}
  void add(const ZdsWorkload& wl) override {
    if (on_add) on_add(wl.uid);
    if (w_.fail == "ztunnel") throw ZdsError(ZdsError::Kind::kNack, "ztunnel refused add: boom");
    w_.ztunnel.insert(wl.uid);
  }
  std::function<void(const std::string& uid)> on_add;  // while the enroller waits for the ack
  void del(const std::string& uid) override { w_.ztunnel.erase(uid); }
  std::size_t connections() const override { return 1; }

 private:
  World& w_;
};

class FakeStatus final : public StatusStep {
 public:
  explicit FakeStatus(World& w) : w_(w) {}
  void set(const std::string& ns, const std::string& name, const std::string&,
           std::string_view value) override {
    if (w_.fail == "annotation" && value == contract::kRedirectionEnabled) {
      throw kube::ApiError(kube::ApiError::Kind::kForbidden, 403, "pods/status: forbidden");
    }
    w_.annotations[ns + "/" + name] = std::string(value);
  }
  void clear(const std::string& ns, const std::string& name, const std::string&) override {
    if (w_.fail == "clear") {
      throw kube::ApiError(kube::ApiError::Kind::kUnauthorized, 401, "Unauthorized");
    }
    w_.annotations.erase(ns + "/" + name);
  }

 private:
  World& w_;
};

// What the Enroller tells users (Events, last error), as calls.
class FakeReport final : public PodReport {
 public:
  struct Call {
    std::string what;  // problem, enrolled, unenrolled, forget
    std::string uid;
    Problem kind = Problem::kFailed;
    std::string text;
  };
  void problem(const PodRef& p, Problem k, const std::string& m) override {
    add({"problem", p.uid, k, m});
  }
  void enrolled(const PodRef& p, const std::string& how) override {
    add({"enrolled", p.uid, Problem::kFailed, how});
  }
  void unenrolled(const PodRef& p, const std::string& why) override {
    add({"unenrolled", p.uid, Problem::kFailed, why});
  }
  void forget(const std::string& uid) override { add({"forget", uid, Problem::kFailed, ""}); }
  std::vector<Call> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  void add(Call c) {
    std::lock_guard lock(mu_);
    calls_.push_back(std::move(c));
  }
  mutable std::mutex mu_;
  std::vector<Call> calls_;
};

class EnrollerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pods_ = std::make_unique<PodTable>(rundir::RunDir(dir_.string()));
    log_ = std::make_shared<spdlog::logger>(
        "test", std::make_shared<spdlog::sinks::ostream_sink_st>(log_text_));
    enroller_ = std::make_unique<Enroller>(
        EnrollerDeps{*pods_, netns_, rules_, probes_, ztunnel_, status_, metrics_, log_, &report_});
  }

  static Enrolment pod(const std::string& name, const std::string& container = "sb-1") {
    Enrolment e;
    e.pod = {container, "/var/run/netns/" + name, "eth0", "uid-" + name, name, "demo", {"10.0.0.5"},
             "k8s"};
    e.service_account = name + "-sa";
    return e;
  }

  // Nothing of the pod anywhere.
  void expect_nothing_left(const Enrolment& e) {
    EXPECT_FALSE(w_.rules.contains(e.pod.netns)) << "rules left";
    EXPECT_FALSE(w_.probes.contains(e.pod.uid)) << "probe entry left";
    EXPECT_FALSE(w_.ztunnel.contains(e.pod.uid)) << "ztunnel workload left";
    const auto it = w_.annotations.find("demo/" + e.pod.name);
    EXPECT_TRUE(it == w_.annotations.end() || it->second != contract::kRedirectionEnabled);
    EXPECT_FALSE(pods_->get(e.pod.uid).has_value()) << "agent state left";
    EXPECT_TRUE(rundir::RunDir(dir_.string()).enrolled().empty()) << "run-dir state left";
  }

  World w_;
  FakeNetns netns_{w_};
  FakeRules rules_{w_};
  FakeProbes probes_{w_};
  FakeZtunnel ztunnel_{w_};
  FakeStatus status_{w_};
  Metrics metrics_;
  ambient::testing::ScratchDir scratch_{"enroller"};
  const fs::path& dir_ = scratch_.path();
  std::unique_ptr<PodTable> pods_;
  std::ostringstream log_text_;
  std::shared_ptr<spdlog::logger> log_;
  FakeReport report_;
  std::unique_ptr<Enroller> enroller_;
};

TEST_F(EnrollerTest, EveryStepInPlaceAfterASuccess) {
  const auto e = pod("web");
  const auto out = enroller_->enrol(e);
  ASSERT_TRUE(out.ok) << out.msg << " " << out.details;
  EXPECT_TRUE(w_.rules.contains(e.pod.netns));
  EXPECT_EQ(w_.probes.at(e.pod.uid), e.pod.ips);
  EXPECT_TRUE(w_.ztunnel.contains(e.pod.uid));
  EXPECT_EQ(w_.annotations.at("demo/web"), contract::kRedirectionEnabled);
  ASSERT_TRUE(pods_->get(e.pod.uid).has_value());
  const auto persisted = rundir::RunDir(dir_.string()).enrolled();
  ASSERT_EQ(persisted.size(), 1u);
  EXPECT_EQ(persisted[0].pod, e.pod);
  EXPECT_EQ(persisted[0].service_account, "web-sa");
  EXPECT_NE(metrics_.render().find(R"(op="add",result="ok"} 1)"), std::string::npos);
}

struct FailCase {
  const char* step;
  const char* result;   // the metric's result label
  const char* message;  // what the CNI error says
};

class EnrollerFailsStep : public EnrollerTest, public ::testing::WithParamInterface<FailCase> {};

TEST_P(EnrollerFailsStep, LeavesNothingBehind) {
  const auto& c = GetParam();
  w_.fail = c.step;
  const auto e = pod("web");
  const auto out = enroller_->enrol(e);
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.code, 11);
  EXPECT_NE(out.msg.find(c.message), std::string::npos) << out.msg;
  EXPECT_NE(out.msg.find("demo/web"), std::string::npos) << out.msg;
  expect_nothing_left(e);
  EXPECT_NE(metrics_.render().find(std::string("op=\"add\",result=\"") + c.result + "\"} 1"),
            std::string::npos)
      << metrics_.render();
}

// Users see it on the pod: a Warning naming the step's error; ztunnel (the one thing a pod waits
// for) is "pending", every other step "failed". The enrolment's time is recorded for status.
TEST_P(EnrollerFailsStep, IsReportedOnThePodWithItsCause) {
  const auto& c = GetParam();
  w_.fail = c.step;
  EXPECT_FALSE(enroller_->enrol(pod("web")).ok);
  const auto calls = report_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].what, "problem");
  EXPECT_EQ(calls[0].uid, "uid-web");
  EXPECT_EQ(calls[0].kind, std::string(c.step) == "ztunnel" ? PodReport::Problem::kPending
                                                            : PodReport::Problem::kFailed);
  EXPECT_NE(calls[0].text.find(c.message), std::string::npos) << calls[0].text;
  EXPECT_NE(calls[0].text.find("the kubelet retries"), std::string::npos) << calls[0].text;
  // Once the step works again, the recovery is reported too.
  w_.fail.clear();
  ASSERT_TRUE(enroller_->enrol(pod("web")).ok);
  ASSERT_EQ(report_.calls().size(), 2u);
  EXPECT_EQ(report_.calls()[1].what, "enrolled");
  EXPECT_GT(pods_->get("uid-web")->enrolment.enrolled_at, 0);
}

INSTANTIATE_TEST_SUITE_P(
    EachStep, EnrollerFailsStep,
    ::testing::Values(FailCase{"netns", "rules_failed", "cannot program ztunnel redirection"},
                      FailCase{"rules", "rules_failed", "cannot program ztunnel redirection"},
                      FailCase{"probes", "probe_failed", "host probe set"},
                      FailCase{"ztunnel", "ztunnel_failed", "ztunnel did not take"},
                      FailCase{"annotation", "annotation_failed", "as enabled"}),
    [](const auto& info) { return std::string(info.param.step); });

// A pod's settings change (an annotation edit) and applying the new ones fails at some step:
// the pod stays enrolled exactly as before, in every place, not erased or left without rules.
class EnrollerFailsAReenrolment : public EnrollerTest,
                                  public ::testing::WithParamInterface<const char*> {};

TEST_P(EnrollerFailsAReenrolment, KeepsThePreviousEnrolment) {
  const auto e = pod("web");
  ASSERT_TRUE(enroller_->enrol(e).ok);
  auto changed = e;
  changed.redirect.dns_capture = false;
  w_.fail = GetParam();
  EXPECT_FALSE(enroller_->enrol(changed, Enroller::Source::kFound).ok);
  w_.fail.clear();
  const auto now = pods_->get(e.pod.uid);
  ASSERT_TRUE(now.has_value()) << "the failed re-enrolment erased the pod from the table";
  EXPECT_TRUE(now->enrolment.redirect.dns_capture);
  EXPECT_FALSE(now->pending);
  EXPECT_TRUE(w_.rules.contains(e.pod.netns)) << "rules removed";
  EXPECT_TRUE(w_.dns.at(e.pod.netns)) << "the previous settings are not back in the netns";
  EXPECT_EQ(w_.probes[e.pod.uid], e.pod.ips);
  EXPECT_TRUE(w_.ztunnel.contains(e.pod.uid)) << "ztunnel was told to drop the pod";
  EXPECT_EQ(w_.annotations.at("demo/web"), contract::kRedirectionEnabled);
  const auto persisted = rundir::RunDir(dir_.string()).enrolled();
  ASSERT_EQ(persisted.size(), 1u);
  EXPECT_TRUE(persisted[0].redirect.dns_capture) << "the run dir holds the settings that failed";
  // The next try with the new settings works from there.
  ASSERT_TRUE(enroller_->enrol(changed, Enroller::Source::kFound).ok);
  EXPECT_FALSE(w_.dns.at(e.pod.netns));
}

INSTANTIATE_TEST_SUITE_P(AtEachStep, EnrollerFailsAReenrolment,
                         ::testing::Values("rules", "probes", "ztunnel", "annotation"));

TEST_F(EnrollerTest, StateThatCannotBePersistedFailsTheEnrolmentCleanly) {
  std::ofstream(dir_ / "enrolled") << "a file where the state directory should be";
  const auto e = pod("web");
  const auto out = enroller_->enrol(e);
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.msg.find("cannot record pod demo/web in the run dir"), std::string::npos);
  EXPECT_FALSE(w_.rules.contains(e.pod.netns));
  EXPECT_FALSE(w_.probes.contains(e.pod.uid));
  EXPECT_FALSE(w_.ztunnel.contains(e.pod.uid));
  EXPECT_FALSE(pods_->get(e.pod.uid).has_value());
}

TEST_F(EnrollerTest, ZtunnelRefusalMarksThePodPending) {
  w_.fail = "ztunnel";
  EXPECT_FALSE(enroller_->enrol(pod("web")).ok);
  EXPECT_EQ(w_.annotations.at("demo/web"), contract::kRedirectionPending);
}

TEST_F(EnrollerTest, AnUndoThatFailsIsReportedNotHidden) {
  w_.fail = "annotation";
  w_.fail_undo = {"rules"};
  const auto out = enroller_->enrol(pod("web"));
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.details.find("could not undo: in-pod rules"), std::string::npos) << out.details;
  EXPECT_NE(metrics_.render().find(R"(result="rollback_failed"} 1)"), std::string::npos);
  EXPECT_NE(log_text_.str().find("rollback of in-pod rules failed"), std::string::npos);
  // The other undos still ran.
  EXPECT_FALSE(w_.ztunnel.contains("uid-web"));
  EXPECT_FALSE(w_.probes.contains("uid-web"));
  EXPECT_FALSE(pods_->get("uid-web").has_value());
}

TEST_F(EnrollerTest, AnEnrolmentWithoutUidIsInvalidAndTouchesNothing) {
  auto e = pod("web");
  e.pod.uid.clear();
  const auto out = enroller_->enrol(e);
  EXPECT_EQ(out.code, 7);
  EXPECT_TRUE(w_.open.empty());
}

TEST_F(EnrollerTest, DelOfTheEnrolledSandboxReleasesEverything) {
  const auto e = pod("web");
  ASSERT_TRUE(enroller_->enrol(e).ok);
  auto older = e.pod;
  older.container_id = "sb-0";  // a late DEL of an older sandbox of the same pod
  enroller_->release_sandbox(older);
  EXPECT_TRUE(w_.ztunnel.contains(e.pod.uid));
  enroller_->release_sandbox(e.pod);
  expect_nothing_left(e);
  EXPECT_FALSE(w_.annotations.contains("demo/web"));  // removed, not set to something else
  enroller_->release_sandbox(e.pod);                  // again: nothing to do, no failure
}

TEST_F(EnrollerTest, ReleaseGoesOnWhenAStepFailsAndCountsIt) {
  const auto e = pod("web");
  ASSERT_TRUE(enroller_->enrol(e).ok);
  w_.fail_undo = {"rules"};
  enroller_->release(e.pod.uid, /*clear_annotation=*/true);
  EXPECT_FALSE(w_.ztunnel.contains(e.pod.uid));
  EXPECT_FALSE(w_.probes.contains(e.pod.uid));
  EXPECT_FALSE(pods_->get(e.pod.uid).has_value());
  EXPECT_FALSE(w_.annotations.contains("demo/web"));
  EXPECT_NE(metrics_.render().find(R"(ambient_cni_degraded_total{what="release_step_failed"} 1)"),
            std::string::npos);
  EXPECT_NE(log_text_.str().find("pod demo/web: removing in-pod rules: netlink: injected"),
            std::string::npos);
}

TEST_F(EnrollerTest, ARestoreThatCannotReapplyLeavesThePodPendingUntilARetryWorks) {
  const auto e = pod("web");
  w_.annotations["demo/web"] = "enabled";  // what the earlier agent left
  w_.fail = "rules";
  EXPECT_TRUE(enroller_->restore(e));  // still owed to ztunnel: the snapshot carries it
  ASSERT_TRUE(pods_->get(e.pod.uid).has_value());
  EXPECT_TRUE(pods_->get(e.pod.uid)->pending);
  EXPECT_EQ(w_.annotations.at("demo/web"), contract::kRedirectionPending);  // never "enabled"
  EXPECT_EQ(enroller_->pending(), std::vector<std::string>{"uid-web"});
  EXPECT_NE(metrics_.render().find(R"(ambient_cni_degraded_total{what="restore_failed"} 1)"),
            std::string::npos);
  EXPECT_EQ(enroller_->repair(e.pod.uid), Enroller::Repair::kFailed);  // still broken
  EXPECT_EQ(w_.annotations.at("demo/web"), contract::kRedirectionPending);
  w_.fail.clear();
  EXPECT_EQ(enroller_->repair(e.pod.uid), Enroller::Repair::kRepaired);
  EXPECT_TRUE(w_.rules.contains(e.pod.netns));
  EXPECT_FALSE(pods_->get(e.pod.uid)->pending);
  EXPECT_EQ(w_.annotations.at("demo/web"), contract::kRedirectionEnabled);
  EXPECT_TRUE(enroller_->pending().empty());
  // Said on the pod: pending with the cause (after the restart and after the failed retry),
  // then in place again.
  const auto calls = report_.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].kind, PodReport::Problem::kPending);
  EXPECT_NE(calls[0].text.find("nft: injected"), std::string::npos) << calls[0].text;
  EXPECT_EQ(calls[1].kind, PodReport::Problem::kPending);
  EXPECT_EQ(calls[2].what, "enrolled");
}

// Found on the real node: while an ADD waits for ztunnel (up to 5 s when none is connected) the
// pod is already in the table (a ztunnel connecting meanwhile must get it in its snapshot);
// `status` showed it as enrolled. It is "enrolling" until the enrolment is complete, and a failed
// attempt leaves nothing.
TEST_F(EnrollerTest, APodIsEnrollingUntilItsEnrolmentIsComplete) {
  std::optional<bool> enrolling_during_add;
  ztunnel_.on_add = [&](const std::string& uid) {
    const auto p = pods_->get(uid);
    enrolling_during_add = p.has_value() && p->enrolling;
  };
  ASSERT_TRUE(enroller_->enrol(pod("web")).ok);
  EXPECT_EQ(enrolling_during_add, true);
  EXPECT_FALSE(pods_->get("uid-web")->enrolling);
  w_.fail = "ztunnel";
  enrolling_during_add.reset();
  EXPECT_FALSE(enroller_->enrol(pod("db")).ok);
  EXPECT_EQ(enrolling_during_add, true);
  EXPECT_FALSE(pods_->get("uid-db").has_value());
  // A re-enrolment that fails puts back the complete one.
  auto changed = pod("web");
  changed.redirect.dns_capture = false;
  EXPECT_FALSE(enroller_->enrol(changed).ok);
  EXPECT_FALSE(pods_->get("uid-web")->enrolling);
}

TEST_F(EnrollerTest, TheAgentsOwnEnrolmentsAndSettingChangesAreNotReportedByTheEnroller) {
  const auto e = pod("web");
  ASSERT_TRUE(enroller_->enrol(e, Enroller::Source::kFound).ok);
  EXPECT_TRUE(report_.calls().empty()) << "the reconciler reports these, with their reason";
  const auto since = pods_->get(e.pod.uid)->enrolment.enrolled_at;
  EXPECT_GT(since, 0);
  // A re-enrolment with other settings keeps the time the pod was enrolled.
  auto changed = e;
  changed.redirect.dns_capture = false;
  ASSERT_TRUE(enroller_->enrol(changed, Enroller::Source::kFound).ok);
  EXPECT_EQ(pods_->get(e.pod.uid)->enrolment.enrolled_at, since);
  EXPECT_EQ(rundir::RunDir(dir_.string()).enrolled().at(0).enrolled_at, since);
}

TEST_F(EnrollerTest, TheEnrolledNamespaceIsRecorded) {
  ASSERT_TRUE(enroller_->enrol(pod("web")).ok);
  const auto persisted = rundir::RunDir(dir_.string()).enrolled();
  ASSERT_EQ(persisted.size(), 1u);
  EXPECT_EQ(persisted[0].netns_dev, 1u);
  EXPECT_EQ(persisted[0].netns_inode, std::hash<std::string>{}("/var/run/netns/web"));
}

// After a restart the persisted path names another namespace (the sandbox was replaced, or a
// /proc/PID path now belongs to another process): nothing in it is this pod's to touch.
TEST_F(EnrollerTest, RestoreOfAPathThatNamesAnotherNamespaceTouchesNothing) {
  const auto e = pod("web");
  ASSERT_TRUE(enroller_->enrol(e).ok);
  const auto persisted = rundir::RunDir(dir_.string()).enrolled().at(0);
  w_.rules.clear();                        // the new namespace at that path has none of ours
  w_.ids[e.pod.netns] = NetnsId{1, 4242};  // and is another namespace
  PodTable fresh(rundir::RunDir(dir_.string()));
  Enroller again({fresh, netns_, rules_, probes_, ztunnel_, status_, metrics_, log_});
  EXPECT_FALSE(again.restore(persisted));
  EXPECT_FALSE(w_.rules.contains(e.pod.netns)) << "another pod's netns got this pod's rules";
  EXPECT_FALSE(fresh.get(e.pod.uid).has_value());
  EXPECT_FALSE(w_.ztunnel.contains(e.pod.uid));
  EXPECT_NE(metrics_.render().find(R"(ambient_cni_degraded_total{what="netns_replaced"} 1)"),
            std::string::npos);
}

TEST_F(EnrollerTest, ANetnsTheAgentFoundIsUsedOnlyWhenItHoldsThePodsIps) {
  const auto e = pod("web");
  w_.foreign = {e.pod.netns};
  const auto out = enroller_->enrol(e, Enroller::Source::kFound);
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.msg.find("is not its own"), std::string::npos) << out.msg;
  expect_nothing_left(e);
  // The runtime's own ADD names the sandbox itself: authoritative.
  EXPECT_TRUE(enroller_->enrol(e, Enroller::Source::kAdd).ok);
}

TEST_F(EnrollerTest, DriftRepairLeavesAPodReleasedMeanwhileAlone) {
  const auto e = pod("web");
  ASSERT_TRUE(enroller_->enrol(e).ok);
  w_.rules.clear();  // drifted
  EXPECT_EQ(enroller_->repair(e.pod.uid), Enroller::Repair::kRepaired);
  EXPECT_TRUE(w_.rules.contains(e.pod.netns));
  EXPECT_EQ(enroller_->repair(e.pod.uid), Enroller::Repair::kInPlace);
  enroller_->release(e.pod.uid, true);
  EXPECT_EQ(enroller_->repair(e.pod.uid), Enroller::Repair::kGone);
  EXPECT_FALSE(w_.rules.contains(e.pod.netns)) << "rules re-applied to a released pod";
}

// The host probe set is repaired from the table; an enrolment or a release that runs while the
// repair holds its picture of the table must win (the chaos soak's leaked probe entry).
class ProbeRepairRace : public EnrollerTest {
 protected:
  // Runs `concurrent` on another thread while repair_probes() is between reading the table and
  // writing the host set, and gives it time to finish there if nothing holds it back.
  void race(const std::function<void()>& concurrent) {
    std::promise<void> entered;
    std::promise<void> go;
    auto go_f = go.get_future().share();
    probes_.on_reconcile = [&] {
      entered.set_value();
      go_f.wait();
    };
    std::thread repair([&] { enroller_->repair_probes(); });
    entered.get_future().wait();
    std::thread other(concurrent);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    go.set_value();
    repair.join();
    other.join();
    probes_.on_reconcile = nullptr;
  }
};

TEST_F(ProbeRepairRace, APodReleasedMeanwhileKeepsNoProbeEntry) {
  const auto e = pod("web");
  ASSERT_TRUE(enroller_->enrol(e).ok);
  race([&] { enroller_->release(e.pod.uid, true); });
  EXPECT_FALSE(w_.probes.contains(e.pod.uid)) << "the repair gave a released pod its entry back";
  expect_nothing_left(e);
}

TEST_F(ProbeRepairRace, APodEnrolledMeanwhileKeepsItsProbeEntry) {
  const auto e = pod("web");
  race([&] { EXPECT_TRUE(enroller_->enrol(e).ok); });
  ASSERT_TRUE(pods_->get(e.pod.uid).has_value());
  EXPECT_TRUE(w_.probes.contains(e.pod.uid)) << "the repair removed a new pod's entry";
}

TEST_F(EnrollerTest, ProbeRepairLeavesPodsBeingReleasedOut) {
  const auto a = pod("a");
  auto b = pod("b", "sb-b");
  b.pod.ips = {"10.0.0.6"};
  ASSERT_TRUE(enroller_->enrol(a).ok);
  ASSERT_TRUE(enroller_->enrol(b).ok);
  pods_->mark_releasing(b.pod.uid);
  w_.probes.clear();  // drifted
  const auto report = enroller_->repair_probes();
  EXPECT_EQ(report.added, 1u);
  EXPECT_EQ(w_.probes[a.pod.uid], a.pod.ips);
  EXPECT_FALSE(w_.probes.contains(b.pod.uid));
}

TEST_F(EnrollerTest, AReleaseDecidedForAnOlderSandboxSparesTheNewOne) {
  ASSERT_TRUE(enroller_->enrol(pod("web", "sb-1")).ok);
  ASSERT_TRUE(enroller_->enrol(pod("web", "sb-2")).ok);  // a new sandbox of the same pod
  EXPECT_FALSE(enroller_->release("uid-web", true, "sb-1"));
  EXPECT_TRUE(w_.ztunnel.contains("uid-web"));
  EXPECT_EQ(pods_->get("uid-web")->pod().container_id, "sb-2");
  EXPECT_TRUE(enroller_->release("uid-web", true, "sb-2"));
  EXPECT_FALSE(w_.ztunnel.contains("uid-web"));
}

TEST(EnrolmentFor, TakesTheApisPodIpsTooSoADualStackPodGetsIpv6) {
  config::PodInfo pod;
  pod.uid = "uid-web";
  pod.name = "web";
  pod.namespace_ = "demo";
  pod.ips = {"10.0.0.5", "fd00::5"};
  rundir::PodRecord sandbox{"sb", "/var/run/netns/x", "eth0", "", "web", "demo", {"10.0.0.5"}, ""};
  const auto e = enrolment_for(pod, sandbox, NodeDefaults{});
  EXPECT_EQ(e.pod.ips, (std::vector<std::string>{"10.0.0.5", "fd00::5"}));
  EXPECT_EQ(e.pod.uid, "uid-web");
  const auto plan = plan_for(e.redirect, e.pod.ips);
  EXPECT_TRUE(plan.options().ipv4);
  EXPECT_TRUE(plan.options().ipv6);
}

TEST_F(EnrollerTest, PerPodLocksAreReapedWithThePods) {
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(enroller_->enrol(pod("p" + std::to_string(i), "sb" + std::to_string(i))).ok);
  }
  EXPECT_EQ(pods_->lock_slots(), 0u);  // none held between operations
  {
    auto held = pods_->lock_pod("uid-p1");
    EXPECT_EQ(pods_->lock_slots(), 1u);
  }
  EXPECT_EQ(enroller_->release_all(true).released, 50u);
  EXPECT_EQ(pods_->lock_slots(), 0u);
}

// Removal after `kubectl delete -k` took our identity: the annotation cannot be cleared, so the
// pod keeps everything that annotation promises (rules, ztunnel, probes, state).
TEST_F(EnrollerTest, RemovalKeepsAPodWhoseAnnotationTheApiWillNotClear) {
  const auto e = pod("web");
  ASSERT_TRUE(enroller_->enrol(e).ok);
  w_.fail = "clear";
  const auto r = enroller_->release_all(true);
  EXPECT_EQ(r.released, 0u);
  EXPECT_EQ(r.kept, 1u);
  EXPECT_EQ(w_.annotations.at("demo/web"), contract::kRedirectionEnabled);
  EXPECT_TRUE(w_.rules.contains(e.pod.netns));
  EXPECT_TRUE(w_.ztunnel.contains(e.pod.uid));
  EXPECT_TRUE(w_.probes.contains(e.pod.uid));
  EXPECT_TRUE(pods_->get(e.pod.uid).has_value());
  w_.fail.clear();
  EXPECT_EQ(enroller_->release_all(true).released,
            1u);  // allowed again: released, annotation first
  expect_nothing_left(e);
}

TEST_F(EnrollerTest, CheckFollowsWhatIsInPlace) {
  const auto e = pod("web");
  EXPECT_FALSE(enroller_->check("sb-1").ok);
  ASSERT_TRUE(enroller_->enrol(e).ok);
  EXPECT_TRUE(enroller_->check("sb-1").ok);
  w_.rules.clear();
  const auto drifted = enroller_->check("sb-1");
  EXPECT_FALSE(drifted.ok);
  EXPECT_NE(drifted.msg.find("not in place"), std::string::npos);
}

TEST_F(EnrollerTest, RestoreForgetsAPodWhoseNetnsIsGone) {
  const auto e = pod("web");
  ASSERT_TRUE(enroller_->enrol(e).ok);
  PodTable fresh(rundir::RunDir(dir_.string()));  // a restarted agent's empty table
  Enroller again({fresh, netns_, rules_, probes_, ztunnel_, status_, metrics_, log_});
  w_.fail = "netns";
  EXPECT_FALSE(again.restore(e));
  EXPECT_FALSE(w_.probes.contains(e.pod.uid));
  EXPECT_TRUE(rundir::RunDir(dir_.string()).enrolled().empty());
  w_.fail.clear();
  ASSERT_TRUE(enroller_->enrol(e).ok);
  EXPECT_TRUE(again.restore(e));
  EXPECT_TRUE(fresh.get(e.pod.uid).has_value());
}

}  // namespace
}  // namespace ambient::agent
