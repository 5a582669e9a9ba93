#include "netns/prepared_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <list>
#include <mutex>
#include <sstream>
#include <vector>

#include "config/constants.h"
#include "netns/netns.h"
#include "netns/nft.h"

namespace ambient::netns::detail {
namespace {

namespace c = ambient::contract;

constexpr std::string_view kAllTables[] = {c::kNatTable, c::kMangleTable, c::kRawTable};
// Options come from pod annotations (reroute interfaces), so the cache is bounded. A node uses a
// handful of distinct plans; a plan evicted is learnt again on its next use.
constexpr std::size_t kMaxPlans = 32;

struct Entry {
  RedirectOptions options;
  std::shared_ptr<const PreparedPlan> prepared;
};

std::mutex cache_mu;     // guards plans
std::list<Entry> plans;  // most recently used first
std::mutex learn_mu;     // one plan learnt at a time (libnftables is serialised anyway)
std::atomic<std::uint64_t> replayed{0}, libnftables{0}, replay_refused{0}, plans_learnt{0};

std::shared_ptr<const PreparedPlan> cached(const RedirectOptions& options) {
  std::lock_guard<std::mutex> lock(cache_mu);
  for (auto it = plans.begin(); it != plans.end(); ++it) {
    if (it->options == options) {
      plans.splice(plans.begin(), plans, it);
      return plans.front().prepared;
    }
  }
  return nullptr;
}

void keep(const RedirectOptions& options, std::shared_ptr<const PreparedPlan> prepared) {
  std::lock_guard<std::mutex> lock(cache_mu);
  plans.remove_if([&](const Entry& e) { return e.options == options; });
  plans.push_front({options, std::move(prepared)});
  while (plans.size() > kMaxPlans) plans.pop_back();
}

// The plan's tables as the calling thread's netns lists them.
std::map<std::string, std::string> listing_here(const RedirectPlan& plan) {
  std::map<std::string, std::string> out;
  for (auto t : plan.tables()) out.emplace(std::string(t), list_table_here(t));
  return out;
}

// The whole ruleset of the calling thread's netns, stateless.
std::string ruleset_here() {
  return nft::run("list ruleset", "list ruleset", nft::Output::Stateless);
}

std::shared_ptr<const PreparedPlan> learn(const RedirectPlan& plan) {
  const std::string text = plan.render();
  auto prepared = std::make_shared<PreparedPlan>();
  std::string want;  // the whole ruleset libnftables left
  auto expect_same = [&](std::string_view when) {
    if (ruleset_here() != want) {
      throw NetnsError(
          ErrorKind::Nftables,
          fmt::format("the batch {} lists differently from what libnftables left", when));
    }
  };
  // The kernel refusing a replay, or a replay that lists differently, makes the plan not
  // replayable here (cached: that will not change in this process). Anything else (no socket, no
  // netns) propagates and is tried again on the next use.
  auto not_replayable = [&](const NetnsError& e) {
    if (e.kind() != ErrorKind::Nftables) throw;
    prepared->batch.reset();
    prepared->not_replayable = e.what();
  };
  run_in_scratch_netns([&] {
    const auto sent = nft::run_recorded(text, "apply the plan in a throwaway netns");
    prepared->listing = listing_here(plan);
    want = ruleset_here();
    try {
      auto batch = std::make_shared<const nft::Batch>(nft::from_recording(sent));
      // A re-apply: replayed over its own ruleset, nothing may change (this is also what a
      // batch that depended on libnftables' cache would get wrong).
      nft::replay_here(*batch);
      expect_same("replayed over its own ruleset");
      prepared->batch = std::move(batch);
    } catch (const NetnsError& e) {
      not_replayable(e);
    }
  });
  if (!prepared->batch) return prepared;
  // A pod's first apply: replayed where there is no ruleset at all, it must leave exactly what
  // libnftables left.
  run_in_scratch_netns([&] {
    try {
      nft::replay_here(*prepared->batch);
      expect_same("replayed in an empty netns");
    } catch (const NetnsError& e) {
      not_replayable(e);
    }
  });
  return prepared;
}

}  // namespace

std::shared_ptr<const PreparedPlan> prepare(const RedirectPlan& plan) {
  if (auto p = cached(plan.options())) return p;
  std::lock_guard<std::mutex> lock(learn_mu);
  if (auto p = cached(plan.options())) return p;  // learnt while we waited
  auto p = learn(plan);
  ++plans_learnt;
  keep(plan.options(), p);
  return p;
}

RuleProgrammingCounts rule_programming_counts() {
  return {replayed.load(), libnftables.load(), replay_refused.load(), plans_learnt.load()};
}

void count_rule_programming(RuleProgrammingCounts delta) {
  replayed += delta.replayed;
  libnftables += delta.libnftables;
  replay_refused += delta.replay_refused;
  plans_learnt += delta.plans_learnt;
}

void set_prepared_for_testing(const RedirectPlan& plan, std::shared_ptr<const PreparedPlan> p) {
  keep(plan.options(), std::move(p));
}

void forget_prepared_plans() {
  std::lock_guard<std::mutex> lock(cache_mu);
  plans.clear();
}

std::set<std::string> our_tables_here() {
  const std::string listing = nft::run("list tables inet", "list tables");
  std::set<std::string> present;
  std::istringstream in(listing);
  std::string word_table, family, name;
  while (in >> word_table >> family >> name) {
    if (std::find(std::begin(kAllTables), std::end(kAllTables), name) != std::end(kAllTables)) {
      present.insert(name);
    }
  }
  return present;
}

std::string list_table_here(std::string_view table) {
  return nft::run(fmt::format("list table inet {}", table), fmt::format("list table {}", table),
                  nft::Output::Stateless);
}

}  // namespace ambient::netns::detail
