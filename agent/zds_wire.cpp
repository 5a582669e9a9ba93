#include "agent/zds_wire.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/zds.pb.h"
#include "config/constants.h"

namespace ambient::agent::zds {
namespace {

namespace pb = istio::workload::zds;

std::string serialize(const pb::WorkloadRequest& r) {
  std::string out;
  if (!r.SerializeToString(&out))
    throw ZdsError(ZdsError::Kind::kProtocol, "cannot encode request");
  return out;
}

// Waits for `events` on `sock` until the deadline.
void wait_for(int sock, short events, Deadline deadline, const char* what) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      throw ZdsError(ZdsError::Kind::kTimeout, std::string("timed out waiting to ") + what);
    }
    pollfd p{sock, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0)
      throw ZdsError(ZdsError::Kind::kDisconnected, std::string("poll: ") + std::strerror(errno));
    if (rc == 0) continue;
    if (p.revents & (POLLERR | POLLNVAL)) {
      throw ZdsError(ZdsError::Kind::kDisconnected, "connection broken");
    }
    if (p.revents & events) return;
    if (p.revents & POLLHUP) throw ZdsError(ZdsError::Kind::kDisconnected, "ztunnel hung up");
  }
}

}  // namespace

std::string encode_add(const ZdsWorkload& w) {
  pb::WorkloadRequest r;
  auto* add = r.mutable_add();
  add->set_uid(w.uid);
  // Mandatory for ztunnel >= 1.24: an add without it stops ztunnel's pod handling.
  auto* info = add->mutable_workload_info();
  info->set_name(w.name);
  info->set_namespace_(w.namespace_);
  info->set_service_account(w.service_account);
  return serialize(r);
}

std::string encode_keep(std::string_view uid) {
  pb::WorkloadRequest r;
  r.mutable_keep()->set_uid(std::string(uid));
  return serialize(r);
}

std::string encode_del(std::string_view uid) {
  pb::WorkloadRequest r;
  r.mutable_del()->set_uid(std::string(uid));
  return serialize(r);
}

std::string encode_snapshot_sent() {
  pb::WorkloadRequest r;
  r.mutable_snapshot_sent();
  return serialize(r);
}

int decode_hello(std::string_view bytes) {
  pb::ZdsHello hello;
  if (!hello.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    throw ZdsError(ZdsError::Kind::kProtocol, "first message is not a ZdsHello");
  }
  return hello.version();
}

std::string decode_ack(std::string_view bytes) {
  pb::WorkloadResponse resp;
  if (!resp.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    throw ZdsError(ZdsError::Kind::kProtocol, "answer is not a WorkloadResponse");
  }
  if (!resp.has_ack()) throw ZdsError(ZdsError::Kind::kProtocol, "answer carries no Ack");
  return resp.ack().error();
}

void send_datagram(int sock, std::string_view bytes, int pass_fd, Deadline deadline) {
  if (bytes.size() > contract::kZdsMaxMessage) {
    throw ZdsError(ZdsError::Kind::kProtocol, "message of " + std::to_string(bytes.size()) +
                                                  " bytes exceeds the 1024-byte limit");
  }
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (pass_fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  for (;;) {
    wait_for(sock, POLLOUT, deadline, "send to ztunnel");
    const ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return;
    if (errno == EAGAIN || errno == EINTR) continue;
    throw ZdsError(ZdsError::Kind::kDisconnected, std::string("send: ") + std::strerror(errno));
  }
}

std::string recv_datagram(int sock, Deadline deadline) {
  char buf[contract::kZdsMaxMessage];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  for (;;) {
    wait_for(sock, POLLIN, deadline, "read from ztunnel");
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0)
      throw ZdsError(ZdsError::Kind::kDisconnected, std::string("recv: ") + std::strerror(errno));
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          ::close(fd);
        }
      }
    }
    if (n == 0) throw ZdsError(ZdsError::Kind::kDisconnected, "ztunnel closed the connection");
    if (msg.msg_flags & MSG_TRUNC) {
      throw ZdsError(ZdsError::Kind::kProtocol,
                     "message from ztunnel exceeds 1024 bytes (truncated)");
    }
    return std::string(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace ambient::agent::zds
