// The plugin's side of the node agent: one request, one reply, within a deadline; and the run-dir
// records that let the agent find pods without the plugin.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "config/agent_protocol.h"

namespace ambient::plugin {

class AgentClient {
 public:
  virtual ~AgentClient() = default;
  // Throws CniError(11, "node agent unavailable: …") when the agent cannot be reached or does not
  // answer in time; otherwise returns its reply.
  virtual config::AgentReply call(const config::AgentRequest& request) = 0;
};

// SOCK_SEQPACKET to <run_dir>/agent.sock.
std::unique_ptr<AgentClient> make_socket_agent_client(const std::string& run_dir,
                                                      std::chrono::milliseconds deadline);

// Run-dir bookkeeping (atomic writes: temp file + rename). Failures throw CniError(5).
void write_pod_record(const std::string& run_dir, const config::PodRecord& record);
void remove_pod_record(const std::string& run_dir, const std::string& container_id) noexcept;
// The record a container's ADD left, if any (unreadable counts as none).
std::optional<config::PodRecord> read_pod_record(const std::string& run_dir,
                                                 const std::string& container_id);
std::vector<config::PodRecord> read_pod_records(const std::string& run_dir);
// Left when DEL cannot reach the agent; the agent processes it when it starts.
void write_tombstone(const std::string& run_dir, const config::PodRecord& record) noexcept;

}  // namespace ambient::plugin
