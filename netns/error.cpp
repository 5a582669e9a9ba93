#include "netns/error.h"

#include <cstring>
#include <string>

namespace ambient::netns {

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::NotFound:
      return "not-found";
    case ErrorKind::NotNetns:
      return "not-a-netns";
    case ErrorKind::OwnNetns:
      return "own-netns";
    case ErrorKind::InvalidArgument:
      return "invalid-argument";
    case ErrorKind::System:
      return "system";
    case ErrorKind::Nftables:
      return "nftables";
    case ErrorKind::Netlink:
      return "netlink";
    case ErrorKind::Injected:
      return "injected";
  }
  return "unknown";
}

NetnsError::NetnsError(ErrorKind kind, std::string message, int sys_errno)
    : std::runtime_error(std::move(message)), kind_(kind), errno_(sys_errno) {}

void throw_errno(std::string_view what, int err) {
  throw NetnsError(ErrorKind::System, std::string(what) + ": " + std::strerror(err), err);
}

}  // namespace ambient::netns
