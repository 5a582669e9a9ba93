// The one exception type of the netns layer. libc, libnl and libnftables failures are converted
// into it where they happen, so callers (plugin, agent, CLI) handle a single type and can branch
// on the kind (e.g. DEL treats NotFound as "already gone").
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace ambient::netns {

enum class ErrorKind {
  NotFound,         // the netns path does not exist
  NotNetns,         // the path exists but is not a network namespace
  OwnNetns,         // the path is the caller's own netns: refused so we never program the node
  InvalidArgument,  // bad options (interface name, address, pod UID)
  System,           // a libc call failed
  Nftables,         // libnftables rejected a command; the message carries its error output
  Netlink,          // a libnl call failed
  Injected,         // failure injected by a test seam
};

std::string_view to_string(ErrorKind kind);

class NetnsError : public std::runtime_error {
 public:
  NetnsError(ErrorKind kind, std::string message, int sys_errno = 0);

  ErrorKind kind() const noexcept { return kind_; }
  // errno for System errors (and NotFound/NotNetns from open), 0 otherwise.
  int sys_errno() const noexcept { return errno_; }

 private:
  ErrorKind kind_;
  int errno_;
};

// Builds a System error from errno: "<what>: <strerror(errno)>".
[[noreturn]] void throw_errno(std::string_view what, int err);

}  // namespace ambient::netns
