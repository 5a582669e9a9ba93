// Rule programming cost, side by side in one run: what the agent does (netns::apply: the plan's
// nf_tables batch, learnt once, replayed per pod; decision 017) against its floor (libnftables'
// batch replayed as recorded, no checks), the old libnftables path (decision 002) and
// `ip netns exec <ns> iptables-restore` of the equivalent rules (how Istio's agent programs a pod),
// plus `nft -f`. Every measurement gets a fresh netns.
//
//   redirect_bench [--reps N] [--json FILE]
//
// Cold = a fresh process per pod (what a plugin applying in-process pays, exec included);
// warm = a long-lived process (the agent case). Not a test: nothing here asserts on time.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/redirect/iptables_rules.h"
#include "bench/redirect/raw_batch.h"
#include "netns/netns.h"
#include "netns/nft.h"
#include "netns/prepared_plan.h"
#include "netns/redirect.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

namespace an = ambient::netns;

// The old path (decision 002): libnftables compiles and sends the plan's text for every pod.
void apply_with_libnftables(const an::NetnsHandle& ns, const an::RedirectPlan& plan, bool routing) {
  an::run_in(ns, [&] {
    an::nft::run(plan.render(), "apply with libnftables");
    if (routing) an::install_routing_here(plan.routing());
  });
}

std::string self_dir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path();
}

int run_quiet(const std::string& cmd) {
  return std::system((cmd + " >/dev/null 2>&1").c_str());
}

struct SpawnResult {
  double wall_us;
  std::string out;
};

// posix_spawn + wait; stdin optionally from a file. Wall time from spawn to reaped exit.
SpawnResult spawn(const std::vector<std::string>& argv, const std::string& stdin_file = "") {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!stdin_file.empty())
    posix_spawn_file_actions_addopen(&fa, 0, stdin_file.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  pid_t pid;
  const auto t0 = Clock::now();
  if (posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) {
    throw std::runtime_error("spawn " + argv[0]);
  }
  close(pipefd[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  int status = 0;
  waitpid(pid, &status, 0);
  const auto t1 = Clock::now();
  close(pipefd[0]);
  posix_spawn_file_actions_destroy(&fa);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(argv[0] + " " + (argv.size() > 1 ? argv[1] : "") + " failed");
  }
  return {std::chrono::duration<double, std::micro>(t1 - t0).count(), out};
}

double child_apply_us(const std::string& out) {
  const auto pos = out.find("apply_us=");
  if (pos == std::string::npos) throw std::runtime_error("child did not report apply_us");
  return std::stod(out.substr(pos + 9));
}

double since_us(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

class NetnsPool {
 public:
  NetnsPool() : prefix_("ambrbench-" + std::to_string(getpid()) + "-") {}
  ~NetnsPool() {
    for (const auto& n : live_) run_quiet("ip netns del " + n);
  }
  // A fresh netns with lo up (as a runtime leaves a pod's netns before our plugin runs).
  std::string fresh() {
    const std::string name = prefix_ + std::to_string(counter_++);
    if (run_quiet("ip netns add " + name) != 0 ||
        run_quiet("ip -n " + name + " link set lo up") != 0) {
      throw std::runtime_error("cannot create netns " + name);
    }
    live_.push_back(name);
    return name;
  }
  void drop(const std::string& name) {
    run_quiet("ip netns del " + name);
    live_.erase(std::remove(live_.begin(), live_.end(), name), live_.end());
  }
  static std::string path(const std::string& name) { return "/var/run/netns/" + name; }

 private:
  std::string prefix_;
  int counter_ = 0;
  std::vector<std::string> live_;
};

void sweep_leftovers() {
  FILE* p = popen("ip netns list 2>/dev/null", "r");
  if (!p) return;
  char line[256];
  while (fgets(line, sizeof line, p)) {
    std::string name(line);
    name = name.substr(0, name.find_first_of(" \n"));
    if (name.rfind("ambrbench-", 0) != 0) continue;
    const pid_t pid = static_cast<pid_t>(std::strtol(name.c_str() + 10, nullptr, 10));
    if (pid > 0 && kill(pid, 0) == 0) continue;
    run_quiet("ip netns del " + name);
  }
  pclose(p);
}

struct Stats {
  double p10, median, p90;
};
Stats stats_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
  };
  return {at(0.1), at(0.5), at(0.9)};
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 40;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::max(3, std::atoi(argv[++i]));
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::cerr << "usage: redirect_bench [--reps N] [--json FILE]\n";
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::cerr << "redirect_bench needs root (creates network namespaces)\n";
    return 2;
  }
  sweep_leftovers();
  const an::RedirectPlan plan{an::RedirectOptions{}};
  const std::string dir = self_dir();
  const std::string apply_once = dir + "/redirect_apply_once";
  const std::string raw_once = dir + "/redirect_raw_apply_once";

  char tmpl[] = "/tmp/ambrbench-XXXXXX";
  const std::string tmp = mkdtemp(tmpl);
  const std::string rules_file = tmp + "/iptables.rules";
  const std::string nft_file = tmp + "/plan.nft";
  const std::string batch_file = tmp + "/plan.batch";
  std::ofstream(rules_file) << ambient::bench::kIptablesRestoreRules;
  std::ofstream(nft_file) << plan.render();

  // The floor: exactly what libnftables sends for the plan (recorded in a scratch netns), replayed
  // without acks or checks beyond the kernel's error answers.
  std::vector<std::string> recorded;
  an::run_in_scratch_netns(
      [&] { recorded = an::nft::run_recorded(plan.render(), "record the batch"); });
  ambient::bench::NetlinkBatch batch;
  for (auto& m : recorded) {
    // Keep the transaction (starts with NFNL_MSG_BATCH_BEGIN = 0x10), not cache queries.
    if (m.size() >= 6 &&
        (static_cast<unsigned char>(m[4]) | static_cast<unsigned char>(m[5]) << 8) == 0x10) {
      batch.push_back(m);
    }
  }
  if (batch.empty()) {
    std::cerr << "could not record libnftables' batch (sendmsg not interposed?)\n";
    return 1;
  }
  ambient::bench::save_batch(batch, batch_file);

  // What learning a plan costs (once per distinct options in a process): record, then replay
  // over it and in an empty netns, each listed.
  std::vector<double> learn_us;
  for (int i = 0; i < 5; ++i) {
    an::detail::forget_prepared_plans();
    const auto t0 = Clock::now();
    const auto prepared = an::detail::prepare(plan);
    learn_us.push_back(since_us(t0));
    if (!prepared->batch) {
      std::cerr << "the product path cannot replay here: " << prepared->not_replayable << "\n";
      return 1;
    }
  }

  NetnsPool pool;
  // Sanity: every path produces the ruleset inspect() calls current.
  {
    const std::string a = pool.fresh(), b = pool.fresh(), c = pool.fresh();
    an::apply(an::NetnsHandle::open(NetnsPool::path(a)), plan);
    spawn({raw_once, NetnsPool::path(b), batch_file});
    apply_with_libnftables(an::NetnsHandle::open(NetnsPool::path(c)), plan, true);
    for (const auto& [what, ns] : {std::pair{"ours", a}, {"raw", b}, {"libnftables", c}}) {
      const auto i = an::inspect(an::NetnsHandle::open(NetnsPool::path(ns)), plan);
      if (i.status != an::RedirectStatus::Current) {
        std::cerr << "sanity check failed: " << what << " " << i.summary() << "\n";
        return 1;
      }
      pool.drop(ns);
    }
  }

  an::ApplyHooks rules_only;
  rules_only.install_routing = [](const an::RoutingSpec&) {};

  // name -> (measure(fresh netns) -> µs, optional second series for in-child time)
  struct Method {
    std::string name;
    std::string what;
    bool needs_netns;
    std::function<double(const std::string&, std::vector<double>&)> run;
    std::vector<double> samples = {};
    std::vector<double> inner = {};  // child-reported in-process time, if any
  };
  std::vector<Method> methods = {
      {"iptables-restore",
       "`ip netns exec NS iptables-restore` (rules only, nat+mangle+raw; nf_tables backend here)",
       true,
       [&](const std::string& ns, std::vector<double>&) {
         return spawn({"ip", "netns", "exec", ns, "iptables-restore"}, rules_file).wall_us;
       }},
      {"iptables-legacy-restore",
       "`ip netns exec NS iptables-legacy-restore` (same rules, legacy xtables backend)", true,
       [&](const std::string& ns, std::vector<double>&) {
         return spawn({"ip", "netns", "exec", ns, "iptables-legacy-restore"}, rules_file).wall_us;
       }},
      {"nft -f", "`ip netns exec NS nft -f plan.nft` (rules only)", true,
       [&](const std::string& ns, std::vector<double>&) {
         return spawn({"ip", "netns", "exec", ns, "nft", "-f", nft_file}).wall_us;
       }},
      {"ip netns exec true", "exec floor of the iptables path", true,
       [&](const std::string& ns, std::vector<double>&) {
         return spawn({"ip", "netns", "exec", ns, "true"}).wall_us;
       }},
      {"ours cold",
       "fresh process: exec + netns::apply (learns the plan's batch in two throwaway netns, then "
       "replays it) + libnl routing",
       true,
       [&](const std::string& ns, std::vector<double>& inner) {
         const auto r = spawn({apply_once, NetnsPool::path(ns)});
         inner.push_back(child_apply_us(r.out));
         return r.wall_us;
       }},
      {"libnftables cold", "fresh process: exec + libnftables transaction + libnl routing", true,
       [&](const std::string& ns, std::vector<double>& inner) {
         const auto r = spawn({apply_once, "--libnftables", NetnsPool::path(ns)});
         inner.push_back(child_apply_us(r.out));
         return r.wall_us;
       }},
      {"ours cold exec floor", "fresh process linking libnftables+libnl, returning at once", false,
       [&](const std::string&, std::vector<double>&) {
         return spawn({apply_once, "--exec-only"}).wall_us;
       }},
      {"raw cold", "fresh process: exec + replayed netlink batch + libnl routing", true,
       [&](const std::string& ns, std::vector<double>& inner) {
         const auto r = spawn({raw_once, NetnsPool::path(ns), batch_file});
         inner.push_back(child_apply_us(r.out));
         return r.wall_us;
       }},
      {"ours warm",
       "long-lived process, what the agent does: netns::apply = the plan's batch replayed (every "
       "answer and the last message's ack checked) + libnl routing",
       true,
       [&](const std::string& ns, std::vector<double>&) {
         const auto t0 = Clock::now();
         an::apply(an::NetnsHandle::open(NetnsPool::path(ns)), plan);
         return since_us(t0);
       }},
      {"ours warm rules-only", "long-lived process: netns::apply without routing", true,
       [&](const std::string& ns, std::vector<double>&) {
         const auto t0 = Clock::now();
         an::apply(an::NetnsHandle::open(NetnsPool::path(ns)), plan, rules_only);
         return since_us(t0);
       }},
      {"libnftables warm",
       "long-lived process, the old path (decision 002): libnftables transaction + libnl routing",
       true,
       [&](const std::string& ns, std::vector<double>&) {
         const auto t0 = Clock::now();
         apply_with_libnftables(an::NetnsHandle::open(NetnsPool::path(ns)), plan, true);
         return since_us(t0);
       }},
      {"libnftables warm rules-only", "long-lived process: libnftables transaction only", true,
       [&](const std::string& ns, std::vector<double>&) {
         const auto t0 = Clock::now();
         apply_with_libnftables(an::NetnsHandle::open(NetnsPool::path(ns)), plan, false);
         return since_us(t0);
       }},
      {"raw warm", "long-lived process: libnftables' batch replayed as recorded + libnl routing",
       true,
       [&](const std::string& ns, std::vector<double>&) {
         const auto t0 = Clock::now();
         an::run_in(an::NetnsHandle::open(NetnsPool::path(ns)), [&] {
           ambient::bench::replay_batch(batch);
           an::install_routing_here({true, false});
         });
         return since_us(t0);
       }},
      {"raw warm rules-only", "long-lived process: libnftables' batch replayed as recorded", true,
       [&](const std::string& ns, std::vector<double>&) {
         const auto t0 = Clock::now();
         an::run_in(an::NetnsHandle::open(NetnsPool::path(ns)),
                    [&] { ambient::bench::replay_batch(batch); });
         return since_us(t0);
       }},
  };
  auto index_of = [&](const std::string& name) {
    for (size_t i = 0; i < methods.size(); ++i) {
      if (methods[i].name == name) return i;
    }
    throw std::logic_error("no method " + name);
  };

  // Warm-up (not recorded): page in the binaries and libraries for every method once.
  for (auto& m : methods) {
    const std::string ns = pool.fresh();
    std::vector<double> ignored;
    m.run(ns, ignored);
    pool.drop(ns);
  }
  const auto counts_before = an::detail::rule_programming_counts();
  std::mt19937 rng(42);
  std::vector<size_t> order(methods.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (int r = 0; r < reps; ++r) {
    std::shuffle(order.begin(), order.end(), rng);  // no method always runs first or last
    for (size_t idx : order) {
      auto& m = methods[idx];
      const std::string ns = m.needs_netns ? pool.fresh() : std::string();
      m.samples.push_back(m.run(ns, m.inner));
      if (!ns.empty()) pool.drop(ns);
    }
  }
  const auto counts_after = an::detail::rule_programming_counts();

  const double ipt = stats_of(methods[index_of("iptables-restore")].samples).median;
  const double legacy = stats_of(methods[index_of("iptables-legacy-restore")].samples).median;
  const double raw_warm = stats_of(methods[index_of("raw warm")].samples).median;
  const double raw_rules = stats_of(methods[index_of("raw warm rules-only")].samples).median;
  std::printf("\nRule programming for one pod (IPv4 + DNS capture), %d reps, fresh netns each\n",
              reps);
  std::printf("batch recorded from libnftables: %s\n",
              ambient::bench::describe_batch(batch).c_str());
  const Stats learn = stats_of(learn_us);
  std::printf(
      "learning the plan's batch (once per distinct options per process): median %.3f ms "
      "(%zu runs)\n",
      learn.median / 1000, learn_us.size());
  std::printf(
      "netns::apply during the run: %llu replayed, %llu through libnftables, %llu "
      "replays refused\n\n",
      static_cast<unsigned long long>(counts_after.replayed - counts_before.replayed),
      static_cast<unsigned long long>(counts_after.libnftables - counts_before.libnftables),
      static_cast<unsigned long long>(counts_after.replay_refused - counts_before.replay_refused));
  std::printf(
      "| method | median ms | p10 ms | p90 ms | × raw warm | × iptables-restore | "
      "× iptables-legacy-restore | in-process first apply ms (median) |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json report = {{"reps", reps},
                           {"batch", ambient::bench::describe_batch(batch)},
                           {"learn_plan_median_ms", learn.median / 1000}};
  for (const auto& m : methods) {
    const Stats s = stats_of(m.samples);
    // Rules-only rows compare with the rules-only replay, the others with the whole raw path.
    const bool rules_only_row = m.name.find("rules-only") != std::string::npos;
    const double vs_raw = s.median / (rules_only_row ? raw_rules : raw_warm);
    std::string inner = "";
    nlohmann::json j = {{"what", m.what},
                        {"median_ms", s.median / 1000},
                        {"p10_ms", s.p10 / 1000},
                        {"p90_ms", s.p90 / 1000},
                        {"ratio_vs_raw_warm", vs_raw},
                        {"ratio_vs_iptables_restore", s.median / ipt},
                        {"ratio_vs_iptables_legacy_restore", s.median / legacy}};
    if (!m.inner.empty()) {
      const double im = stats_of(m.inner).median / 1000;
      char b[32];
      std::snprintf(b, sizeof b, "%.3f", im);
      inner = b;
      j["in_process_first_apply_median_ms"] = im;
    }
    std::printf("| %s | %.3f | %.3f | %.3f | %.2f | %.3f | %.3f | %s |\n", m.name.c_str(),
                s.median / 1000, s.p10 / 1000, s.p90 / 1000, vs_raw, s.median / ipt,
                s.median / legacy, inner.c_str());
    report["methods"][m.name] = j;
  }
  std::printf("\n");
  for (const auto& m : methods) std::printf("- %s: %s\n", m.name.c_str(), m.what.c_str());
  std::printf("- × raw warm: rules-only rows against raw warm rules-only\n");
  if (!json_path.empty()) std::ofstream(json_path) << report.dump(2) << "\n";
  std::filesystem::remove_all(tmp);
  return 0;
}
