// The ZDS server: ztunnel connects here and receives the pods' network namespaces
// (ambient-contract.md §6). SOCK_SEQPACKET, one protobuf message per datagram, ≤ 1024 bytes,
// one Ack per request, 5 s deadlines.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "agent/enrolment.h"

namespace ambient::agent {

class ZdsServer final : public ZtunnelStep {
 public:
  struct Options {
    std::string socket_path;
    std::chrono::milliseconds deadline{5000};
    // Told about each handled failure: "ztunnel_disconnected", "ztunnel_snapshot_failed".
    std::function<void(const std::string& what)> degraded;
  };
  // Called for every new ztunnel connection, under the snapshot lock: every pod the agent
  // knows, with the netns fd it holds (or -1).
  using SnapshotFn = std::function<std::vector<ZdsWorkload>()>;

  ZdsServer(Options options, SnapshotFn snapshot, std::shared_ptr<spdlog::logger> log);
  ~ZdsServer() override;
  ZdsServer(const ZdsServer&) = delete;
  ZdsServer& operator=(const ZdsServer&) = delete;

  void start();  // binds (replacing a stale socket file) and starts accepting
  void stop();

  // `add` (with the netns fd) to the newest ztunnel; returns once it acked. Throws ZdsError.
  void add(const ZdsWorkload& workload) override;
  // `del` to every ztunnel; best effort (errors are logged, the connection dropped).
  void del(const std::string& uid) override;

  std::size_t connections() const override;
  std::uint64_t snapshots_sent() const;
  // The live ztunnel connection that acked this pod's add (with its netns), if one did: what
  // `ambient-cni-node status` and explain report as "ztunnel acked".
  std::optional<std::uint64_t> acked_by(const std::string& uid) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ambient::agent
