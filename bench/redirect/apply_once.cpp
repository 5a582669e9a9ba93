// A fresh process applying one pod's redirection with libnftables, as a plugin doing the work
// in-process would: `redirect_apply_once NETNS_PATH` prints the in-process time (from main to
// done) as "apply_us=N". `--exec-only` returns at once (the exec + library loading floor).
#include <chrono>
#include <cstdio>
#include <cstring>

#include "netns/netns.h"
#include "netns/redirect.h"

int main(int argc, char** argv) {
  const auto t0 = std::chrono::steady_clock::now();
  if (argc == 2 && std::strcmp(argv[1], "--exec-only") == 0) return 0;
  if (argc != 2) {
    std::fprintf(stderr, "usage: redirect_apply_once NETNS_PATH | --exec-only\n");
    return 2;
  }
  try {
    const auto ns = ambient::netns::NetnsHandle::open(argv[1]);
    ambient::netns::apply(ns, ambient::netns::RedirectPlan(ambient::netns::RedirectOptions{}));
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
