// A ztunnel-like in-pod proxy for tests and the ZDS stand-in: given a pod's netns, it opens the
// same listeners real ztunnel opens there (ambient-contract.md §6) and proxies real traffic, so a
// test can prove that packets were captured, not just that rules exist.
//
//  15001 (wildcard, TCP)  outbound: reads SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST, connects to the
//                         original destination with SO_MARK 0x539, splices bytes.
//  15006 (wildcard, TCP)  inbound plaintext: reads the original destination and connects to the
//                         app FROM the client's address (IP_TRANSPARENT + SO_MARK 0x539), splices.
//  15008 (wildcard, TCP)  HBONE: accepts and echoes (it is never a redirect target).
//  15053 (loopback, UDP+TCP) DNS: records the query and answers A queries with kDnsAnswer.
// Every socket has SO_MARK 1337 and SO_REUSEPORT. Each accepted connection is recorded and
// reported as one JSON line {"direction","src","original_dst"[,"query"]} to the log sink.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ambient::standins {

struct ProxiedConnection {
  std::string direction;  // outbound | inbound | hbone | dns-udp | dns-tcp
  std::string src;        // peer as "ip:port" or "[ip6]:port"
  std::string original_dst;
  std::string query;  // DNS only: the queried name
};

// Called from the proxy's connection threads, possibly concurrently: must be thread-safe.
using LogSink = std::function<void(const std::string& json_line)>;

class InpodProxy {
 public:
  // The address every A query is answered with, so a test can tell this proxy's answer apart.
  static constexpr const char* kDnsAnswer = "192.0.2.53";

  // Dups netns_fd (the caller keeps its fd), binds all listeners inside that netns and starts
  // serving. Returns once every listener is bound; throws std::runtime_error otherwise.
  // IPv6 listeners are skipped when the netns has no usable IPv6.
  static std::unique_ptr<InpodProxy> start(int netns_fd, LogSink log_sink = {});

  ~InpodProxy();
  InpodProxy(const InpodProxy&) = delete;
  InpodProxy& operator=(const InpodProxy&) = delete;

  // Closes the listeners and ends every proxied connection; idempotent.
  void stop();
  std::vector<ProxiedConnection> connections() const;
  // Waits until at least n connections were recorded (or the timeout passed); returns whether.
  bool wait_for_connections(std::size_t n, std::chrono::milliseconds timeout) const;

 private:
  InpodProxy() = default;
  struct Listener {
    int fd;
    int family;
    int type;  // SOCK_STREAM / SOCK_DGRAM
    int port;
  };
  void serve();
  void handle(Listener l, int conn);
  void record(ProxiedConnection c);

  int netns_fd_ = -1;
  int stop_fd_ = -1;
  std::vector<Listener> listeners_;
  std::thread acceptor_;
  std::mutex threads_mu_;
  std::vector<std::thread> handlers_;
  std::atomic<bool> stopped_{false};
  LogSink sink_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<ProxiedConnection> connections_;
};

}  // namespace ambient::standins
