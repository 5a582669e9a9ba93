// A ztunnel stand-in: the ZDS *client* side, as ztunnel speaks it (hello, one ack per request,
// snapshot then add/del, reconnect with backoff), running the in-pod proxy in every netns it is
// handed, so tests prove traffic is captured by what the agent sent. Decodes with its own copy of
// the protobuf classes generated from agent/zds.proto (what ztunnel does with its .proto).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tests/standins/proxy/inpod_proxy.h"

namespace ambient::standins {

class ZtunnelStandin {
 public:
  struct Options {
    std::string socket_path;
    std::chrono::milliseconds max_backoff{1000};
    bool run_proxies = true;  // false: hold the netns only (protocol tests)
  };

  ZtunnelStandin(Options options, LogSink log_sink = {});
  ~ZtunnelStandin();
  ZtunnelStandin(const ZtunnelStandin&) = delete;
  ZtunnelStandin& operator=(const ZtunnelStandin&) = delete;

  void start();  // connects in the background, reconnecting forever with backoff
  void stop();   // disconnects and stops every proxy

  // Faults on demand.
  void set_nack(std::string error);  // answer every add with this error ("" = ack again)
  void set_hang(bool hang);          // read requests but never answer
  void disconnect();                 // drop the connection now (it reconnects)

  // What it holds.
  bool connected() const;
  std::set<std::string> pods() const;  // UIDs with a netns (add) or kept (keep)
  std::uint64_t netns_inode(const std::string& uid) const;  // 0 when not held
  bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout) const;
  std::uint64_t snapshots() const;                 // completed snapshots (snapshot_sent seen)
  std::vector<std::string> last_snapshot() const;  // UIDs of the last snapshot, in order
  std::vector<ProxiedConnection> connections(const std::string& uid) const;
  // Every request seen, as "add <uid> <name> <ns> <sa> fd=<0|1>" ("snapshot add …" inside a
  // snapshot), "keep <uid>", "del <uid>", "snapshot_sent".
  std::vector<std::string> requests() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ambient::standins
