#include "agent/plugin_server.h"

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

#include "config/constants.h"
#include "config/errors.h"

namespace ambient::agent {

struct PluginServer::Impl {
  std::string path;
  Handler handler;
  std::shared_ptr<spdlog::logger> log;
  int listen_fd = -1;
  int wake[2] = {-1, -1};
  std::thread acceptor;
  std::atomic<bool> running{false};
  std::mutex active_mu;
  std::condition_variable active_cv;
  int active = 0;

  void serve(int fd) {
    std::string buf(64 * 1024, '\0');
    pollfd p{fd, POLLIN, 0};
    config::AgentReply reply;
    // The plugin sends its request right after connecting; don't let a stuck peer pin a thread.
    if (::poll(&p, 1, 10000) == 1) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n > 0) {
        try {
          const auto request = config::agent_request_from_json(
              nlohmann::json::parse(std::string_view(buf.data(), static_cast<std::size_t>(n))));
          reply = handler(request);
        } catch (const nlohmann::json::exception& e) {
          reply = config::AgentReply::failure(contract::cni_code::kDecodeFailure,
                                              std::string("malformed request: ") + e.what());
        } catch (const config::ConfigError& e) {
          reply = config::AgentReply::failure(contract::cni_code::kDecodeFailure,
                                              std::string("malformed request: ") + e.what());
        } catch (const std::exception& e) {
          log->error("plugin request failed: {}", e.what());
          reply = config::AgentReply::failure(contract::cni_code::kInternal,
                                              std::string("agent error: ") + e.what());
        }
        const auto out = config::to_json(reply).dump();
        if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) < 0) {
          log->warn("plugin went away before its answer: {}", std::strerror(errno));
        }
      }
    }
    ::close(fd);
    std::lock_guard g(active_mu);
    --active;
    active_cv.notify_all();
  }

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

PluginServer::PluginServer(std::string socket_path, Handler handler,
                           std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(socket_path);
  impl_->handler = std::move(handler);
  impl_->log = std::move(log);
}

PluginServer::~PluginServer() {
  stop();
}

void PluginServer::start() {
  auto& s = *impl_;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(s.path).parent_path(), ec);
  ::unlink(s.path.c_str());
  s.listen_fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (s.path.size() >= sizeof addr.sun_path)
    throw std::runtime_error("socket path too long: " + s.path);
  std::memcpy(addr.sun_path, s.path.c_str(), s.path.size() + 1);
  // Root only: whoever can talk to this socket can make the agent enter pod namespaces.
  const mode_t old = ::umask(0077);
  const int rc = ::bind(s.listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0 || ::listen(s.listen_fd, 256) != 0) {
    const std::string err = std::strerror(errno);
    ::close(s.listen_fd);
    s.listen_fd = -1;
    throw std::runtime_error("plugin socket " + s.path + ": " + err);
  }
  ::chmod(s.path.c_str(), 0600);
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
