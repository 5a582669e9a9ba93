// Internal: what a RedirectPlan becomes on this node, learnt once per distinct plan in throwaway
// network namespaces (decision 017). Not part of the layer's public surface; redirect.cpp, the
// tests and the benchmark use it.
//
// Every pod with the same options gets the same ruleset, so apply() does not run libnftables per
// pod: the nf_tables batch libnftables sent for the plan is recorded once and replayed in each
// pod's netns. Before a recording is trusted it is replayed twice, over the ruleset libnftables
// left (a re-apply) and in an empty netns (a new pod), and both times the kernel must list
// exactly what libnftables left; otherwise the plan is "not replayable" here and apply() uses
// libnftables for it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "netns/nft_batch.h"
#include "netns/redirect.h"

namespace ambient::netns::detail {

struct PreparedPlan {
  // How the kernel lists each table of the plan, stateless (inspect()'s reference).
  std::map<std::string, std::string> listing;
  // The batch apply() replays; null when the plan cannot be replayed here (not_replayable says
  // why).
  std::shared_ptr<const nft::Batch> batch;
  std::string not_replayable;
};

// The plan's PreparedPlan: cached (the 32 plans used most recently), else learnt now (two
// throwaway netns, ~10 ms, most of it the kernel replacing a ruleset; one plan at a time). Throws
// NetnsError when the plan cannot be applied even in a throwaway netns, or when a throwaway netns
// cannot be had; that is not cached.
std::shared_ptr<const PreparedPlan> prepare(const RedirectPlan& plan);

// How apply() has programmed rules in this process so far (tests, benchmark).
struct RuleProgrammingCounts {
  std::uint64_t replayed = 0;        // the recorded batch, accepted by the kernel
  std::uint64_t libnftables = 0;     // libnftables, because no batch could be used
  std::uint64_t replay_refused = 0;  // the kernel refused a replay; libnftables went next
  std::uint64_t plans_learnt = 0;    // prepare() learnt a plan (replayable or not)
};
RuleProgrammingCounts rule_programming_counts();
void count_rule_programming(RuleProgrammingCounts delta);

// Tests only: prepare() returns `prepared` for this plan from now on (until forgotten).
void set_prepared_for_testing(const RedirectPlan& plan, std::shared_ptr<const PreparedPlan> p);
// Tests only: forget every prepared plan, so the next apply() learns its plan again.
void forget_prepared_plans();

// The names of our three tables that exist in the calling thread's netns.
std::set<std::string> our_tables_here();
// One table as the kernel lists it, stateless: counters change with traffic, the ruleset does not.
std::string list_table_here(std::string_view table);

}  // namespace ambient::netns::detail
