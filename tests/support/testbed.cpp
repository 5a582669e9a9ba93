#include "tests/support/testbed.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace ambient::testbed {
namespace {

std::string hex_random() {
  std::random_device rd;
  std::ostringstream o;
  o << std::hex << (rd() & 0xffffff);
  return o.str();
}

void set_timeouts(int fd, std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

sockaddr_storage make_addr(const std::string& ip, int port, socklen_t& len) {
  sockaddr_storage ss{};
  if (ip.find(':') == std::string::npos) {
    auto& a = reinterpret_cast<sockaddr_in&>(ss);
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) throw std::runtime_error("bad ip " + ip);
    len = sizeof(sockaddr_in);
  } else {
    auto& a = reinterpret_cast<sockaddr_in6&>(ss);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, ip.c_str(), &a.sin6_addr) != 1)
      throw std::runtime_error("bad ip " + ip);
    len = sizeof(sockaddr_in6);
  }
  return ss;
}

std::string ip_of(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, buf, sizeof buf);
  }
  return buf;
}

template <class F>
auto in_ns(const std::string& name, F&& fn) {
  // A name under /var/run/netns, or any netns path (a runtime's sandbox, /proc/PID/ns/net).
  const std::string path = name.starts_with('/') ? name : Topology::path(name);
  return netns::run_in(netns::NetnsHandle::open(path), std::forward<F>(fn));
}

// On a connected socket: send the payload, half-close, read the reply to EOF; closes fd.
void exchange_on(int fd, const std::string& payload, ClientResult& r) {
  r.connected = true;
  if (write(fd, payload.data(), payload.size()) != static_cast<ssize_t>(payload.size())) {
    r.error = std::string("write: ") + std::strerror(errno);
  }
  shutdown(fd, SHUT_WR);
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) r.reply.append(buf, static_cast<size_t>(n));
  if (n < 0) r.error = std::string("read: ") + std::strerror(errno);
  close(fd);
}

std::string new_prefix() {
  return "ambtest-" + std::to_string(getpid()) + "-" + hex_random();
}

// A namespace with lo up and no duplicate address detection on the interfaces created next (a
// tentative link-local address delays the first neighbour solicitation by seconds); recorded in
// `created` before anything else can fail, so the owner deletes it.
void add_namespace(const std::string& name, std::vector<std::string>& created) {
  must("ip netns add " + name);
  created.push_back(name);
  must("ip -n " + name + " link set lo up");
  in_ns(name, [] {
    for (const char* f :
         {"/proc/sys/net/ipv6/conf/all/accept_dad", "/proc/sys/net/ipv6/conf/default/accept_dad"}) {
      std::ofstream(f) << "0";
    }
  });
}

// Sysctls written from a thread inside the namespace only.
void enable_forwarding(const std::string& name) {
  in_ns(name, [] {
    for (const char* f :
         {"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}) {
      std::ofstream(f) << "1";
    }
  });
}

std::string build_query(const std::string& name, uint16_t id) {
  std::string q;
  q += static_cast<char>(id >> 8);
  q += static_cast<char>(id & 0xff);
  q += std::string("\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 10);  // RD, QDCOUNT 1
  std::istringstream labels(name);
  std::string label;
  while (std::getline(labels, label, '.')) {
    q += static_cast<char>(label.size());
    q += label;
  }
  q += std::string("\x00\x00\x01\x00\x01", 5);  // root, type A, class IN
  return q;
}

std::string answer_ip(const std::string& reply, uint16_t id) {
  // Accept only an answer to our query id with one answer record; its last 4 bytes are the A.
  if (reply.size() < 16) return "";
  if (static_cast<uint8_t>(reply[0]) != (id >> 8) || static_cast<uint8_t>(reply[1]) != (id & 0xff))
    return "";
  if (!(static_cast<uint8_t>(reply[2]) & 0x80) || reply[7] != 1) return "";
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, reply.data() + reply.size() - 4, buf, sizeof buf);
  return buf;
}

}  // namespace

Shell sh(const std::string& command) {
  Shell result{-1, ""};
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return result;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) result.out.append(buf.data(), n);
  const int st = pclose(p);
  result.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return result;
}

std::string must(const std::string& command) {
  Shell r = sh(command);
  if (r.status != 0) throw std::runtime_error("command failed: " + command + "\n" + r.out);
  return r.out;
}

void sweep_leftover_namespaces() {
  std::istringstream list(sh("ip netns list").out);
  std::string line;
  while (std::getline(list, line)) {
    const std::string name = line.substr(0, line.find(' '));
    if (name.rfind("ambtest-", 0) != 0) continue;
    const auto dash = name.find('-', 8);
    if (dash == std::string::npos) continue;
    const pid_t pid =
        static_cast<pid_t>(std::strtol(name.substr(8, dash - 8).c_str(), nullptr, 10));
    if (pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)) continue;  // its creator still runs
    sh("ip netns del " + name);
  }
}

Topology::Topology(bool with_vm) {
  prefix_ = new_prefix();
  try {
    std::vector<std::string> names = {host(), pod(), remote()};
    if (with_vm) names.push_back(vm());
    for (const auto& n : names) add_namespace(n, created_);
    const std::string H = host(), P = pod(), R = remote();
    // veths are created directly inside our namespaces: nothing appears in the machine's netns.
    must("ip -n " + H + " link add hp type veth peer name eth0 netns " + P);
    must("ip -n " + H + " link add hr type veth peer name eth0 netns " + R);
    must("ip -n " + H + " addr add 10.199.1.1/24 dev hp");
    must("ip -n " + H + " addr add fd00:199:1::1/64 dev hp nodad");
    must("ip -n " + H + " addr add 10.199.2.1/24 dev hr");
    must("ip -n " + H + " addr add fd00:199:2::1/64 dev hr nodad");
    must("ip -n " + P + " addr add 10.199.1.2/24 dev eth0");
    must("ip -n " + P + " addr add fd00:199:1::2/64 dev eth0 nodad");
    must("ip -n " + R + " addr add 10.199.2.2/24 dev eth0");
    must("ip -n " + R + " addr add fd00:199:2::2/64 dev eth0 nodad");
    for (const auto& [ns, dev] : {std::pair{H, "hp"}, {H, "hr"}, {P, "eth0"}, {R, "eth0"}}) {
      must("ip -n " + ns + " link set " + dev + " up");
    }
    must("ip -n " + P + " route add default via 10.199.1.1");
    must("ip -n " + P + " -6 route add default via fd00:199:1::1");
    must("ip -n " + R + " route add default via 10.199.2.1");
    must("ip -n " + R + " -6 route add default via fd00:199:2::1");
    if (with_vm) {
      const std::string V = vm();
      must("ip -n " + P + " link add vm0 type veth peer name eth0 netns " + V);
      must("ip -n " + P + " addr add 10.199.3.1/24 dev vm0");
      must("ip -n " + V + " addr add 10.199.3.2/24 dev eth0");
      must("ip -n " + P + " link set vm0 up");
      must("ip -n " + V + " link set eth0 up");
      must("ip -n " + V + " route add default via 10.199.3.1");
    }
    enable_forwarding(H);  // H routes between P and R (the node)
  } catch (...) {
    for (const auto& n : created_) sh("ip netns del " + n);
    throw;
  }
}

Topology::~Topology() {
  for (const auto& n : created_) sh("ip netns del " + n);
}

BridgeNode::BridgeNode() {
  prefix_ = new_prefix();
  try {
    const std::string N = node();
    add_namespace(N, created_);
    must("ip -n " + N + " link add br0 type bridge");
    must("ip -n " + N + " addr add 10.246.0.1/24 dev br0");
    must("ip -n " + N + " addr add fd00:246::1/64 dev br0 nodad");
    must("ip -n " + N + " link set br0 up");
    enable_forwarding(N);
  } catch (...) {
    for (const auto& n : created_) sh("ip netns del " + n);
    throw;
  }
}

BridgeNode::~BridgeNode() {
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) sh("ip netns del " + *it);
}

BridgeNode::PodNet BridgeNode::add_pod(const std::string& name, bool ipv6) {
  const int n = next_++;
  PodNet p;
  p.netns = prefix_ + "-p-" + name;  // never equal to node()
  p.path = Topology::path(p.netns);
  p.ip4 = "10.246.0." + std::to_string(n);
  if (ipv6) {
    std::ostringstream v6;
    v6 << "fd00:246::" << std::hex << n;
    p.ip6 = v6.str();
  }
  const std::string N = node(), P = p.netns, veth = "v" + std::to_string(n);
  add_namespace(P, created_);
  must("ip -n " + N + " link add " + veth + " type veth peer name eth0 netns " + P);
  must("ip -n " + N + " link set " + veth + " master br0 up");
  must("ip -n " + P + " addr add " + p.ip4 + "/24 dev eth0");
  if (ipv6) must("ip -n " + P + " addr add " + p.ip6 + "/64 dev eth0 nodad");
  must("ip -n " + P + " link set eth0 up");
  must("ip -n " + P + " route add default via 10.246.0.1");
  if (ipv6) must("ip -n " + P + " -6 route add default via fd00:246::1");
  return p;
}

void BridgeNode::remove_pod(const PodNet& pod) {
  sh("ip netns del " + pod.netns);
  created_.erase(std::remove(created_.begin(), created_.end(), pod.netns), created_.end());
}

TcpServer::TcpServer(const std::string& ns_name, int family, int port, std::string tag)
    : tag_(std::move(tag)) {
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  fd_ = in_ns(ns_name, [&] {
    const int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
      ss = make_addr("0.0.0.0", port, len);
    } else {
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      ss = make_addr("::", port, len);
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 64) != 0) {
      const std::string err = std::strerror(errno);
      close(fd);
      throw std::runtime_error("test server bind/listen: " + err);
    }
    return fd;
  });
  thread_ = std::thread([this] { serve(); });
}

TcpServer::~TcpServer() {
  const uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof one);
  thread_.join();
  close(fd_);
  close(stop_fd_);
}

std::vector<std::string> TcpServer::peers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peers_;
}

void TcpServer::serve() {
  for (;;) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) continue;
    if (p[1].revents & POLLIN) return;
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    const int c = accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (c < 0) continue;
    {
      std::lock_guard<std::mutex> lock(mu_);
      peers_.push_back(ip_of(peer));
    }
    // One request per connection, served inline: read until the client half-closes.
    set_timeouts(c, std::chrono::seconds(8));
    std::string got;
    char buf[4096];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
    const std::string reply = tag_ + ":" + got;
    (void)!write(c, reply.data(), reply.size());
    close(c);
  }
}

UdpResolver::UdpResolver(const std::string& ns_name, std::string answer)
    : answer_(std::move(answer)) {
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  fd_ = in_ns(ns_name, [] {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    socklen_t len;
    sockaddr_storage ss = make_addr("0.0.0.0", 53, len);
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      close(fd);
      throw std::runtime_error("resolver bind: " + std::string(std::strerror(errno)));
    }
    return fd;
  });
  thread_ = std::thread([this] {
    for (;;) {
      pollfd p[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (poll(p, 2, -1) < 0) continue;
      if (p[1].revents & POLLIN) return;
      char buf[1500];
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      const ssize_t n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer), &len);
      if (n <= 0) continue;
      const std::string reply = dns_reply_for(std::string(buf, static_cast<size_t>(n)), answer_);
      sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&peer), len);
    }
  });
}

UdpResolver::~UdpResolver() {
  const uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof one);
  thread_.join();
  close(fd_);
  close(stop_fd_);
}

std::string dns_reply_for(const std::string& query, const std::string& ipv4) {
  std::string r = query;
  if (r.size() < 12) return r;
  r[2] = static_cast<char>(r[2] | 0x80);
  r[3] = static_cast<char>(0x80);
  r[7] = 1;  // ANCOUNT
  const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4};
  r.append(reinterpret_cast<const char*>(rr), sizeof rr);
  in_addr a{};
  inet_pton(AF_INET, ipv4.c_str(), &a);
  r.append(reinterpret_cast<const char*>(&a), 4);
  return r;
}

ClientResult tcp_exchange(const std::string& ns_name, const std::string& ip, int port,
                          const std::string& payload, std::chrono::milliseconds timeout) {
  return in_ns(ns_name, [&] {
    ClientResult r;
    socklen_t len;
    const sockaddr_storage dst = make_addr(ip, port, len);
    const int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    set_timeouts(fd, timeout);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&dst), len) != 0) {
      r.error = std::string("connect: ") + std::strerror(errno);
      close(fd);
      return r;
    }
    exchange_on(fd, payload, r);
    return r;
  });
}

ClientResult socks5_exchange(const std::string& ns_name, int proxy_port, const std::string& ip,
                             int port, const std::string& payload,
                             std::chrono::milliseconds timeout) {
  return in_ns(ns_name, [&] {
    ClientResult r;
    socklen_t len;
    const sockaddr_storage proxy = make_addr("127.0.0.1", proxy_port, len);
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    set_timeouts(fd, timeout);
    const auto fail = [&](const std::string& what) {
      r.error = what;
      close(fd);
      return r;
    };
    if (connect(fd, reinterpret_cast<const sockaddr*>(&proxy), len) != 0) {
      return fail(std::string("connect to socks5: ") + std::strerror(errno));
    }
    const unsigned char hello[] = {5, 1, 0};  // version 5, one method: no authentication
    unsigned char got[32];
    if (write(fd, hello, sizeof hello) != sizeof hello || read(fd, got, 2) != 2 || got[0] != 5 ||
        got[1] != 0) {
      return fail("socks5 greeting refused");
    }
    std::string req = {5, 1, 0};  // CONNECT
    in_addr a4{};
    in6_addr a6{};
    if (inet_pton(AF_INET, ip.c_str(), &a4) == 1) {
      req += static_cast<char>(1);
      req.append(reinterpret_cast<const char*>(&a4), 4);
    } else if (inet_pton(AF_INET6, ip.c_str(), &a6) == 1) {
      req += static_cast<char>(4);
      req.append(reinterpret_cast<const char*>(&a6), 16);
    } else {
      return fail("bad ip " + ip);
    }
    req += static_cast<char>(port >> 8);
    req += static_cast<char>(port & 0xff);
    if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
      return fail("socks5 request not sent");
    }
    // Reply: VER REP RSV ATYP BND.ADDR BND.PORT (ATYP 1: 4 bytes, 4: 16 bytes).
    if (read(fd, got, 4) != 4) return fail("no socks5 reply");
    if (got[1] != 0) return fail("socks5 CONNECT refused, reply " + std::to_string(got[1]));
    const std::size_t rest = (got[3] == 4 ? 16 : 4) + 2;
    if (read(fd, got, rest) != static_cast<ssize_t>(rest)) return fail("short socks5 reply");
    exchange_on(fd, payload, r);
    return r;
  });
}

std::string dns_query_udp(const std::string& ns_name, const std::string& ip,
                          const std::string& name) {
  return in_ns(ns_name, [&] {
    const uint16_t id = static_cast<uint16_t>(std::random_device{}() & 0xffff);
    socklen_t len;
    const sockaddr_storage dst = make_addr(ip, 53, len);
    const int fd = socket(dst.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    set_timeouts(fd, std::chrono::seconds(3));
    const std::string q = build_query(name, id);
    std::string got;
    // UDP may lose the first datagram while neighbours resolve: retry a few times.
    for (int attempt = 0; attempt < 3 && got.empty(); ++attempt) {
      sendto(fd, q.data(), q.size(), 0, reinterpret_cast<const sockaddr*>(&dst), len);
      char buf[1500];
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n > 0) got = answer_ip(std::string(buf, static_cast<size_t>(n)), id);
    }
    close(fd);
    return got;
  });
}

std::string dns_query_tcp(const std::string& ns_name, const std::string& ip,
                          const std::string& name) {
  const uint16_t id = 0x4242;
  const std::string q = build_query(name, id);
  std::string framed;
  framed += static_cast<char>(q.size() >> 8);
  framed += static_cast<char>(q.size() & 0xff);
  framed += q;
  const ClientResult r = tcp_exchange(ns_name, ip, 53, framed);
  if (r.reply.size() < 2) return "";
  return answer_ip(r.reply.substr(2), id);
}

}  // namespace ambient::testbed
