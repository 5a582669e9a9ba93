#include "plugin/agent_client.h"

#include <cerrno>

#include "base/seqpacket.h"
#include "config/errors.h"

namespace ambient::plugin {
namespace {

using Clock = std::chrono::steady_clock;

// Replies are a decision and a message; anything larger is not from our agent.
constexpr std::size_t kMaxReplyBytes = 1 << 20;

[[noreturn]] void unavailable(const std::string& why) {
  throw CniError(cni_code::kTryAgainLater, "node agent unavailable: " + why);
}

class SocketAgentClient final : public AgentClient {
 public:
  SocketAgentClient(std::string path, std::chrono::milliseconds deadline)
      : path_(std::move(path)), deadline_(deadline) {}

  rundir::AgentReply call(const rundir::AgentRequest& request) override {
    const auto deadline = Clock::now() + deadline_;
    base::UniqueFd sock;
    try {
      sock = base::connect_seqpacket(path_);
    } catch (const base::SocketError& e) {
      throw AgentNotRunning(e.what());
    }
    try {
      base::send_message(sock.get(), rundir::to_json(request).dump());
    } catch (const base::SocketError& e) {
      throw AgentNotRunning(std::string("sending to ") + path_ + ": " + e.what());
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (!base::wait_readable(sock.get(), static_cast<int>(std::max<long>(0, left.count())))) {
      unavailable("no answer within " + std::to_string(deadline_.count()) + " ms");
    }
    std::optional<std::string> msg;
    try {
      msg = base::receive_message(sock.get(), kMaxReplyBytes);
    } catch (const base::SocketError& e) {
      unavailable(std::string("reading the answer: ") + e.what());
    }
    if (!msg) unavailable("the agent closed the connection without an answer");
    try {
      return rundir::agent_reply_from_json(nlohmann::json::parse(*msg));
    } catch (const std::exception& e) {
      unavailable(std::string("malformed answer: ") + e.what());
    }
  }

 private:
  std::string path_;
  std::chrono::milliseconds deadline_;
};

}  // namespace

std::unique_ptr<AgentClient> make_socket_agent_client(const std::string& socket_path,
                                                      std::chrono::milliseconds deadline) {
  return std::make_unique<SocketAgentClient>(socket_path, deadline);
}

}  // namespace ambient::plugin
