#include "tests/standins/proxy/inpod_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <future>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "base/unique_fd.h"
#include "config/constants.h"

namespace ambient::standins {
namespace {

namespace c = ambient::contract;

constexpr int kConnectTimeoutMs = 5000;
// ztunnel's own sockets carry 1337 (= 0x539): the in-pod rules never recapture them.
constexpr int kZtunnelMark = static_cast<int>(c::kZtunnelMark);

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

using Fd = base::UniqueFd;

std::string format_addr(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(a.sin_port));
  }
  const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
  inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf);
  return "[" + std::string(buf) + "]:" + std::to_string(ntohs(a.sin6_port));
}

// Every fd a proxy keeps goes above FD_SETSIZE: a test process runs a hundred proxies next to the
// agent, whose libnftables select()s on fresh low-numbered netlink sockets.
int keep_high(int fd) {
  if (fd < 0 || fd >= 1024) return fd;
  const int high = fcntl(fd, F_DUPFD_CLOEXEC, 1024);
  if (high < 0) return fd;
  close(fd);
  return high;
}

socklen_t addr_len(int family) {
  return family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
}

void set_int(int fd, int level, int opt, int value, const char* what) {
  if (setsockopt(fd, level, opt, &value, sizeof value) != 0) fail(what);
}

// Binds a listener the way ztunnel does; returns -1 if the address family is unusable here.
int open_listener(int family, int type, const char* addr, int port) {
  Fd fd(keep_high(socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)));
  if (fd.get() < 0) {
    if (errno == EAFNOSUPPORT) return -1;
    fail("socket");
  }
  set_int(fd.get(), SOL_SOCKET, SO_MARK, kZtunnelMark, "SO_MARK");
  set_int(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
  set_int(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
  sockaddr_storage ss{};
  if (family == AF_INET) {
    auto& a = reinterpret_cast<sockaddr_in&>(ss);
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, addr, &a.sin_addr);
  } else {
    set_int(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET6, addr, &a.sin6_addr);
  }
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), addr_len(family)) != 0) {
    // No IPv6 on this netns (or on its lo): ztunnel would skip it as well.
    if (family == AF_INET6 && (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT)) return -1;
    fail(std::string("bind ") + addr + ":" + std::to_string(port));
  }
  if (type == SOCK_STREAM && listen(fd.get(), 128) != 0) fail("listen");
  return fd.release();
}

// Connects `fd` to `dst`, giving up on timeout or when stop_fd fires.
bool connect_with_timeout(int fd, const sockaddr_storage& dst, int stop_fd) {
  const int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&dst), addr_len(dst.ss_family)) != 0) {
    if (errno != EINPROGRESS) return false;
    pollfd p[2] = {{fd, POLLOUT, 0}, {stop_fd, POLLIN, 0}};
    if (poll(p, 2, kConnectTimeoutMs) <= 0 || (p[1].revents & POLLIN)) return false;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      errno = err;
      return false;
    }
  }
  fcntl(fd, F_SETFL, flags);
  return true;
}

// Copies bytes both ways until both directions reached EOF (half-closes are forwarded) or stop.
void splice_both_ways(int a, int b, int stop_fd) {
  bool a_open = true, b_open = true;
  std::array<char, 16384> buf{};
  while (a_open || b_open) {
    pollfd p[3] = {{a, static_cast<short>(a_open ? POLLIN : 0), 0},
                   {b, static_cast<short>(b_open ? POLLIN : 0), 0},
                   {stop_fd, POLLIN, 0}};
    if (poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[2].revents & POLLIN) return;
    for (int i = 0; i < 2; ++i) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const int from = i == 0 ? a : b;
      const int to = i == 0 ? b : a;
      const ssize_t n = read(from, buf.data(), buf.size());
      if (n <= 0) {
        (i == 0 ? a_open : b_open) = false;
        shutdown(to, SHUT_WR);
        if (n < 0) return;  // reset: tear both down
        continue;
      }
      for (ssize_t off = 0; off < n;) {
        const ssize_t w = write(to, buf.data() + off, static_cast<size_t>(n - off));
        if (w <= 0) return;
        off += w;
      }
    }
  }
}

bool original_dst(int conn, int family, sockaddr_storage& out) {
  socklen_t len = sizeof out;
  if (family == AF_INET) {
    return getsockopt(conn, SOL_IP, SO_ORIGINAL_DST, &out, &len) == 0;
  }
  return getsockopt(conn, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &out, &len) == 0;
}

// A DNS answer for `query`: same id and question, QR+RA set, and one A record (kDnsAnswer) when
// the question is IN A. Returns the queried name through `name`; empty result if unparsable.
std::string dns_answer(const std::string& query, std::string& name) {
  if (query.size() < 12) return {};
  size_t pos = 12;
  name.clear();
  while (pos < query.size() && query[pos] != 0) {
    const auto len = static_cast<unsigned char>(query[pos]);
    if (len > 63 || pos + 1 + len > query.size()) return {};
    if (!name.empty()) name += '.';
    name.append(query, pos + 1, len);
    pos += 1 + len;
  }
  if (pos + 5 > query.size()) return {};
  const size_t question_end = pos + 5;
  const bool is_a =
      query[pos + 1] == 0 && query[pos + 2] == 1 && query[pos + 3] == 0 && query[pos + 4] == 1;
  std::string r = query.substr(0, question_end);
  r[2] = static_cast<char>(0x80 | (query[2] & 0x79));  // QR, opcode, RD kept
  r[3] = static_cast<char>(0x80);                      // RA, NOERROR
  r[4] = 0;
  r[5] = 1;  // QDCOUNT 1
  r[6] = 0;
  r[7] = is_a ? 1 : 0;
  for (int i = 8; i < 12; ++i) r[i] = 0;
  if (is_a) {
    const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4};
    r.append(reinterpret_cast<const char*>(rr), sizeof rr);
    in_addr a{};
    inet_pton(AF_INET, InpodProxy::kDnsAnswer, &a);
    r.append(reinterpret_cast<const char*>(&a), 4);
  }
  return r;
}

bool read_exact(int fd, char* p, size_t n) {
  while (n > 0) {
    const ssize_t r = read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

std::unique_ptr<InpodProxy> InpodProxy::start(int netns_fd, LogSink log_sink) {
  std::unique_ptr<InpodProxy> proxy(new InpodProxy());
  proxy->sink_ = std::move(log_sink);
  proxy->netns_fd_ = fcntl(netns_fd, F_DUPFD_CLOEXEC, 1024);
  if (proxy->netns_fd_ < 0) proxy->netns_fd_ = fcntl(netns_fd, F_DUPFD_CLOEXEC, 0);
  if (proxy->netns_fd_ < 0) fail("dup netns fd");
  proxy->stop_fd_ = keep_high(eventfd(0, EFD_CLOEXEC));
  if (proxy->stop_fd_ < 0) fail("eventfd");

  // The listeners must be created inside the pod's netns; a dedicated thread enters it, binds,
  // and stays there as the acceptor.
  std::promise<void> ready;
  auto bound = ready.get_future();
  InpodProxy* self = proxy.get();
  proxy->acceptor_ = std::thread([self, &ready] {
    try {
      if (setns(self->netns_fd_, CLONE_NEWNET) != 0) fail("setns");
      const struct {
        int family, type;
        const char* addr;
        int port;
      } specs[] = {
          {AF_INET, SOCK_STREAM, "0.0.0.0", c::kOutboundPort},
          {AF_INET6, SOCK_STREAM, "::", c::kOutboundPort},
          {AF_INET, SOCK_STREAM, "0.0.0.0", c::kInboundPlaintextPort},
          {AF_INET6, SOCK_STREAM, "::", c::kInboundPlaintextPort},
          {AF_INET, SOCK_STREAM, "0.0.0.0", c::kInboundHbonePort},
          {AF_INET6, SOCK_STREAM, "::", c::kInboundHbonePort},
          {AF_INET, SOCK_DGRAM, "127.0.0.1", c::kDnsProxyPort},
          {AF_INET6, SOCK_DGRAM, "::1", c::kDnsProxyPort},
          {AF_INET, SOCK_STREAM, "127.0.0.1", c::kDnsProxyPort},
          {AF_INET6, SOCK_STREAM, "::1", c::kDnsProxyPort},
      };
      for (const auto& s : specs) {
        const int fd = open_listener(s.family, s.type, s.addr, s.port);
        if (fd >= 0) self->listeners_.push_back({fd, s.family, s.type, s.port});
      }
    } catch (...) {
      ready.set_exception(std::current_exception());
      return;
    }
    ready.set_value();
    self->serve();
  });
  try {
    bound.get();
  } catch (...) {
    proxy->acceptor_.join();
    throw;  // the destructor closes what was opened
  }
  return proxy;
}

InpodProxy::~InpodProxy() {
  stop();
  for (const auto& l : listeners_) ::close(l.fd);
  if (stop_fd_ >= 0) ::close(stop_fd_);
  if (netns_fd_ >= 0) ::close(netns_fd_);
}

void InpodProxy::stop() {
  if (stopped_.exchange(true)) return;
  const uint64_t one = 1;
  if (stop_fd_ >= 0 && write(stop_fd_, &one, sizeof one) < 0) {
    spdlog::warn("inpod proxy: cannot signal stop: {}", std::strerror(errno));
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> handlers;
  {
    std::lock_guard<std::mutex> lock(threads_mu_);
    handlers.swap(handlers_);
  }
  for (auto& t : handlers) t.join();
}

std::vector<ProxiedConnection> InpodProxy::connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connections_;
}

bool InpodProxy::wait_for_connections(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return connections_.size() >= n; });
}

void InpodProxy::record(ProxiedConnection conn) {
  nlohmann::json line = {
      {"direction", conn.direction}, {"src", conn.src}, {"original_dst", conn.original_dst}};
  if (!conn.query.empty()) line["query"] = conn.query;
  if (sink_) sink_(line.dump());
  {
    std::lock_guard<std::mutex> lock(mu_);
    connections_.push_back(std::move(conn));
  }
  cv_.notify_all();
}

void InpodProxy::serve() {
  std::vector<pollfd> fds;
  for (const auto& l : listeners_) fds.push_back({l.fd, POLLIN, 0});
  fds.push_back({stop_fd_, POLLIN, 0});
  for (;;) {
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("inpod proxy: poll: {}", std::strerror(errno));
      return;
    }
    if (fds.back().revents & POLLIN) return;
    for (size_t i = 0; i < listeners_.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      const Listener l = listeners_[i];
      if (l.type == SOCK_DGRAM) {
        // DNS over UDP: answered inline, it is one datagram each way.
        char buf[1500];
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        const ssize_t n =
            recvfrom(l.fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer), &len);
        if (n <= 0) continue;
        std::string name;
        const std::string answer = dns_answer(std::string(buf, static_cast<size_t>(n)), name);
        sockaddr_storage local{};
        socklen_t llen = sizeof local;
        getsockname(l.fd, reinterpret_cast<sockaddr*>(&local), &llen);
        record({"dns-udp", format_addr(peer), format_addr(local), name});
        if (!answer.empty()) {
          sendto(l.fd, answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&peer), len);
        }
        continue;
      }
      const int conn = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      std::lock_guard<std::mutex> lock(threads_mu_);
      handlers_.emplace_back([this, l, conn] { handle(l, conn); });
    }
  }
}

void InpodProxy::handle(Listener l, int conn_fd) {
  Fd conn(conn_fd);
  try {
    // Upstream sockets must be created in the pod's netns too.
    if (setns(netns_fd_, CLONE_NEWNET) != 0) fail("setns");
    sockaddr_storage peer{}, local{};
    socklen_t plen = sizeof peer, llen = sizeof local;
    getpeername(conn.get(), reinterpret_cast<sockaddr*>(&peer), &plen);
    getsockname(conn.get(), reinterpret_cast<sockaddr*>(&local), &llen);

    if (l.port == c::kInboundHbonePort) {
      record({"hbone", format_addr(peer), format_addr(local), ""});
      splice_both_ways(conn.get(), conn.get(), stop_fd_);  // echo
      return;
    }
    if (l.port == c::kDnsProxyPort) {
      for (;;) {
        unsigned char len_be[2];
        if (!read_exact(conn.get(), reinterpret_cast<char*>(len_be), 2)) return;
        std::string query(static_cast<size_t>(len_be[0] << 8 | len_be[1]), '\0');
        if (!read_exact(conn.get(), query.data(), query.size())) return;
        std::string name;
        const std::string answer = dns_answer(query, name);
        record({"dns-tcp", format_addr(peer), format_addr(local), name});
        const unsigned char out_len[2] = {static_cast<unsigned char>(answer.size() >> 8),
                                          static_cast<unsigned char>(answer.size() & 0xff)};
        if (write(conn.get(), out_len, 2) != 2) return;
        if (write(conn.get(), answer.data(), answer.size()) < 0) return;
      }
    }

    sockaddr_storage dst{};
    if (!original_dst(conn.get(), l.family, dst)) {
      spdlog::warn("inpod proxy: no original destination on :{}: {}", l.port, std::strerror(errno));
      return;
    }
    const bool inbound = l.port == c::kInboundPlaintextPort;
    record({inbound ? "inbound" : "outbound", format_addr(peer), format_addr(dst), ""});

    Fd up(socket(l.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (up.get() < 0) fail("socket");
    set_int(up.get(), SOL_SOCKET, SO_MARK, kZtunnelMark, "SO_MARK");
    if (inbound) {
      // Spoof the client's address towards the app, as ztunnel does; the app's reply comes back
      // only thanks to the connmark + table-100 route.
      if (l.family == AF_INET) {
        set_int(up.get(), SOL_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT");
        reinterpret_cast<sockaddr_in&>(peer).sin_port = 0;
      } else {
        set_int(up.get(), SOL_IPV6, IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT");
        reinterpret_cast<sockaddr_in6&>(peer).sin6_port = 0;
      }
      if (bind(up.get(), reinterpret_cast<sockaddr*>(&peer), addr_len(l.family)) != 0) {
        fail("bind to the client's address");
      }
    }
    if (!connect_with_timeout(up.get(), dst, stop_fd_)) {
      spdlog::warn("inpod proxy: {} connect to {} failed: {}", inbound ? "inbound" : "outbound",
                   format_addr(dst), std::strerror(errno));
      return;
    }
    splice_both_ways(conn.get(), up.get(), stop_fd_);
  } catch (const std::exception& e) {
    spdlog::warn("inpod proxy: connection on :{} failed: {}", l.port, e.what());
  }
}

}  // namespace ambient::standins
