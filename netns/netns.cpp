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
#include <cstring>
#include <exception>
#include <thread>

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

void run_on_fresh_thread(int ns_fd, const std::function<void()>& fn) {
  std::exception_ptr failure;
  std::thread worker([&] {
    try {
      if (ns_fd >= 0) {
        if (setns(ns_fd, CLONE_NEWNET) != 0) throw_errno("setns", errno);
      } else {
        if (unshare(CLONE_NEWNET) != 0) throw_errno("unshare(CLONE_NEWNET)", errno);
      }
      fn();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  worker.join();
  if (failure) std::rethrow_exception(failure);
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
