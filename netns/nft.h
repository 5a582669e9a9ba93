// Internal: a thin RAII wrapper over libnftables. Not part of the layer's public surface.
#pragma once

#include <string>
#include <string_view>

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

}  // namespace ambient::netns::nft
