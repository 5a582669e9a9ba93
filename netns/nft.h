// Internal: a thin RAII wrapper over libnftables. Not part of the layer's public surface.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ambient::netns::nft {

struct RunResult {
  bool ok = false;
  std::string output;  // what nft printed (listings)
  std::string error;   // libnftables' own error text (nft_ctx_buffer_error)
};

// Stateless: listings without counter values or set elements' timeouts (what a ruleset *is*, not
// what it has seen), for comparing one netns's tables with another's.
enum class Output { Text, Json, Stateless };

// Runs a command buffer in the calling thread's netns as one libnftables invocation (all
// commands of a buffer go to the kernel as one batch, i.e. one transaction).
RunResult try_run(std::string_view commands, Output output = Output::Text);

// As try_run, but throws NetnsError(Nftables) carrying `what` and libnftables' error text.
std::string run(std::string_view commands, std::string_view what, Output output = Output::Text);

// As run, and returns what libnftables handed to sendmsg() on NETLINK_NETFILTER sockets meanwhile
// (one string per call, iovecs joined): its transaction, for nft_batch.h to check and replay
// elsewhere. libnftables has no API for its batch, so this process defines sendmsg() itself
// (nft.cpp): every other call, and every call on any other thread, goes straight through. Empty
// when libnftables' sendmsg() does not bind to ours (e.g. a binary that does not export it) or
// when it sends its batch some other way.
std::vector<std::string> run_recorded(std::string_view commands, std::string_view what);

}  // namespace ambient::netns::nft
