#include "tests/standins/ztunnel/ztunnel_standin.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "agent/zds.pb.h"

namespace ambient::standins {
namespace {

namespace pb = istio::workload::zds;

struct Held {
  int fd = -1;  // owned
  std::uint64_t inode = 0;
  std::unique_ptr<InpodProxy> proxy;
  std::vector<ProxiedConnection> closed_log;  // connections of proxies since replaced
  ~Held() {
    if (proxy) proxy->stop();
    if (fd >= 0) ::close(fd);
  }
};

std::uint64_t inode_of(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

}  // namespace

struct ZtunnelStandin::Impl {
  Options options;
  LogSink sink;
  std::thread thread;
  std::atomic<bool> running{false};
  int wake[2] = {-1, -1};

  mutable std::mutex mu;
  mutable std::condition_variable cv;
  int sock = -1;
  std::string nack;
  bool hang = false;
  std::map<std::string, std::unique_ptr<Held>> held;
  std::set<std::string> kept;
  std::vector<std::string> snapshot_uids;
  bool in_snapshot = true;
  std::vector<std::string> last_snapshot;
  std::uint64_t snapshots = 0;
  std::vector<std::string> requests;

  void notify() { cv.notify_all(); }

  int connect_once() {
    const int s = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, options.socket_path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(s);
      return -1;
    }
    return s;
  }

  void send(int s, const pb::WorkloadResponse& r) {
    std::string bytes;
    r.SerializeToString(&bytes);
    (void)::send(s, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }

  // One request; returns false when the connection is gone.
  bool serve_one(int s) {
    char buf[1024];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0) return false;
    std::vector<int> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds.push_back(fd);
        }
      }
    }
    const auto close_fds = [&] {
      for (int fd : fds) ::close(fd);
    };
    pb::WorkloadRequest req;
    pb::WorkloadResponse resp;
    if ((msg.msg_flags & MSG_TRUNC) || !req.ParseFromArray(buf, static_cast<int>(n))) {
      close_fds();
      resp.mutable_ack()->set_error("cannot decode request");
      send(s, resp);
      return true;
    }
    std::string error;
    {
      std::unique_lock lock(mu);
      if (hang) {
        close_fds();
        return true;  // never answered: the agent's deadline must fire
      }
      if (req.has_add()) {
        const auto& add = req.add();
        // Adds that are part of a snapshot are logged as such: a reconnect re-sends every pod.
        requests.push_back(std::string(in_snapshot ? "snapshot " : "") + "add " + add.uid() + " " +
                           add.workload_info().name() + " " + add.workload_info().namespace_() +
                           " " + add.workload_info().service_account() +
                           " fd=" + std::to_string(fds.size()));
        if (fds.size() != 1) {
          error = "add needs exactly one netns fd, got " + std::to_string(fds.size());
          close_fds();
        } else if (!add.has_workload_info()) {
          error = "add without workload_info";
          close_fds();
        } else if (!nack.empty()) {
          error = nack;
          close_fds();
        } else {
          error = take(add.uid(), fds[0], lock);
        }
        if (in_snapshot) snapshot_uids.push_back(add.uid());
      } else if (req.has_keep()) {
        close_fds();
        requests.push_back("keep " + req.keep().uid());
        kept.insert(req.keep().uid());
        if (in_snapshot) snapshot_uids.push_back(req.keep().uid());
      } else if (req.has_del()) {
        close_fds();
        requests.push_back("del " + req.del().uid());
        held.erase(req.del().uid());  // unknown UIDs are ignored, as ztunnel does
        kept.erase(req.del().uid());
      } else if (req.has_snapshot_sent()) {
        close_fds();
        requests.push_back("snapshot_sent");
        // ztunnel drops every pod the snapshot did not mention.
        const std::set<std::string> named(snapshot_uids.begin(), snapshot_uids.end());
        for (auto it = held.begin(); it != held.end();) {
          it = named.contains(it->first) ? std::next(it) : held.erase(it);
        }
        std::erase_if(kept, [&](const std::string& u) { return !named.contains(u); });
        last_snapshot = snapshot_uids;
        in_snapshot = false;
        ++snapshots;
      } else {
        close_fds();
        error = "unknown request";
      }
    }
    notify();
    if (!error.empty())
      resp.mutable_ack()->set_error(error);
    else
      resp.mutable_ack();
    send(s, resp);
    return true;
  }

  // Starts (or keeps) the proxy for uid in the netns behind fd. Same inode: a no-op.
  std::string take(const std::string& uid, int fd, std::unique_lock<std::mutex>&) {
    const auto inode = inode_of(fd);
    auto& slot = held[uid];
    if (slot && slot->inode == inode) {
      ::close(fd);
      return {};
    }
    auto h = std::make_unique<Held>();
    // Held for the pod's lifetime: above FD_SETSIZE (the agent in the same test process uses
    // libnftables, which select()s on its netlink sockets).
    if (fd < 1024) {
      if (const int high = fcntl(fd, F_DUPFD_CLOEXEC, 1024); high >= 0) {
        ::close(fd);
        fd = high;
      }
    }
    h->fd = fd;
    h->inode = inode;
    if (options.run_proxies) {
      try {
        h->proxy = InpodProxy::start(fd, sink);
      } catch (const std::exception& e) {
        held.erase(uid);
        return std::string("cannot start proxy: ") + e.what();
      }
    }
    slot = std::move(h);
    kept.erase(uid);
    return {};
  }

  void run() {
    auto backoff = std::chrono::milliseconds(20);
    while (running) {
      const int s = connect_once();
      if (s < 0) {
        pollfd p{wake[0], POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(backoff.count()));
        backoff = std::min(backoff * 2, options.max_backoff);
        continue;
      }
      backoff = std::chrono::milliseconds(20);
      pb::ZdsHello hello;
      hello.set_version(pb::V1);
      std::string bytes;
      hello.SerializeToString(&bytes);
      {
        std::lock_guard lock(mu);
        sock = s;
        snapshot_uids.clear();
        in_snapshot = true;
      }
      (void)::send(s, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      notify();
      while (running) {
        pollfd fds[2] = {{s, POLLIN, 0}, {wake[0], POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) continue;
        if (fds[1].revents & POLLIN) {
          char c;
          (void)!::read(wake[0], &c, 1);  // disconnect() or stop()
          break;
        }
        if (!serve_one(s)) break;
      }
      {
        std::lock_guard lock(mu);
        sock = -1;
      }
      ::close(s);
      notify();
    }
  }
};

ZtunnelStandin::ZtunnelStandin(Options options, LogSink log_sink)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->sink = std::move(log_sink);
}

ZtunnelStandin::~ZtunnelStandin() {
  stop();
}

void ZtunnelStandin::start() {
  auto& s = *impl_;
  if (::pipe2(s.wake, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error("pipe2");
  s.running = true;
  s.thread = std::thread([&s] { s.run(); });
}

void ZtunnelStandin::stop() {
  auto& s = *impl_;
  if (!s.running.exchange(false)) return;
  (void)!::write(s.wake[1], "x", 1);
  if (s.thread.joinable()) s.thread.join();
  ::close(s.wake[0]);
  ::close(s.wake[1]);
  std::lock_guard lock(s.mu);
  s.held.clear();
}

void ZtunnelStandin::set_nack(std::string error) {
  std::lock_guard lock(impl_->mu);
  impl_->nack = std::move(error);
}

void ZtunnelStandin::set_hang(bool hang) {
  std::lock_guard lock(impl_->mu);
  impl_->hang = hang;
}

void ZtunnelStandin::disconnect() {
  (void)!::write(impl_->wake[1], "x", 1);
}

bool ZtunnelStandin::connected() const {
  std::lock_guard lock(impl_->mu);
  return impl_->sock >= 0 && !impl_->in_snapshot;
}

std::set<std::string> ZtunnelStandin::pods() const {
  std::lock_guard lock(impl_->mu);
  std::set<std::string> out = impl_->kept;
  for (const auto& [uid, h] : impl_->held) out.insert(uid);
  return out;
}

std::uint64_t ZtunnelStandin::netns_inode(const std::string& uid) const {
  std::lock_guard lock(impl_->mu);
  const auto it = impl_->held.find(uid);
  return it == impl_->held.end() ? 0 : it->second->inode;
}

bool ZtunnelStandin::wait_for(const std::function<bool()>& condition,
                              std::chrono::milliseconds timeout) const {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::unique_lock lock(impl_->mu);
    impl_->cv.wait_for(lock, std::chrono::milliseconds(20));
  }
  return condition();
}

std::uint64_t ZtunnelStandin::snapshots() const {
  std::lock_guard lock(impl_->mu);
  return impl_->snapshots;
}

std::vector<std::string> ZtunnelStandin::last_snapshot() const {
  std::lock_guard lock(impl_->mu);
  return impl_->last_snapshot;
}

std::vector<ProxiedConnection> ZtunnelStandin::connections(const std::string& uid) const {
  std::lock_guard lock(impl_->mu);
  const auto it = impl_->held.find(uid);
  if (it == impl_->held.end() || !it->second->proxy) return {};
  return it->second->proxy->connections();
}

std::vector<std::string> ZtunnelStandin::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->requests;
}

}  // namespace ambient::standins
