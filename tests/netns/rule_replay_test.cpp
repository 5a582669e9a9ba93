// The replayed rules are libnftables' rules (decision 017): for every option combination the
// ruleset apply() leaves by replaying the plan's batch lists exactly as libnftables applying the
// plan's text does, re-applying over any other options' ruleset converges, the recorded batch
// does not depend on what the netns held, and a batch the kernel refuses leaves nothing behind
// and falls back to libnftables.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "netns/nft.h"
#include "netns/nft_batch.h"
#include "netns/prepared_plan.h"
#include "netns/redirect.h"
#include "tests/netns/netns_test_env.h"

namespace ambient::netns {
namespace {

using testbed::BridgeNode;
using testbed::must;

struct Combination {
  std::string name;
  RedirectOptions options;
};
void PrintTo(const Combination& c, std::ostream* os) {
  *os << c.name;
}

// Every combination of the options a pod can get: family, DNS capture, ingress bypass, reroute
// interfaces.
std::vector<Combination> all_combinations() {
  std::vector<Combination> out;
  const struct {
    const char* name;
    bool v4, v6;
  } families[] = {{"ipv4", true, false}, {"ipv6", false, true}, {"dual", true, true}};
  for (const auto& f : families) {
    for (bool dns : {true, false}) {
      for (bool bypass : {false, true}) {
        for (bool reroute : {false, true}) {
          RedirectOptions o;
          o.ipv4 = f.v4;
          o.ipv6 = f.v6;
          o.dns_capture = dns;
          o.bypass_inbound_capture = bypass;
          if (reroute) o.reroute_interfaces = {"vm0", "kubevirt-1"};
          out.push_back({std::string(f.name) + (dns ? "_dns" : "_nodns") +
                             (bypass ? "_bypass" : "") + (reroute ? "_reroute" : ""),
                         o});
        }
      }
    }
  }
  return out;
}

// Each option flipped: the ruleset a pod held before its settings changed.
RedirectOptions all_flipped(RedirectOptions o) {
  if (o.ipv4 && o.ipv6) {
    o.ipv6 = false;
  } else {
    std::swap(o.ipv4, o.ipv6);
  }
  o.dns_capture = !o.dns_capture;
  o.bypass_inbound_capture = !o.bypass_inbound_capture;
  o.reroute_interfaces =
      o.reroute_interfaces.empty() ? std::vector<std::string>{"eth9"} : std::vector<std::string>{};
  return o;
}

// The kernel's listing through the nft binary, not through the library under test.
std::string ruleset_of(const std::string& ns) {
  return must("ip netns exec " + ns + " nft -s list ruleset");
}

// The plan applied the old way: libnftables compiling and sending its text in ns.
void apply_with_libnftables(const std::string& ns_path, const RedirectPlan& plan) {
  run_in(NetnsHandle::open(ns_path), [&] { nft::run(plan.render(), "apply with libnftables"); });
}

detail::RuleProgrammingCounts counts_since(const detail::RuleProgrammingCounts& before) {
  const auto now = detail::rule_programming_counts();
  return {now.replayed - before.replayed, now.libnftables - before.libnftables,
          now.replay_refused - before.replay_refused, now.plans_learnt - before.plans_learnt};
}

class RuleReplay : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() == 0) node_ = std::make_unique<BridgeNode>();
  }
  static void TearDownTestSuite() { node_.reset(); }
  void SetUp() override { AMBIENT_REQUIRE_ROOT(); }
  BridgeNode::PodNet pod(const std::string& name) { return node_->add_pod(name, true); }
  static std::unique_ptr<BridgeNode> node_;
};
std::unique_ptr<BridgeNode> RuleReplay::node_;

class RuleReplayEveryCombination : public RuleReplay,
                                   public ::testing::WithParamInterface<Combination> {};

TEST_P(RuleReplayEveryCombination, ListsExactlyAsLibnftablesApplyingTheText) {
  const RedirectPlan plan(GetParam().options);
  const auto prepared = detail::prepare(plan);
  ASSERT_NE(prepared->batch, nullptr) << prepared->not_replayable;

  const auto theirs = pod("lib"), ours = pod("replay");
  apply_with_libnftables(theirs.path, plan);
  const auto before = detail::rule_programming_counts();
  apply(NetnsHandle::open(ours.path), plan);
  const auto used = counts_since(before);
  EXPECT_EQ(used.replayed, 1u);
  EXPECT_EQ(used.libnftables, 0u);

  const std::string want = ruleset_of(theirs.netns);
  EXPECT_NE(want.find("table inet istio-ambient-nat"), std::string::npos) << want;
  EXPECT_EQ(ruleset_of(ours.netns), want);
  EXPECT_EQ(inspect(NetnsHandle::open(ours.path), plan).status, RedirectStatus::Current);
  node_->remove_pod(theirs);
  node_->remove_pod(ours);
}

TEST_P(RuleReplayEveryCombination, ConvergesOverAnotherPlansRuleset) {
  const RedirectPlan plan(GetParam().options);
  const auto theirs = pod("lib"), ours = pod("replay");
  apply_with_libnftables(theirs.path, plan);
  const std::string want = ruleset_of(theirs.netns);

  const auto ns = NetnsHandle::open(ours.path);
  for (const RedirectOptions& earlier : {all_flipped(GetParam().options), RedirectOptions{}}) {
    apply(ns, RedirectPlan(earlier));
    const auto before = detail::rule_programming_counts();
    apply(ns, plan);
    EXPECT_EQ(counts_since(before).replayed, 1u);
    EXPECT_EQ(ruleset_of(ours.netns), want);
    EXPECT_EQ(inspect(ns, plan).status, RedirectStatus::Current) << inspect(ns, plan).summary();
  }
  remove(ns);
  testbed::expect_no_redirection_state(ours.netns);
  node_->remove_pod(theirs);
  node_->remove_pod(ours);
}

INSTANTIATE_TEST_SUITE_P(Options, RuleReplayEveryCombination,
                         ::testing::ValuesIn(all_combinations()),
                         [](const auto& info) { return info.param.name; });

// libnftables builds its batch after reading the netns' tables and chains (its cache). The
// recording is made in an empty netns and replayed over anything, so it must not depend on them.
TEST_F(RuleReplay, TheRecordedBatchDoesNotDependOnWhatTheNetnsHeld) {
  for (const auto& c : all_combinations()) {
    SCOPED_TRACE(c.name);
    const RedirectPlan plan(c.options);
    const std::string text = plan.render();
    const nft::Batch empty =
        nft::from_recording(run_in_scratch_netns([&] { return nft::run_recorded(text, "x"); }));
    const nft::Batch over_other = nft::from_recording(run_in_scratch_netns([&] {
      nft::run(RedirectPlan(all_flipped(c.options)).render(), "the earlier plan");
      return nft::run_recorded(text, "x");
    }));
    const nft::Batch over_itself = nft::from_recording(run_in_scratch_netns([&] {
      nft::run(text, "the same plan");
      return nft::run_recorded(text, "x");
    }));
    EXPECT_EQ(over_other.bytes, empty.bytes);
    EXPECT_EQ(over_itself.bytes, empty.bytes);
    EXPECT_EQ(empty.messages, over_other.messages);
  }
}

// The batch with one message changed so that the kernel refuses it. `from`/`to` are the same
// length, so every length in the batch stays right.
nft::Batch corrupted(const nft::Batch& batch, const std::string& from, const std::string& to) {
  EXPECT_EQ(from.size(), to.size());
  nft::Batch out = batch;
  const auto at = out.bytes.rfind(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) out.bytes.replace(at, from.size(), to);
  return out;
}

TEST_F(RuleReplay, ARefusedBatchLeavesNothingBehind) {
  const RedirectPlan plan{RedirectOptions{}};
  const auto prepared = detail::prepare(plan);
  ASSERT_NE(prepared->batch, nullptr) << prepared->not_replayable;
  // The last rule jumps nowhere the kernel knows; an expression type that does not exist.
  const std::vector<std::pair<nft::Batch, std::string>> refused = {
      {corrupted(*prepared->batch, std::string("istio-output\0", 13),
                 std::string("istio-outpux\0", 13)),
       "No such file or directory"},
      {corrupted(*prepared->batch, std::string("counter\0", 8), std::string("cuonter\0", 8)),
       "No such file or directory"},
  };
  const auto p = pod("refused");
  const auto ns = NetnsHandle::open(p.path);
  for (const auto& [batch, why] : refused) {
    // In a pod that never had our rules: nothing appears.
    try {
      run_in(ns, [&] { nft::replay_here(batch); });
      ADD_FAILURE() << "the kernel took a corrupted batch";
    } catch (const NetnsError& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Nftables);
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("add rule inet istio-ambient-"), std::string::npos)
          << e.what();
    }
    EXPECT_EQ(ruleset_of(p.netns), "");
    testbed::expect_no_redirection_state(p.netns);
  }
  // Over a pod's applied rules: they stay exactly as they were (the batch starts with a flush).
  apply(ns, plan);
  const std::string applied = ruleset_of(p.netns);
  for (const auto& [batch, why] : refused) {
    EXPECT_THROW(run_in(ns, [&] { nft::replay_here(batch); }), NetnsError);
    EXPECT_EQ(ruleset_of(p.netns), applied);
  }
  EXPECT_EQ(inspect(ns, plan).status, RedirectStatus::Current);
  node_->remove_pod(p);
}

// What apply() is told, and how it programmed the rules.
struct Degraded {
  std::vector<std::string> told;
  ApplyHooks hooks() {
    ApplyHooks h;
    h.degraded = [this](std::string_view what) { told.emplace_back(what); };
    return h;
  }
};

TEST_F(RuleReplay, AReplayTheKernelRefusesFallsBackToLibnftables) {
  const RedirectPlan plan{RedirectOptions{}};
  const auto real = detail::prepare(plan);
  ASSERT_NE(real->batch, nullptr) << real->not_replayable;
  auto broken = std::make_shared<detail::PreparedPlan>(*real);
  broken->batch = std::make_shared<const nft::Batch>(corrupted(
      *real->batch, std::string("istio-output\0", 13), std::string("istio-outpux\0", 13)));
  detail::set_prepared_for_testing(plan, broken);

  const auto p = pod("fallback");
  const auto ns = NetnsHandle::open(p.path);
  Degraded d;
  const auto before = detail::rule_programming_counts();
  EXPECT_NO_THROW(apply(ns, plan, d.hooks()));
  const auto used = counts_since(before);
  detail::forget_prepared_plans();
  EXPECT_EQ(used.replay_refused, 1u);
  EXPECT_EQ(used.libnftables, 1u);
  EXPECT_EQ(used.replayed, 0u);
  EXPECT_EQ(d.told, std::vector<std::string>{"rule_replay_refused"});
  EXPECT_EQ(inspect(ns, plan).status, RedirectStatus::Current) << inspect(ns, plan).summary();
  node_->remove_pod(p);
}

TEST_F(RuleReplay, APlanWithoutAReplayableBatchGoesThroughLibnftables) {
  const RedirectPlan plan{RedirectOptions{}};
  auto unusable = std::make_shared<detail::PreparedPlan>(*detail::prepare(plan));
  unusable->batch.reset();
  unusable->not_replayable = "injected by the test";
  detail::set_prepared_for_testing(plan, unusable);

  const auto p = pod("unusable");
  const auto ns = NetnsHandle::open(p.path);
  Degraded d;
  const auto before = detail::rule_programming_counts();
  EXPECT_NO_THROW(apply(ns, plan, d.hooks()));
  EXPECT_NO_THROW(apply(ns, plan, d.hooks()));  // a re-apply too
  const auto used = counts_since(before);
  detail::forget_prepared_plans();
  EXPECT_EQ(used.libnftables, 2u);
  EXPECT_EQ(used.replayed, 0u);
  EXPECT_EQ(d.told,
            (std::vector<std::string>{"rule_replay_unavailable", "rule_replay_unavailable"}));
  EXPECT_EQ(inspect(ns, plan).status, RedirectStatus::Current);
  node_->remove_pod(p);
}

TEST_F(RuleReplay, ABatchRefusedWhereLibnftablesFailsTooReportsBoth) {
  // A base chain someone else created with another priority: the kernel refuses both ways.
  const RedirectPlan plan{RedirectOptions{}};
  const auto p = pod("conflict");
  must("ip netns exec " + p.netns + " nft add table inet istio-ambient-nat");
  must("ip netns exec " + p.netns +
       " nft add chain inet istio-ambient-nat prerouting '{ type nat hook prerouting priority 10; "
       "}'");
  const std::string before_apply = ruleset_of(p.netns);
  const auto ns = NetnsHandle::open(p.path);
  Degraded d;
  try {
    apply(ns, plan, d.hooks());
    ADD_FAILURE() << "applied over a conflicting base chain";
  } catch (const NetnsError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Nftables);
    EXPECT_NE(std::string(e.what()).find("libnftables"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("the replayed batch before it: nf_tables refused"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(d.told, std::vector<std::string>{"rule_replay_refused"});
  EXPECT_EQ(ruleset_of(p.netns), before_apply);
  for (bool v6 : {false, true}) {
    EXPECT_EQ(testbed::ip_rules(p.netns, v6).find("lookup 100"), std::string::npos);
  }
  node_->remove_pod(p);
}

// A burst of pods with options nobody used yet: the plan is learnt once, every pod gets the
// replay.
TEST_F(RuleReplay, ConcurrentFirstAppliesLearnThePlanOnce) {
  RedirectOptions o;
  o.ipv6 = true;
  o.reroute_interfaces = {"burst0"};
  const RedirectPlan plan(o);
  detail::forget_prepared_plans();
  std::vector<BridgeNode::PodNet> pods;
  for (int i = 0; i < 6; ++i) pods.push_back(pod("burst" + std::to_string(i)));
  const auto before = detail::rule_programming_counts();
  std::vector<std::string> errors(pods.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < pods.size(); ++i) {
    threads.emplace_back([&, i] {
      try {
        apply(NetnsHandle::open(pods[i].path), plan);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto used = counts_since(before);
  EXPECT_EQ(used.plans_learnt, 1u);
  EXPECT_EQ(used.replayed, pods.size());
  EXPECT_EQ(used.libnftables, 0u);
  for (std::size_t i = 0; i < pods.size(); ++i) {
    EXPECT_EQ(errors[i], "") << pods[i].netns;
    EXPECT_EQ(inspect(NetnsHandle::open(pods[i].path), plan).status, RedirectStatus::Current);
    node_->remove_pod(pods[i]);
  }
}

TEST_F(RuleReplay, ARoutingFailureAfterAReplayRollsEverythingBack) {
  const RedirectPlan plan{RedirectOptions{}};
  const auto p = pod("rollback");
  ApplyHooks failing;
  failing.install_routing = [](const RoutingSpec& spec) {
    install_routing_here(spec);
    throw NetnsError(ErrorKind::Injected, "injected routing failure");
  };
  const auto before = detail::rule_programming_counts();
  EXPECT_THROW(apply(NetnsHandle::open(p.path), plan, failing), NetnsError);
  EXPECT_EQ(counts_since(before).replayed, 1u);
  testbed::expect_no_redirection_state(p.netns);
  node_->remove_pod(p);
}

}  // namespace
}  // namespace ambient::netns
