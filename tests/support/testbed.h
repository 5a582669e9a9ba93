// Test-only network testbed: namespaces, veths, addresses, servers and clients, all inside
// namespaces the test created (never the machine's own netns). Every namespace is deleted by the
// destructor, even when an assertion failed; leftovers of crashed runs are swept at start.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "netns/netns.h"

namespace ambient::testbed {

// Runs a shell command; returns its exit status and stdout.
struct Shell {
  int status;
  std::string out;
};
Shell sh(const std::string& command);
// Runs a command that must succeed; throws std::runtime_error with its output otherwise.
std::string must(const std::string& command);

// Deletes ambtest-<pid>-* namespaces whose creating process is gone (crashed earlier runs), so
// concurrent test processes never delete each other's namespaces.
void sweep_leftover_namespaces();

// Every function and server below that takes a netns takes a name under /var/run/netns or an
// absolute netns path.

// Addresses of the standard topology (only ever configured inside our own namespaces):
//   remote R (10.199.2.2) ── hr | host H (router, "node") | hp ── eth0 pod P (10.199.1.2)
// plus an optional "VM" namespace V behind P's interface vm0 (10.199.3.0/24).
struct Addr {
  static constexpr const char* kPod4 = "10.199.1.2";
  static constexpr const char* kHostPod4 = "10.199.1.1";
  static constexpr const char* kRemote4 = "10.199.2.2";
  static constexpr const char* kHostRemote4 = "10.199.2.1";
  static constexpr const char* kVmGw4 = "10.199.3.1";
  static constexpr const char* kVm4 = "10.199.3.2";
  static constexpr const char* kPod6 = "fd00:199:1::2";
  static constexpr const char* kHostPod6 = "fd00:199:1::1";
  static constexpr const char* kRemote6 = "fd00:199:2::2";
  static constexpr const char* kHostRemote6 = "fd00:199:2::1";
};

class Topology {
 public:
  // Creates H, P, R wired as above (IPv4 + IPv6, H forwards). With_vm adds V behind P's vm0.
  explicit Topology(bool with_vm = false);
  ~Topology();
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  std::string host() const { return prefix_ + "-h"; }
  std::string pod() const { return prefix_ + "-p"; }
  std::string remote() const { return prefix_ + "-r"; }
  std::string vm() const { return prefix_ + "-v"; }
  static std::string path(const std::string& name) { return "/var/run/netns/" + name; }
  netns::NetnsHandle open(const std::string& name) const {
    return netns::NetnsHandle::open(path(name));
  }

 private:
  std::string prefix_;
  std::vector<std::string> created_;
};

// A node as the bridge CNI lays it out: a node netns holding a bridge (10.246.0.1/24,
// fd00:246::1/64) that forwards, and pods, each a netns whose eth0 is on the bridge with a default
// route through it. Only our own namespaces are touched; the destructor deletes them all.
class BridgeNode {
 public:
  struct PodNet {
    std::string netns;  // name under /var/run/netns
    std::string path;   // /var/run/netns/<name>
    std::string ip4;
    std::string ip6;  // empty without IPv6
  };
  BridgeNode();
  ~BridgeNode();
  BridgeNode(const BridgeNode&) = delete;
  BridgeNode& operator=(const BridgeNode&) = delete;

  std::string node() const { return prefix_ + "-n"; }
  std::string node_path() const { return Topology::path(node()); }
  static constexpr const char* kGateway4 = "10.246.0.1";
  // A pod with the next free address (10.246.0.10, .11, …; with ipv6 also fd00:246::a, …).
  PodNet add_pod(const std::string& name, bool ipv6 = false);
  // Deletes the pod's netns (its veth goes with it), as a runtime removing the sandbox.
  void remove_pod(const PodNet& pod);

 private:
  std::string prefix_;
  int next_ = 10;
  std::vector<std::string> created_;
};

// A TCP server in a netns: every connection gets "<tag>:" + whatever it sent, echoed back, and
// its peer address is recorded.
class TcpServer {
 public:
  TcpServer(const std::string& ns_name, int family, int port, std::string tag);
  ~TcpServer();
  std::vector<std::string> peers() const;  // "ip" of each accepted connection, in order

 private:
  void serve();
  int fd_ = -1;
  int stop_fd_ = -1;
  std::string tag_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<std::string> peers_;
};

// A DNS resolver stand-in in a netns: UDP port 53 on the wildcard address, answers every A query
// with `answer`.
class UdpResolver {
 public:
  UdpResolver(const std::string& ns_name, std::string answer);
  ~UdpResolver();

 private:
  int fd_ = -1;
  int stop_fd_ = -1;
  std::string answer_;
  std::thread thread_;
};

struct ClientResult {
  bool connected = false;
  std::string reply;  // what came back before EOF/timeout
  std::string error;
};

// From a socket in ns_name: connect to ip:port, send payload, half-close, read the reply until
// EOF. Bounded by generous timeouts only (never asserted on).
ClientResult tcp_exchange(const std::string& ns_name, const std::string& ip, int port,
                          const std::string& payload,
                          std::chrono::milliseconds timeout = std::chrono::seconds(8));

// tcp_exchange through a SOCKS5 proxy at 127.0.0.1:proxy_port in ns_name (CONNECT ip:port, no
// authentication): how a client hands connections to a dedicated ztunnel without iptables.
ClientResult socks5_exchange(const std::string& ns_name, int proxy_port, const std::string& ip,
                             int port, const std::string& payload,
                             std::chrono::milliseconds timeout = std::chrono::seconds(8));

// Sends an A query for `name` over UDP (or TCP) from ns_name to ip:53; returns the IPv4 address
// of the answer, or "" on timeout/no answer.
std::string dns_query_udp(const std::string& ns_name, const std::string& ip,
                          const std::string& name);
std::string dns_query_tcp(const std::string& ns_name, const std::string& ip,
                          const std::string& name);

// Builds a DNS answer for an A query (shared by the resolver stand-in).
std::string dns_reply_for(const std::string& query, const std::string& ipv4);

}  // namespace ambient::testbed
