#include "agent/plugin_server.h"

#include <malloc.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <spdlog/spdlog.h>

#include "base/file.h"
#include "base/seqpacket.h"
#include "config/constants.h"
#include "config/errors.h"
#include "rundir/messages.h"

namespace ambient::agent {

namespace {

// Far above any request the plugin sends (a pod record); a bigger one is refused with an answer.
constexpr std::size_t kMaxRequestBytes = 1 << 20;

rundir::AgentReply translate(PluginRequests& core, const rundir::AgentRequest& req) {
  if (req.op == "add") {
    const auto r = core.add(req.pod);
    if (r.outcome.ok) return rundir::AgentReply::success(r.enrolled, r.reason);
    auto reply = rundir::AgentReply::failure(r.outcome.code, r.outcome.msg, r.outcome.details);
    reply.undecided = !r.decided;
    return reply;
  }
  if (req.op == "del") {
    core.del(req.pod);
    return rundir::AgentReply::success(false, "released");
  }
  if (req.op == "pods") {
    auto reply = rundir::AgentReply::success(false, "pods");
    reply.view = core.listing(req.offset);
    return reply;
  }
  const auto o = req.op == "status" ? core.status() : core.check(req.pod);
  return o.ok ? rundir::AgentReply::success(true, "in place")
              : rundir::AgentReply::failure(o.code, o.msg, o.details);
}

}  // namespace

struct PluginServer::Impl {
  std::string path;
  PluginRequests* core = nullptr;
  std::shared_ptr<spdlog::logger> log;
  int listen_fd = -1;
  int wake[2] = {-1, -1};
  std::thread acceptor;
  std::atomic<bool> running{false};
  std::mutex active_mu;
  std::condition_variable active_cv;
  int active = 0;

  void serve(int raw_fd) {
    base::UniqueFd fd(raw_fd);
    rundir::AgentReply reply;
    // The plugin sends its request right after connecting; don't let a stuck peer pin a thread.
    if (base::wait_readable(fd.get(), 10000)) {
      try {
        const auto msg = base::receive_message(fd.get(), kMaxRequestBytes);
        if (!msg) return done();  // the plugin went away
        reply = translate(*core, rundir::agent_request_from_json(nlohmann::json::parse(*msg)));
      } catch (const base::SocketError& e) {
        reply = rundir::AgentReply::failure(contract::cni_code::kDecodeFailure,
                                            std::string("unreadable request: ") + e.what());
      } catch (const nlohmann::json::exception& e) {
        reply = rundir::AgentReply::failure(contract::cni_code::kDecodeFailure,
                                            std::string("malformed request: ") + e.what());
      } catch (const config::ConfigError& e) {
        reply = rundir::AgentReply::failure(contract::cni_code::kDecodeFailure,
                                            std::string("malformed request: ") + e.what());
      } catch (const std::exception& e) {
        log->error("plugin request failed: {}", e.what());
        reply = rundir::AgentReply::failure(contract::cni_code::kInternal,
                                            std::string("agent error: ") + e.what());
      }
      try {
        base::send_message(fd.get(), rundir::to_json(reply).dump());
      } catch (const base::SocketError& e) {
        log->warn("plugin went away before its answer: {}", e.what());
      }
    }
    done();
  }

  void done() {
    bool idle = false;
    {
      std::lock_guard g(active_mu);
      idle = --active == 0;
      active_cv.notify_all();
    }
    // A burst of ADDs (a node's 110 pods at once: as many request threads) leaves its memory in
    // malloc's free lists; give it back when the last request of a burst is answered, at most
    // once a second.
    if (idle) {
      const long long now = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now().time_since_epoch())
                                .count();
      long long last = last_trim.load();
      if (now - last >= 1000 && last_trim.compare_exchange_strong(last, now)) {
        malloc_trim(0);
      }
    }
  }
  std::atomic<long long> last_trim{0};  // steady clock, ms

  void run() {
    while (running) {
      pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
      if (!running) break;
      if (!(fds[0].revents & POLLIN)) continue;
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      {
        std::lock_guard g(active_mu);
        ++active;
      }
      std::thread([this, fd] { serve(fd); }).detach();
    }
  }
};

PluginServer::PluginServer(std::string socket_path, PluginRequests& core,
                           std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(socket_path);
  impl_->core = &core;
  impl_->log = std::move(log);
}

PluginServer::~PluginServer() {
  stop();
}

void PluginServer::start() {
  auto& s = *impl_;
  std::error_code ec;
  // The run dir is ours alone (records, state, the plugin's kubeconfig): 0700 whatever the umask.
  try {
    base::ensure_dir(std::filesystem::path(s.path).parent_path(), 0700);
  } catch (const base::FileError& e) {
    throw std::runtime_error(std::string("run dir: ") + e.what());
  }
  try {
    // Root only: whoever can talk to this socket can make the agent enter pod namespaces.
    s.listen_fd = base::listen_seqpacket(s.path, 256).release();
  } catch (const base::SocketError& e) {
    throw std::runtime_error(std::string("plugin socket: ") + e.what());
  }
  if (::pipe2(s.wake, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  s.running = true;
  s.acceptor = std::thread([&s] { s.run(); });
  s.log->info("plugin requests on {}", s.path);
}

void PluginServer::stop() {
  auto& s = *impl_;
  if (!s.running.exchange(false)) return;
  (void)!::write(s.wake[1], "x", 1);
  if (s.acceptor.joinable()) s.acceptor.join();
  ::close(s.listen_fd);
  ::unlink(s.path.c_str());
  std::unique_lock g(s.active_mu);
  s.active_cv.wait(g, [&s] { return s.active == 0; });
  ::close(s.wake[0]);
  ::close(s.wake[1]);
}

}  // namespace ambient::agent
