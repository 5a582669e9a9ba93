// The raw-netlink alternative measured by the benchmark: the nf_tables batch that libnftables
// sends for a plan, recorded once (by interposing sendmsg while libnftables applies the plan in a
// scratch netns) and then replayed as-is on a NETLINK_NETFILTER socket. Replaying pre-built bytes
// is the floor of any raw netlink implementation (libnftnl would build the same messages at
// some extra cost), so it bounds what replacing libnftables could save.
#pragma once

#include <string>
#include <vector>

namespace ambient::bench {

using NetlinkBatch = std::vector<std::string>;  // one entry per sendmsg() payload

void save_batch(const NetlinkBatch& batch, const std::string& path);
NetlinkBatch load_batch(const std::string& path);
// Sends the batch in the calling thread's netns and checks the kernel's answers; throws
// std::runtime_error on any error answer.
void replay_batch(const NetlinkBatch& batch);
// Messages in the batch and how many ask for an ack (for the report).
std::string describe_batch(const NetlinkBatch& batch);

}  // namespace ambient::bench
