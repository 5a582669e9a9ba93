#include "netns/nft.h"

#include <dlfcn.h>
#include <linux/netlink.h>
#include <nftables/libnftables.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memory>
#include <mutex>

#include "netns/error.h"

namespace ambient::netns::nft {
namespace {

// Where sendmsg() copies what it sends, on the one thread that is recording (run_recorded);
// null everywhere else.
thread_local std::vector<std::string>* t_recording = nullptr;

bool is_netfilter_socket(int fd) {
  int domain = 0, protocol = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_NETLINK) {
    return false;
  }
  len = sizeof protocol;
  return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 &&
         protocol == NETLINK_NETFILTER;
}

void record(int fd, const msghdr* msg) {
  if (msg == nullptr || !is_netfilter_socket(fd)) return;
  std::string bytes;
  for (size_t i = 0; i < msg->msg_iovlen; ++i) {
    bytes.append(static_cast<const char*>(msg->msg_iov[i].iov_base), msg->msg_iov[i].iov_len);
  }
  t_recording->push_back(std::move(bytes));
}

struct CtxDeleter {
  void operator()(nft_ctx* ctx) const noexcept { nft_ctx_free(ctx); }
};
using CtxPtr = std::unique_ptr<nft_ctx, CtxDeleter>;

// libnftables does not document thread safety; its first nft_ctx_new() runs an unlocked
// one-time global init (GMP allocator hooks, xtables) and every run releases a process-global
// interface cache, so this process never runs two contexts at once. A warm transaction takes under
// a millisecond (bench/redirect), so serialising costs little even in a burst of pods.
std::mutex& nft_mutex() {
  static std::mutex m;
  return m;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

RunResult try_run(std::string_view commands, Output output) {
  std::lock_guard<std::mutex> lock(nft_mutex());
  // A context per call: nft_ctx_new() opens its netlink socket right away, in the calling
  // thread's netns, and a pod gets exactly one transaction.
  CtxPtr ctx(nft_ctx_new(NFT_CTX_DEFAULT));
  if (!ctx) throw NetnsError(ErrorKind::Nftables, "nft_ctx_new failed");
  if (output == Output::Json) nft_ctx_output_set_flags(ctx.get(), NFT_CTX_OUTPUT_JSON);
  if (output == Output::Stateless) nft_ctx_output_set_flags(ctx.get(), NFT_CTX_OUTPUT_STATELESS);
  if (nft_ctx_buffer_output(ctx.get()) != 0 || nft_ctx_buffer_error(ctx.get()) != 0) {
    throw NetnsError(ErrorKind::Nftables, "cannot buffer libnftables output");
  }
  const std::string buffer(commands);
  RunResult result;
  result.ok = nft_run_cmd_from_buffer(ctx.get(), buffer.c_str()) == 0;
  if (const char* out = nft_ctx_get_output_buffer(ctx.get())) result.output = out;
  if (const char* err = nft_ctx_get_error_buffer(ctx.get())) result.error = trim(err);
  return result;
}

std::string run(std::string_view commands, std::string_view what, Output output) {
  RunResult r = try_run(commands, output);
  if (!r.ok) {
    throw NetnsError(ErrorKind::Nftables, std::string(what) + ": libnftables: " +
                                              (r.error.empty() ? "failed" : r.error));
  }
  return std::move(r.output);
}

std::vector<std::string> run_recorded(std::string_view commands, std::string_view what) {
  std::vector<std::string> sent;
  struct Stop {
    ~Stop() { t_recording = nullptr; }
  } stop;
  t_recording = &sent;
  run(commands, what);
  return sent;
}

}  // namespace ambient::netns::nft

// The process' sendmsg(): libnftables' call binds here (an executable's definition comes first in
// the dynamic linker's lookup, and ld exports it because libnftables references it). Outside a
// recording it only forwards: to the next definition (libc's, or a sanitizer's interceptor), or
// straight to the system call where there is none (a static binary).
extern "C" ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  using Sendmsg = ssize_t (*)(int, const struct msghdr*, int);
  static const Sendmsg next = reinterpret_cast<Sendmsg>(dlsym(RTLD_NEXT, "sendmsg"));
  if (ambient::netns::nft::t_recording != nullptr) ambient::netns::nft::record(fd, msg);
  if (next != nullptr) return next(fd, msg, flags);
  return syscall(SYS_sendmsg, fd, msg, flags);
}
