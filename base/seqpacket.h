// AF_UNIX SOCK_SEQPACKET endpoints on the node: the plugin ⇄ agent socket and the ZDS socket
// ztunnel dials. One message per datagram, message boundaries kept by the kernel.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "base/unique_fd.h"

namespace ambient::base {

class SocketError : public std::runtime_error {
 public:
  SocketError(const std::string& message, int err) : std::runtime_error(message), errno_(err) {}
  int error_number() const noexcept { return errno_; }

 private:
  int errno_;
};

// Binds `path` (replacing a stale socket file; its directory must exist), mode 0600 whatever the
// umask — whoever can connect can make the agent enter pod namespaces — and listens.
UniqueFd listen_seqpacket(const std::string& path, int backlog);

// Connects to a listening `path`. Throws SocketError naming it.
UniqueFd connect_seqpacket(const std::string& path);

// Waits until fd is readable (or has hung up) or timeout_ms passed; false on timeout.
bool wait_readable(int fd, int timeout_ms);

// Sends one message. Throws SocketError (EMSGSIZE when it is larger than the socket can carry).
void send_message(int fd, std::string_view bytes);

// Receives one whole message, however large (its size is peeked first); nullopt when the peer
// closed the connection. Throws SocketError on errors and when the message exceeds `max`.
std::optional<std::string> receive_message(int fd, std::size_t max);

}  // namespace ambient::base
