// Network namespace handles and the one safe way to work inside a namespace.
//
// Entering a netns changes the calling thread's view of the network, so work inside one never
// runs on the caller's thread: run_in() hands it to a worker thread that enters the namespace,
// runs the function, and setns()es back to the process's namespace. A worker goes back to the
// small pool only when it is verifiably home again (its netns inode), so no later work ever runs
// where it did not ask to; one that cannot get home exits (containernetworking's "never reuse a
// thread whose namespace is unknown" rule, kept without a new thread per call: decision 018).
// Sockets and netlink handles created inside keep the namespace they were created in.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "netns/error.h"

namespace ambient::netns {

// Owns an fd of a validated network namespace (move-only; dup() for a second owner).
class NetnsHandle {
 public:
  // Opens a netns by path (/var/run/netns/X, /proc/PID/ns/net). Throws NetnsError:
  // NotFound if the path does not exist, NotNetns if it is not a network namespace,
  // OwnNetns if it is the calling thread's own netns (never program the node by mistake).
  static NetnsHandle open(const std::string& path);
  // The calling thread's own netns: for work that is meant to happen on the node (host probe
  // SNAT in the agent). Never refused.
  static NetnsHandle current();
  // Takes ownership of an fd (e.g. received over a socket) and validates it like open()
  // (it may not be the caller's netns). The fd is closed on failure.
  static NetnsHandle adopt(int fd, std::string label);

  NetnsHandle(NetnsHandle&& other) noexcept;
  NetnsHandle& operator=(NetnsHandle&& other) noexcept;
  NetnsHandle(const NetnsHandle&) = delete;
  NetnsHandle& operator=(const NetnsHandle&) = delete;
  ~NetnsHandle();

  int fd() const noexcept { return fd_; }
  // nsfs inode: identifies the namespace (ZDS uses it to detect a replaced netns).
  std::uint64_t inode() const noexcept { return inode_; }
  std::uint64_t dev() const noexcept { return dev_; }
  // Path or label it was opened from, for messages.
  const std::string& path() const noexcept { return path_; }
  NetnsHandle dup() const;
  // Moves the fd to a number >= floor (default: above FD_SETSIZE), so that a process holding
  // many namespaces leaves the low numbers to libraries that still select() — libnftables'
  // netlink receive aborts on an fd >= 1024. Keeps the old fd when the limit does not allow it.
  bool relocate_fd(int floor = 1024) noexcept;

 private:
  NetnsHandle(int fd, std::uint64_t dev, std::uint64_t inode, std::string path);
  int fd_ = -1;
  std::uint64_t dev_ = 0;
  std::uint64_t inode_ = 0;
  std::string path_;
};

namespace detail {
// Runs fn on a worker thread that first setns()es into ns_fd (or, when ns_fd < 0, unshare()s a
// new empty netns) and afterwards returns to the process's netns; rethrows whatever fn threw on
// the caller's thread.
void run_on_netns_thread(int ns_fd, const std::function<void()>& fn);
}  // namespace detail

// Runs fn inside ns on a worker thread and returns its result; exceptions propagate.
template <class F>
auto run_in(const NetnsHandle& ns, F&& fn) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  if constexpr (std::is_void_v<R>) {
    detail::run_on_netns_thread(ns.fd(), [&] { fn(); });
  } else {
    std::optional<R> out;
    detail::run_on_netns_thread(ns.fd(), [&] { out.emplace(fn()); });
    return std::move(*out);
  }
}

// Whether any interface in ns holds one of `ips` (text form, IPv4 or IPv6): the check that a
// netns found by path or by a /proc scan is the pod's, not another pod's (a reused PID, a path
// reused by a new sandbox). Unparsable entries never match.
bool holds_any_address(const NetnsHandle& ns, const std::vector<std::string>& ips);

// Runs fn inside a brand-new, empty netns that disappears when fn returns (used to learn how the
// kernel lists a ruleset, and by benchmarks).
template <class F>
auto run_in_scratch_netns(F&& fn) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  if constexpr (std::is_void_v<R>) {
    detail::run_on_netns_thread(-1, [&] { fn(); });
  } else {
    std::optional<R> out;
    detail::run_on_netns_thread(-1, [&] { out.emplace(fn()); });
    return std::move(*out);
  }
}

}  // namespace ambient::netns
