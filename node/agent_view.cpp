#include "node/agent_view.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/seqpacket.h"

namespace ambient::node {
namespace {

using Clock = std::chrono::steady_clock;

// A page is about 100 rows of a few hundred bytes; anything far larger is not our agent.
constexpr std::size_t kMaxReplyBytes = 4 << 20;
// However many pages the agent claims: a node holds a few hundred pods at most.
constexpr std::size_t kMaxRows = 100000;

rundir::AgentReply ask(const std::string& path, std::size_t offset, Clock::time_point deadline,
                       std::chrono::milliseconds timeout) {
  base::UniqueFd sock;
  try {
    sock = base::connect_seqpacket(path);
  } catch (const base::SocketError& e) {
    std::string why = e.what();
    if (e.error_number() == EACCES || e.error_number() == EPERM) {
      why += " (the agent socket is root only: run as root on the node)";
    } else if (e.error_number() == ENOENT || e.error_number() == ECONNREFUSED) {
      why += " (no node agent runs with this run dir: --run-dir, AMBIENT_RUN_DIR)";
    }
    throw AgentViewError("cannot reach the node agent: " + why);
  }
  rundir::AgentRequest request;
  request.op = "pods";
  request.offset = offset;
  try {
    base::send_message(sock.get(), rundir::to_json(request).dump());
  } catch (const base::SocketError& e) {
    throw AgentViewError("cannot ask the node agent at " + path + ": " + e.what());
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (!base::wait_readable(sock.get(), static_cast<int>(std::max<long>(0, left.count())))) {
    throw AgentViewError("the node agent at " + path + " did not answer within " +
                         std::to_string(timeout.count()) + " ms");
  }
  std::optional<std::string> msg;
  try {
    msg = base::receive_message(sock.get(), kMaxReplyBytes);
  } catch (const base::SocketError& e) {
    throw AgentViewError("reading the node agent's answer from " + path + ": " + e.what());
  }
  if (!msg) throw AgentViewError("the node agent at " + path + " closed without an answer");
  try {
    return rundir::agent_reply_from_json(nlohmann::json::parse(*msg));
  } catch (const std::exception& e) {
    throw AgentViewError("malformed answer from the node agent at " + path + ": " + e.what());
  }
}

}  // namespace

rundir::AgentView fetch_agent_view(const std::string& socket_path,
                                   std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  rundir::AgentView all;
  for (std::size_t offset = 0;;) {
    const auto reply = ask(socket_path, offset, deadline, timeout);
    if (!reply.ok) {
      throw AgentViewError("the node agent at " + socket_path + " refused: " + reply.msg +
                           (reply.code == 6 ? " (an agent older than this command?)" : ""));
    }
    if (!reply.view) {
      throw AgentViewError("the node agent at " + socket_path +
                           " answered without a listing (an agent older than this command?)");
    }
    const auto& page = *reply.view;
    if (offset == 0) {
      all = page;
      all.pods.clear();
    }
    for (const auto& p : page.pods) all.pods.push_back(p);
    offset += page.pods.size();
    all.total = page.total;
    // Done when the agent has no more (pods come and go between pages: its total may change).
    if (page.pods.empty() || offset >= page.total || offset >= kMaxRows) break;
  }
  all.offset = 0;
  return all;
}

}  // namespace ambient::node
