// A fresh process applying one pod's redirection, as a plugin doing the work in-process would:
// `redirect_apply_once [--libnftables] NETNS_PATH` prints the in-process time (from main to done)
// as "apply_us=N". Without a flag it is netns::apply (the product path: the plan's batch learnt
// in throwaway netns, then replayed); --libnftables sends the plan through libnftables directly
// (the old path, decision 002). `--exec-only` returns at once (the exec + library loading floor).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "netns/netns.h"
#include "netns/nft.h"
#include "netns/redirect.h"

int main(int argc, char** argv) {
  namespace an = ambient::netns;
  const auto t0 = std::chrono::steady_clock::now();
  if (argc == 2 && std::strcmp(argv[1], "--exec-only") == 0) return 0;
  const bool libnftables = argc == 3 && std::strcmp(argv[1], "--libnftables") == 0;
  if (argc != 2 && !libnftables) {
    std::fprintf(stderr, "usage: redirect_apply_once [--libnftables] NETNS_PATH | --exec-only\n");
    return 2;
  }
  try {
    const auto ns = an::NetnsHandle::open(argv[argc - 1]);
    const an::RedirectPlan plan(an::RedirectOptions{});
    if (libnftables) {
      an::run_in(ns, [&] {
        an::nft::run(plan.render(), "apply with libnftables");
        an::install_routing_here(plan.routing());
      });
    } else {
      an::apply(ns, plan);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "apply failed: %s\n", e.what());
    return 1;
  }
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  std::printf("apply_us=%lld\n", static_cast<long long>(us));
  return 0;
}
