#include "netns/nft.h"

#include <nftables/libnftables.h>

#include <memory>
#include <mutex>

#include "netns/error.h"

namespace ambient::netns::nft {
namespace {

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

}  // namespace ambient::netns::nft
