// `ambient-cni-node redirect apply|remove|inspect`: the operator's door to the same netns library
// the plugin and agent use (so what an operator sees is exactly what pods get).
//
// Exit codes: 0 success (inspect: current), 1 error, 2 inspect: drifted, 3 inspect: absent.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "netns/error.h"
#include "netns/netns.h"
#include "netns/redirect.h"
#include "node/commands.h"

namespace ambient::node {
namespace {

struct RedirectArgs {
  std::string netns;
  bool ipv4 = true;
  bool ipv6 = false;
  bool dns_capture = true;
  bool bypass_inbound_capture = false;
  std::vector<std::string> reroute_interfaces;
  bool dry_run = false;
};

enum class Verb { Apply, Remove, Inspect };

constexpr int kExitError = 1;
constexpr int kExitDrifted = 2;
constexpr int kExitAbsent = 3;

netns::RedirectPlan plan_of(const RedirectArgs& a) {
  netns::RedirectOptions o;
  o.ipv4 = a.ipv4;
  o.ipv6 = a.ipv6;
  o.dns_capture = a.dns_capture;
  o.bypass_inbound_capture = a.bypass_inbound_capture;
  o.reroute_interfaces = a.reroute_interfaces;
  return netns::RedirectPlan(std::move(o));
}

int run(Verb verb, const RedirectArgs& a) {
  // stdout carries the result (rendered rules, inspection); logs must not mix into it.
  spdlog::set_default_logger(spdlog::stderr_color_st("redirect"));
  try {
    const netns::RedirectPlan plan = plan_of(a);
    if (a.dry_run) {
      std::cout << (verb == Verb::Remove ? netns::render_removal() : plan.render());
      return 0;
    }
    if (a.netns.empty()) {
      std::cerr << "--netns is required (unless --dry-run)\n";
      return kExitError;
    }
    const netns::NetnsHandle ns = netns::NetnsHandle::open(a.netns);
    switch (verb) {
      case Verb::Apply:
        netns::apply(ns, plan);
        std::cout << "applied: " << a.netns << '\n';
        return 0;
      case Verb::Remove:
        netns::remove(ns);
        std::cout << "removed: " << a.netns << '\n';
        return 0;
      case Verb::Inspect: {
        const netns::Inspection i = netns::inspect(ns, plan);
        std::cout << netns::to_string(i.status) << '\n';
        for (const auto& d : i.details) std::cout << "  " << d << '\n';
        if (i.status == netns::RedirectStatus::Drifted) return kExitDrifted;
        if (i.status == netns::RedirectStatus::Absent) return kExitAbsent;
        return 0;
      }
    }
  } catch (const netns::NetnsError& e) {
    // A missing netns on remove means there is nothing left to remove.
    if (verb == Verb::Remove && e.kind() == netns::ErrorKind::NotFound) {
      std::cout << "removed: " << a.netns << " (netns gone)\n";
      return 0;
    }
    std::cerr << "redirect: " << netns::to_string(e.kind()) << ": " << e.what() << '\n';
  } catch (const std::exception& e) {
    std::cerr << "redirect: " << e.what() << '\n';
  }
  return kExitError;
}

void add_verb(CLI::App& parent, Verb verb, const std::string& name, const std::string& help) {
  auto args = std::make_shared<RedirectArgs>();
  CLI::App* cmd = parent.add_subcommand(name, help);
  cmd->add_option("--netns", args->netns,
                  "Network namespace path (/var/run/netns/X, /proc/PID/ns/net)");
  cmd->add_flag("--ipv4,!--no-ipv4", args->ipv4, "Capture IPv4 (default on)");
  cmd->add_flag("--ipv6,!--no-ipv6", args->ipv6, "Capture IPv6 (default off)");
  cmd->add_flag("--dns-capture,!--no-dns-capture", args->dns_capture,
                "Redirect DNS to ztunnel's 15053 (default on)");
  cmd->add_flag("--bypass-inbound-capture", args->bypass_inbound_capture, "Capture outbound only");
  cmd->add_option("--reroute-interfaces", args->reroute_interfaces,
                  "Interfaces whose TCP goes to the outbound port (comma-separated)")
      ->delimiter(',');
  cmd->add_flag("--dry-run", args->dry_run, "Print the nft transaction, change nothing");
  cmd->callback([verb, args] {
    const int code = run(verb, *args);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace

void add_redirect_command(CLI::App& app) {
  CLI::App* redirect =
      app.add_subcommand("redirect", "Program, inspect or remove ztunnel redirection in a netns");
  redirect->require_subcommand(1);
  add_verb(*redirect, Verb::Apply, "apply",
           "Apply the redirection (one nft transaction + routing)");
  add_verb(*redirect, Verb::Remove, "remove", "Remove tables, rule and route (missing is fine)");
  add_verb(*redirect, Verb::Inspect, "inspect",
           "Compare the netns with the plan: current (0), drifted (2), absent (3)");
}

}  // namespace ambient::node
