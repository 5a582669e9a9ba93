// The raw-netlink alternative in a fresh process: `redirect_raw_apply_once NETNS_PATH BATCH_FILE`
// enters the netns, replays the recorded nf_tables batch and programs the policy routing with
// libnl (no libnftables loaded). Prints "apply_us=N"; `--exec-only` returns at once.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "bench/redirect/raw_batch.h"
#include "netns/routing.h"

int main(int argc, char** argv) {
  const auto t0 = std::chrono::steady_clock::now();
  if (argc == 2 && std::strcmp(argv[1], "--exec-only") == 0) return 0;
  if (argc != 3) {
    std::fprintf(stderr, "usage: redirect_raw_apply_once NETNS_PATH BATCH_FILE | --exec-only\n");
    return 2;
  }
  try {
    const auto batch = ambient::bench::load_batch(argv[2]);
    // A single-threaded process may enter the netns on its main thread: nothing else runs here.
    const int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
      std::fprintf(stderr, "enter %s: %s\n", argv[1], std::strerror(errno));
      return 1;
    }
    close(fd);
    ambient::bench::replay_batch(batch);
    ambient::netns::install_routing_here({true, false});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "raw apply failed: %s\n", e.what());
    return 1;
  }
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  std::printf("apply_us=%lld\n", static_cast<long long>(us));
  return 0;
}
