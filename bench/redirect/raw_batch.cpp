#include "bench/redirect/raw_batch.h"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace ambient::bench {

void save_batch(const NetlinkBatch& batch, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  for (const auto& m : batch) {
    const auto len = static_cast<std::uint32_t>(m.size());
    out.write(reinterpret_cast<const char*>(&len), sizeof len);
    out.write(m.data(), static_cast<std::streamsize>(m.size()));
  }
  if (!out) throw std::runtime_error("cannot write " + path);
}

NetlinkBatch load_batch(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  NetlinkBatch batch;
  std::uint32_t len = 0;
  while (in.read(reinterpret_cast<char*>(&len), sizeof len)) {
    std::string m(len, '\0');
    if (!in.read(m.data(), len)) throw std::runtime_error("truncated batch file " + path);
    batch.push_back(std::move(m));
  }
  return batch;
}

void replay_batch(const NetlinkBatch& batch) {
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) throw std::runtime_error(std::string("netlink socket: ") + std::strerror(errno));
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  std::string failure;
  for (const auto& m : batch) {
    if (sendto(fd, m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) <
        0) {
      failure = std::string("sendto: ") + std::strerror(errno);
      break;
    }
  }
  // nfnetlink processes a batch synchronously inside sendto(): every answer is already queued.
  char buf[16384];
  while (failure.empty()) {
    const ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got < 0) break;  // EAGAIN: all answers read
    int n = static_cast<int>(got);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      if (err->error != 0) {
        failure = std::string("nf_tables rejected the batch: ") + std::strerror(-err->error);
        break;
      }
    }
  }
  close(fd);
  if (!failure.empty()) throw std::runtime_error(failure);
}

std::string describe_batch(const NetlinkBatch& batch) {
  size_t msgs = 0, acks = 0, bytes = 0;
  for (const auto& m : batch) {
    bytes += m.size();
    auto len = static_cast<int>(m.size());
    for (auto* h = reinterpret_cast<const nlmsghdr*>(m.data());
         NLMSG_OK(h, static_cast<unsigned>(len)); h = NLMSG_NEXT(h, len)) {
      ++msgs;
      if (h->nlmsg_flags & NLM_F_ACK) ++acks;
    }
  }
  return std::to_string(batch.size()) + " sendmsg, " + std::to_string(msgs) + " messages (" +
         std::to_string(acks) + " with ack), " + std::to_string(bytes) + " bytes";
}

}  // namespace ambient::bench
