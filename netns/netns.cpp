#include "netns/netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace ambient::netns {
namespace {

struct NsIdentity {
  std::uint64_t dev;
  std::uint64_t inode;
};

NsIdentity identity_of(int fd, const std::string& what) {
  struct stat st {};
  if (fstat(fd, &st) != 0) throw_errno("fstat " + what, errno);
  return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

NsIdentity current_identity() {
  // thread-self, not self: the caller may itself be running inside run_in().
  struct stat st {};
  if (stat("/proc/thread-self/ns/net", &st) != 0)
    throw_errno("stat /proc/thread-self/ns/net", errno);
  return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

// Closes fd unless released; keeps the validation paths leak-free without repeating close().
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

void validate_netns_fd(int fd, const std::string& what) {
  struct statfs fs {};
  if (fstatfs(fd, &fs) != 0) throw_errno("fstatfs " + what, errno);
  if (static_cast<unsigned long>(fs.f_type) != NSFS_MAGIC) {
    throw NetnsError(ErrorKind::NotNetns, what + " is not a namespace file (not on nsfs)", EINVAL);
  }
  // nsfs also holds mnt/uts/pid... namespaces: make sure this is a network namespace.
  const int type = ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) throw_errno("NS_GET_NSTYPE " + what, errno);
  if (type != CLONE_NEWNET) {
    throw NetnsError(ErrorKind::NotNetns, what + " is a namespace, but not a network namespace",
                     EINVAL);
  }
}

}  // namespace

NetnsHandle::NetnsHandle(int fd, std::uint64_t dev, std::uint64_t inode, std::string path)
    : fd_(fd), dev_(dev), inode_(inode), path_(std::move(path)) {}

NetnsHandle NetnsHandle::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      throw NetnsError(ErrorKind::NotFound, "netns " + path + " does not exist", err);
    }
    throw_errno("open netns " + path, err);
  }
  return adopt(fd, path);
}

NetnsHandle NetnsHandle::adopt(int fd, std::string label) {
  FdGuard guard(fd);
  validate_netns_fd(fd, label);
  const NsIdentity id = identity_of(fd, label);
  const NsIdentity own = current_identity();
  if (id.dev == own.dev && id.inode == own.inode) {
    throw NetnsError(ErrorKind::OwnNetns,
                     "netns " + label + " is the caller's own network namespace; refusing", EPERM);
  }
  return NetnsHandle(guard.release(), id.dev, id.inode, std::move(label));
}

NetnsHandle NetnsHandle::current() {
  const std::string path = "/proc/thread-self/ns/net";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("open " + path, errno);
  FdGuard guard(fd);
  const NsIdentity id = identity_of(fd, path);
  return NetnsHandle(guard.release(), id.dev, id.inode, "current netns");
}

NetnsHandle::NetnsHandle(NetnsHandle&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      dev_(other.dev_),
      inode_(other.inode_),
      path_(std::move(other.path_)) {}

NetnsHandle& NetnsHandle::operator=(NetnsHandle&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    dev_ = other.dev_;
    inode_ = other.inode_;
    path_ = std::move(other.path_);
  }
  return *this;
}

NetnsHandle::~NetnsHandle() {
  if (fd_ >= 0) ::close(fd_);
}

NetnsHandle NetnsHandle::dup() const {
  const int fd = fcntl(fd_, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) throw_errno("dup netns fd of " + path_, errno);
  return NetnsHandle(fd, dev_, inode_, path_);
}

bool NetnsHandle::relocate_fd(int floor) noexcept {
  if (fd_ >= floor) return true;
  const int high = fcntl(fd_, F_DUPFD_CLOEXEC, floor);
  if (high < 0) return false;
  close(fd_);
  fd_ = high;
  return true;
}

namespace detail {

namespace {

// Threads that work inside other network namespaces and come back. A task enters its namespace
// (setns, or unshare for a scratch one), runs, and the thread setns()es back to the process's
// network namespace; only a thread that is verifiably home again (the inode of its
// /proc/thread-self/ns/net) returns to the pool, so no later task can run in a namespace it did
// not ask for. A thread that cannot get home exits. Creating a thread per task cost a clone, a
// fresh stack's page faults and a madvise on its exit: ~10% of the agent's CPU in pod churn.
class NetnsThreads {
 public:
  static NetnsThreads& get() {
    static auto* pool = new NetnsThreads();  // never destroyed: idle threads outlive main()
    return *pool;
  }

  void run(int ns_fd, const std::function<void()>& fn) {
    Worker* w = take();
    {
      std::lock_guard lock(w->mu);
      w->ns_fd = ns_fd;
      w->fn = &fn;
      w->done = false;
      w->failure = nullptr;
    }
    w->cv.notify_one();
    std::exception_ptr failure;
    bool healthy = false;
    {
      std::unique_lock lock(w->mu);
      w->cv.wait(lock, [w] { return w->done; });
      failure = w->failure;
      healthy = w->healthy;
    }
    if (healthy) {
      give_back(w);
    } else {
      delete w;  // its thread has gone (it could not get home)
    }
    if (failure) std::rethrow_exception(failure);
  }

 private:
  struct Worker {
    std::mutex mu;
    std::condition_variable cv;
    int ns_fd = -1;
    const std::function<void()>* fn = nullptr;  // a task is pending while set
    bool done = false;
    bool healthy = true;
    bool quit = false;
    std::exception_ptr failure;
  };

  NetnsThreads() {
    home_fd_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home_fd_ < 0) throw_errno("open /proc/self/ns/net", errno);
    home_ = identity_of(home_fd_, "/proc/self/ns/net");
  }

  Worker* take() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        Worker* w = idle_.back();
        idle_.pop_back();
        return w;
      }
    }
    auto* w = new Worker();
    std::thread([this, w] { loop(w); }).detach();
    return w;
  }

  void give_back(Worker* w) {
    {
      std::lock_guard lock(mu_);
      if (idle_.size() < kMaxIdle) {
        idle_.push_back(w);
        return;
      }
    }
    // Notified under the lock: the worker deletes w once it sees quit, which it can only do
    // after this lock is released.
    std::lock_guard lock(w->mu);
    w->quit = true;
    w->cv.notify_one();
  }

  bool at_home() const {
    try {
      const auto now = current_identity();
      return now.dev == home_.dev && now.inode == home_.inode;
    } catch (const NetnsError&) {
      return false;
    }
  }

  void loop(Worker* w) {
    // Wherever the creating thread was, start from the process's namespace.
    bool healthy = setns(home_fd_, CLONE_NEWNET) == 0 && at_home();
    for (;;) {
      std::unique_lock lock(w->mu);
      w->cv.wait(lock, [w] { return w->fn != nullptr || w->quit; });
      if (w->fn == nullptr) break;  // quit
      const int ns_fd = w->ns_fd;
      const auto* fn = w->fn;
      lock.unlock();
      std::exception_ptr failure;
      try {
        if (!healthy) throw NetnsError(ErrorKind::System, "netns worker thread is not at home");
        if (ns_fd >= 0) {
          if (setns(ns_fd, CLONE_NEWNET) != 0) throw_errno("setns", errno);
        } else {
          if (unshare(CLONE_NEWNET) != 0) throw_errno("unshare(CLONE_NEWNET)", errno);
        }
        (*fn)();
      } catch (...) {
        failure = std::current_exception();
      }
      healthy = healthy && setns(home_fd_, CLONE_NEWNET) == 0 && at_home();
      lock.lock();
      w->fn = nullptr;
      w->failure = failure;
      w->healthy = healthy;
      w->done = true;
      // Notified under the lock: once the caller holds it, this thread no longer touches w.
      w->cv.notify_all();
      lock.unlock();
      if (!healthy) return;  // the caller, seeing healthy == false, deletes w
    }
    delete w;
  }

  static constexpr std::size_t kMaxIdle = 4;
  int home_fd_ = -1;
  NsIdentity home_{};
  std::mutex mu_;
  std::vector<Worker*> idle_;
};

}  // namespace

void run_on_netns_thread(int ns_fd, const std::function<void()>& fn) {
  NetnsThreads::get().run(ns_fd, fn);
}

}  // namespace detail
bool holds_any_address(const NetnsHandle& ns, const std::vector<std::string>& ips) {
  struct Want {
    int family;
    unsigned char bytes[16];
  };
  std::vector<Want> wanted;
  for (const auto& ip : ips) {
    Want w{};
    if (inet_pton(AF_INET, ip.c_str(), w.bytes) == 1) {
      w.family = AF_INET;
    } else if (inet_pton(AF_INET6, ip.c_str(), w.bytes) == 1) {
      w.family = AF_INET6;
    } else {
      continue;
    }
    wanted.push_back(w);
  }
  if (wanted.empty()) return false;
  return run_in(ns, [&] {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) throw_errno("getifaddrs in " + ns.path(), errno);
    bool found = false;
    for (ifaddrs* a = list; a != nullptr && !found; a = a->ifa_next) {
      if (a->ifa_addr == nullptr) continue;
      for (const auto& w : wanted) {
        if (a->ifa_addr->sa_family != w.family) continue;
        const void* have =
            w.family == AF_INET
                ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr)
                : static_cast<const void*>(
                      &reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr);
        if (std::memcmp(have, w.bytes, w.family == AF_INET ? 4 : 16) == 0) found = true;
      }
    }
    freeifaddrs(list);
    return found;
  });
}

}  // namespace ambient::netns
