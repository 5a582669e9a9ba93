#include "agent/zds_server.h"

#include "base/file.h"
#include "base/seqpacket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <list>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/zds_wire.h"

namespace ambient::agent {
namespace {

struct Connection {
  explicit Connection(int fd, std::uint64_t id) : fd(fd), id(id) {}
  ~Connection() { ::close(fd); }
  const int fd;
  const std::uint64_t id;
  std::mutex io;  // one request in flight per connection: ztunnel answers in order
  std::atomic<bool> dead{false};
};

}  // namespace

struct ZdsServer::Impl {
  Options options;
  SnapshotFn snapshot;
  std::shared_ptr<spdlog::logger> log;
  int listen_fd = -1;
  int wake[2] = {-1, -1};
  std::thread acceptor;
  std::atomic<bool> running{false};
  std::atomic<std::uint64_t> next_id{1};
  std::atomic<std::uint64_t> snapshots{0};

  // Held exclusively while a new ztunnel gets its snapshot, shared by add/del, so that no
  // change slips between a snapshot and the connection joining the set.
  std::shared_mutex snapshot_mu;
  mutable std::mutex conns_mu;
  std::condition_variable conns_cv;              // a ztunnel finished its snapshot
  std::list<std::shared_ptr<Connection>> conns;  // oldest first
  mutable std::mutex acks_mu;
  std::map<std::string, std::uint64_t> acks;  // pod uid → connection that acked its add

  void acked(const std::string& uid, std::uint64_t connection) {
    std::lock_guard lock(acks_mu);
    acks[uid] = connection;
  }

  zds::Deadline deadline() const { return std::chrono::steady_clock::now() + options.deadline; }

  // One request, one ack. Throws ZdsError; marks the connection dead on I/O failure.
  void request(Connection& c, const std::string& bytes, int fd, const std::string& what) {
    std::lock_guard lock(c.io);
    if (c.dead) throw ZdsError(ZdsError::Kind::kDisconnected, "ztunnel connection closed");
    try {
      const auto until = deadline();
      zds::send_datagram(c.fd, bytes, fd, until);
      const auto error = zds::decode_ack(zds::recv_datagram(c.fd, until));
      if (!error.empty())
        throw ZdsError(ZdsError::Kind::kNack, "ztunnel refused " + what + ": " + error);
    } catch (const ZdsError& e) {
      if (e.kind() != ZdsError::Kind::kNack) c.dead = true;
      throw;
    }
  }

  void drop_dead() {
    std::lock_guard lock(conns_mu);
    conns.remove_if([this](const auto& c) {
      if (!c->dead) return false;
      log->warn("ztunnel connection {} dropped", c->id);
      if (options.degraded) options.degraded("ztunnel_disconnected");
      return true;
    });
  }

  void greet(int fd) {
    auto c = std::make_shared<Connection>(fd, next_id++);
    try {
      const int version = zds::decode_hello(zds::recv_datagram(fd, deadline()));
      if (version != 1) {
        throw ZdsError(ZdsError::Kind::kProtocol,
                       "unsupported ZDS version " + std::to_string(version));
      }
      std::unique_lock exclusive(snapshot_mu);
      const auto workloads = snapshot();
      std::size_t adds = 0;
      for (const auto& w : workloads) {
        if (w.netns_fd >= 0) {
          request(*c, zds::encode_add(w), w.netns_fd, "add " + w.uid);
          acked(w.uid, c->id);
          ++adds;
        } else {
          request(*c, zds::encode_keep(w.uid), -1, "keep " + w.uid);
        }
      }
      request(*c, zds::encode_snapshot_sent(), -1, "snapshot_sent");
      {
        std::lock_guard lock(conns_mu);
        conns.push_back(c);
      }
      conns_cv.notify_all();
      ++snapshots;
      log->info("ztunnel connection {} ready: snapshot of {} pods ({} with netns)", c->id,
                workloads.size(), adds);
    } catch (const ZdsError& e) {
      log->warn("ztunnel connection {} failed during hello/snapshot: {}", c->id, e.what());
      if (options.degraded) options.degraded("ztunnel_snapshot_failed");
    }
  }

  // ztunnel never sends unsolicited messages: readable while idle means it hung up.
  void reap_idle() {
    std::vector<std::shared_ptr<Connection>> snapshot_of_conns;
    {
      std::lock_guard lock(conns_mu);
      snapshot_of_conns.assign(conns.begin(), conns.end());
    }
    for (const auto& c : snapshot_of_conns) {
      std::unique_lock io(c->io, std::try_to_lock);
      if (!io.owns_lock()) continue;  // a request is in flight; it will notice
      pollfd p{c->fd, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) c->dead = true;
    }
    drop_dead();
  }

  void run() {
    while (running) {
      std::vector<pollfd> fds = {{listen_fd, POLLIN, 0}, {wake[0], POLLIN, 0}};
      {
        std::lock_guard lock(conns_mu);
        for (const auto& c : conns) fds.push_back({c->fd, POLLIN, 0});
      }
      // Idle connections are watched for hang-ups; a request in flight makes its fd readable
      // too, so after waking we only look at connections nobody is using.
      const int rc = ::poll(fds.data(), fds.size(), 1000);
      if (!running) break;
      if (rc < 0 && errno != EINTR) {
        log->error("ZDS poll: {}", std::strerror(errno));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      if (fds[0].revents & POLLIN) {
        const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) greet(fd);
      }
      bool idle_event = false;
      for (std::size_t i = 2; i < fds.size(); ++i) idle_event |= fds[i].revents != 0;
      if (idle_event) {
        reap_idle();
        // Don't spin on a readable fd that belongs to a request in flight.
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  }
};

ZdsServer::ZdsServer(Options options, SnapshotFn snapshot, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->snapshot = std::move(snapshot);
  impl_->log = std::move(log);
}

ZdsServer::~ZdsServer() {
  stop();
}

void ZdsServer::start() {
  auto& s = *impl_;
  const std::filesystem::path path(s.options.socket_path);
  std::error_code ec;
  if (const auto warning = base::ensure_socket_dir(path.parent_path()); !warning.empty()) {
    s.log->warn("ZDS socket: {}", warning);
  }
  try {
    // Replaces a stale socket of an earlier agent; 0600: ztunnel connects as root.
    s.listen_fd = base::listen_seqpacket(s.options.socket_path, 16).release();
  } catch (const base::SocketError& e) {
    throw std::runtime_error(std::string("ZDS socket: ") + e.what());
  }
  if (::pipe2(s.wake, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  s.running = true;
  s.acceptor = std::thread([&s] { s.run(); });
  s.log->info("ZDS server listening on {}", s.options.socket_path);
}

void ZdsServer::stop() {
  auto& s = *impl_;
  if (!s.running.exchange(false)) return;
  (void)!::write(s.wake[1], "x", 1);
  s.conns_cv.notify_all();
  if (s.acceptor.joinable()) s.acceptor.join();
  {
    std::lock_guard lock(s.conns_mu);
    s.conns.clear();
  }
  ::close(s.listen_fd);
  ::close(s.wake[0]);
  ::close(s.wake[1]);
  s.listen_fd = s.wake[0] = s.wake[1] = -1;
  ::unlink(s.options.socket_path.c_str());
}

void ZdsServer::add(const ZdsWorkload& w) {
  auto& s = *impl_;
  {
    // A ztunnel that is restarting reconnects within moments: wait for it (before taking the
    // snapshot lock, which its greeting needs) rather than fail the pod at once.
    std::unique_lock lock(s.conns_mu);
    s.conns_cv.wait_for(lock, s.options.deadline, [&s] {
      for (const auto& c : s.conns) {
        if (!c->dead) return true;
      }
      return !s.running.load();
    });
  }
  std::shared_lock shared(s.snapshot_mu);
  for (;;) {
    std::shared_ptr<Connection> newest;
    {
      std::lock_guard lock(s.conns_mu);
      for (auto it = s.conns.rbegin(); it != s.conns.rend(); ++it) {
        if (!(*it)->dead) {
          newest = *it;
          break;
        }
      }
    }
    if (!newest) throw ZdsError(ZdsError::Kind::kNoZtunnel, "no ztunnel is connected");
    try {
      s.request(*newest, zds::encode_add(w), w.netns_fd, "add " + w.uid);
      s.acked(w.uid, newest->id);
      return;
    } catch (const ZdsError& e) {
      s.drop_dead();
      // A connection that died under us: try the next newest; a nack or a timeout is final.
      if (e.kind() != ZdsError::Kind::kDisconnected) throw;
      s.log->warn("ztunnel connection {} lost during add {}: {}", newest->id, w.uid, e.what());
    }
  }
}

void ZdsServer::del(const std::string& uid) {
  auto& s = *impl_;
  std::shared_lock shared(s.snapshot_mu);
  {
    std::lock_guard lock(s.acks_mu);
    s.acks.erase(uid);
  }
  std::vector<std::shared_ptr<Connection>> all;
  {
    std::lock_guard lock(s.conns_mu);
    all.assign(s.conns.begin(), s.conns.end());
  }
  for (const auto& c : all) {
    try {
      s.request(*c, zds::encode_del(uid), -1, "del " + uid);
    } catch (const ZdsError& e) {
      s.log->warn("ztunnel connection {}: del {}: {}", c->id, uid, e.what());
    }
  }
  s.drop_dead();
}

std::size_t ZdsServer::connections() const {
  std::lock_guard lock(impl_->conns_mu);
  std::size_t n = 0;
  for (const auto& c : impl_->conns) n += c->dead ? 0 : 1;
  return n;
}

std::uint64_t ZdsServer::snapshots_sent() const {
  return impl_->snapshots;
}

std::optional<std::uint64_t> ZdsServer::acked_by(const std::string& uid) const {
  std::uint64_t id = 0;
  {
    std::lock_guard lock(impl_->acks_mu);
    const auto it = impl_->acks.find(uid);
    if (it == impl_->acks.end()) return std::nullopt;
    id = it->second;
  }
  std::lock_guard lock(impl_->conns_mu);
  for (const auto& c : impl_->conns) {
    if (c->id == id && !c->dead) return id;
  }
  return std::nullopt;  // that ztunnel went away: the next one's snapshot will carry the pod
}

}  // namespace ambient::agent
