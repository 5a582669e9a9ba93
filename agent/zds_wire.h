// ZDS wire format: protobuf messages in SOCK_SEQPACKET datagrams, fds as SCM_RIGHTS.
// Kept apart from the server so tests can check the bytes against the contract.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "agent/zds_server.h"

namespace ambient::agent::zds {

using Deadline = std::chrono::steady_clock::time_point;

std::string encode_add(const ZdsWorkload& workload);
std::string encode_keep(std::string_view uid);
std::string encode_del(std::string_view uid);
std::string encode_snapshot_sent();

// A ZdsHello's version (1 = V1). Throws ZdsError(kProtocol) for anything else.
int decode_hello(std::string_view bytes);
// A WorkloadResponse's Ack error text; empty = success. Throws ZdsError(kProtocol).
std::string decode_ack(std::string_view bytes);

// One datagram, optionally with one fd. Throws ZdsError (kTimeout, kDisconnected, kProtocol for
// a message over 1024 bytes).
void send_datagram(int sock, std::string_view bytes, int pass_fd, Deadline deadline);
// One datagram (truncation is kProtocol). Any fd received is closed: the agent never expects one.
std::string recv_datagram(int sock, Deadline deadline);

}  // namespace ambient::agent::zds
