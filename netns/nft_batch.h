// Internal: an nf_tables transaction as netlink bytes, taken from what libnftables sent for a
// ruleset (nft::run_recorded) and replayed as-is in another netns (decision 017). Not part of
// the layer's public surface.
//
// Replaying is only sound for a batch that means the same in every netns: objects named, never
// referred to by kernel handle, no generation id, no cache query. from_recording() keeps exactly
// the messages between BATCH_BEGIN and BATCH_END and refuses anything else, so a libnftables that
// one day sends something else makes the caller fall back to libnftables instead of replaying it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ambient::netns::nft {

struct Batch {
  // BATCH_BEGIN, the transaction's messages, BATCH_END, ready for one send. Sequence numbers are
  // the message's place (BEGIN 0, the first message 1, ...); the last message before END asks for
  // an ack, so a replay knows the kernel went through to the end. Padding is zeroed, so the same
  // messages always make the same bytes.
  std::string bytes;
  // What each message does, by sequence number - 1 ("add rule inet istio-ambient-nat
  // istio-output"), for errors.
  std::vector<std::string> messages;
};

// Builds a Batch from the sendmsg() payloads of one libnftables run. Throws
// NetnsError(Nftables) saying why the recording cannot be replayed: no transaction or more than
// one, a truncated message, a message other than add/delete of a table, chain or rule (or cache
// queries outside the transaction), a kernel handle or position, an echo request.
Batch from_recording(const std::vector<std::string>& sendmsg_payloads);

// Batches built here rather than recorded (nft_built.cpp):

// One change to a named set of an inet table: add the element whose key is `key` (the bytes of
// the address, network order) with `comment` (as `add element ... { key comment "..." }`), or
// delete it (`delete element`: an absent element fails the whole transaction).
struct SetElementOp {
  bool add = true;
  std::string set;
  std::string key;
  std::string comment;  // add only; empty: none
};

// The transaction for element changes of sets in inet table `table`, built here rather than by
// libnftables: the same messages libnftables sends for the same commands (a test compares them
// byte for byte), without the cache libnftables reads first (every table, chain and rule of the
// netns — the node's iptables-nft tables included — for one element). One message per op.
// Throws NetnsError(InvalidArgument) for an empty set name or a key that is not 4 or 16 bytes.
Batch set_elements_batch(std::string_view table, const std::vector<SetElementOp>& ops);

// `add table inet T` + `delete table inet T` for each table, built here: the removal that
// succeeds whether or not the tables exist (what libnftables sends for the same text; a test
// compares them), without libnftables' cache of the netns.
Batch remove_tables_batch(const std::vector<std::string_view>& tables);

// Sends the batch on a new NETLINK_NETFILTER socket in the calling thread's netns and reads
// every answer. Returns normally only when the kernel reported no error (it answers each message
// it refuses, and the commit) and acknowledged the last message; otherwise throws
// NetnsError(Nftables) naming the message(s) refused and why. The kernel applies a batch as one
// transaction, so a refused batch changed nothing.
void replay_here(const Batch& batch);

}  // namespace ambient::netns::nft
