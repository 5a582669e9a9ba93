#include "base/seqpacket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace ambient::base {
namespace {

[[noreturn]] void fail(const std::string& what, int err) {
  throw SocketError(what + ": " + std::strerror(err), err);
}

sockaddr_un address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    throw SocketError("socket path too long (" + std::to_string(path.size()) + " bytes): " + path,
                      ENAMETOOLONG);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

UniqueFd listen_seqpacket(const std::string& path, int backlog) {
  const sockaddr_un addr = address(path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) fail("socket for " + path, errno);
  ::unlink(path.c_str());
  // The umask covers the window between bind and chmod: nobody else can connect in between.
  const mode_t old = ::umask(0077);
  const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int bind_err = errno;
  ::umask(old);
  if (rc != 0) fail("cannot bind " + path, bind_err);
  if (::chmod(path.c_str(), 0600) != 0) fail("cannot chmod " + path, errno);
  if (::listen(fd.get(), backlog) != 0) fail("cannot listen on " + path, errno);
  return fd;
}

UniqueFd connect_seqpacket(const std::string& path) {
  const sockaddr_un addr = address(path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) fail("socket for " + path, errno);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    fail(path, errno);
  }
  return fd;
}

bool wait_readable(int fd, int timeout_ms) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) continue;
    return rc > 0;
  }
}

void send_message(int fd, std::string_view bytes) {
  for (;;) {
    if (::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) >= 0) return;
    if (errno == EINTR) continue;
    fail("sending a message of " + std::to_string(bytes.size()) + " bytes", errno);
  }
}

std::optional<std::string> receive_message(int fd, std::size_t max) {
  char probe = 0;
  ssize_t size;
  do {
    size = ::recv(fd, &probe, 1, MSG_PEEK | MSG_TRUNC);
  } while (size < 0 && errno == EINTR);
  if (size < 0) fail("receiving", errno);
  if (size == 0) {
    // End of stream, or an empty datagram (consume it: it is not the end).
    return std::nullopt;
  }
  if (static_cast<std::size_t>(size) > max) {
    (void)::recv(fd, &probe, 1, 0);  // drop it: the stream stays usable for an answer
    throw SocketError(
        "message of " + std::to_string(size) + " bytes exceeds the limit of " + std::to_string(max),
        EMSGSIZE);
  }
  std::string out(static_cast<std::size_t>(size), '\0');
  ssize_t n;
  do {
    n = ::recv(fd, out.data(), out.size(), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) fail("receiving", errno);
  out.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace ambient::base
